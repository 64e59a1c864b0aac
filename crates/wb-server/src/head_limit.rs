//! The request head limit: the request line and headers together may not
//! exceed `ConnectionLimits::max_header_bytes` (431 beyond). hyper bounds
//! the bytes it buffers for a head, but a head that arrives in one read
//! can pass that bound whole; this check makes the limit exact.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::ApiError;

/// The bytes of a request head as sent on HTTP/1.1 (request line, each
/// header line and its CRLF).
pub fn head_bytes(request: &Request) -> usize {
    let line = request.method().as_str().len()
        + request.uri().to_string().len()
        + " HTTP/1.1\r\n".len()
        + 1;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

pub async fn enforce(max: usize, request: Request, next: Next) -> Response {
    if head_bytes(&request) > max {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            format!("the request line and headers may take at most {max} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_line_and_every_header() {
        let small = Request::builder()
            .uri("/api/v1/me")
            .header("a", "b")
            .body(axum::body::Body::empty())
            .unwrap();
        let n = head_bytes(&small);
        let bigger = Request::builder()
            .uri("/api/v1/me")
            .header("a", "b")
            .header("x-padding", "y".repeat(1000))
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(head_bytes(&bigger), n + "x-padding: ".len() + 1000 + 2);
    }
}
