use proptest::prelude::*;
use time::macros::datetime;

use super::*;

const T0: OffsetDateTime = datetime!(2026-12-01 09:00 UTC);

fn request(scope: GrantScope, minutes: u32) -> GrantRequest {
    GrantRequest {
        company_id: "c1".into(),
        requested_by: "staff:alice".into(),
        reason: "Customer ticket: trial balance looks wrong".into(),
        scope,
        duration_minutes: minutes,
        ticket: Some("SUP-1234".into()),
        legal_mandate: None,
        starts_at: None,
    }
}

fn at(by: &str, minutes: i64) -> Decision {
    Decision {
        by: by.into(),
        at: T0 + Duration::minutes(minutes),
    }
}

fn grant(minutes: u32) -> Grant {
    Grant::new("g1".into(), request(GrantScope::BooksRead, minutes), T0)
}

fn mins(m: i64) -> OffsetDateTime {
    T0 + Duration::minutes(m)
}

#[test]
fn approvals_in_either_order_open_it_for_its_duration_exactly() {
    for company_first in [true, false] {
        let mut g = grant(60);
        let (first, second) = if company_first {
            (
                (Side::Company, at("user:owner", 5)),
                (Side::Management, at("staff:boss", 10)),
            )
        } else {
            (
                (Side::Management, at("staff:boss", 5)),
                (Side::Company, at("user:owner", 10)),
            )
        };
        g.approve(first.0, first.1, None).unwrap();
        assert_eq!(
            g.state(mins(7)),
            GrantState::Pending,
            "one approval is not enough"
        );
        assert!(!g.allows(Permission::ReadBooks, mins(7)));
        g.approve(second.0, second.1, None).unwrap();
        assert_eq!(g.state(mins(9)), GrantState::Pending);
        assert_eq!(g.opens_at(), Some(mins(10)));
        assert_eq!(g.state(mins(10)), GrantState::Active);
        assert!(g.allows(Permission::ReadBooks, mins(10)));
        let last_moment = mins(70) - Duration::nanoseconds(1);
        assert_eq!(g.state(last_moment), GrantState::Active);
        assert_eq!(
            g.state(mins(70)),
            GrantState::Expired,
            "expires at the end exactly"
        );
        assert_eq!(g.next_change(mins(30)), Some(mins(70)));
    }
}

#[test]
fn a_requested_start_delays_the_window() {
    let mut r = request(GrantScope::BooksRead, 30);
    r.starts_at = Some(mins(120));
    let mut g = Grant::new("g".into(), r, T0);
    g.approve(Side::Company, at("user:o", 1), None).unwrap();
    g.approve(Side::Management, at("staff:m", 2), None).unwrap();
    assert_eq!(g.state(mins(119)), GrantState::Pending);
    assert_eq!(g.next_change(mins(3)), Some(mins(120)));
    assert_eq!(g.state(mins(120)), GrantState::Active);
    assert_eq!(g.state(mins(150)), GrantState::Expired);
}

#[test]
fn a_late_approval_shortens_the_window_and_never_moves_it() {
    let mut r = request(GrantScope::BooksRead, 30);
    r.starts_at = Some(mins(10));
    let mut g = Grant::new("g".into(), r, T0);
    g.approve(Side::Company, at("user:o", 1), None).unwrap();
    g.approve(Side::Management, at("staff:m", 20), None)
        .unwrap();
    assert_eq!(g.opens_at(), Some(mins(20)));
    assert_eq!(
        g.closes_at(),
        Some(mins(40)),
        "the agreed start plus the duration"
    );
    assert_eq!(g.state(mins(39)), GrantState::Active);
    assert_eq!(g.state(mins(40)), GrantState::Expired);
}

#[test]
fn each_side_decides_through_its_own_realm() {
    let mut g = grant(60);
    assert_eq!(
        g.approve(Side::Company, at("staff:bob", 1), None),
        Err(GrantError::WrongRealm)
    );
    assert_eq!(
        g.approve(Side::Management, at("user:owner", 1), None),
        Err(GrantError::WrongRealm)
    );
    assert_eq!(
        g.deny(Side::Company, at("api_key:k", 1)),
        Err(GrantError::WrongRealm)
    );
    assert!(g.company_approval.is_none() && g.management_approval.is_none() && g.ending.is_none());
}

