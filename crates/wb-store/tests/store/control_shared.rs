//! The control store as several nodes share it: leases, failed-login counts,
//! the central collection and checkpoints, on both backends; and, on
//! PostgreSQL, several processes ("nodes") writing one database at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use wb_core::audit::{AuditFields, Checkpoint};
use wb_core::monitor::{AlertDraft, AlertState, Severity};
use wb_core::Action;
use wb_crypto::DataKey;
use wb_store::postgres::PgControl;
use wb_store::sqlite::SqliteControl;
use wb_store::{
    Actor, AlertStore, Attempt, AuditEvent, AuditQuery, ControlStore, Outcome, StoreError,
    StoredAuditEvent, GENESIS,
};

use crate::pg_backend;

const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

crate::on_both_control_backends!(
    "control_shared";
    leases_go_to_one_node_until_they_expire,
    attempts_count_per_key_within_a_window,
    attempts_are_refused_at_the_maximum_and_released,
    concurrent_attempts_never_exceed_the_maximum,
    central_collection_skips_what_it_has,
    central_queries_filter_and_page,
    checkpoints_nodes_and_cursors,
);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("format timestamp")
}

fn event(action: Action) -> AuditEvent {
    AuditEvent {
        at: OffsetDateTime::now_utc(),
        actor: Actor {
            id: "user:shared".into(),
            auth: "session".into(),
            client: Some("192.0.2.7".into()),
            request_id: None,
        },
        company_id: None,
        action,
        target: None,
        outcome: Outcome::Success,
        detail: None,
    }
}

/// A source chain of `n` events as a forwarder would read it, with varied fields.
fn source_chain(n: i64) -> Vec<StoredAuditEvent> {
    company_chain(n, "c1")
}

/// As `source_chain`, of events that name `company` (every fourth names none).
fn company_chain(n: i64, company: &str) -> Vec<StoredAuditEvent> {
    let actions = [
        Action::EntryPost.as_str(),
        Action::AccountCreate.as_str(),
        "login",
        Action::EntryReverse.as_str(),
    ];
    let mut prev = GENESIS.to_string();
    (1..=n)
        .map(|seq| {
            let i = usize::try_from(seq).expect("seq");
            let fields = AuditFields {
                at: rfc3339(T0 + Duration::minutes(seq)),
                actor: format!("user:u{}", seq % 3),
                auth: "session".into(),
                client: if seq % 2 == 0 {
                    String::new()
                } else {
                    "198.51.100.4".into()
                },
                request_id: format!("req-{seq}"),
                company_id: if seq % 4 == 0 {
                    String::new()
                } else {
                    company.into()
                },
                action: actions[i % actions.len()].into(),
                target: format!("entry:{seq}"),
                outcome: if seq % 5 == 0 { "failure" } else { "success" }.into(),
                detail: if seq % 3 == 0 {
                    String::new()
                } else {
                    format!("detail {seq}")
                },
            };
            let hash = fields.hash(&prev, seq);
            let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
            let e = StoredAuditEvent {
                seq,
                at: fields.at.clone(),
                actor: fields.actor.clone(),
                auth: fields.auth.clone(),
                client: opt(&fields.client),
                request_id: opt(&fields.request_id),
                company_id: opt(&fields.company_id),
                action: fields.action.clone(),
                target: opt(&fields.target),
                outcome: fields.outcome.clone(),
                detail: opt(&fields.detail),
                prev_hash: prev.clone(),
                hash: hash.clone(),
            };
            prev = hash;
            e
        })
        .collect()
}

async fn all_control_audit(control: &dyn ControlStore) -> Vec<StoredAuditEvent> {
    let mut out: Vec<StoredAuditEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = control
            .audit_events(None, after, 1000)
            .await
            .expect("control audit");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// As contract.rs: verifies with wb-core's verifier, linked from GENESIS without gaps.
fn verify_audit_chain(events: &[StoredAuditEvent]) {
    let chained: Vec<_> = events.iter().map(StoredAuditEvent::chained).collect();
    let verified = wb_core::audit::verify(&chained, &[], |_| true).expect("audit chain verifies");
    assert_eq!(verified.events as usize, events.len());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "audit sequence has a gap");
    }
}

