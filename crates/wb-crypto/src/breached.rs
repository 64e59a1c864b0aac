//! The bundled list of common breached passwords (`data/README.md` says
//! where it comes from), compiled into the binary: nothing is downloaded.

use std::sync::OnceLock;

const LIST: &str = include_str!("../data/breached-passwords.txt");

/// The list's lines, sorted by bytes as the file is.
fn sorted() -> &'static [&'static str] {
    static LINES: OnceLock<Vec<&'static str>> = OnceLock::new();
    LINES.get_or_init(|| LIST.lines().filter(|l| !l.is_empty()).collect())
}

/// How many passwords the list holds.
pub fn breached_list_len() -> usize {
    sorted().len()
}

/// Whether `candidate`, compared case-insensitively (and without the
/// spaces around it), is on the list.
pub fn is_breached(candidate: &str) -> bool {
    let lowered = candidate.trim().to_lowercase();
    sorted()
        .binary_search_by(|line| line.as_bytes().cmp(lowered.as_bytes()))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_large_sorted_and_lower_case() {
        let lines = sorted();
        assert!(lines.len() >= 100_000, "{}", lines.len());
        assert!(lines.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
        assert!(lines.iter().all(|l| *l == l.to_lowercase()));
    }

    #[test]
    fn lookups_ignore_case_and_find_every_entry() {
        assert!(is_breached("password"));
        assert!(is_breached("PassWord"));
        assert!(is_breached(" 123456 "));
        assert!(!is_breached("violet orbit cactus thunder"));
        for line in sorted().iter().step_by(997) {
            assert!(is_breached(line), "{line}");
            if line.is_ascii() {
                assert!(is_breached(&line.to_ascii_uppercase()), "{line}");
            }
        }
    }
}
