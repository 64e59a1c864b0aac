//! Restoring a company in place, the ledger's way: posted entries are
//! immutable, so the books are brought back to an earlier point by
//! compensating entries, never by deleting. Every entry posted after the point
//! is reversed (dated as it was, so balances on every date match the point);
//! an earlier entry that was reversed after the point is reinstated by posting
//! its content again; an entry posted and reversed after the point already
//! cancels out. The trail of what happened, and the revert itself, stays.

/// An entry posted after the point, with its reversal links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaterEntry {
    pub id: i64,
    pub reverses: Option<i64>,
    pub reversed_by: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevertAction {
    /// Reverse this entry (posted after the point).
    Reverse(i64),
    /// Post this earlier entry's content again (it was reversed after the point).
    Reinstate(i64),
}

/// The compensating actions, in entry order. `first_after` is the first entry
/// id posted after the point; `later` are all entries from it on.
pub fn plan(first_after: i64, later: &[LaterEntry]) -> Vec<RevertAction> {
    let mut sorted = later.to_vec();
    sorted.sort_by_key(|e| e.id);
    sorted
        .iter()
        .filter_map(|e| match (e.reverses, e.reversed_by) {
            (Some(original), _) if original < first_after => {
                Some(RevertAction::Reinstate(original))
            }
            (Some(_), _) => None,
            (None, Some(_)) => None,
            (None, None) => Some(RevertAction::Reverse(e.id)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A tiny ledger: each entry moves one amount; a reversal moves its negation.
    #[derive(Default, Clone)]
    struct Ledger {
        amounts: BTreeMap<i64, i64>,
        reverses: BTreeMap<i64, i64>,
        reversed_by: BTreeMap<i64, i64>,
        next: i64,
    }

    impl Ledger {
        fn post(&mut self, amount: i64) -> i64 {
            self.next += 1;
            self.amounts.insert(self.next, amount);
            self.next
        }
        fn reverse(&mut self, id: i64) -> Option<i64> {
            if self.reversed_by.contains_key(&id) || self.reverses.contains_key(&id) {
                return None;
            }
            let r = self.post(-self.amounts[&id]);
            self.reverses.insert(r, id);
            self.reversed_by.insert(id, r);
            Some(r)
        }
        fn balance(&self) -> i64 {
            self.amounts.values().sum()
        }
        fn later(&self, first_after: i64) -> Vec<LaterEntry> {
            self.amounts
                .keys()
                .filter(|id| **id >= first_after)
                .map(|&id| LaterEntry {
                    id,
                    reverses: self.reverses.get(&id).copied(),
                    reversed_by: self.reversed_by.get(&id).copied(),
                })
                .collect()
        }
    }

    #[test]
    fn reverses_later_entries_and_reinstates_earlier_ones_reversed_since() {
        let mut l = Ledger::default();
        let a = l.post(100);
        let b = l.post(50);
        let first_after = l.next + 1;
        let c = l.post(7);
        l.reverse(b); // entry 4
        let e = l.post(9);
        l.reverse(e); // entry 6: cancels with 5
        let actions = plan(first_after, &l.later(first_after));
        assert_eq!(
            actions,
            vec![RevertAction::Reverse(c), RevertAction::Reinstate(b)]
        );
        let _ = a;
    }

    proptest! {
        /// After the plan is applied, the balance is the balance at the point.
        #[test]
        fn the_plan_brings_balances_back_to_the_point(
            ops in proptest::collection::vec((any::<bool>(), -1000i64..1000, 0usize..50), 1..80),
            point in 0usize..80,
        ) {
            let mut l = Ledger::default();
            let mut at_point = None;
            for (i, (reverse, amount, pick)) in ops.iter().enumerate() {
                if i == point {
                    at_point = Some((l.balance(), l.next + 1));
                }
                if *reverse && l.next > 0 {
                    let id = (*pick as i64 % l.next) + 1;
                    l.reverse(id);
                } else {
                    l.post(*amount);
                }
            }
            let (balance, first_after) = at_point.unwrap_or((l.balance(), l.next + 1));
            for action in plan(first_after, &l.later(first_after)) {
                match action {
                    RevertAction::Reverse(id) => { prop_assert!(l.reverse(id).is_some()); }
                    RevertAction::Reinstate(id) => { let amount = l.amounts[&id]; l.post(amount); }
                }
            }
            prop_assert_eq!(l.balance(), balance);
        }
    }
}