fn query() -> AuditQuery {
    AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    }
}

// ---------------------------------------------------------------------------
// Stories on both backends
// ---------------------------------------------------------------------------

async fn leases_go_to_one_node_until_they_expire(control: &dyn ControlStore) {
    let s = Duration::seconds;
    let lease = |name: &'static str, node: &'static str, now: OffsetDateTime, until| {
        control.try_lease(name, node, now, until)
    };
    assert!(lease("forwarder", "node-a", T0, T0 + s(10)).await.unwrap());
    assert!(
        !lease("forwarder", "node-b", T0 + s(1), T0 + s(11))
            .await
            .unwrap(),
        "taken while unexpired"
    );
    assert!(
        lease("forwarder", "node-a", T0 + s(5), T0 + s(15))
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !lease("forwarder", "node-b", T0 + s(14), T0 + s(24))
            .await
            .unwrap(),
        "the renewal moved the expiry"
    );
    // Another lease is independent.
    assert!(lease("monitor", "node-b", T0, T0 + s(10)).await.unwrap());
    // At its expiry the lease is free.
    assert!(
        lease("forwarder", "node-b", T0 + s(15), T0 + s(25))
            .await
            .unwrap(),
        "expired lease taken over"
    );
    assert!(
        !lease("forwarder", "node-a", T0 + s(16), T0 + s(26))
            .await
            .unwrap(),
        "the former holder is refused"
    );
    assert!(lease("forwarder", "node-b", T0 + s(20), T0 + s(30))
        .await
        .unwrap());
    assert!(!lease("monitor", "node-a", T0 + s(9), T0 + s(19))
        .await
        .unwrap());
}

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

/// `reserve_attempt` with a generous maximum: the attempt must be counted.
async fn count(control: &dyn ControlStore, k: &[String], at: OffsetDateTime) {
    let attempt = control
        .reserve_attempt(k, at, Duration::minutes(15), 100)
        .await
        .unwrap();
    assert!(matches!(attempt, Attempt::Counted(_)), "{attempt:?}");
}

async fn attempts_count_per_key_within_a_window(control: &dyn ControlStore) {
    let window = Duration::minutes(15);
    let ann = keys(&["account:ann@example.com", "client:192.0.2.1"]);
    let ann_only = keys(&["account:ann@example.com"]);
    let asked = keys(&[
        "account:ann@example.com",
        "client:192.0.2.1",
        "account:nobody",
    ]);

    assert!(control.login_failures(&asked).await.unwrap().is_empty());
    assert!(control.login_failures(&[]).await.unwrap().is_empty());
    assert_eq!(
        control.reserve_attempt(&[], T0, window, 5).await.unwrap(),
        Attempt::Counted(Vec::new())
    );

    count(control, &ann, T0).await;
    count(control, &ann_only, T0 + Duration::minutes(1)).await;
    count(control, &ann_only, T0 + Duration::minutes(14)).await;
    assert_eq!(
        control.login_failures(&asked).await.unwrap(),
        vec![(3, T0), (1, T0)],
        "per key, in the order asked, unknown keys left out"
    );
    // In the other order, the answer follows.
    let reversed: Vec<String> = asked.iter().rev().cloned().collect();
    assert_eq!(
        control.login_failures(&reversed).await.unwrap(),
        vec![(1, T0), (3, T0)]
    );

    // A window that started `window` ago or earlier restarts at one.
    let later = T0 + Duration::minutes(20);
    count(control, &ann_only, later).await;
    let boundary = T0 + window;
    count(control, &keys(&["client:192.0.2.1"]), boundary).await;
    assert_eq!(
        control.login_failures(&asked).await.unwrap(),
        vec![(1, later), (1, boundary)]
    );
    // A key named twice is counted once.
    let twice = keys(&[
        "account:ann@example.com",
        "client:192.0.2.1",
        "client:192.0.2.1",
    ]);
    count(control, &twice, later + Duration::seconds(30)).await;
    assert_eq!(
        control.login_failures(&asked).await.unwrap(),
        vec![(2, later), (2, boundary)]
    );
}

