//! The HTTP API under `/api/v1`, its OpenAPI document and its middleware.

pub mod account;
pub mod api_keys;
pub mod audit;
pub mod books;
pub mod company_keys;
pub mod export_schedule;
pub mod exports;
pub mod files;
pub mod grants;
pub mod json;
pub mod lifecycle;
pub mod members;
pub mod metrics;
pub mod mfa;
pub mod passkeys;
pub mod purge;
pub mod reports;
pub mod restores;
pub mod retention;
pub mod security_policy;
pub mod session;
pub mod staff;
pub mod staff_ops;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Extension, Json, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;

use crate::auth::AppState;
use crate::config::ServerConfig;
use crate::dto::Health;
use crate::problem::{ApiError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(title = "Work-books API", description = "Multi-tenant bookkeeping with enforced data-security policy. Errors are RFC 9457 problem documents."),
    paths(
        session::signup, session::login, session::logout, session::me,
        session::request_reset, session::complete_reset,
        account::sessions, account::end_others, account::end_one, account::change_passphrase,
        mfa::status, mfa::begin_totp, mfa::confirm_totp, mfa::remove_totp,
        mfa::renew_recovery_codes, passkeys::list, passkeys::begin, passkeys::finish,
        passkeys::remove,
        books::company, books::list_accounts, books::create_account,
        books::list_entries, books::post_entry, books::post_batch, books::get_entry, books::reverse_entry,
        reports::trial_balance, reports::balance_sheet, reports::income_statement, reports::register,
        api_keys::list, api_keys::create, api_keys::revoke, api_keys::rotate,
        audit::list,
        exports::create, exports::list, exports::get, exports::download,
        restores::create, restores::list, restores::get,
        staff::login, staff::logout, staff::me, staff::companies, staff::company, staff::summary,
        staff::alerts, staff::triage, staff_ops::system, staff_ops::backups, staff_ops::audit,
        grants::request, grants::staff_list, grants::management_decision,
        grants::company_list, grants::company_decision,
        files::list, files::upload, files::download,
        export_schedule::get, export_schedule::put, export_schedule::delete,
        members::invite, members::list_invitations, members::revoke_invitation,
        members::list_members, members::change_member, members::remove_member, members::accept,
        security_policy::get, security_policy::put,
        lifecycle::deprovision, lifecycle::cancel, lifecycle::certificate,
        company_keys::rotate, company_keys::status,
        retention::get, retention::put, purge::purge,
        healthz, readyz,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/healthz", tag = "ops", security(), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "ops", security(), responses((status = 200, body = Health), (status = 503, body = Problem)))]
pub async fn readyz(State(platform): State<AppState>) -> Result<Json<Health>, ApiError> {
    platform
        .ready()
        .await
        .map_err(|_| ApiError::unavailable("the control database is not reachable"))?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this path does not accept this method",
    )
}

/// Where every company-scoped route lives.
pub const COMPANY_PREFIX: &str = "/api/v1/companies/{company}";

/// Every route under [`COMPANY_PREFIX`], in one table: each handler takes a
/// `Company<…>` extractor (the door, `crate::access`), and the door test
/// (`tests/api/door.rs`) walks this table and the OpenAPI document to prove
/// that each one refuses another company's caller and records its reads.
fn company_routes(batch_body_limit: usize) -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("", get(books::company)),
        (
            "/accounts",
            get(books::list_accounts).post(books::create_account),
        ),
        ("/accounts/{account}/register", get(reports::register)),
        ("/entries", get(books::list_entries).post(books::post_entry)),
        (
            "/entries/batch",
            post(books::post_batch).layer(DefaultBodyLimit::max(batch_body_limit)),
        ),
        ("/entries/{entry}", get(books::get_entry)),
        ("/entries/{entry}/reverse", post(books::reverse_entry)),
        ("/reports/trial-balance", get(reports::trial_balance)),
        ("/reports/balance-sheet", get(reports::balance_sheet)),
        ("/reports/income-statement", get(reports::income_statement)),
        ("/api-keys", get(api_keys::list).post(api_keys::create)),
        ("/api-keys/{key}", delete(api_keys::revoke)),
        ("/api-keys/{key}/rotate", post(api_keys::rotate)),
        ("/audit", get(audit::list)),
        ("/exports", get(exports::list).post(exports::create)),
        (
            "/export-schedule",
            get(export_schedule::get)
                .put(export_schedule::put)
                .delete(export_schedule::delete),
        ),
        ("/exports/{export}", get(exports::get)),
        ("/exports/{export}/download", get(exports::download)),
        ("/restores", get(restores::list).post(restores::create)),
        ("/access-grants", get(grants::company_list)),
        (
            "/access-grants/{grant}/{decision}",
            post(grants::company_decision),
        ),
        ("/restores/{restore}", get(restores::get)),
        ("/files", get(files::list).post(files::upload)),
        ("/files/{file}", get(files::download)),
        (
            "/invitations",
            get(members::list_invitations).post(members::invite),
        ),
        (
            "/invitations/{invitation}",
            delete(members::revoke_invitation),
        ),
        ("/members", get(members::list_members)),
        (
            "/security-policy",
            get(security_policy::get).put(security_policy::put),
        ),
        (
            "/members/{user}",
            patch(members::change_member).delete(members::remove_member),
        ),
        (
            "/deprovision",
            post(lifecycle::deprovision)
                .layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        ),
        ("/deprovision/cancel", post(lifecycle::cancel)),
        ("/keys", get(company_keys::status)),
        ("/retention", get(retention::get).put(retention::put)),
        ("/purge", post(purge::purge)),
        ("/keys/rotate", post(company_keys::rotate)),
    ]
}

