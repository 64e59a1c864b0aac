//! The web console at `/`: server-rendered pages over the same services,
//! the same door (`auth::Company<P>`, through [`page::Page`]) and the same
//! audit as the JSON API. It never opens a store and keeps no state of its
//! own: a page is a view of what a service answered.
//!
//! Security (see `guard.rs`): a strict Content-Security-Policy (no inline
//! script or style, no eval), `__Host-` cookies, a CSRF token on every form
//! and an Origin / `Sec-Fetch-Site` check on every unsafe request, `no-store`
//! on every page.

mod access;
mod accounts;
pub mod assets;
mod audit;
mod backups;
mod chart;
mod dashboard;
mod entries;
mod fmt;
mod form;
mod grant_list;
pub mod guard;
mod layout;
mod me;
mod members;
mod page;
mod reports;
mod restore;
mod retention;
mod security;
mod signin;
mod staff;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::api::files::FileSettings;
use crate::auth::AppState;

/// The console's routes (merged into the server's router before its fallback).
pub fn router(files: FileSettings) -> Router<AppState> {
    // An upload's multipart body: the file and a little framing.
    let upload_limit = usize::try_from(files.limits.max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let company = |rest: &str| format!("/c/{{company}}{rest}");
    Router::new()
        .route("/", get(signin::home))
        .route("/login", get(signin::login_page).post(signin::login))
        .route("/login/code", post(signin::second_factor))
        .route("/logout", post(signin::logout))
        .route("/signup", get(signin::signup_page).post(signin::signup))
        .route(
            "/reset-passphrase",
            get(signin::reset_page).post(signin::request_reset),
        )
        .route("/reset-passphrase/complete", post(signin::complete_reset))
        .route(
            "/accept-invitation",
            get(signin::invitation_page).post(signin::accept_invitation),
        )
        .route("/help", get(signin::help))
        .route("/account", get(me::page))
        .route("/account/passphrase", post(me::change_passphrase))
        .route("/account/sessions/end-others", post(me::end_other_sessions))
        .route("/account/sessions/{session}/end", post(me::end_session))
        .route("/account/totp", post(me::begin_totp))
        .route("/account/totp/confirm", post(me::confirm_totp))
        .route("/account/passkeys", post(me::begin_passkey))
        .route("/account/passkeys/finish", post(me::finish_passkey))
        .route(
            "/account/passkeys/{passkey}/remove",
            post(me::remove_passkey),
        )
        .route(&company(""), get(dashboard::page))
        .route(
            &company("/accounts"),
            get(accounts::page).post(accounts::create),
        )
        .route(&company("/entries"), get(entries::list).post(entries::post))
        .route(&company("/entries/new"), get(entries::new_form))
        .route(&company("/entries/{entry}"), get(entries::detail))
        .route(&company("/entries/{entry}/reverse"), post(entries::reverse))
        .route(
            &company("/entries/{entry}/files"),
            post(entries::upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        // The API's download: same door, same audit, `attachment` disposition.
        .route(&company("/files/{file}"), get(crate::api::files::download))
        .route(&company("/reports"), get(reports::index))
        .route(
            &company("/reports/trial-balance"),
            get(reports::trial_balance),
        )
        .route(
            &company("/reports/balance-sheet"),
            get(reports::balance_sheet),
        )
        .route(
            &company("/reports/income-statement"),
            get(reports::income_statement),
        )
        .route(&company("/reports/register"), get(reports::register))
        .route(&company("/members"), get(members::page))
        .route(&company("/members/invite"), post(members::invite))
        .route(&company("/members/{user}/role"), post(members::change_role))
        .route(&company("/members/{user}/remove"), post(members::remove))
        .route(
            &company("/invitations/{invitation}/revoke"),
            post(members::revoke_invitation),
        )
        .route(
            &company("/api-keys"),
            get(members::keys_page).post(members::create_key),
        )
        .route(
            &company("/api-keys/{key}/rotate"),
            post(members::rotate_key),
        )
        .route(
            &company("/api-keys/{key}/revoke"),
            post(members::revoke_key),
        )
        .route(
            &company("/security"),
            get(security::page).post(security::save),
        )
        .route(
            &company("/retention"),
            get(retention::page).post(retention::save),
        )
        .route(&company("/purge/preview"), post(retention::preview))
        .route(&company("/purge"), post(retention::purge))
        .route(&company("/access"), get(access::page))
        .route(&company("/access/{grant}/{decision}"), post(access::decide))
        .route(&company("/audit"), get(audit::page))
        .route(&company("/audit/verify"), post(audit::verify))
        .route(&company("/backups"), get(backups::page))
        .route(&company("/exports"), post(backups::create_export))
        // The API's download: same door, same `export.download` event.
        .route(
            &company("/exports/{export}/download"),
            get(crate::api::exports::download),
        )
        .route(&company("/restore"), get(restore::confirm))
        .route(&company("/restores"), post(restore::start))
        .route(&company("/restores/{restore}"), get(restore::show))
        .route(&company("/export-schedule"), post(backups::set_schedule))
        .route(
            &company("/export-schedule/delete"),
            post(backups::delete_schedule),
        )
        .merge(staff::router())
        .route("/assets/{hash}/{name}", get(assets::serve))
        .layer(Extension(files))
        .layer(axum::middleware::from_fn(guard::guard))
}
