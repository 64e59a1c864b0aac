//! The company's security policy: second factor, address allowlist (with a
//! confirmation when the change would lock the editor out), session
//! lifetimes, passphrase strength, API key lifetime.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use wb_app::security::PolicyChange;
use wb_core::security_policy::SecurityPolicy;
use wb_core::Action;

use super::form::Form;
use super::layout::{self, Nav};
use super::page::{Page, PageResult, View};
use crate::auth::{AppState, ManageSecurity};
use crate::problem::ApiError;

fn number(v: Option<u32>) -> String {
    v.map(|m| m.to_string()).unwrap_or_default()
}

/// A saved policy as the form's fields (what the form shows before a change).
fn fields_of(policy: &SecurityPolicy) -> Form {
    let allowlist: Vec<String> = policy.ip_allowlist.iter().map(|n| n.to_string()).collect();
    let mut fields = vec![
        ("ip_allowlist", allowlist.join("\n")),
        ("session_ttl_minutes", number(policy.session_ttl_minutes)),
        ("idle_timeout_minutes", number(policy.idle_timeout_minutes)),
        (
            "min_passphrase_strength",
            policy.min_passphrase_strength.to_string(),
        ),
        ("api_key_max_days", number(policy.api_key_max_days)),
        ("key_max_age_days", number(policy.key_max_age_days)),
    ];
    if policy.mfa_required {
        fields.push(("mfa_required", "yes".into()));
    }
    Form::from_pairs(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The policy form, showing `values` (a saved policy's fields, or what was
/// sent when it was refused, so nothing typed is lost).
fn policy_form(view: &View, values: &Form, lockout: bool) -> Markup {
    let value = |name: &str| values.get(name).unwrap_or("").to_string();
    let mfa = values.checked("mfa_required");
    html! {
        form.stack method="post" action=(view.href("/security")) {
            (view.csrf())
            div {
                label { input type="checkbox" name="mfa_required" value="yes" checked[mfa]; " Members must use a second factor" }
            }
            div {
                label for="ip_allowlist" { "Allowed addresses" }
                textarea #ip_allowlist name="ip_allowlist" rows="4" aria-describedby="ip-hint" { (value("ip_allowlist")) }
                p.hint #ip-hint { "One address or CIDR block per line (e.g. 203.0.113.0/24). Empty: any address." }
            }
            @if lockout {
                div.notice.warning {
                    label { input type="checkbox" name="confirm_lockout" value="yes"; " I understand that this allowlist excludes the address I am using now, so this page will refuse me after I save." }
                }
            }
            div { label for="session_ttl_minutes" { "Session lifetime (minutes, empty: the platform's)" } input #session_ttl_minutes name="session_ttl_minutes" inputmode="numeric" value=(value("session_ttl_minutes")); }
            div { label for="idle_timeout_minutes" { "Idle timeout (minutes, empty: none)" } input #idle_timeout_minutes name="idle_timeout_minutes" inputmode="numeric" value=(value("idle_timeout_minutes")); }
            div {
                label for="min_passphrase_strength" { "Minimum passphrase strength" }
                select #min_passphrase_strength name="min_passphrase_strength" {
                    @for s in [3u8, 4] {
                        option value=(s) selected[value("min_passphrase_strength") == s.to_string()] { (s) @if s == 4 { " (strongest)" } }
                    }
                }
            }
            div { label for="api_key_max_days" { "Longest API key life (days, empty: the platform's)" } input #api_key_max_days name="api_key_max_days" inputmode="numeric" value=(value("api_key_max_days")); }
            div { label for="key_max_age_days" { "Longest life of a company key version before an alert (days, 30 to 3650; empty: 365)" } input #key_max_age_days name="key_max_age_days" inputmode="numeric" value=(value("key_max_age_days")); }
            div { button type="submit" { "Save policy" } }
        }
    }
}

pub async fn page(
    State(platform): State<AppState>,
    page: Page<ManageSecurity>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission
        .read(&platform, Action::SecurityPolicyRead, None)
        .await?;
    let policy = scope.security_policy(&platform).await?;
    Ok(view.render(
        "Security policy",
        Nav::Security,
        policy_form(&view, &fields_of(&policy), false),
    ))
}

fn optional_number(form: &Form, name: &str) -> Result<Option<u32>, ApiError> {
    match form.get(name) {
        None => Ok(None),
        Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
            ApiError::unprocessable(
                "invalid-policy",
                format!("{} must be a whole number", name.replace('_', " ")),
            )
        }),
    }
}

fn change_of(form: &Form) -> Result<PolicyChange, ApiError> {
    let strength = form
        .get("min_passphrase_strength")
        .map(|s| {
            s.parse::<u8>()
                .map_err(|_| ApiError::unprocessable("invalid-policy", "strength must be 3 or 4"))
        })
        .transpose()?;
    Ok(PolicyChange {
        mfa_required: Some(form.checked("mfa_required")),
        session_ttl_minutes: Some(optional_number(form, "session_ttl_minutes")?),
        idle_timeout_minutes: Some(optional_number(form, "idle_timeout_minutes")?),
        ip_allowlist: Some(
            form.get("ip_allowlist")
                .unwrap_or("")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(1000)
                .map(str::to_string)
                .collect(),
        ),
        min_passphrase_strength: strength,
        api_key_max_days: Some(optional_number(form, "api_key_max_days")?),
        key_max_age_days: Some(optional_number(form, "key_max_age_days")?),
        confirm_lockout: form.checked("confirm_lockout"),
    })
}

pub async fn save(
    State(platform): State<AppState>,
    page: Page<ManageSecurity>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    let outcome = match change_of(&form) {
        Ok(change) => scope
            .set_security_policy(&platform, change)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(policy) => {
            let content = html! {
                (layout::notice("success", "Security policy saved."))
                (policy_form(&view, &fields_of(&policy), false))
            };
            Ok(view.render("Security policy", Nav::Security, content))
        }
        Err(e) => {
            let lockout = e.slug == "lockout";
            let content = html! {
                (layout::notice("error", &e.detail))
                (policy_form(&view, &form, lockout))
            };
            Ok((
                e.status,
                view.render("Security policy", Nav::Security, content),
            )
                .into_response())
        }
    }
}
