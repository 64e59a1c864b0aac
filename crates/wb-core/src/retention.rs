//! Which backup objects a company's retention policy keeps.
//!
//! Point-in-time restore must reach every moment of the last `pitr` (7 days by
//! default): that needs the newest snapshot taken at or before the window's
//! start (the *base*) and every segment after it. Older snapshots are kept one
//! per UTC day for `daily` (30 days by default), each a restore point of its
//! own; the newest snapshot is always kept. Segments wholly covered by the base
//! snapshot go. With no base yet, every segment is kept (restores start from
//! record 1).

use time::{Date, Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// How far back any point in time can be restored.
    pub pitr: Duration,
    /// How long daily snapshots are kept.
    pub daily: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            pitr: Duration::days(7),
            daily: Duration::days(30),
        }
    }
}

/// A snapshot: the last journal record it covers and that record's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPoint {
    pub seq: i64,
    pub at: OffsetDateTime,
}

/// A shipped segment's record range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentRange {
    pub first: i64,
    pub last: i64,
}

/// What retention deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prune {
    pub snapshots: Vec<i64>,
    pub segments: Vec<SegmentRange>,
}

/// Decides what to delete; `snapshots` in any order.
pub fn plan(
    policy: RetentionPolicy,
    now: OffsetDateTime,
    snapshots: &[SnapshotPoint],
    segments: &[SegmentRange],
) -> Prune {
    let window_start = now - policy.pitr;
    let daily_start = now - policy.daily;
    let mut sorted: Vec<SnapshotPoint> = snapshots.to_vec();
    sorted.sort_by_key(|s| s.seq);
    let base = sorted.iter().rev().find(|s| s.at <= window_start).copied();
    let newest = sorted.last().copied();
    // The newest snapshot of each day, for days inside the daily window.
    let mut daily: std::collections::BTreeMap<Date, i64> = std::collections::BTreeMap::new();
    for s in sorted.iter().filter(|s| s.at >= daily_start) {
        daily.insert(s.at.date(), s.seq);
    }
    let keep = |s: &SnapshotPoint| {
        s.at > window_start
            || Some(s.seq) == base.map(|b| b.seq)
            || Some(s.seq) == newest.map(|n| n.seq)
            || daily.get(&s.at.date()) == Some(&s.seq)
    };
    let snapshots = sorted.iter().filter(|s| !keep(s)).map(|s| s.seq).collect();
    let segments = match base {
        Some(base) => segments
            .iter()
            .filter(|r| r.last <= base.seq)
            .copied()
            .collect(),
        None => Vec::new(),
    };
    Prune {
        snapshots,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(days_ago: f64, now: OffsetDateTime) -> OffsetDateTime {
        now - Duration::seconds_f64(days_ago * 86_400.0)
    }

    #[test]
    fn keeps_the_window_its_base_and_one_snapshot_a_day() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000) + Duration::hours(12);
        let snaps: Vec<SnapshotPoint> = [
            (100, 40.0),
            (200, 20.0),
            (210, 19.9), // same day as 200 (a later one): 200 goes
            (300, 9.0),
            (400, 8.0), // base: newest at or before the window start
            (500, 3.0),
            (600, 1.0),
        ]
        .iter()
        .map(|&(seq, d)| SnapshotPoint {
            seq,
            at: at(d, now),
        })
        .collect();
        let segments: Vec<SegmentRange> = (0..70)
            .map(|i| SegmentRange {
                first: i * 10 + 1,
                last: i * 10 + 10,
            })
            .collect();
        let prune = plan(RetentionPolicy::default(), now, &snaps, &segments);
        assert_eq!(prune.snapshots, vec![100, 200]);
        assert!(prune.segments.iter().all(|r| r.last <= 400));
        assert_eq!(prune.segments.len(), 40);
    }

    #[test]
    fn without_a_snapshot_before_the_window_every_segment_stays() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let snaps = [SnapshotPoint {
            seq: 50,
            at: at(2.0, now),
        }];
        let segments = [SegmentRange { first: 1, last: 50 }];
        assert_eq!(
            plan(RetentionPolicy::default(), now, &snaps, &segments),
            Prune::default()
        );
    }

    proptest! {
        /// Every record committed inside the window stays restorable: some kept
        /// snapshot (or record 1) precedes it, and every segment from there on
        /// is kept; the newest snapshot is never deleted.
        #[test]
        fn every_point_in_the_window_stays_restorable(
            gaps in proptest::collection::vec(1u32..200_000, 1..60),
            snapshot_every in 1usize..12,
        ) {
            let start = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
            // One record per gap (seconds after the previous), one segment per 3 records.
            let mut times = Vec::new();
            let mut t = start;
            for g in &gaps {
                t += Duration::seconds(i64::from(*g));
                times.push(t);
            }
            let now = t + Duration::hours(1);
            let n = times.len() as i64;
            let segments: Vec<SegmentRange> = (0..n).step_by(3)
                .map(|i| SegmentRange { first: i + 1, last: (i + 3).min(n) })
                .collect();
            let snaps: Vec<SnapshotPoint> = (0..n as usize).step_by(snapshot_every)
                .map(|i| SnapshotPoint { seq: i as i64 + 1, at: times[i] })
                .collect();
            let policy = RetentionPolicy { pitr: Duration::days(1), daily: Duration::days(3) };
            let prune = plan(policy, now, &snaps, &segments);
            let kept_snaps: Vec<&SnapshotPoint> =
                snaps.iter().filter(|s| !prune.snapshots.contains(&s.seq)).collect();
            prop_assert!(kept_snaps.iter().any(|s| Some(s.seq) == snaps.last().map(|l| l.seq)));
            let kept_segments: Vec<&SegmentRange> =
                segments.iter().filter(|r| !prune.segments.contains(r)).collect();
            for (i, at) in times.iter().enumerate() {
                if *at < now - policy.pitr {
                    continue;
                }
                let seq = i as i64 + 1;
                let from = kept_snaps.iter().filter(|s| s.seq <= seq).map(|s| s.seq).max().unwrap_or(0);
                for needed in from + 1..=seq {
                    prop_assert!(
                        kept_segments.iter().any(|r| r.first <= needed && needed <= r.last),
                        "record {needed} (needed for {seq}) lost"
                    );
                }
            }
        }
    }
}
