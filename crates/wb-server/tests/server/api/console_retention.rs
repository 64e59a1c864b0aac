//! The console's data retention page (`/c/{company}/retention`) and its
//! purge: the rules saved from the form and refused below the statutory
//! minimum naming the rule; an admin edits the rules but cannot preview or
//! purge; the owner's preview changes nothing; a purge with the wrong name
//! changes nothing; with the name, the old entries go and one opening entry
//! stands in their place; every step is in the company's trail; no form
//! works without the CSRF token.

use serde_json::json;
use wb_core::Action;
use wb_server::Clock;

use super::harness::{entry, Resp, Tenant, TestServer, CONSOLE_CSRF};

fn one_year_minimum(config: &mut wb_server::ServerConfig) {
    config.statutory_minimum = wb_core::data_retention::StatutoryMinimum::years(1).unwrap();
}

fn cookie_of(token: &str) -> String {
    format!("__Host-wb_session={token}")
}

async fn get_page(srv: &TestServer, path: &str, token: &str) -> Resp {
    srv.console_get(path, &cookie_of(token)).await
}

/// A console form POST; `csrf` false leaves the form's token out.
async fn post_page(
    srv: &TestServer,
    path: &str,
    token: &str,
    fields: &[(&str, &str)],
    csrf: bool,
) -> Resp {
    let mut all = fields.to_vec();
    if csrf {
        all.push(("_csrf", CONSOLE_CSRF));
    }
    srv.console_post(path, &cookie_of(token), &all).await
}

/// `(action, outcome)` of what is on record about the company: its own
/// trail (the purge) and the control chain's events naming it (the rules).
async fn trail(srv: &TestServer, t: &Tenant) -> Vec<(String, String)> {
    let tenant = srv.platform.tenant(&t.id).await.unwrap();
    let own = tenant.audit_events(0, 10_000).await.unwrap();
    let control = srv
        .platform
        .control
        .audit_events(Some(&t.id), 0, 10_000)
        .await
        .unwrap();
    own.into_iter()
        .chain(control)
        .map(|e| (e.action, e.outcome))
        .collect()
}

/// The value of the hidden field `name` on a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} on\n{page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