async fn attempts_are_refused_at_the_maximum_and_released(control: &dyn ControlStore) {
    let window = Duration::minutes(15);
    let (ann, client) = ("account:ann@example.com", "client:192.0.2.1");
    let both = keys(&[ann, client]);
    let reserve = |k: Vec<String>, at: OffsetDateTime| async move {
        control.reserve_attempt(&k, at, window, 3).await.unwrap()
    };

    // Each answer names the keys with the window they were counted in.
    let first = reserve(both.clone(), T0).await;
    assert_eq!(
        first,
        Attempt::Counted(vec![(ann.to_string(), T0), (client.to_string(), T0)])
    );
    reserve(keys(&[ann]), T0 + Duration::minutes(1)).await;
    let third = reserve(keys(&[ann]), T0 + Duration::minutes(2)).await;
    assert_eq!(third, Attempt::Counted(vec![(ann.to_string(), T0)]));

    // At the maximum: refused until the window ends, and nothing is counted,
    // not even against the key that had room.
    for at in [T0 + Duration::minutes(3), T0 + Duration::minutes(14)] {
        assert_eq!(
            reserve(both.clone(), at).await,
            Attempt::Refused { until: T0 + window }
        );
    }
    assert_eq!(
        control.login_failures(&both).await.unwrap(),
        vec![(3, T0), (1, T0)]
    );
    // Another key is unaffected.
    assert!(matches!(
        reserve(keys(&[client]), T0 + Duration::minutes(4)).await,
        Attempt::Counted(_)
    ));

    // A release takes one back: one more attempt fits.
    let Attempt::Counted(counted) = third else {
        unreachable!()
    };
    control.release_attempt(&counted).await.unwrap();
    assert_eq!(
        control.login_failures(&keys(&[ann])).await.unwrap(),
        vec![(2, T0)]
    );
    assert!(matches!(
        reserve(both.clone(), T0 + Duration::minutes(5)).await,
        Attempt::Counted(_)
    ));
    assert!(matches!(
        reserve(both.clone(), T0 + Duration::minutes(5)).await,
        Attempt::Refused { .. }
    ));

    // After the window, counting starts again; a late release of an attempt
    // from the old window leaves the new window's count alone.
    let later = T0 + window;
    let fresh = reserve(keys(&[ann]), later).await;
    assert_eq!(fresh, Attempt::Counted(vec![(ann.to_string(), later)]));
    control.release_attempt(&counted).await.unwrap();
    assert_eq!(
        control.login_failures(&keys(&[ann])).await.unwrap(),
        vec![(1, later)]
    );
    // Released to nothing, the key is forgotten.
    let Attempt::Counted(fresh) = fresh else {
        unreachable!()
    };
    control.release_attempt(&fresh).await.unwrap();
    assert!(control
        .login_failures(&keys(&[ann]))
        .await
        .unwrap()
        .is_empty());
    control.release_attempt(&fresh).await.unwrap();
    assert!(control
        .login_failures(&keys(&[ann]))
        .await
        .unwrap()
        .is_empty());
}

/// Many attempts at once: at most `max` are counted per key, and the stored
/// count is exactly the number answered `Counted` (a read-then-write would
/// let every racer through).
async fn concurrent_attempts_never_exceed_the_maximum(control: &dyn ControlStore) {
    const MAX: u32 = 5;
    let window = Duration::minutes(15);
    // Two accounts, guessed from one address and from addresses of their own.
    let attempts: Vec<Vec<String>> = (0..60)
        .map(|i| {
            let account = format!("account:{}@example.com", ["ann", "bob"][i % 2]);
            let client = if i % 3 == 0 {
                "client:192.0.2.1".to_string()
            } else {
                format!("client:198.51.100.{i}")
            };
            vec![account, client]
        })
        .collect();
    let answers = futures_util::future::join_all(
        attempts
            .iter()
            .map(|k| control.reserve_attempt(k, T0, window, MAX)),
    )
    .await;
    let mut counted: std::collections::BTreeMap<String, u32> = Default::default();
    let mut refused = 0;
    let mut reservations = Vec::new();
    for answer in answers {
        match answer.unwrap() {
            Attempt::Counted(keys) => {
                for (key, since) in &keys {
                    assert_eq!(*since, T0);
                    *counted.entry(key.clone()).or_default() += 1;
                }
                reservations.push(keys);
            }
            Attempt::Refused { until } => {
                assert_eq!(until, T0 + window);
                refused += 1;
            }
        }
    }
    // Each account has 20 attempts from addresses of their own, so it
    // reaches its maximum whatever the order; never more.
    for account in ["account:ann@example.com", "account:bob@example.com"] {
        assert_eq!(counted[account], MAX, "{account}: {counted:?}");
    }
    assert_eq!(refused, 60 - 2 * MAX as usize, "{counted:?}");
    assert!(counted.get("client:192.0.2.1").copied().unwrap_or(0) <= MAX);
    for (key, n) in &counted {
        assert_eq!(
            control
                .login_failures(std::slice::from_ref(key))
                .await
                .unwrap(),
            vec![(*n, T0)],
            "{key}: the store holds what was answered"
        );
    }

    // Released all at once, every count goes back to nothing.
    let released =
        futures_util::future::join_all(reservations.iter().map(|r| control.release_attempt(r)))
            .await;
    for r in released {
        r.unwrap();
    }
    let all: Vec<String> = counted.keys().cloned().collect();
    assert!(control.login_failures(&all).await.unwrap().is_empty());
}

