//! The console's request guard: cross-site request checks and CSRF tokens
//! for every unsafe request, and the headers every page carries.
//!
//! A form carries the CSRF token in a hidden `_csrf` field (an `htmx`
//! request in the `X-CSRF-Token` header, an upload in the `_csrf` query
//! parameter); it must equal the `__Host-wb_csrf` cookie, which only this
//! origin can set. On top of that the browser must say the request comes
//! from this origin (`Sec-Fetch-Site: same-origin`, or a matching `Origin`).
//! A request that passes is marked [`CsrfChecked`], which is what lets
//! `auth::Authenticated` accept its session cookie.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{cookie, CSRF_COOKIE, CSRF_HEADER};

/// The largest urlencoded form the console reads (an entry of many lines).
pub const FORM_LIMIT_BYTES: usize = 256 * 1024;

/// What every console page is allowed to load and do.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Set on a request whose CSRF token and origin were checked.
#[derive(Debug, Clone, Copy)]
pub struct CsrfChecked;

/// The CSRF token the page's forms carry (the cookie's, or a new one this
/// response sets).
#[derive(Clone)]
pub struct CsrfToken(pub String);

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken(***)")
    }
}

/// The form fields of an urlencoded console request, read once here (they
/// may hold passphrases and codes: `Debug` shows only their names).
#[derive(Clone, Default)]
pub struct FormFields(pub Vec<(String, String)>);

impl std::fmt::Debug for FormFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// The most fields a console form may have (an entry of the ledger's
/// largest size, four fields a line, and the rest).
pub const MAX_FORM_FIELDS: usize = 4 * wb_core::ledger::MAX_POSTINGS + 64;

fn plausible_token(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    let mut response =
        (status, super::layout::bare_page("Request refused", message)).into_response();
    page_headers(response.headers_mut());
    response
}

/// Whether the browser says this request comes from a page of this origin.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    origin.strip_prefix("https://") == Some(host)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "_csrf")
        .map(|(_, v)| v.into_owned())
}

/// Constant-time comparison of two tokens (their length is not secret).
fn tokens_match(sent: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    sent.len() == expected.len() && bool::from(sent.as_bytes().ct_eq(expected.as_bytes()))
}

/// The headers of every console response (the API's are set around it, only
/// where a response has none of its own).
pub fn page_headers(headers: &mut HeaderMap) {
    // An attachment served on a console path keeps its stricter policy.
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(PAGE_CSP));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
}

pub async fn guard(request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let existing = cookie(&parts.headers, CSRF_COOKIE)
        .filter(|t| plausible_token(t))
        .map(str::to_string);
    let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut body = body;
    if unsafe_method {
        if !same_origin(&parts.headers) {
            return refuse(
                StatusCode::FORBIDDEN,
                "This form was sent from another site, so it was not accepted.",
            );
        }
        let Some(expected) = existing.clone() else {
            return refuse(
                StatusCode::FORBIDDEN,
                "Your browser did not send the form's security cookie. Reload the page and try again.",
            );
        };
        let mut sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if is_form(&parts.headers) {
            let bytes: Bytes = match axum::body::to_bytes(body, FORM_LIMIT_BYTES).await {
                Ok(bytes) => bytes,
                Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."),
            };
            let fields: Vec<(String, String)> = url::form_urlencoded::parse(&bytes)
                .take(MAX_FORM_FIELDS + 1)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if fields.len() > MAX_FORM_FIELDS {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The form has too many fields.",
                );
            }
            if sent.is_none() {
                sent = fields
                    .iter()
                    .find(|(k, _)| k == "_csrf")
                    .map(|(_, v)| v.clone());
            }
            parts.extensions.insert(FormFields(fields));
            body = Body::from(bytes);
        } else if is_multipart(&parts.headers) && sent.is_none() {
            sent = query_token(parts.uri.query());
        }
        match sent {
            Some(sent) if tokens_match(&sent, &expected) => {
                parts.extensions.insert(CsrfChecked);
            }
            _ => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "The form's security token did not match. Reload the page and try again.",
                )
            }
        }
    }
    let (token, fresh) = match existing {
        Some(token) => (token, false),
        None => (
            wb_crypto::new_token("csrf").token.expose().to_string(),
            true,
        ),
    };
    parts.extensions.insert(CsrfToken(token.clone()));
    let is_asset = parts.uri.path().starts_with("/assets/");
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if fresh && !is_asset {
        if let Ok(value) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={token}; Path=/; Secure; SameSite=Strict"
        )) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    page_headers(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_origin_may_send_unsafe_requests() {
        let mut h = HeaderMap::new();
        assert!(!same_origin(&h), "no evidence is a refusal");
        h.insert(header::HOST, HeaderValue::from_static("books.example"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://books.example"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h), "Sec-Fetch-Site decides when present");
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_origin(&h), "a sibling subdomain is another origin");
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_match(
            "csrf_abcdefghijklmnop",
            "csrf_abcdefghijklmnop"
        ));
        assert!(!tokens_match(
            "csrf_abcdefghijklmnoq",
            "csrf_abcdefghijklmnop"
        ));
        assert!(!tokens_match("csrf_abc", "csrf_abcdefghijklmnop"));
        assert!(!plausible_token("short"));
        assert!(!plausible_token("csrf_has space in it!!"));
    }
}