fn count(trail: &[(String, String)], action: Action, outcome: &str) -> usize {
    trail
        .iter()
        .filter(|(a, o)| a == action.as_str() && o == outcome)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_rules_and_the_purge_from_the_console() {
    let srv = TestServer::start_manual_configured(one_year_minimum).await;
    let clock = srv.clock.clone().unwrap();
    let t = srv.signup("Tidy Books Ltd").await;
    srv.chart(&t).await;
    // Dates from the clock: two years on, a one-year rule keeps entries
    // from 1 January of last year (`horizon`).
    let year = clock.now().year();
    let old = |md: &str| format!("{}-{md}", year - 1);
    let horizon = format!("{}-01-01", year + 1);
    let kept_day = format!("{}-02-01", year + 1);
    let later = format!("{}-06-01", year + 1);
    srv.post_entry(
        &t,
        entry(
            &old("03-01"),
            "Old sale",
            &[("1000", "100.00", "USD"), ("4000", "-100.00", "USD")],
        ),
    )
    .await;
    srv.post_entry(
        &t,
        entry(
            &old("05-01"),
            "Old rent",
            &[("5000", "30.00", "USD"), ("1000", "-30.00", "USD")],
        ),
    )
    .await;
    clock.advance(time::Duration::days(731));
    let t = srv.sign_in_again(&t).await;
    let kept = srv
        .post_entry(
            &t,
            entry(
                &kept_day,
                "New sale",
                &[("1000", "10.00", "USD"), ("4000", "-10.00", "USD")],
            ),
        )
        .await;
    let retention = format!("/c/{}/retention", t.id);

    // The page: the rules as saved, the link in the navigation, the purge.
    let page = get_page(&srv, &retention, &t.token).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Data retention"));
    assert!(page.text.contains("name=\"entries_years\""));
    assert!(page.text.contains("value=\"10\""), "the default ten years");
    assert!(page.text.contains("Preview the purge"));

    // Out of range (the statutory minimum here is one year; the browser run
    // shows a refusal below ten): refused, naming the rule; what was typed stays.
    let refused = post_page(
        &srv,
        &retention,
        &t.token,
        &[
            ("entries_years", "0"),
            ("attachments_years", "1"),
            ("audit_years", "1"),
            ("exports_days", "30"),
        ],
        true,
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused.text.contains("entries_years is 1 to 100"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("value=\"0\""), "what was typed stays");
    assert!(
        refused.text.contains(
            "aria-invalid=\"true\" aria-describedby=\"entries_years-error entries_years-hint\""
        ),
        "the field is marked: {}",
        refused.text
    );
    assert_eq!(refused.text.matches("aria-invalid").count(), 1);
    let garbage = post_page(
        &srv,
        &retention,
        &t.token,
        &[("entries_years", "ten")],
        true,
    )
    .await;
    assert_eq!(garbage.status, 422, "{}", garbage.text);
    assert!(garbage.text.contains("whole number"));
    let rules = srv.get(&t.path("/retention"), &t.token).await.ok(200);
    assert_eq!(rules["entries_years"], 10, "a refusal changes nothing");

    // Without the CSRF token nothing is saved.
    let forged = post_page(&srv, &retention, &t.token, &[("entries_years", "1")], false).await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert_eq!(
        srv.get(&t.path("/retention"), &t.token).await.ok(200)["entries_years"],
        10
    );

    // An admin edits the rules (one year) but neither previews nor purges.
    let admin = super::mfa::member_of(&srv, &t, "admin").await;
    let saved = post_page(
        &srv,
        &retention,
        &admin,
        &[
            ("entries_years", "1"),
            ("attachments_years", "1"),
            ("audit_years", "1"),
            ("exports_days", "30"),
        ],
        true,
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.text);
    assert!(saved.text.contains("Retention rules saved."));
    assert!(
        !saved.text.contains("Preview the purge"),
        "no purge for an admin"
    );
    let rules = srv.get(&t.path("/retention"), &t.token).await.ok(200);
    assert_eq!(rules["entries_years"], 1);
    for path in ["/purge/preview", "/purge"] {
        let resp = post_page(
            &srv,
            &format!("/c/{}{path}", t.id),
            &admin,
            &[("confirm", "Tidy Books Ltd")],
            true,
        )
        .await;
        assert_eq!(resp.status, 403, "{path}: {}", resp.text);
    }
    // An accountant neither sees the page nor sends its forms.
    let accountant = super::mfa::member_of(&srv, &t, "accountant").await;
    assert_eq!(get_page(&srv, &retention, &accountant).await.status, 403);
    for path in ["/retention", "/purge/preview", "/purge"] {
        let resp = post_page(
            &srv,
            &format!("/c/{}{path}", t.id),
            &accountant,
            &[("entries_years", "1"), ("confirm", "Tidy Books Ltd")],
            true,
        )
        .await;
        assert_eq!(resp.status, 403, "{path}: {}", resp.text);
    }

    // The owner's preview lists the two old entries and changes nothing.
    let entries_before = srv.all_entries(&t, &t.token).await;
    assert_eq!(entries_before.len(), 3);
    let preview = post_page(
        &srv,
        &format!("/c/{}/purge/preview", t.id),
        &t.token,
        &[],
        true,
    )
    .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert!(
        preview.text.contains(&format!(
            "2 entries dated before <strong>{horizon}</strong>"
        )),
        "{}",
        preview.text
    );
    assert!(preview.text.contains("Nothing has changed yet."));
    assert!(preview
        .text
        .contains(&format!("name=\"entries_before\" value=\"{horizon}\"")));
    assert_eq!(srv.all_entries(&t, &t.token).await, entries_before);

    // The purge form sends back the three cut-offs the preview showed.
    let cut_offs: Vec<(&str, String)> = ["entries_before", "attachments_before", "audit_before"]
        .into_iter()
        .map(|name| (name, hidden(&preview.text, name)))
        .collect();
    assert_eq!(cut_offs[0].1, horizon);
    let purge_form = |confirm: &'static str| {
        let mut fields: Vec<(&str, &str)> =
            cut_offs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        fields.push(("confirm", confirm));
        fields
    };
    let purge_path = format!("/c/{}/purge", t.id);

    // The wrong name, or none: refused and on record, nothing changes, the
    // preview is shown again.
    for name in ["Tidy Books", "  "] {
        let wrong = post_page(&srv, &purge_path, &t.token, &purge_form(name), true).await;
        assert_eq!(wrong.status, 422, "{name:?}: {}", wrong.text);
        assert!(wrong.text.contains("The name does not match"));
        assert!(wrong.text.contains("Purge now"), "the preview again");
        assert_eq!(srv.all_entries(&t, &t.token).await, entries_before);
    }
    // A form that did not come from a preview purges nothing.
    let unpreviewed = post_page(
        &srv,
        &purge_path,
        &t.token,
        &[("confirm", "Tidy Books Ltd")],
        true,
    )
    .await;
    assert_eq!(unpreviewed.status, 422, "{}", unpreviewed.text);
    assert!(unpreviewed.text.contains("Preview the purge first"));
    assert_eq!(srv.all_entries(&t, &t.token).await, entries_before);
    // Nor without the CSRF token.
    let forged = post_page(
        &srv,
        &purge_path,
        &t.token,
        &purge_form("Tidy Books Ltd"),
        false,
    )
    .await;
    assert_eq!(forged.status, 403);
    assert_eq!(srv.all_entries(&t, &t.token).await, entries_before);
    // A cut-off later than the rules allow is refused, naming the rule.
    let mut beyond = purge_form("Tidy Books Ltd");
    beyond[0].1 = later.as_str();
    let refused_later = post_page(&srv, &purge_path, &t.token, &beyond, true).await;
    assert_eq!(refused_later.status, 422, "{}", refused_later.text);
    assert!(
        refused_later
            .text
            .contains("refused by rule statutory_minimum_years"),
        "{}",
        refused_later.text
    );
    assert_eq!(srv.all_entries(&t, &t.token).await, entries_before);
    // (The API names the attachments' own rule the same way.)
    let attachments_later = srv
        .post(
            &t.path("/purge"),
            &t.token,
            json!({"dry_run": true, "attachments_before": later}),
        )
        .await
        .problem(422, "beyond-retention-rule");
    assert!(attachments_later["detail"]
        .as_str()
        .unwrap()
        .contains("attachments_years (1 years)"));

    // The purge: the old entries go, one opening entry stands in for them,
    // and the balance on the kept day is what it was.
    let balance_before = srv.trial_balance(&t, &t.token, &kept_day).await["accounts"].clone();
    let done = post_page(
        &srv,
        &purge_path,
        &t.token,
        &purge_form(" Tidy Books Ltd "),
        true,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("The purge is done."), "{}", done.text);
    assert!(done.text.contains("Gone from the backups"));
    let after = srv.all_entries(&t, &t.token).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().any(|e| e["id"] == kept.as_str()));
    assert!(after
        .iter()
        .any(|e| e["reference"] == json!(format!("purge:{horizon}"))));
    assert!(!after.iter().any(|e| e["description"] == "Old sale"));
    assert_eq!(
        srv.trial_balance(&t, &t.token, &kept_day).await["accounts"],
        balance_before
    );

    // A second purge (a resubmitted form) has nothing left to do.
    let again = post_page(
        &srv,
        &purge_path,
        &t.token,
        &purge_form("Tidy Books Ltd"),
        true,
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(again.text.contains("Nothing was due"), "{}", again.text);
    assert_eq!(srv.all_entries(&t, &t.token).await.len(), 2);

    // Every step is in the company's trail.
    let trail = trail(&srv, &t).await;
    assert_eq!(count(&trail, Action::RetentionSet, "success"), 1);
    assert_eq!(count(&trail, Action::RetentionSet, "failure"), 1);
    // The button's preview, the API's, and one after each wrong name.
    assert_eq!(count(&trail, Action::DataPurgePreview, "success"), 3);
    // Two wrong names, the later horizon, the API's later attachments.
    assert_eq!(count(&trail, Action::DataPurge, "failure"), 4);
    // The purge, and the resubmitted form that found nothing due.
    assert_eq!(count(&trail, Action::DataPurge, "success"), 2);
    srv.shutdown().await;
}
