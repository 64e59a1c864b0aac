//! The console's static files, embedded at build time: our stylesheet and
//! script, and htmx (vendored: `assets/vendor/`, pinned by
//! `MANIFEST.sha256`). Each is served at `/assets/{hash}/{name}`, where the
//! hash is of its bytes, so a browser may keep it for a year and a new build
//! is never served stale. Nothing is fetched at build or run time.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

pub const ASSETS: [Asset; 3] = [
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/console.js"),
    },
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/htmx.min.js"),
    },
];

/// The vendored files' pinned digests (`sha256sum` format).
pub const VENDOR_MANIFEST: &str = include_str!("../../assets/vendor/MANIFEST.sha256");

static HASHES: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| hex::encode(&Sha256::digest(a.bytes)[..8]))
        .collect()
});

/// Where a page links an asset (its content hash in the path).
pub fn url(name: &str) -> String {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => format!("/assets/{}/{}", HASHES[i], name),
        None => format!("/assets/missing/{name}"),
    }
}

pub async fn serve(Path((hash, name)): Path<(String, String)>) -> Response {
    let found = ASSETS
        .iter()
        .enumerate()
        .find(|(i, a)| a.name == name && HASHES[*i] == hash);
    let Some((_, asset)) = found else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_files_match_their_pinned_digests() {
        let pinned: Vec<(&str, &str)> = VENDOR_MANIFEST
            .lines()
            .filter_map(|l| l.split_once("  "))
            .collect();
        let htmx = pinned
            .iter()
            .find(|(_, name)| *name == "htmx.min.js")
            .expect("htmx.min.js is in the manifest");
        let embedded = ASSETS.iter().find(|a| a.name == "htmx.min.js").unwrap();
        assert_eq!(hex::encode(Sha256::digest(embedded.bytes)), htmx.0);
    }

    #[test]
    fn urls_carry_the_content_hash() {
        let u = url("console.css");
        assert!(u.starts_with("/assets/") && u.ends_with("/console.css"));
        assert_eq!(u.len(), "/assets/".len() + 16 + "/console.css".len());
    }

    #[test]
    fn our_scripts_never_use_eval_or_inline_handlers() {
        let js = std::str::from_utf8(ASSETS[1].bytes).unwrap();
        for banned in [
            "eval(",
            "new Function",
            "innerHTML",
            "setTimeout(\"",
            "document.write",
        ] {
            assert!(!js.contains(banned), "console.js uses {banned}");
        }
    }
}
