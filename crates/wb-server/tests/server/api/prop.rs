//! Property: whatever balanced entries are posted over HTTP, the reports agree
//! with a model ledger, and a reversal restores the balances exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use super::harness::*;

const CURRENCIES: [(&str, u8); 3] = [("USD", 2), ("EUR", 2), ("JPY", 0)];

#[derive(Debug, Clone)]
struct Line {
    account: usize,
    minor: i64,
    /// 0: canonical decimals; 1: trailing zeros trimmed.
    style: u8,
}

#[derive(Debug, Clone)]
struct Group {
    currency: usize,
    lines: Vec<Line>,
}

#[derive(Debug, Clone)]
struct Case {
    /// (day of 2026, groups); each group balances on its own.
    entries: Vec<(u16, Vec<Group>)>,
    reverse: prop::sample::Index,
}

fn format(minor: i128, decimals: u8, style: u8) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{magnitude}");
    }
    let scale = 10u128.pow(u32::from(decimals));
    let fraction = format!(
        "{:0width$}",
        magnitude % scale,
        width = usize::from(decimals)
    );
    let text = format!("{sign}{}.{fraction}", magnitude / scale);
    if style == 1 {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn group() -> impl Strategy<Value = Group> {
    let line = (0..CHART.len(), 1i64..=5_000_000, any::<bool>(), 0u8..2);
    (
        0..CURRENCIES.len(),
        prop::collection::vec(line, 1..=3),
        0..CHART.len(),
        0u8..2,
    )
        .prop_map(|(currency, raw, balancing_account, balancing_style)| {
            let mut lines: Vec<Line> = raw
                .into_iter()
                .map(|(account, amount, negative, style)| Line {
                    account,
                    minor: if negative { -amount } else { amount },
                    style,
                })
                .collect();
            let mut sum: i64 = lines.iter().map(|l| l.minor).sum();
            if sum == 0 {
                lines[0].minor *= 2;
                sum = lines.iter().map(|l| l.minor).sum();
            }
            lines.push(Line {
                account: balancing_account,
                minor: -sum,
                style: balancing_style,
            });
            Group { currency, lines }
        })
}

fn case() -> impl Strategy<Value = Case> {
    let one_entry = (0u16..330, prop::collection::vec(group(), 1..=2));
    (
        prop::collection::vec(one_entry, 1..=15),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(entries, reverse)| Case { entries, reverse })
}

fn date(day: u16) -> String {
    let start = time::Date::from_calendar_date(2026, time::Month::January, 1).expect("date");
    (start + time::Duration::days(i64::from(day))).to_string()
}

fn body(day: u16, groups: &[Group], n: usize) -> Value {
    let postings: Vec<Value> = groups
        .iter()
        .flat_map(|g| {
            let (code, decimals) = CURRENCIES[g.currency];
            g.lines.iter().map(move |l| {
                json!({
                    "account": CHART[l.account].0,
                    "amount": format(i128::from(l.minor), decimals, l.style),
                    "currency": code,
                })
            })
        })
        .collect();
    json!({"date": date(day), "description": format!("generated {n}"), "postings": postings})
}

type Model = BTreeMap<usize, BTreeMap<usize, i128>>;

fn model<'a>(entries: impl Iterator<Item = &'a (u16, Vec<Group>)>) -> Model {
    let mut balances = Model::new();
    for (_, groups) in entries {
        for g in groups {
            for l in &g.lines {
                *balances
                    .entry(l.account)
                    .or_default()
                    .entry(g.currency)
                    .or_default() += i128::from(l.minor);
            }
        }
    }
    balances
}

fn expected_accounts(model: &Model) -> Value {
    let mut lines = Vec::new();
    for (i, (code, name, kind)) in CHART.iter().enumerate() {
        let balances: serde_json::Map<String, Value> = model
            .get(&i)
            .into_iter()
            .flatten()
            .filter(|(_, amount)| **amount != 0)
            .map(|(c, amount)| {
                let (cur, decimals) = CURRENCIES[*c];
                (cur.to_string(), Value::String(format(*amount, decimals, 0)))
            })
            .collect();
        if !balances.is_empty() {
            lines.push(json!({"code": code, "name": name, "type": kind, "balances": balances}));
        }
    }
    Value::Array(lines)
}

/// Sum of the model's balances over accounts of the given types, per currency, signed.
fn sum_of(model: &Model, kinds: &[&str], sign: i128) -> Value {
    let mut totals: BTreeMap<usize, i128> = BTreeMap::new();
    for (account, balances) in model {
        if kinds.contains(&CHART[*account].2) {
            for (c, amount) in balances {
                *totals.entry(*c).or_default() += sign * amount;
            }
        }
    }
    Value::Object(
        totals
            .into_iter()
            .filter(|(_, a)| *a != 0)
            .map(|(c, a)| {
                let (cur, decimals) = CURRENCIES[c];
                (cur.to_string(), Value::String(format(a, decimals, 0)))
            })
            .collect(),
    )
}