async fn central_collection_skips_what_it_has(control: &dyn ControlStore) {
    let chain = source_chain(8);
    assert_eq!(control.central_head("company:c1").await.unwrap(), 0);
    assert!(control.central_sources().await.unwrap().is_empty());

    assert_eq!(
        control
            .central_append("company:c1", "node-a", chain[..3].to_vec())
            .await
            .unwrap(),
        3
    );
    assert_eq!(control.central_head("company:c1").await.unwrap(), 3);
    // A retry with more: only the new ones count.
    assert_eq!(
        control
            .central_append("company:c1", "node-b", chain[..6].to_vec())
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        control
            .central_append("company:c1", "node-b", chain[..6].to_vec())
            .await
            .unwrap(),
        0
    );
    // A batch repeating a sequence keeps the first.
    let mut repeated = chain[6..8].to_vec();
    repeated.push(chain[6].clone());
    assert_eq!(
        control
            .central_append("company:c1", "node-a", repeated)
            .await
            .unwrap(),
        2
    );
    assert_eq!(control.central_head("company:c1").await.unwrap(), 8);
    assert_eq!(
        control
            .central_append("company:c1", "node-a", Vec::new())
            .await
            .unwrap(),
        0
    );

    // A bad hash refuses the whole batch.
    let control_chain = source_chain(2);
    let mut bad = control_chain.clone();
    bad[1].hash = "not hex".into();
    let err = control
        .central_append("control", "node-a", bad)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert_eq!(control.central_head("control").await.unwrap(), 0);
    assert_eq!(
        control
            .central_append("control", "node-a", control_chain.clone())
            .await
            .unwrap(),
        2
    );
    assert_eq!(control.central_head("nothing").await.unwrap(), 0);

    // The copies are exact, and numbered in arrival order.
    let all = control.central_events(query()).await.unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].central_seq < w[1].central_seq));
    let of_c1: Vec<_> = all
        .iter()
        .filter(|c| c.source == "company:c1")
        .map(|c| c.event.clone())
        .collect();
    assert_eq!(of_c1, chain);
    let nodes: Vec<&str> = all.iter().map(|c| c.node.as_str()).collect();
    assert_eq!(
        nodes,
        [
            "node-a", "node-a", "node-a", "node-b", "node-b", "node-b", "node-a", "node-a",
            "node-a", "node-a"
        ]
    );
    assert_eq!(
        all.iter().map(|c| c.source.as_str()).collect::<Vec<_>>()[8..],
        ["control", "control"]
    );
    let control_copies: Vec<_> = all[8..].iter().map(|c| c.event.clone()).collect();
    assert_eq!(control_copies, control_chain);
    assert_eq!(
        control.central_sources().await.unwrap(),
        vec!["company:c1".to_string(), "control".to_string()]
    );
}