/// The paths of every company-scoped route (for the door test).
pub fn company_route_paths() -> Vec<String> {
    company_routes(0)
        .into_iter()
        .map(|(path, _)| format!("{COMPANY_PREFIX}{path}"))
        .collect()
}

fn company_router(batch_body_limit: usize) -> Router<AppState> {
    company_routes(batch_body_limit)
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(&format!("{COMPANY_PREFIX}{path}"), methods)
        })
}

pub fn router(
    platform: AppState,
    config: &ServerConfig,
    limiters: std::sync::Arc<crate::rate_limit::Limiters>,
) -> Router {
    let file_settings = files::FileSettings {
        limits: crate::files::UploadLimits {
            max_bytes: config.file_max_bytes,
            idle: config.request_timeout,
        },
    };
    let api = Router::new()
        .route(
            "/api/v1/signup",
            post(session::signup).layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route(
            "/api/v1/auth/login",
            post(session::login).layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route("/api/v1/auth/logout", post(session::logout))
        .route(
            "/api/v1/staff/auth/login",
            post(staff::login).layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route("/api/v1/staff/auth/logout", post(staff::logout))
        .route("/api/v1/staff/me", get(staff::me))
        .route("/api/v1/staff/companies", get(staff::companies))
        .route("/api/v1/staff/alerts", get(staff::alerts))
        .route("/api/v1/staff/system", get(staff_ops::system))
        .route("/api/v1/staff/backups", get(staff_ops::backups))
        .route("/api/v1/staff/audit", get(staff_ops::audit))
        .route(
            "/api/v1/staff/alerts/{alert}/{triage}",
            post(staff::triage).layer(DefaultBodyLimit::max(4 * 1024)),
        )
        .route("/api/v1/staff/companies/{company}", get(staff::company))
        .route(
            "/api/v1/staff/companies/{company}/summary",
            get(staff::summary),
        )
        .route(
            "/api/v1/staff/access-grants",
            get(grants::staff_list).post(grants::request),
        )
        .route(
            "/api/v1/staff/access-grants/{grant}/{decision}",
            post(grants::management_decision).layer(DefaultBodyLimit::max(4 * 1024)),
        )
        .route(
            "/api/v1/auth/passphrase-reset",
            post(session::request_reset),
        )
        .route(
            "/api/v1/auth/passphrase-reset/complete",
            post(session::complete_reset)
                .layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route("/api/v1/me", get(session::me))
        .route(
            "/api/v1/destruction-certificates/{certificate}",
            get(lifecycle::certificate),
        )
        .route(
            "/api/v1/me/sessions",
            get(account::sessions).delete(account::end_others),
        )
        .route("/api/v1/me/sessions/{session}", delete(account::end_one))
        .route(
            "/api/v1/me/passphrase",
            post(account::change_passphrase)
                .layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route("/api/v1/me/mfa", get(mfa::status))
        .route(
            "/api/v1/me/passkeys",
            get(passkeys::list)
                .post(passkeys::begin)
                .layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route(
            "/api/v1/me/passkeys/finish",
            post(passkeys::finish).layer(DefaultBodyLimit::max(64 * 1024)),
        )
        .route(
            "/api/v1/me/passkeys/{passkey}/remove",
            post(passkeys::remove).layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route(
            "/api/v1/me/mfa/totp",
            post(mfa::begin_totp).layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route("/api/v1/me/mfa/totp/confirm", post(mfa::confirm_totp))
        .route(
            "/api/v1/me/mfa/totp/remove",
            post(mfa::remove_totp).layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route(
            "/api/v1/me/mfa/recovery-codes",
            post(mfa::renew_recovery_codes)
                .layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .route(
            "/api/v1/invitations/{token}/accept",
            post(members::accept).layer(DefaultBodyLimit::max(session::AUTH_BODY_LIMIT_BYTES)),
        )
        .merge(company_router(config.batch_body_limit_bytes))
        .layer(Extension(file_settings))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(crate::console::router(file_settings))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit_bytes));
    let timeouts = Timeouts {
        request: config.request_timeout,
        upload: config.file_upload_timeout,
    };
    with_middleware(api, timeouts, config, limiters).with_state(platform)
}

/// How long a request may take: attachment uploads stream large bodies, and
/// creating an export streams every attachment, so they get longer (each
/// piece of an upload must still come within `request`).
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    request: Duration,
    upload: Duration,
}

impl Timeouts {
    fn of(&self, request: &Request) -> Duration {
        let path = request.uri().path();
        // Creating an export reads and writes every attachment (twice
        // reading): as long as uploading them may take.
        let long = request.method() == axum::http::Method::POST
            && ((path.starts_with("/api/v1/companies/")
                && (path.ends_with("/files") || path.ends_with("/exports")))
                // The console's attachment upload and export.
                || (path.starts_with("/c/") && (path.ends_with("/files") || path.ends_with("/exports"))));
        if long {
            self.upload
        } else {
            self.request
        }
    }
}

/// Answers 408 (a problem document, by the safety net) when the handler
/// takes longer than its route may.
async fn time_limit(
    timeouts: Timeouts,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = timeouts.of(&request);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

fn with_middleware(
    mut router: Router<AppState>,
    timeouts: Timeouts,
    config: &ServerConfig,
    limiters: std::sync::Arc<crate::rate_limit::Limiters>,
) -> Router<AppState> {
    if let Some(rate) = config.connections.body_min_rate {
        router = router.layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                crate::body_rate::enforce(rate, request, next)
            },
        ));
    }
    let headers: [(HeaderName, &'static str); 6] = [
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    // Timeouts and extractor rejections become problem documents too, and
    // carry the security headers like every other response.
    let gate = std::sync::Arc::new(crate::expensive::ExpensiveGate::new(config.expensive));
    let trusted = std::sync::Arc::new(config.trusted_proxies.clone());
    let max_head = config.connections.max_header_bytes;
    let mut router = router
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                time_limit(timeouts, request, next)
            },
        ))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                crate::expensive::gate(gate.clone(), request, next)
            },
        ))
        .layer(axum::middleware::map_response(problem_safety_net))
        // Budgets are spent before anything else is done for a request.
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                crate::rate_limit::enforce(limiters.clone(), request, next)
            },
        ))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                crate::client_addr::assign(trusted.clone(), request, next)
            },
        ))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                crate::head_limit::enforce(max_head, request, next)
            },
        ));
    if let Some(cors) = crate::cors::layer(&config.cors_origins) {
        router = router.layer(cors);
    }
    for (name, value) in headers {
        // The console sets its own page policy and caches its assets.
        let own = name == header::CONTENT_SECURITY_POLICY || name == header::CACHE_CONTROL;
        router = router.layer(if own {
            SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
        } else {
            SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
        });
    }
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        // Outermost: the server names the request before anything else sees it.
        .layer(axum::middleware::from_fn(crate::request_id::assign))
}