#[track_caller]
fn assert_zero_totals(tb: &Value, model: &Model) {
    let totals = tb["totals"].as_object().expect("totals");
    for (cur, total) in totals {
        let zero = if cur == "JPY" { "0" } else { "0.00" };
        assert_eq!(total.as_str(), Some(zero), "total {cur} in {tb}");
    }
    for balances in model.values() {
        for (c, amount) in balances {
            if *amount != 0 {
                assert!(
                    totals.contains_key(CURRENCIES[*c].0),
                    "no total for {}",
                    CURRENCIES[*c].0
                );
            }
        }
    }
}

/// Positive amounts or absent, for section totals the report omits when zero.
fn nonzero(v: &Value) -> Value {
    Value::Object(
        v.as_object()
            .expect("object")
            .iter()
            .filter(|(_, a)| !matches!(a.as_str(), Some("0") | Some("0.00")))
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect(),
    )
}

static COMPANIES: AtomicUsize = AtomicUsize::new(0);

async fn check(srv: &TestServer, case: &Case) {
    let t = srv
        .signup(&format!(
            "Prop Co {}",
            COMPANIES.fetch_add(1, Ordering::Relaxed)
        ))
        .await;
    srv.chart(&t).await;
    let mut ids = Vec::new();
    for (n, (day, groups)) in case.entries.iter().enumerate() {
        let posted = srv
            .post(&t.path("/entries"), &t.token, body(*day, groups, n))
            .await
            .ok(201);
        // Amounts come back canonical.
        let sent = body(*day, groups, n);
        for (p, s) in posted["postings"]
            .as_array()
            .expect("postings")
            .iter()
            .zip(sent["postings"].as_array().expect("p"))
        {
            let decimals = CURRENCIES
                .iter()
                .find(|c| c.0 == s["currency"])
                .expect("currency")
                .1;
            let minor: i128 = {
                let text = s["amount"].as_str().expect("amount");
                let (neg, digits) = text.strip_prefix('-').map_or((false, text), |d| (true, d));
                let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
                let frac = format!("{frac:0<width$}", width = usize::from(decimals));
                let v: i128 = format!("{whole}{frac}").parse().expect("digits");
                if neg {
                    -v
                } else {
                    v
                }
            };
            assert_eq!(
                p["amount"].as_str(),
                Some(format(minor, decimals, 0).as_str())
            );
        }
        ids.push(posted["id"].as_str().expect("id").to_string());
    }

    let all = model(case.entries.iter());
    let tb = srv.trial_balance(&t, &t.token, "2026-12-31").await;
    assert_eq!(
        tb["accounts"],
        expected_accounts(&all),
        "trial balance vs model"
    );
    assert_zero_totals(&tb, &all);

    let bs = srv
        .get(&t.path("/reports/balance-sheet?as_of=2026-12-31"), &t.token)
        .await
        .ok(200);
    assert_eq!(bs["balanced"], true, "{bs}");
    assert_eq!(
        nonzero(&bs["assets"]["totals"]),
        sum_of(&all, &["asset"], 1)
    );
    assert_eq!(
        nonzero(&bs["liabilities_and_equity"]),
        sum_of(&all, &["asset"], 1)
    );
    let is = srv
        .get(
            &t.path("/reports/income-statement?from=2026-01-01&to=2026-12-31"),
            &t.token,
        )
        .await
        .ok(200);
    assert_eq!(
        nonzero(&is["net_income"]),
        sum_of(&all, &["income", "expense"], -1)
    );

    // Reverse one entry at year end: before that day nothing changes, from it on
    // the balances are those of the ledger without the entry.
    let x = case.reverse.index(case.entries.len());
    let reversal = srv
        .post(
            &t.path(&format!("/entries/{}/reverse", ids[x])),
            &t.token,
            json!({"date": "2026-12-31"}),
        )
        .await
        .ok(201);
    assert_eq!(reversal["reverses"], ids[x].as_str());
    let without: Model = model(
        case.entries
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != x)
            .map(|(_, e)| e),
    );
    let day_before = srv.trial_balance(&t, &t.token, "2026-12-30").await;
    assert_eq!(day_before["accounts"], tb["accounts"]);
    let after = srv.trial_balance(&t, &t.token, "2026-12-31").await;
    assert_eq!(
        after["accounts"],
        expected_accounts(&without),
        "reversal restores the balances"
    );
    assert_zero_totals(&after, &without);
    let bs = srv
        .get(&t.path("/reports/balance-sheet?as_of=2026-12-31"), &t.token)
        .await
        .ok(200);
    assert_eq!(bs["balanced"], true, "{bs}");
}

#[test]
fn reports_agree_with_a_model_ledger() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let srv = rt.block_on(TestServer::start());
    let config = Config {
        cases: 8,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        rt.block_on(check(&srv, &case));
        Ok(())
    });
    rt.block_on(srv.shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
}
