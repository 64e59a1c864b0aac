//! Bookkeeping over HTTP: the happy path, bad input, idempotency.

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::*;

fn ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_books_reports_and_reversal() {
    let srv = TestServer::start().await;
    let t = srv.signup("Acme Trading").await;

    // Login returns a fresh session.
    let login = srv.login(&t.email, PASSPHRASE).await.ok(200);
    let token = login["token"].as_str().expect("token").to_string();
    assert_ne!(token, t.token, "each login opens its own session");
    let expires = login["expires_at"].as_str().expect("expires_at");
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
            .expect("expires_at is RFC 3339");
    let ttl = expires - time::OffsetDateTime::now_utc();
    assert!(
        ttl > time::Duration::hours(11) && ttl <= time::Duration::hours(12),
        "ttl {ttl}"
    );

    let company = srv.get(&t.path(""), &token).await.ok(200);
    assert_eq!(company["id"], t.id.as_str());
    assert_eq!(company["name"], "Acme Trading");
    assert_eq!(company["role"], "owner");

    srv.chart(&t).await;
    let eur = srv
        .post(
            &t.path("/accounts"),
            &token,
            json!({"code": "1200", "name": "Bank EUR", "type": "asset", "currency": "EUR"}),
        )
        .await
        .ok(201);
    assert_eq!(eur["currency"], "EUR");
    let accounts = srv.get(&t.path("/accounts"), &token).await.ok(200);
    let codes: Vec<&str> = accounts
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["code"].as_str().expect("code"))
        .collect();
    assert_eq!(
        codes,
        ["1000", "1100", "1200", "2000", "3000", "4000", "5000"]
    );

    // Post entries; check the 201 shape.
    let e1 = srv
        .post(
            &t.path("/entries"),
            &token,
            entry(
                "2026-01-05",
                "Owner invests",
                &[("1000", "1000", "USD"), ("3000", "-1000.00", "USD")],
            ),
        )
        .await
        .ok(201);
    assert_eq!(e1["date"], "2026-01-05");
    assert_eq!(e1["description"], "Owner invests");
    assert_eq!(
        e1["postings"],
        json!([
            {"account": "1000", "amount": "1000.00", "currency": "USD"},
            {"account": "3000", "amount": "-1000.00", "currency": "USD"}
        ]),
        "amounts come back as canonical decimal strings"
    );
    assert!(e1["reverses"].is_null() && e1["reversed_by"].is_null());
    assert_eq!(e1["created_by"], format!("user:{}", t.user_id));
    let e1_id = e1["id"].as_str().expect("id").to_string();

    let e2 = srv
        .post_entry(
            &t,
            entry(
                "2026-01-10",
                "Sale",
                &[("1000", "250.50", "USD"), ("4000", "-250.50", "USD")],
            ),
        )
        .await;
    let e3 = srv
        .post_entry(
            &t,
            entry(
                "2026-01-15",
                "January rent",
                &[("5000", "400.00", "USD"), ("1000", "-400.00", "USD")],
            ),
        )
        .await;
    let e4 = srv
        .post_entry(
            &t,
            entry(
                "2026-01-20",
                "Loan",
                &[("1000", "500.00", "USD"), ("2000", "-500.00", "USD")],
            ),
        )
        .await;
    let e5 = srv
        .post_entry(
            &t,
            entry(
                "2026-01-25",
                "Capital in euros",
                &[("1200", "200.00", "EUR"), ("3000", "-200.00", "EUR")],
            ),
        )
        .await;
    let e6 = srv
        .post_entry(
            &t,
            entry(
                "2026-02-01",
                "February sale",
                &[("1000", "99.99", "USD"), ("4000", "-99.99", "USD")],
            ),
        )
        .await;
    let mut posted = vec![e1_id.clone(), e2, e3, e4, e5, e6.clone()];

    // Get one entry.
    let got = srv
        .get(&t.path(&format!("/entries/{e1_id}")), &token)
        .await
        .ok(200);
    assert_eq!(got, e1, "GET returns what POST returned");
    srv.get(&t.path("/entries/999999"), &token)
        .await
        .problem(404, "not-found");
    srv.get(&t.path("/entries/abc"), &token)
        .await
        .problem(404, "not-found");

    // Paging: pages of two, following next_after, yield every entry once, in order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => t.path(&format!("/entries?limit=2&after={a}")),
            None => t.path("/entries?limit=2"),
        };
        let page = srv.get(&path, &token).await.ok(200);
        let entries = page["entries"].as_array().expect("entries").clone();
        assert!(entries.len() <= 2);
        seen.extend(ids(&entries));
        pages += 1;
        assert!(pages < 10, "paging does not terminate");
        match page["next_after"].as_str() {
            Some(next) => {
                assert_eq!(entries.len(), 2);
                assert_eq!(Some(next), entries.last().and_then(|e| e["id"].as_str()));
                after = Some(next.to_string());
            }
            None => break,
        }
    }
    assert_eq!(seen, posted);
    // A date filter.
    let feb = srv
        .get(&t.path("/entries?from=2026-02-01&to=2026-02-28"), &token)
        .await
        .ok(200);
    assert_eq!(
        ids(feb["entries"].as_array().expect("entries")),
        std::slice::from_ref(&e6)
    );

    // Trial balance as of 2026-01-31, by hand.
    let tb = srv.trial_balance(&t, &token, "2026-01-31").await;
    assert_eq!(tb["as_of"], "2026-01-31");
    let expected_jan = json!([
        {"code": "1000", "name": "Cash", "type": "asset", "balances": {"USD": "1350.50"}},
        {"code": "1200", "name": "Bank EUR", "type": "asset", "balances": {"EUR": "200.00"}},
        {"code": "2000", "name": "Loans", "type": "liability", "balances": {"USD": "-500.00"}},
        {"code": "3000", "name": "Capital", "type": "equity", "balances": {"EUR": "-200.00", "USD": "-1000.00"}},
        {"code": "4000", "name": "Sales", "type": "income", "balances": {"USD": "-250.50"}},
        {"code": "5000", "name": "Rent", "type": "expense", "balances": {"USD": "400.00"}},
    ]);
    assert_eq!(tb["accounts"], expected_jan);
    assert_eq!(tb["totals"], json!({"EUR": "0.00", "USD": "0.00"}));
    // as_of includes entries dated that day and excludes later ones.
    let tb_jan5 = srv.trial_balance(&t, &token, "2026-01-05").await;
    assert_eq!(
        tb_jan5["accounts"],
        json!([
            {"code": "1000", "name": "Cash", "type": "asset", "balances": {"USD": "1000.00"}},
            {"code": "3000", "name": "Capital", "type": "equity", "balances": {"USD": "-1000.00"}},
        ])
    );
    let tb_jan4 = srv.trial_balance(&t, &token, "2026-01-04").await;
    assert_eq!(tb_jan4["accounts"], json!([]));

    // Balance sheet as of 2026-01-31: assets 1350.50 = liabilities 500 + equity 1000 - 149.50.
    let bs = srv
        .get(&t.path("/reports/balance-sheet?as_of=2026-01-31"), &token)
        .await
        .ok(200);
    assert_eq!(bs["balanced"], true, "{bs}");
    assert_eq!(
        bs["assets"]["totals"],
        json!({"EUR": "200.00", "USD": "1350.50"})
    );
    assert_eq!(bs["liabilities"]["totals"], json!({"USD": "500.00"}));
    assert_eq!(bs["current_earnings"], json!({"USD": "-149.50"}));
    assert_eq!(
        bs["equity"]["totals"],
        json!({"EUR": "200.00", "USD": "850.50"})
    );
    assert_eq!(
        bs["liabilities_and_equity"],
        json!({"EUR": "200.00", "USD": "1350.50"})
    );

    // Income statement for January and February: 350.49 earned, 400.00 spent.
    let is = srv
        .get(
            &t.path("/reports/income-statement?from=2026-01-01&to=2026-02-28"),
            &token,
        )
        .await
        .ok(200);
    assert_eq!(is["from"], "2026-01-01");
    assert_eq!(is["to"], "2026-02-28");
    assert_eq!(is["income"]["totals"], json!({"USD": "350.49"}));
    assert_eq!(is["expenses"]["totals"], json!({"USD": "400.00"}));
    assert_eq!(is["net_income"], json!({"USD": "-49.51"}));
    let feb_is = srv
        .get(
            &t.path("/reports/income-statement?from=2026-02-01&to=2026-02-28"),
            &token,
        )
        .await
        .ok(200);
    assert_eq!(feb_is["net_income"], json!({"USD": "99.99"}));
    srv.get(
        &t.path("/reports/income-statement?from=2026-03-01&to=2026-02-28"),
        &token,
    )
    .await
    .problem(422, "invalid-period");

    // Register of Cash with a running balance.
    let reg = srv
        .get(&t.path("/accounts/1000/register?to=2026-12-31"), &token)
        .await
        .ok(200);
    assert_eq!(reg["account"], "1000");
    assert_eq!(reg["opening"], json!({}));
    let lines: Vec<(String, String)> = reg["postings"]
        .as_array()
        .expect("postings")
        .iter()
        .map(|p| {
            (
                p["amount"].as_str().expect("amount").into(),
                p["balance"].as_str().expect("balance").into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("1000.00", "1000.00"),
        ("250.50", "1250.50"),
        ("-400.00", "850.50"),
        ("500.00", "1350.50"),
        ("99.99", "1450.49"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(lines, expected);
    assert_eq!(reg["postings"][0]["entry_id"], e1_id.as_str());
    assert_eq!(reg["postings"][0]["description"], "Owner invests");
    assert_eq!(reg["closing"], json!({"USD": "1450.49"}));
    let reg_mid = srv
        .get(
            &t.path("/accounts/1000/register?from=2026-01-12&to=2026-01-31"),
            &token,
        )
        .await
        .ok(200);
    assert_eq!(reg_mid["opening"], json!({"USD": "1250.50"}));
    assert_eq!(reg_mid["postings"].as_array().map(Vec::len), Some(2));
    assert_eq!(reg_mid["closing"], json!({"USD": "1350.50"}));
    srv.get(&t.path("/accounts/9999/register"), &token)
        .await
        .problem(404, "not-found");

    // Reverse the February sale: the balances return to what they were before it.
    let before_feb = srv.trial_balance(&t, &token, "2026-01-31").await;
    let all_before = srv.trial_balance(&t, &token, "2199-12-31").await;
    assert_ne!(before_feb["accounts"], all_before["accounts"]);
    let reversal = srv
        .post(
            &t.path(&format!("/entries/{e6}/reverse")),
            &token,
            json!({"date": "2026-02-02"}),
        )
        .await
        .ok(201);
    let rev_id = reversal["id"].as_str().expect("id").to_string();
    assert_eq!(reversal["reverses"], e6.as_str());
    assert_eq!(reversal["date"], "2026-02-02");
    assert_eq!(reversal["description"], "Reversal of: February sale");
    assert_eq!(
        reversal["postings"],
        json!([
            {"account": "1000", "amount": "-99.99", "currency": "USD"},
            {"account": "4000", "amount": "99.99", "currency": "USD"}
        ])
    );
    let original = srv
        .get(&t.path(&format!("/entries/{e6}")), &token)
        .await
        .ok(200);
    assert_eq!(original["reversed_by"], rev_id.as_str());
    assert_eq!(
        original["postings"][0]["amount"], "99.99",
        "the original is immutable"
    );
    let after_all = srv.trial_balance(&t, &token, "2199-12-31").await;
    assert_eq!(
        after_all["accounts"], before_feb["accounts"],
        "reversal restores the trial balance"
    );
    assert_eq!(after_all["totals"], json!({"EUR": "0.00", "USD": "0.00"}));
    // History is intact: as of the day of the sale, it is still there.
    let on_feb1 = srv.trial_balance(&t, &token, "2026-02-01").await;
    assert_eq!(on_feb1["accounts"], all_before["accounts"]);
    posted.push(rev_id.clone());

    // A reversal dated today by default, with its own description.
    let rev4 = srv
        .post(
            &t.path(&format!("/entries/{}/reverse", posted[3])),
            &token,
            json!({"description": "Loan cancelled"}),
        )
        .await
        .ok(201);
    assert_eq!(
        rev4["date"],
        time::OffsetDateTime::now_utc().date().to_string()
    );
    assert_eq!(rev4["description"], "Loan cancelled");
    posted.push(rev4["id"].as_str().expect("id").to_string());

    // Batch: all or nothing.
    let bad_batch = json!({"entries": [
        entry("2026-03-01", "good", &[("1000", "10.00", "USD"), ("4000", "-10.00", "USD")]),
        entry("2026-03-02", "bad", &[("1000", "10.00", "USD"), ("4000", "-9.00", "USD")]),
    ]});
    let problem = srv
        .post(&t.path("/entries/batch"), &token, bad_batch)
        .await
        .problem(422, "invalid-batch");
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("entry 1"),
        "{problem}"
    );
    assert_eq!(
        ids(&srv.all_entries(&t, &token).await),
        posted,
        "a failed batch posts nothing"
    );
    let good_batch = json!({"entries": [
        entry("2026-03-01", "batch one", &[("1000", "10.00", "USD"), ("4000", "-10.00", "USD")]),
        entry("2026-03-02", "batch two", &[("5000", "3.50", "USD"), ("1000", "-3.50", "USD")]),
    ]});
    let batch = srv
        .post(&t.path("/entries/batch"), &token, good_batch)
        .await
        .ok(201);
    let batch_ids = ids(batch["entries"].as_array().expect("entries"));
    assert_eq!(batch_ids.len(), 2);
    posted.extend(batch_ids);
    assert_eq!(ids(&srv.all_entries(&t, &token).await), posted);
    srv.post(&t.path("/entries/batch"), &token, json!({"entries": []}))
        .await
        .problem(422, "invalid-batch");

    let me = srv.get("/api/v1/me", &token).await.ok(200);
    assert_eq!(me["companies"][0]["company"]["id"], t.id.as_str());
    assert_eq!(me["companies"][0]["role"], "owner");

    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_problem_and_changes_nothing() {
    let srv = TestServer::start().await;
    let t = srv.signup("Careful Ltd").await;
    srv.chart(&t).await;
    let first = srv
        .post_entry(
            &t,
            entry(
                "2026-01-05",
                "Opening",
                &[("1000", "100.00", "USD"), ("3000", "-100.00", "USD")],
            ),
        )
        .await;
    let entries_before = srv.all_entries(&t, &t.token).await;
    let tb_before = srv.trial_balance(&t, &t.token, "2199-12-31").await;
    let path = t.path("/entries");

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "unbalanced",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "100.00", "USD"), ("4000", "-99.99", "USD")],
            ),
            422,
            "unbalanced-entry",
        ),
        (
            "balanced only across currencies",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "100.00", "USD"), ("4000", "-100.00", "EUR")],
            ),
            422,
            "unbalanced-entry",
        ),
        (
            "unknown account",
            entry(
                "2026-01-06",
                "x",
                &[("1999", "1.00", "USD"), ("4000", "-1.00", "USD")],
            ),
            422,
            "unknown-account",
        ),
        (
            "unknown currency",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "1.00", "ABC"), ("4000", "-1.00", "ABC")],
            ),
            422,
            "unknown-currency",
        ),
        (
            "lower-case currency",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "1.00", "usd"), ("4000", "-1.00", "usd")],
            ),
            422,
            "unknown-currency",
        ),
        (
            "too many decimals",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "1.001", "USD"), ("4000", "-1.001", "USD")],
            ),
            422,
            "too-many-decimals",
        ),
        (
            "decimals in JPY",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "1.5", "JPY"), ("4000", "-1.5", "JPY")],
            ),
            422,
            "too-many-decimals",
        ),
        (
            "overflow",
            entry(
                "2026-01-06",
                "x",
                &[
                    ("1000", "99999999999999999999.00", "USD"),
                    ("4000", "-99999999999999999999.00", "USD"),
                ],
            ),
            422,
            "amount-overflow",
        ),
        (
            "malformed amount",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "1,000.00", "USD"), ("4000", "-1000.00", "USD")],
            ),
            422,
            "invalid-amount",
        ),
        (
            "exponent amount",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "1e3", "USD"), ("4000", "-1000", "USD")],
            ),
            422,
            "invalid-amount",
        ),
        (
            "zero amount",
            entry(
                "2026-01-06",
                "x",
                &[("1000", "0.00", "USD"), ("4000", "0", "USD")],
            ),
            422,
            "invalid-amount",
        ),
        (
            "one posting",
            entry("2026-01-06", "x", &[("1000", "1.00", "USD")]),
            422,
            "invalid-postings",
        ),
        (
            "date out of range",
            entry(
                "1800-01-01",
                "x",
                &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
            ),
            422,
            "date-out-of-range",
        ),
        (
            "date too late",
            entry(
                "2200-01-01",
                "x",
                &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
            ),
            422,
            "date-out-of-range",
        ),
        (
            "malformed date",
            entry(
                "31/01/2026",
                "x",
                &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
            ),
            422,
            "invalid-date",
        ),
        (
            "impossible date",
            entry(
                "2026-02-30",
                "x",
                &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
            ),
            422,
            "invalid-date",
        ),
        (
            "blank description",
            entry(
                "2026-01-06",
                "  ",
                &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
            ),
            422,
            "invalid-entry-text",
        ),
        (
            "float amount",
            json!({"date": "2026-01-06", "description": "x", "postings": [
                {"account": "1000", "amount": 100.5, "currency": "USD"},
                {"account": "4000", "amount": "-100.50", "currency": "USD"}]}),
            422,
            "invalid-field",
        ),
        (
            "integer amount",
            json!({"date": "2026-01-06", "description": "x", "postings": [
                {"account": "1000", "amount": 100, "currency": "USD"},
                {"account": "4000", "amount": "-100", "currency": "USD"}]}),
            422,
            "invalid-field",
        ),
        (
            "unknown entry field",
            json!({"date": "2026-01-06", "description": "x", "memo": "hi", "postings": [
                {"account": "1000", "amount": "1", "currency": "USD"},
                {"account": "4000", "amount": "-1", "currency": "USD"}]}),
            422,
            "invalid-field",
        ),
        (
            "unknown posting field",
            json!({"date": "2026-01-06", "description": "x", "postings": [
                {"account": "1000", "amount": "1", "currency": "USD", "side": "debit"},
                {"account": "4000", "amount": "-1", "currency": "USD"}]}),
            422,
            "invalid-field",
        ),
        (
            "missing field",
            json!({"date": "2026-01-06", "postings": [
                {"account": "1000", "amount": "1", "currency": "USD"},
                {"account": "4000", "amount": "-1", "currency": "USD"}]}),
            422,
            "invalid-field",
        ),
    ];
    for (name, body, status, slug) in cases {
        let resp = srv.post(&path, &t.token, body).await;
        assert_eq!(resp.status.as_u16(), status, "{name}: {}", resp.text);
        let problem = resp.problem(status, slug);
        assert!(
            !problem["detail"].as_str().unwrap_or("").is_empty(),
            "{name}: detail"
        );
        if name.ends_with("amount") && slug == "invalid-field" {
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("decimal string"),
                "{name}: the problem says amounts are decimal strings: {problem}"
            );
        }
    }

    // Malformed JSON, wrong content type, oversized body.
    let raw = |ct: Option<&'static str>, bytes: &[u8]| Body::Raw {
        content_type: ct,
        bytes: bytes.to_vec(),
    };
    srv.send(
        Method::POST,
        &path,
        Some(&t.token),
        raw(Some("application/json"), b"{\"date\": \"2026-01-06\","),
        &[],
    )
    .await
    .problem(400, "malformed-json");
    let valid = serde_json::to_vec(&entry(
        "2026-01-06",
        "x",
        &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
    ))
    .expect("json");
    srv.send(
        Method::POST,
        &path,
        Some(&t.token),
        raw(Some("text/plain"), &valid),
        &[],
    )
    .await
    .problem(415, "unsupported-media-type");
    srv.send(Method::POST, &path, Some(&t.token), raw(None, &valid), &[])
        .await
        .problem(415, "unsupported-media-type");
    let mut huge = entry(
        "2026-01-06",
        "x",
        &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")],
    );
    huge["reference"] = Value::String("r".repeat(1024 * 1024 + 10));
    let huge = serde_json::to_vec(&huge).expect("json");
    srv.send(
        Method::POST,
        &path,
        Some(&t.token),
        raw(Some("application/json"), &huge),
        &[],
    )
    .await
    .problem(413, "body-too-large");
    // The same limit guards the plain JSON endpoints.
    srv.send(
        Method::POST,
        &t.path("/accounts"),
        Some(&t.token),
        raw(Some("application/json"), &huge),
        &[],
    )
    .await
    .problem(413, "body-too-large");

    // Accounts: duplicate code, bad type, unknown field, unknown currency.
    srv.post(
        &t.path("/accounts"),
        &t.token,
        json!({"code": "1000", "name": "Cash again", "type": "asset"}),
    )
    .await
    .problem(409, "duplicate-account-code");
    srv.post(
        &t.path("/accounts"),
        &t.token,
        json!({"code": "1500", "name": "x", "type": "cash"}),
    )
    .await
    .problem(422, "unknown-account-type");
    srv.post(
        &t.path("/accounts"),
        &t.token,
        json!({"code": "15 00", "name": "x", "type": "asset"}),
    )
    .await
    .problem(422, "invalid-account-code");
    srv.post(
        &t.path("/accounts"),
        &t.token,
        json!({"code": "1500", "name": "x", "type": "asset", "colour": "red"}),
    )
    .await
    .problem(422, "invalid-field");
    srv.post(
        &t.path("/accounts"),
        &t.token,
        json!({"code": "1500", "name": "x", "type": "asset", "currency": "XYZ"}),
    )
    .await
    .problem(422, "unknown-currency");
    srv.post(
        &t.path("/accounts"),
        &t.token,
        json!({"code": "1500", "name": "x", "type": "asset", "parent": "4000"}),
    )
    .await
    .problem(422, "invalid-parent-account");
    let accounts = srv.get(&t.path("/accounts"), &t.token).await.ok(200);
    assert_eq!(
        accounts.as_array().map(Vec::len),
        Some(CHART.len()),
        "no account was created"
    );

    // Query strings: bad cursor, bad date, unknown parameter.
    srv.get(&t.path("/entries?after=abc"), &t.token)
        .await
        .problem(422, "invalid-cursor");
    srv.get(&t.path("/reports/trial-balance?as_of=2026-13-01"), &t.token)
        .await
        .problem(422, "invalid-date");
    let unknown_param = srv
        .get(
            &t.path("/reports/trial-balance?as_of=2026-01-01&bogus=1"),
            &t.token,
        )
        .await;
    assert!(
        matches!(unknown_param.status.as_u16(), 400 | 422),
        "{}",
        unknown_param.text
    );
    unknown_param.problem(unknown_param.status.as_u16(), "invalid-query");
    let bad_limit = srv.get(&t.path("/entries?limit=lots"), &t.token).await;
    bad_limit.problem(bad_limit.status.as_u16(), "invalid-query");
    // A path segment that is not UTF-8 once decoded.
    let bad_path = srv.get("/api/v1/companies/%FF/accounts", &t.token).await;
    assert!(
        matches!(bad_path.status.as_u16(), 400 | 404),
        "{}",
        bad_path.text
    );
    bad_path.problem(
        bad_path.status.as_u16(),
        if bad_path.status.as_u16() == 404 {
            "not-found"
        } else {
            "bad-request"
        },
    );

    // Signup: weak passphrase, duplicate email, unknown field, bad email.
    srv.post_anon(
        "/api/v1/signup",
        json!({"company_name": "Weak Co", "email": fresh_email("weak"), "passphrase": "password123"}),
    )
    .await
    .problem(422, "weak-passphrase");
    // A taken email is answered like a new signup, and creates nothing
    // (`auth::signup_with_a_taken_email_answers_like_a_new_one`).
    for email in [t.email.clone(), t.email.to_uppercase()] {
        let decoy = srv
            .post_anon(
                "/api/v1/signup",
                json!({"company_name": "Dup Co", "email": email, "passphrase": PASSPHRASE}),
            )
            .await
            .ok(201);
        srv.get("/api/v1/me", decoy["token"].as_str().expect("token"))
            .await
            .problem(401, "unauthorized");
    }
    srv.post_anon(
        "/api/v1/signup",
        json!({"company_name": "Extra Co", "email": fresh_email("extra"), "passphrase": PASSPHRASE, "plan": "free"}),
    )
    .await
    .problem(422, "invalid-field");
    srv.post_anon(
        "/api/v1/signup",
        json!({"company_name": "Bad Mail", "email": "not-an-email", "passphrase": PASSPHRASE}),
    )
    .await
    .problem(422, "invalid-email");

    // Reversals: twice, a reversal of a reversal, unknown entry, bad date.
    let rev = srv
        .post(
            &t.path(&format!("/entries/{first}/reverse")),
            &t.token,
            json!({}),
        )
        .await
        .ok(201);
    let rev_id = rev["id"].as_str().expect("id").to_string();
    let after_reversal = srv.all_entries(&t, &t.token).await;
    srv.post(
        &t.path(&format!("/entries/{first}/reverse")),
        &t.token,
        json!({}),
    )
    .await
    .problem(409, "already-reversed");
    srv.post(
        &t.path(&format!("/entries/{rev_id}/reverse")),
        &t.token,
        json!({}),
    )
    .await
    .problem(409, "already-reversed");
    srv.post(&t.path("/entries/424242/reverse"), &t.token, json!({}))
        .await
        .problem(404, "not-found");
    srv.post(
        &t.path(&format!("/entries/{first}/reverse")),
        &t.token,
        json!({"when": "today"}),
    )
    .await
    .problem(422, "invalid-field");
    assert_eq!(
        srv.all_entries(&t, &t.token).await,
        after_reversal,
        "refused reversals post nothing"
    );

    // Nothing above changed the books (besides the one good reversal).
    assert_eq!(after_reversal.len(), entries_before.len() + 1);
    assert_eq!(
        after_reversal[..entries_before.len()].len(),
        entries_before.len()
    );
    assert_eq!(after_reversal[0]["id"], entries_before[0]["id"]);
    let tb_after = srv.trial_balance(&t, &t.token, "2026-01-05").await;
    assert_eq!(tb_after["accounts"], tb_before["accounts"]);
    assert_eq!(tb_after["totals"], json!({"USD": "0.00"}));

    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_date_is_validated() {
    let srv = TestServer::start().await;
    let t = srv.signup("Dates Inc").await;
    srv.chart(&t).await;
    let id = srv
        .post_entry(
            &t,
            entry(
                "2026-01-05",
                "Opening",
                &[("1000", "100.00", "USD"), ("3000", "-100.00", "USD")],
            ),
        )
        .await;
    srv.post(
        &t.path(&format!("/entries/{id}/reverse")),
        &t.token,
        json!({"date": "1800-01-01"}),
    )
    .await
    .problem(422, "date-out-of-range");
    srv.post(
        &t.path(&format!("/entries/{id}/reverse")),
        &t.token,
        json!({"date": "yesterday"}),
    )
    .await
    .problem(422, "invalid-date");
    let entries = srv.all_entries(&t, &t.token).await;
    assert_eq!(entries.len(), 1);
    assert!(entries[0]["reversed_by"].is_null());
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_posts_once() {
    let srv = TestServer::start().await;
    let t = srv.signup("Retry Co").await;
    srv.chart(&t).await;
    let path = t.path("/entries");
    let body = entry(
        "2026-01-05",
        "Once",
        &[("1000", "100.00", "USD"), ("3000", "-100.00", "USD")],
    );
    let key = [("Idempotency-Key", "retry-1")];

    let first = srv
        .send(
            Method::POST,
            &path,
            Some(&t.token),
            Body::Json(body.clone()),
            &key,
        )
        .await;
    let first_body = first.ok(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = srv
        .send(
            Method::POST,
            &path,
            Some(&t.token),
            Body::Json(body.clone()),
            &key,
        )
        .await;
    let second_body = second.ok(201);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second_body["id"], first_body["id"]);
    assert_eq!(second_body, first_body);
    assert_eq!(srv.all_entries(&t, &t.token).await.len(), 1);

    // Same key, different body.
    let other = entry(
        "2026-01-05",
        "Once",
        &[("1000", "100.01", "USD"), ("3000", "-100.01", "USD")],
    );
    srv.send(Method::POST, &path, Some(&t.token), Body::Json(other), &key)
        .await
        .problem(422, "idempotency-key-reused");
    // A batch is a different request even under the same key.
    srv.send(
        Method::POST,
        &t.path("/entries/batch"),
        Some(&t.token),
        Body::Json(json!({"entries": [body.clone()]})),
        &key,
    )
    .await
    .problem(422, "idempotency-key-reused");
    assert_eq!(srv.all_entries(&t, &t.token).await.len(), 1);
    // A failed request does not burn its key.
    let bad = entry(
        "2026-01-05",
        "Bad",
        &[("1000", "1.00", "USD"), ("3000", "-2.00", "USD")],
    );
    let key2 = [("Idempotency-Key", "retry-2")];
    srv.send(Method::POST, &path, Some(&t.token), Body::Json(bad), &key2)
        .await
        .problem(422, "unbalanced-entry");
    let fixed = entry(
        "2026-01-05",
        "Fixed",
        &[("1000", "1.00", "USD"), ("3000", "-1.00", "USD")],
    );
    srv.send(
        Method::POST,
        &path,
        Some(&t.token),
        Body::Json(fixed),
        &key2,
    )
    .await
    .ok(201);
    assert_eq!(srv.all_entries(&t, &t.token).await.len(), 2);
    // An invalid key is refused.
    srv.send(
        Method::POST,
        &path,
        Some(&t.token),
        Body::Json(body.clone()),
        &[("Idempotency-Key", "")],
    )
    .await
    .problem(400, "invalid-idempotency-key");

    // Batch replay.
    let batch = json!({"entries": [
        entry("2026-01-06", "b1", &[("1000", "1.00", "USD"), ("4000", "-1.00", "USD")]),
        entry("2026-01-07", "b2", &[("1000", "2.00", "USD"), ("4000", "-2.00", "USD")]),
    ]});
    let bkey = [("Idempotency-Key", "batch-1")];
    let b1 = srv
        .send(
            Method::POST,
            &t.path("/entries/batch"),
            Some(&t.token),
            Body::Json(batch.clone()),
            &bkey,
        )
        .await;
    let b1_body = b1.ok(201);
    let b2 = srv
        .send(
            Method::POST,
            &t.path("/entries/batch"),
            Some(&t.token),
            Body::Json(batch),
            &bkey,
        )
        .await;
    assert_eq!(b2.header("idempotent-replayed"), Some("true"));
    assert_eq!(b2.ok(201), b1_body);
    assert_eq!(srv.all_entries(&t, &t.token).await.len(), 4);

    // Sixteen concurrent requests with one key: one entry, one id.
    let concurrent = entry(
        "2026-01-08",
        "Concurrent",
        &[("1000", "7.77", "USD"), ("4000", "-7.77", "USD")],
    );
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let req = srv
            .client
            .post(srv.url(&path))
            .bearer_auth(&t.token)
            .header("Idempotency-Key", "burst")
            .json(&concurrent);
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.expect("request");
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = resp.text().await.expect("body");
            Resp {
                status,
                headers,
                text,
            }
        }));
    }
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.expect("task"));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut fresh = 0;
    for r in &responses {
        let body = r.ok(201);
        ids.insert(body["id"].as_str().expect("id").to_string());
        if r.header("idempotent-replayed").is_none() {
            fresh += 1;
        }
    }
    assert_eq!(ids.len(), 1, "every retry answers with the same entry");
    assert_eq!(fresh, 1, "exactly one request posted");
    let all = srv.all_entries(&t, &t.token).await;
    assert_eq!(all.len(), 5);
    assert_eq!(
        all.iter()
            .filter(|e| e["description"] == "Concurrent")
            .count(),
        1
    );

    srv.shutdown().await;
}
