//! Cross-origin requests: off unless the operator names origins
//! (`cors-origins`). A named origin may call the API with a bearer token
//! (a session token or an API key) from a browser; cookies are never
//! allowed cross-origin, so the console's cookie session stays same-site
//! (and CSRF-checked).

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Whether `origin` is an origin a browser sends: `https://host[:port]`
/// (or `http://` for loopback development), nothing after the authority.
pub fn valid_origin(origin: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    scheme_ok
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && (url.path() == "/" || url.path().is_empty())
        && !origin.ends_with('/')
}

/// The CORS layer for `origins`, or None when there are none.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let values: Vec<HeaderValue> = origins
        .iter()
        .filter(|o| valid_origin(o))
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_origins_are_accepted() {
        assert!(valid_origin("https://books.example.com"));
        assert!(valid_origin("https://books.example.com:8443"));
        assert!(valid_origin("http://localhost:5173"));
        for bad in [
            "http://books.example.com",
            "https://books.example.com/",
            "https://books.example.com/app",
            "https://user@books.example.com",
            "*",
            "null",
            "books.example.com",
            "https://books.example.com?x=1",
        ] {
            assert!(!valid_origin(bad), "{bad}");
        }
        assert!(layer(&[]).is_none());
        assert!(layer(&["*".into()]).is_none());
        assert!(layer(&["https://books.example.com".into()]).is_some());
    }
}