#[test]
fn an_unapproved_request_expires_after_seven_days() {
    let mut g = grant(60);
    g.approve(Side::Company, at("user:o", 1), None).unwrap();
    let week = PENDING_DAYS * 24 * 60;
    assert_eq!(
        g.state(mins(week) - Duration::nanoseconds(1)),
        GrantState::Pending
    );
    assert_eq!(g.state(mins(week)), GrantState::Expired);
    assert_eq!(
        g.approve(Side::Management, at("staff:m", week), None),
        Err(GrantError::Ended(GrantState::Expired))
    );
}

#[test]
fn the_requester_cannot_approve_and_a_side_decides_once() {
    let mut g = grant(60);
    assert_eq!(
        g.approve(Side::Management, at("staff:alice", 1), None),
        Err(GrantError::SelfApproval)
    );
    g.approve(Side::Company, at("user:o", 1), None).unwrap();
    assert_eq!(
        g.approve(Side::Company, at("user:o2", 2), None),
        Err(GrantError::AlreadyDecided)
    );
    g.approve(Side::Management, at("staff:m", 3), None).unwrap();
    assert_eq!(
        g.approve(Side::Management, at("staff:m2", 4), None),
        Err(GrantError::AlreadyDecided)
    );
}

#[test]
fn either_side_denies_while_pending_and_revokes_once_approved() {
    for side in [Side::Company, Side::Management] {
        let x = match side {
            Side::Company => "user:admin",
            Side::Management => "staff:boss",
        };
        let mut g = grant(60);
        assert_eq!(g.revoke(side, at(x, 1)), Err(GrantError::NotApproved));
        g.deny(side, at(x, 2)).unwrap();
        assert_eq!(g.state(mins(2)), GrantState::Denied);
        assert_eq!(
            g.state(mins(1)),
            GrantState::Denied,
            "an ending holds at once"
        );
        assert_eq!(
            g.approve(Side::Company, at("user:o", 3), None),
            Err(GrantError::Ended(GrantState::Denied))
        );

        let mut g = grant(60);
        g.approve(Side::Company, at("user:o", 1), None).unwrap();
        g.approve(Side::Management, at("staff:m", 2), None).unwrap();
        assert_eq!(g.deny(side, at(x, 3)), Err(GrantError::AlreadyApproved));
        assert_eq!(g.state(mins(9)), GrantState::Active);
        g.revoke(side, at(x, 10)).unwrap();
        assert_eq!(g.state(mins(10)), GrantState::Revoked, "at once");
        assert!(!g.allows(Permission::ReadBooks, mins(10)));
        assert_eq!(g.next_change(mins(10)), None);
        assert_eq!(
            g.revoke(side, at(x, 11)),
            Err(GrantError::Ended(GrantState::Revoked))
        );
        // A decision dated before the ending (a slow clock) changes nothing.
        assert_eq!(
            g.deny(side, at(x, 0)),
            Err(GrantError::Ended(GrantState::Revoked))
        );
        assert_eq!(g.ending.as_ref().unwrap().decision.at, mins(10));
    }
}

#[test]
fn a_legal_mandate_is_approved_by_management_alone_with_its_reference() {
    let mut r = request(GrantScope::Full, 60);
    r.legal_mandate = Some(LegalMandate {
        reference: "Court order 2026/481".into(),
        disclose_after: Some(mins(60 * 24 * 30)),
    });
    let mut g = Grant::new("g".into(), r, T0);
    assert_eq!(
        g.approve(Side::Company, at("user:o", 1), None),
        Err(GrantError::MandateNeedsNoCompany)
    );
    assert_eq!(
        g.deny(Side::Company, at("user:o", 1)),
        Err(GrantError::MandateNeedsNoCompany)
    );
    assert_eq!(
        g.approve(
            Side::Management,
            at("staff:m", 1),
            Some("Court order 2026/999")
        ),
        Err(GrantError::MandateMismatch)
    );
    assert_eq!(
        g.approve(Side::Management, at("staff:m", 1), None),
        Err(GrantError::MandateMismatch)
    );
    assert_eq!(
        g.approve(
            Side::Management,
            at("staff:alice", 1),
            Some("Court order 2026/481")
        ),
        Err(GrantError::SelfApproval)
    );
    g.approve(
        Side::Management,
        at("staff:m", 2),
        Some(" Court order 2026/481 "),
    )
    .unwrap();
    assert_eq!(g.state(mins(2)), GrantState::Active);
    assert!(!g.disclosed_to_company(mins(3)));
    assert!(g.disclosed_to_company(mins(60 * 24 * 30)));
    assert_eq!(
        g.revoke(Side::Company, at("user:o", 5)),
        Err(GrantError::MandateNeedsNoCompany)
    );
    g.revoke(Side::Management, at("staff:m", 5)).unwrap();
    assert_eq!(g.state(mins(5)), GrantState::Revoked);
}

