//! How far a restore replays a company's shipped journal (a leaf: the
//! restore registry and the backup code both name it).

use time::OffsetDateTime;

/// How far to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Everything shipped.
    Latest,
    /// Up to and including this journal sequence.
    Seq(i64),
    /// Every record committed at or before this time.
    Time(OffsetDateTime),
}