async fn central_queries_filter_and_page(control: &dyn ControlStore) {
    let chain = source_chain(20);
    control
        .central_append("company:c1", "node-a", chain.clone())
        .await
        .unwrap();
    let other = company_chain(3, "c2");
    control
        .central_append("company:c2", "node-a", other.clone())
        .await
        .unwrap();

    let seqs = |events: &[wb_store::CentralEvent]| -> Vec<i64> {
        events.iter().map(|c| c.event.seq).collect()
    };
    let matching = |f: &dyn Fn(&StoredAuditEvent) -> bool| -> Vec<i64> {
        chain.iter().filter(|e| f(e)).map(|e| e.seq).collect()
    };

    // Paging by central position.
    let first = control
        .central_events(AuditQuery {
            limit: 7,
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(seqs(&first), (1..=7).collect::<Vec<_>>());
    let next = control
        .central_events(AuditQuery {
            after: first.last().unwrap().central_seq,
            limit: 7,
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(seqs(&next), (8..=14).collect::<Vec<_>>());

    // Filters.
    let by = |q: AuditQuery| async move { control.central_events(q).await.unwrap() };
    let posts = by(AuditQuery {
        action: Some(Action::EntryPost.into()),
        ..query()
    })
    .await;
    assert_eq!(
        seqs(&posts),
        matching(&|e| e.action == Action::EntryPost.as_str())
            .into_iter()
            .chain(
                other
                    .iter()
                    .filter(|e| e.action == Action::EntryPost.as_str())
                    .map(|e| e.seq)
            )
            .collect::<Vec<_>>()
    );
    let suffix = by(AuditQuery {
        action: Some("post".into()),
        ..query()
    })
    .await;
    assert_eq!(
        seqs(&suffix),
        seqs(&posts),
        "an action matches by its last part"
    );
    let suffix_case = by(AuditQuery {
        action: Some("POST".into()),
        ..query()
    })
    .await;
    assert_eq!(
        seqs(&suffix_case),
        seqs(&posts),
        "the suffix ignores ASCII case"
    );
    assert!(by(AuditQuery {
        action: Some("ost".into()),
        ..query()
    })
    .await
    .is_empty());
    let c1 = by(AuditQuery {
        company_id: Some("c1".into()),
        ..query()
    })
    .await;
    assert!(c1.iter().all(|c| c.source == "company:c1"));
    assert_eq!(
        seqs(&c1),
        matching(&|e| e.company_id.as_deref() == Some("c1"))
    );
    let failures = by(AuditQuery {
        outcome: Some("failure".into()),
        company_id: Some("c1".into()),
        ..query()
    })
    .await;
    assert_eq!(
        seqs(&failures),
        matching(&|e| e.outcome == "failure" && e.company_id.as_deref() == Some("c1"))
    );
    let u1 = by(AuditQuery {
        actor: Some("user:u1".into()),
        ..query()
    })
    .await;
    assert_eq!(
        seqs(&u1),
        matching(&|e| e.actor == "user:u1")
            .into_iter()
            .chain(other.iter().filter(|e| e.actor == "user:u1").map(|e| e.seq))
            .collect::<Vec<_>>()
    );
    let since = rfc3339(T0 + Duration::minutes(18));
    let recent = by(AuditQuery {
        since: Some(since.clone()),
        ..query()
    })
    .await;
    assert_eq!(seqs(&recent), vec![18, 19, 20]);

    // One source's events, by source sequence.
    let page = control
        .central_source_events("company:c1", 5, 4)
        .await
        .unwrap();
    assert_eq!(seqs(&page), vec![6, 7, 8, 9]);
    assert!(page.iter().all(|c| c.source == "company:c1"));
    assert_eq!(
        seqs(
            &control
                .central_source_events("company:c2", 0, 100)
                .await
                .unwrap()
        ),
        vec![1, 2, 3]
    );
    assert!(control
        .central_source_events("company:none", 0, 100)
        .await
        .unwrap()
        .is_empty());
    // By company and authentication (what was done under a grant).
    let by_auth = control
        .central_events_by_auth("c1", "session", 100)
        .await
        .unwrap();
    assert_eq!(
        seqs(&by_auth),
        matching(&|e| e.company_id.as_deref() == Some("c1"))
    );
    assert!(by_auth
        .windows(2)
        .all(|w| w[0].central_seq < w[1].central_seq));
    let limited = control
        .central_events_by_auth("c1", "session", 3)
        .await
        .unwrap();
    assert_eq!(seqs(&limited), seqs(&by_auth)[..3].to_vec());
    assert!(control
        .central_events_by_auth("c1", "grant:grt_none", 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        control
            .central_events_by_auth("c2", "session", 100)
            .await
            .unwrap()
            .len(),
        other
            .iter()
            .filter(|e| e.company_id.as_deref() == Some("c2"))
            .count()
    );
}

async fn checkpoints_nodes_and_cursors(control: &dyn ControlStore) {
    let checkpoint = |source: &str, seq: i64, prev: &str| Checkpoint {
        source: source.into(),
        seq,
        hash: format!("{seq:064x}"),
        at: rfc3339(T0 + Duration::seconds(seq)),
        node: "node-a".into(),
        prev: prev.into(),
        signature: vec![seq as u8; 64],
    };
    assert!(control.last_checkpoint("control").await.unwrap().is_none());
    assert!(control.checkpoints("control").await.unwrap().is_empty());
    let written = [
        checkpoint("control", 10, GENESIS),
        checkpoint("control", 5, "a"),
        checkpoint("control", 30, "b"),
    ];
    for cp in &written {
        control.append_checkpoint(cp).await.unwrap();
    }
    control
        .append_checkpoint(&checkpoint("company:c1", 1, GENESIS))
        .await
        .unwrap();
    assert!(
        control.append_checkpoint(&written[0]).await.is_err(),
        "one checkpoint per source and sequence"
    );
    assert_eq!(
        control.checkpoints("control").await.unwrap(),
        written.to_vec(),
        "in the order written"
    );
    assert_eq!(
        control.last_checkpoint("control").await.unwrap(),
        Some(written[2].clone())
    );

    control
        .register_node("node-b", "bb", b"cert-b", T0)
        .await
        .unwrap();
    control
        .register_node("node-a", "aa", b"cert-a", T0)
        .await
        .unwrap();
    // Registering again (each start) keeps the key and takes the new certificate.
    control
        .register_node("node-a", "aa", b"cert-a2", T0 + Duration::hours(1))
        .await
        .unwrap();
    let err = control
        .register_node("node-a", "cc", b"cert-c", T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let node = |id: &str, key: &str, cert: &[u8]| wb_store::RegisteredNode {
        id: id.into(),
        public_key: key.into(),
        certificate: Some(cert.to_vec()),
    };
    assert_eq!(
        control.node_keys().await.unwrap(),
        vec![
            node("node-a", "aa", b"cert-a2"),
            node("node-b", "bb", b"cert-b")
        ]
    );

    assert_eq!(control.cursor("drain:syslog").await.unwrap(), 0);
    control.set_cursor("drain:syslog", 5).await.unwrap();
    control.set_cursor("drain:syslog", 7).await.unwrap();
    control.set_cursor("monitor", 2).await.unwrap();
    assert_eq!(control.cursor("drain:syslog").await.unwrap(), 7);
    assert_eq!(control.cursor("monitor").await.unwrap(), 2);
}

// ---------------------------------------------------------------------------
// PostgreSQL: several nodes on one control database
// ---------------------------------------------------------------------------

/// Two nodes (two stores, each with its own pool) opening one fresh database at once.
async fn two_nodes(prefix: &str) -> (Arc<PgControl>, Arc<PgControl>) {
    let url = pg_backend::fresh_database_url(prefix).await;
    let (a, b) = tokio::join!(
        pg_backend::pg_control_at(&url, pg_backend::budget()),
        pg_backend::pg_control_at(&url, pg_backend::budget()),
    );
    (Arc::new(a), Arc::new(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_one_gap_free_audit_chain() {
    let (a, b) = two_nodes("two_nodes_audit").await;
    let mut tasks = Vec::new();
    for (name, node) in [("a", a.clone()), ("b", b.clone())] {
        for i in 0..50 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let event = AuditEvent {
                    target: Some(format!("test.{name}{i}")),
                    ..event(Action::AuditRecord)
                };
                node.audit(&event).await
            }));
        }
    }
    for task in tasks {
        task.await.expect("task").expect("audit");
    }
    let events = all_control_audit(&*a).await;
    assert_eq!(events.len(), 100);
    verify_audit_chain(&events);
    let targets: BTreeSet<Option<&str>> = events.iter().map(|e| e.target.as_deref()).collect();
    assert_eq!(targets.len(), 100, "every event once");
    assert_eq!(
        all_control_audit(&*b).await,
        events,
        "both nodes read the same chain"
    );

    // Business writes and alerts append to the same chain, from both nodes.
    let draft = |at| AlertDraft {
        rule: "failed-logins-account",
        severity: Severity::High,
        dedupe_key: "failed-logins-account:ann".into(),
        title: "Repeated failed logins for ann".into(),
        detail: "5 failed logins".into(),
        company_id: None,
        at,
    };
    let mut raises = Vec::new();
    for i in 0..20 {
        for node in [a.clone(), b.clone()] {
            raises.push(tokio::spawn(async move {
                node.raise(&draft(T0 + Duration::seconds(i)), T0).await
            }));
        }
    }
    let mut new = 0;
    for r in raises {
        if r.await.expect("task").expect("raise").new {
            new += 1;
        }
    }
    assert_eq!(new, 1, "one alert for one finding, whichever node saw it");
    let alerts = a.list(None, 10).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].count, 40);
    assert_eq!(alerts[0].state, AlertState::Open);
    assert_eq!(alerts[0].last_seen, T0 + Duration::seconds(19));

    let events = all_control_audit(&*b).await;
    assert_eq!(events.len(), 101);
    verify_audit_chain(&events);
    assert_eq!(events[100].action, Action::AlertRaise.as_str());
}

/// Guesses at one account arriving at two nodes at once count against one
/// budget: the database, not a node, decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_one_attempt_budget() {
    let (a, b) = two_nodes("two_nodes_attempts").await;
    let account = vec!["account:ann@example.com".to_string()];
    let mut tasks = Vec::new();
    for i in 0..40 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (account, client) = (account[0].clone(), format!("client:198.51.100.{i}"));
        tasks.push(tokio::spawn(async move {
            node.reserve_attempt(&[account, client], T0, Duration::minutes(15), 5)
                .await
        }));
    }
    let mut counted = 0;
    for task in tasks {
        if let Attempt::Counted(_) = task.await.expect("task").expect("reserve") {
            counted += 1;
        }
    }
    assert_eq!(counted, 5);
    assert_eq!(a.login_failures(&account).await.unwrap(), vec![(5, T0)]);
    assert_eq!(b.login_failures(&account).await.unwrap(), vec![(5, T0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_collect_one_source_without_duplicates() {
    let (a, b) = two_nodes("two_nodes_central").await;
    let chain = source_chain(400);
    let mut tasks = Vec::new();
    for node in [a.clone(), b.clone()] {
        let chain = chain.clone();
        tasks.push(tokio::spawn(async move {
            let mut new = 0;
            for batch in chain.chunks(50) {
                new += node
                    .central_append("company:c1", "node", batch.to_vec())
                    .await
                    .expect("append");
            }
            new
        }));
    }
    let mut new = 0;
    for t in tasks {
        new += t.await.expect("task");
    }
    assert_eq!(new, 400, "each event counted new once");
    let all = a.central_events(query()).await.unwrap();
    assert_eq!(all.len(), 400);
    assert!(all.windows(2).all(|w| w[0].central_seq < w[1].central_seq));
    let mut copies: Vec<_> = all.into_iter().map(|c| c.event).collect();
    copies.sort_by_key(|e| e.seq);
    assert_eq!(copies, chain);
    assert_eq!(b.central_head("company:c1").await.unwrap(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_tables_are_append_only() {
    let (a, b) = two_nodes("append_only").await;
    a.audit(&event(Action::AuditRecord)).await.unwrap();
    a.central_append("control", "node-a", source_chain(2))
        .await
        .unwrap();
    a.append_checkpoint(&Checkpoint {
        source: "control".into(),
        seq: 2,
        hash: source_chain(2)[1].hash.clone(),
        at: rfc3339(T0),
        node: "node-a".into(),
        prev: GENESIS.into(),
        signature: vec![1; 64],
    })
    .await
    .unwrap();

    let conn = a.pool().get().await.unwrap();
    for sql in [
        "UPDATE audit_events SET action = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE collected_events SET actor = 'nobody'",
        "DELETE FROM collected_events",
        "TRUNCATE collected_events CASCADE",
        "UPDATE audit_checkpoints SET node = 'x'",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ] {
        let err = conn.batch_execute(sql).await.expect_err(sql);
        let message = err
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_else(|| err.to_string());
        assert!(message.contains("append-only"), "{sql}: {message}");
    }
    drop(conn);
    let events = all_control_audit(&*b).await;
    assert_eq!(events.len(), 1);
    verify_audit_chain(&events);
    assert_eq!(b.central_events(query()).await.unwrap().len(), 2);
    assert_eq!(b.checkpoints("control").await.unwrap().len(), 1);

    // Opening again (a restart) keeps everything and changes nothing.
    let reopened = PgControl::open(a.pool().clone()).await.unwrap();
    assert_eq!(all_control_audit(&reopened).await, events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_emails_are_unique_ignoring_ascii_case_only() {
    let control = pg_backend::pg_control("email_case").await;
    let user = |id: &str, email: &str| wb_store::UserRecord {
        id: id.into(),
        email: email.into(),
        name: None,
        passphrase_hash: "x".into(),
        created_at: T0,
        last_login_at: None,
    };
    control
        .create_user(&user("u1", "Ann@Example.com"), &event(Action::UserCreate))
        .await
        .unwrap();
    let err = control
        .create_user(&user("u2", "ann@EXAMPLE.COM"), &event(Action::UserCreate))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        control
            .user_by_email("ANN@example.COM")
            .await
            .unwrap()
            .map(|u| u.id),
        Some("u1".into())
    );
    // As SQLite's NOCASE: only ASCII letters fold.
    control
        .create_user(&user("u3", "élise@example.com"), &event(Action::UserCreate))
        .await
        .unwrap();
    control
        .create_user(&user("u4", "Élise@example.com"), &event(Action::UserCreate))
        .await
        .unwrap();
    assert_eq!(
        control
            .user_by_email("Élise@example.com")
            .await
            .unwrap()
            .map(|u| u.id),
        Some("u4".into())
    );
}

/// A control database made before node certificates existed: opening it adds
/// the column, its nodes read as uncertified, and a node that registers again
/// gets its certificate.
async fn old_nodes_table_gains_certificates(control: &dyn ControlStore) {
    let old = control.node_keys().await.unwrap();
    assert_eq!(
        old,
        vec![wb_store::RegisteredNode {
            id: "node-old".into(),
            public_key: "ab".into(),
            certificate: None,
        }]
    );
    control
        .register_node("node-old", "ab", b"certified", T0)
        .await
        .unwrap();
    assert_eq!(
        control.node_keys().await.unwrap()[0].certificate.as_deref(),
        Some(b"certified".as_slice())
    );
}

const OLD_NODES: &str =
    "CREATE TABLE nodes (id TEXT PRIMARY KEY, public_key TEXT NOT NULL, created_at TEXT NOT NULL);
     INSERT INTO nodes VALUES ('node-old', 'ab', '2026-01-01T00:00:00Z');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_old_nodes_table_gains_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    let key = DataKey::generate();
    wb_store::sqlite::open_encrypted(&path, &key, wb_store::sqlite::OpenMode::Create)
        .unwrap()
        .execute_batch(OLD_NODES)
        .unwrap();
    let control = SqliteControl::open(&path, &key).unwrap();
    old_nodes_table_gains_certificates(&control).await;
    drop(control);
    // Opening again adds nothing twice.
    let control = SqliteControl::open(&path, &key).unwrap();
    assert!(control.node_keys().await.unwrap()[0].certificate.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_old_nodes_table_gains_certificates() {
    let url = pg_backend::fresh_database_url("old_nodes").await;
    let pool = pg_backend::pool(&url, pg_backend::budget()).await;
    pool.get()
        .await
        .unwrap()
        .batch_execute(OLD_NODES)
        .await
        .unwrap();
    let control = PgControl::open(pool.clone()).await.unwrap();
    old_nodes_table_gains_certificates(&control).await;
    let again = PgControl::open(pool).await.unwrap();
    assert!(again.node_keys().await.unwrap()[0].certificate.is_some());
}