#[test]
fn scopes_cover_content_and_never_the_companys_administration() {
    use Permission::*;
    let all = [
        ReadBooks,
        WriteBooks,
        ReadFiles,
        WriteFiles,
        ReadAudit,
        ManageMembers,
        ManageApiKeys,
        ManageSecurity,
        Deprovision,
        ExportData,
        RestoreCopy,
    ];
    let covered = |scope: GrantScope| -> Vec<Permission> {
        all.iter().copied().filter(|p| scope.covers(*p)).collect()
    };
    assert_eq!(covered(GrantScope::BooksRead), [ReadBooks]);
    assert_eq!(covered(GrantScope::BooksWrite), [ReadBooks, WriteBooks]);
    assert_eq!(covered(GrantScope::Files), [ReadFiles, WriteFiles]);
    assert_eq!(
        covered(GrantScope::Full),
        [ReadBooks, WriteBooks, ReadFiles, WriteFiles, ReadAudit]
    );
    for scope in GrantScope::ALL {
        assert_eq!(scope.as_str().parse::<GrantScope>(), Ok(scope));
    }
    assert!("admin".parse::<GrantScope>().is_err());
}

#[test]
fn requests_are_checked_against_the_rules() {
    let ok = request(GrantScope::BooksRead, 60);
    assert_eq!(check_request(&ok, MAX_DURATION_MINUTES, T0), Ok(()));
    let with = |f: &dyn Fn(&mut GrantRequest)| {
        let mut r = ok.clone();
        f(&mut r);
        check_request(&r, 24 * 60, T0)
    };
    assert_eq!(
        with(&|r| r.reason = "  too short ".into()),
        Err(GrantError::Reason)
    );
    assert_eq!(
        with(&|r| r.reason = "x".repeat(MAX_REASON_CHARS + 1)),
        Err(GrantError::Reason)
    );
    assert_eq!(
        with(&|r| r.reason = "line one\u{7}bell rings".into()),
        Err(GrantError::Reason)
    );
    assert_eq!(
        with(&|r| r.duration_minutes = 0),
        Err(GrantError::Duration(24 * 60))
    );
    assert_eq!(
        with(&|r| r.duration_minutes = 24 * 60 + 1),
        Err(GrantError::Duration(24 * 60))
    );
    assert_eq!(with(&|r| r.duration_minutes = 24 * 60), Ok(()));
    assert_eq!(
        check_request(
            &GrantRequest {
                duration_minutes: MAX_DURATION_MINUTES + 1,
                ..ok.clone()
            },
            u32::MAX,
            T0
        ),
        Err(GrantError::Duration(MAX_DURATION_MINUTES)),
        "no deployment setting goes beyond 72 h"
    );
    assert_eq!(
        with(&|r| r.ticket = Some("SUP 1".into())),
        Err(GrantError::Ticket)
    );
    assert_eq!(
        with(&|r| r.ticket = Some(String::new())),
        Err(GrantError::Ticket)
    );
    assert_eq!(
        with(&|r| r.legal_mandate = Some(LegalMandate {
            reference: " ".into(),
            disclose_after: None
        })),
        Err(GrantError::MandateReference)
    );
    assert_eq!(
        with(&|r| r.starts_at = Some(T0 - Duration::minutes(5))),
        Err(GrantError::Start)
    );
    assert_eq!(
        with(&|r| r.starts_at = Some(T0 + Duration::days(31))),
        Err(GrantError::Start)
    );
    assert_eq!(
        with(&|r| r.starts_at = Some(T0 + Duration::hours(2))),
        Ok(())
    );
    assert_eq!(
        with(&|r| r.requested_by = "user:someone".into()),
        Err(GrantError::WrongRealm)
    );
    let mandate = |after: OffsetDateTime| {
        Some(LegalMandate {
            reference: "Order 1".into(),
            disclose_after: Some(after),
        })
    };
    assert_eq!(
        with(&|r| r.legal_mandate = mandate(T0)),
        Err(GrantError::Disclosure)
    );
    assert_eq!(
        with(&|r| r.legal_mandate = mandate(T0 + Duration::days(MAX_DISCLOSE_DAYS + 1))),
        Err(GrantError::Disclosure)
    );
    assert_eq!(
        with(&|r| r.legal_mandate = mandate(T0 + Duration::days(30))),
        Ok(())
    );
}