/// One span per request: method, path (never the query, which may carry
/// search terms), the server's request id that audit events also carry and,
/// apart, the client's own id when it is acceptable (`crate::request_id`).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let ids = request.extensions().get::<crate::request_id::RequestIds>();
    let id = ids.map_or("-", |ids| ids.server.as_str());
    let path = loggable_path(request.uri().path());
    let span = tracing::info_span!("request", method = %request.method(), path = %path, request_id = %id, client_request_id = tracing::field::Empty);
    if let Some(client) = ids.and_then(|ids| ids.client.as_deref()) {
        span.record("client_request_id", client);
    }
    span
}

/// A request path as logs may show it: a segment that is one of our secrets
/// (an invitation token in `/api/v1/invitations/{token}/accept`, or a
/// session or API key pasted where an id goes) becomes `***`.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    const SECRET_PREFIXES: [&str; 5] = ["wbi_", "wbs_", "wbk_", "wbt_", "wbc_"];
    let secret = |segment: &str| SECRET_PREFIXES.iter().any(|p| segment.starts_with(p));
    if !path.split('/').any(secret) {
        return std::borrow::Cow::Borrowed(path);
    }
    let parts: Vec<&str> = path
        .split('/')
        .map(|segment| if secret(segment) { "***" } else { segment })
        .collect();
    std::borrow::Cow::Owned(parts.join("/"))
}

/// Turns any error response that is not yet a problem document (a rejection by
/// an extractor or a layer, e.g. an undecodable path segment or a timeout) into one.
async fn problem_safety_net(response: Response) -> Response {
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE);
    let is_problem =
        content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    // The console's error pages are HTML for a person.
    let is_page = content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem || is_page {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let is_text = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) if is_text => String::from_utf8_lossy(&bytes)
            .chars()
            .take(500)
            .collect::<String>(),
        _ => String::new(),
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = if text.trim().is_empty() {
        title.to_lowercase()
    } else {
        text
    };
    let slug = match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "too-many-requests",
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    };
    let problem = ApiError::new(status, slug, title, detail).into_response();
    let (problem_parts, problem_body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &problem_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, problem_body)
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn secrets_in_paths_never_reach_the_log() {
        assert_eq!(
            loggable_path("/api/v1/invitations/wbi_abcDEF123/accept"),
            "/api/v1/invitations/***/accept"
        );
        assert_eq!(
            loggable_path("/api/v1/companies/c1/api-keys/wbk_x"),
            "/api/v1/companies/c1/api-keys/***"
        );
        assert_eq!(
            loggable_path("/staff/companies/wbt_staffsession/entries"),
            "/staff/companies/***/entries"
        );
        assert_eq!(
            loggable_path("/api/v1/companies/c1/entries"),
            "/api/v1/companies/c1/entries"
        );
    }
}