#[derive(Debug, Clone)]
enum Op {
    Approve(Side, u8),
    Deny(Side, u8),
    Revoke(Side, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Side::Company), Just(Side::Management)];
    (0u8..3, side, 0u8..3).prop_map(|(kind, side, who)| match kind {
        0 => Op::Approve(side, who),
        1 => Op::Deny(side, who),
        _ => Op::Revoke(side, who),
    })
}

proptest! {
    /// Whatever is decided, in whatever order and at whatever times: a grant
    /// is active only with both approvals (or a mandate and management's),
    /// never approved by its requester, never longer than asked, and once
    /// ended it never comes back.
    #[test]
    fn a_grant_is_active_only_when_it_must_be(
        ops in proptest::collection::vec((op(), 0i64..(9 * 24 * 60)), 0..12),
        minutes in 1u32..MAX_DURATION_MINUTES,
        mandate in any::<bool>(),
        probes in proptest::collection::vec(0i64..(12 * 24 * 60), 1..20),
    ) {
        let mut r = request(GrantScope::BooksWrite, minutes);
        if mandate {
            r.legal_mandate = Some(LegalMandate { reference: "ref".into(), disclose_after: None });
        }
        let mut g = Grant::new("g".into(), r, T0);
        let people = ["staff:alice", "staff:bob", "user:owner"];
        // Times in any order: nodes' clocks differ.
        for (op, t) in &ops {
            let before = g.clone();
            let decision = |who: &u8| Decision { by: people[*who as usize].into(), at: mins(*t) };
            let done = match op {
                Op::Approve(side, who) => g.approve(*side, decision(who), Some("ref")),
                Op::Deny(side, who) => g.deny(*side, decision(who)),
                Op::Revoke(side, who) => g.revoke(*side, decision(who)),
            };
            if done.is_err() {
                prop_assert_eq!(&g, &before, "a refused decision changes nothing");
            }
            // What was decided stays decided.
            if before.company_approval.is_some() {
                prop_assert_eq!(&before.company_approval, &g.company_approval);
            }
            if before.management_approval.is_some() {
                prop_assert_eq!(&before.management_approval, &g.management_approval);
            }
            if before.ending.is_some() {
                prop_assert_eq!(&before.ending, &g.ending);
            }
            if let Some(c) = &g.company_approval {
                prop_assert!(c.by.starts_with("user:"));
            }
        }
        if let Some(m) = &g.management_approval {
            prop_assert_ne!(&m.by, "staff:alice");
        }
        let mut ended_at: Option<i64> = None;
        let mut sorted = probes.clone();
        sorted.sort_unstable();
        for p in sorted {
            let state = g.state(mins(p));
            if state == GrantState::Active {
                prop_assert!(g.management_approval.as_ref().is_some_and(|m| m.at <= mins(p)));
                prop_assert!(mandate || g.company_approval.as_ref().is_some_and(|c| c.at <= mins(p)));
                let opens = g.opens_at().unwrap();
                prop_assert!(mins(p) >= opens && mins(p) < opens + Duration::minutes(i64::from(minutes)));
                prop_assert!(ended_at.is_none(), "active again after it ended");
            }
            if matches!(state, GrantState::Denied | GrantState::Expired | GrantState::Revoked) {
                ended_at.get_or_insert(p);
            }
        }
    }
}
