//! Where a company's scheduled exports go: a bucket the customer names
//! (`s3://BUCKET[/PREFIX]?endpoint=https://…&region=…`, parsed by the same
//! rules as the platform's own object store, `crate::objects`) or, when the
//! operator opted in, a directory on the server (`file:///…`).
//!
//! A customer-named destination makes the server send requests where the
//! customer says, so by default it may not point at the server's own
//! machine or network. Every part of the URL follows a strict grammar
//! (`crate::objects`: bucket, region, prefix, endpoint); the URL requests
//! will go to is built here and its host checked: a literal internal address
//! (`crate::egress::is_internal`: loopback, private, link-local, reserved,
//! …) or `localhost` is refused unless the operator allows private endpoints
//! (`ServerConfig::export_allow_private_endpoints`, for self-hosters and
//! tests). Host names are resolved, and their addresses checked, when a push
//! connects (`crate::egress`), so a name that resolves to an internal
//! address is refused then, as are redirects. `file://` destinations are
//! refused unless they lie under `ServerConfig::export_file_root`.

use std::path::{Component, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use time::OffsetDateTime;

use super::Credentials;
use crate::egress::Egress;
use crate::objects::{ObjectStoreUrl, S3Location};

/// Longest destination URL accepted.
pub const MAX_URL_CHARS: usize = 2048;
/// Per-request timeout of a push unless the URL sets one: an export is one
/// PUT, so this bounds how large an export a slow link can take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Bounds on the S3 client options a customer may set, so one destination
/// cannot hold a pusher slot for long (and an attempt, retries included,
/// ends before its claim does: `push::CLAIM_FOR`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(20 * 60);
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_RETRIES: usize = 5;

pub use crate::policy::DestinationPolicy;

/// Why a destination is refused: one line, no secrets (the URL holds none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DestinationError(pub String);

fn refuse(why: impl Into<String>) -> DestinationError {
    DestinationError(why.into())
}

/// A validated destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    S3(S3Location),
    /// A directory on this server (operator opt-in).
    File(PathBuf),
}

impl std::fmt::Display for Destination {
    /// Safe to log and audit.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::S3(s3) => ObjectStoreUrl::S3(s3.clone()).fmt(f),
            Destination::File(dir) => ObjectStoreUrl::Local(dir.clone()).fmt(f),
        }
    }
}

fn check_s3(s3: &S3Location, policy: &DestinationPolicy) -> Result<(), DestinationError> {
    let url = s3.request_endpoint().map_err(|e| refuse(e.to_string()))?;
    let allow_http =
        crate::objects::check_endpoint(url.as_str()).map_err(|e| refuse(e.to_string()))?;
    match crate::egress::check_url(&url, policy.allow_private_endpoints, allow_http) {
        Ok(()) => {}
        Err(crate::egress::EgressError::Internal) => {
            return Err(refuse(format!(
                "the endpoint {} is on a loopback, private, link-local or reserved address; \
                 name a bucket reachable over the internet with https",
                url.as_str().trim_end_matches('/')
            )))
        }
        Err(e) => return Err(refuse(format!("the endpoint is refused: {e}"))),
    }
    if s3.timeout.is_some_and(|t| t > MAX_TIMEOUT) {
        return Err(refuse("option timeout may be at most 20m"));
    }
    if s3.connect_timeout.is_some_and(|t| t > MAX_CONNECT_TIMEOUT) {
        return Err(refuse("option connect-timeout may be at most 30s"));
    }
    if s3.retries.is_some_and(|r| r > MAX_RETRIES) {
        return Err(refuse(format!(
            "option retries may be at most {MAX_RETRIES}"
        )));
    }
    Ok(())
}

fn check_file(dir: &std::path::Path, policy: &DestinationPolicy) -> Result<(), DestinationError> {
    let Some(root) = &policy.file_root else {
        return Err(refuse(
            "file:// destinations are not enabled on this server; name an s3:// bucket",
        ));
    };
    let plain = dir
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain || !dir.starts_with(root) || dir == root.as_path() {
        return Err(refuse(
            "a file:// destination must be a directory inside the one the operator allows for exports",
        ));
    }
    Ok(())
}

impl Destination {
    /// Parses and checks a destination URL under the operator's policy.
    pub fn parse(text: &str, policy: &DestinationPolicy) -> Result<Destination, DestinationError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(refuse(
                "destination is required: s3://BUCKET[/PREFIX]?endpoint=https://…&region=…",
            ));
        }
        if text.chars().count() > MAX_URL_CHARS || text.chars().any(char::is_control) {
            return Err(refuse(format!(
                "destination must be a URL of at most {MAX_URL_CHARS} printable characters"
            )));
        }
        // Credentials travel in their own fields, sealed; never in the URL
        // (which is stored, shown and audited as it is).
        if let Ok(url) = url::Url::parse(text) {
            let in_query = url.query_pairs().any(|(k, _)| {
                matches!(
                    k.replace('_', "-").as_str(),
                    "access-key-id" | "secret-access-key" | "session-token" | "token"
                )
            });
            if !url.username().is_empty() || url.password().is_some() || in_query {
                return Err(refuse(
                    "credentials do not belong in the destination URL; give access_key_id and secret_access_key",
                ));
            }
        }
        match ObjectStoreUrl::parse(text).map_err(|e| refuse(e.to_string()))? {
            ObjectStoreUrl::S3(mut s3) => {
                check_s3(&s3, policy)?;
                s3.timeout.get_or_insert(DEFAULT_TIMEOUT);
                Ok(Destination::S3(s3))
            }
            ObjectStoreUrl::Local(dir) => {
                check_file(&dir, policy)?;
                Ok(Destination::File(dir))
            }
        }
    }

    /// S3 destinations need an access key; directories need none.
    pub fn needs_credentials(&self) -> bool {
        matches!(self, Destination::S3(_))
    }

    /// A client of the destination (not contacted yet), its requests guarded
    /// by `egress` (`crate::egress`).
    pub fn open(
        &self,
        credentials: Option<&Credentials>,
        egress: &Egress,
    ) -> anyhow::Result<Arc<dyn ObjectStore>> {
        match (self, credentials) {
            (Destination::S3(s3), Some(c)) => s3.open_with_credentials(
                c.access_key_id.expose(),
                c.secret_access_key.expose(),
                egress,
            ),
            (Destination::S3(_), None) => anyhow::bail!("the destination needs credentials"),
            (Destination::File(dir), _) => ObjectStoreUrl::Local(dir.clone()).open(),
        }
    }

    /// How an object of this destination is named to the customer.
    pub fn describe(&self, object: &ObjectPath) -> String {
        match self {
            Destination::S3(s3) => match &s3.prefix {
                Some(prefix) => format!("s3://{}/{prefix}/{object}", s3.bucket),
                None => format!("s3://{}/{object}", s3.bucket),
            },
            Destination::File(dir) => format!("file://{}/{object}", dir.display()),
        }
    }
}

/// `workbooks-{company}-{YYYYMMDDTHHMMSSZ}`: the name of one push's export
/// (`.age`) and its sidecar (`.json`), under the destination's prefix.
pub fn object_names(company_id: &str, at: OffsetDateTime) -> (ObjectPath, ObjectPath) {
    let at = at.to_offset(time::UtcOffset::UTC);
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let base = format!("workbooks-{company_id}-{stamp}");
    (
        ObjectPath::from(format!("{base}.age")),
        ObjectPath::from(format!("{base}.json")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> DestinationPolicy {
        DestinationPolicy::default()
    }

    fn refused(text: &str, policy: &DestinationPolicy) -> String {
        Destination::parse(text, policy).unwrap_err().to_string()
    }

    #[test]
    fn public_https_buckets_are_accepted() {
        let d = Destination::parse(
            "s3://acme-backups/workbooks?endpoint=https://s3.eu-central-1.amazonaws.com&region=eu-central-1",
            &strict(),
        )
        .unwrap();
        assert!(d.needs_credentials());
        assert_eq!(
            d.to_string(),
            "s3://acme-backups/workbooks at https://s3.eu-central-1.amazonaws.com"
        );
        assert!(Destination::parse("s3://acme-backups", &strict()).is_ok());
    }

    #[test]
    fn internal_endpoints_need_the_operator_opt_in() {
        for url in [
            "s3://bkt?endpoint=http://127.0.0.1:9000",
            "s3://bkt?endpoint=https://localhost:9000",
            "s3://bkt?endpoint=https://LocalHost.:9000",
            "s3://bkt?endpoint=https://10.1.2.3",
            "s3://bkt?endpoint=https://192.168.0.10",
            "s3://bkt?endpoint=https://169.254.169.254",
            "s3://bkt?endpoint=https://[::1]:9000",
            "s3://bkt?endpoint=https://[fd00::1]",
            "s3://bkt?endpoint=https://[::ffff:10.0.0.1]",
            "s3://bkt?endpoint=https://100.64.0.1",
            "s3://bkt?endpoint=https://0.0.0.0",
            "s3://bkt?endpoint=https://198.18.0.1",
            "s3://bkt?endpoint=https://[64:ff9b::a00:5]",
            "s3://bkt?endpoint=https://[2002:a00:5::1]",
            "s3://bkt?endpoint=https://[::10.0.0.5]",
            "s3://bkt?endpoint=https://0x7f.1",
        ] {
            let why = refused(url, &strict());
            assert!(
                why.contains("loopback, private, link-local or reserved"),
                "{url}: {why}"
            );
        }
        let open = DestinationPolicy {
            allow_private_endpoints: true,
            ..strict()
        };
        assert!(Destination::parse("s3://bkt?endpoint=http://127.0.0.1:9000", &open).is_ok());
        // Plain http stays refused off loopback, whatever the policy.
        assert!(refused("s3://bkt?endpoint=http://10.1.2.3", &open).contains("https"));
    }

    /// Issue 10: object_store pastes the region into a URL, so a region
    /// holding `@`, `:` or `/` moved the request to any host and port, or
    /// made object_store panic. Every part now follows a grammar.
    #[test]
    fn url_parts_outside_their_grammar_are_refused() {
        for (url, why) in [
            ("s3://bkt?region=x%4010.0.0.5%3A22%2F", "region"),
            ("s3://bkt?region=x%3A1", "region"),
            ("s3://bkt?region=x@10.0.0.5:22/", "region"),
            ("s3://bkt?region=eu-west-1.evil.example%23", "region"),
            ("s3://bkt?region=EU-WEST-1", "region"),
            ("s3://bkt?region=-eu", "region"),
            (
                "s3://bkt?region=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "region",
            ),
            ("s3://b", "bucket"),
            ("s3://Bucket", "bucket"),
            ("s3://bkt%40evil", "bucket"),
            ("s3://bkt_under", "bucket"),
            ("s3://a..b", "bucket"),
            ("s3://-bkt", "bucket"),
            ("s3://10.0.0.5", "bucket"),
            ("s3://xn--bkt", "bucket"),
            ("s3://bkt:22", "port"),
            ("s3://bkt/a%2F..%2Fb", "prefix"),
            ("s3://bkt/a//b", "prefix"),
            ("s3://bkt/a%40b", "prefix"),
            ("s3://bkt/a%0Ab", "prefix"),
            ("s3://bkt?endpoint=https://s3.example.com?x=1", "query"),
            ("s3://bkt?endpoint=https://s3.example.com%23frag", "query"),
        ] {
            let text = refused(url, &strict());
            assert!(text.contains(why), "{url}: {text}");
        }
        // Normal names are fine, and the endpoint is kept normalised (what
        // the S3 client gets is what was checked).
        let Destination::S3(s3) = Destination::parse(
            "s3://acme.backups-2/eu/node_1/(daily)?endpoint=HTTPS://S3.Example.COM:443/&region=auto",
            &strict(),
        )
        .unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s3.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!(s3.prefix.as_deref(), Some("eu/node_1/(daily)"));
        assert_eq!(
            s3.request_endpoint().unwrap().as_str(),
            "https://s3.example.com/"
        );
        // Dot segments, even encoded, are resolved by the URL parser before
        // the prefix is read: nothing climbs out of the bucket.
        let Destination::S3(s3) = Destination::parse("s3://bkt/a/%2e%2e/b", &strict()).unwrap()
        else {
            panic!("not s3")
        };
        assert_eq!(s3.prefix.as_deref(), Some("b"));
    }

    #[test]
    fn the_request_endpoint_is_built_here() {
        let s3 = |text: &str| match Destination::parse(text, &strict()).unwrap() {
            Destination::S3(s3) => s3.request_endpoint().unwrap().to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(s3("s3://bkt"), "https://s3.us-east-1.amazonaws.com/");
        assert_eq!(
            s3("s3://bkt?region=eu-west-1"),
            "https://s3.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            s3("s3://bkt.eu?region=eu-west-1&virtual-hosted=true"),
            "https://bkt.eu.s3.eu-west-1.amazonaws.com/"
        );
        // A location built without `parse` is checked again.
        let forged = S3Location {
            bucket: "bkt".into(),
            prefix: None,
            endpoint: None,
            region: Some("x:1".into()),
            timeout: None,
            connect_timeout: None,
            retries: None,
            virtual_hosted: None,
        };
        assert!(forged.request_endpoint().is_err());
        let err = forged
            .open_with_credentials("k", "s", &Egress::new(true))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("region"), "{err}");
    }

    #[test]
    fn credentials_in_the_url_and_bad_urls_are_refused() {
        let why = refused("s3://AKIAEXAMPLE:s3cr3t@bucket", &strict());
        assert!(why.contains("access_key_id"), "{why}");
        assert!(!why.contains("s3cr3t"), "{why}");
        assert!(refused("s3://bkt?secret_access_key=s3cr3t", &strict()).contains("access_key_id"));
        assert!(refused("ftp://bkt", &strict()).contains("unsupported scheme"));
        assert!(refused("", &strict()).contains("required"));
        assert!(refused("s3://bkt?timeout=30m", &strict()).contains("at most 20m"));
        let Destination::S3(s3) = Destination::parse("s3://bkt", &strict()).unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s3.timeout, Some(DEFAULT_TIMEOUT));
        assert!(refused("s3://bkt?retries=50", &strict()).contains("at most 5"));
    }

    #[test]
    fn file_destinations_only_under_the_allowed_root() {
        assert!(refused("file:///srv/exports/acme", &strict()).contains("not enabled"));
        let policy = DestinationPolicy {
            file_root: Some(PathBuf::from("/srv/exports")),
            ..strict()
        };
        let d = Destination::parse("file:///srv/exports/acme", &policy).unwrap();
        assert_eq!(d, Destination::File(PathBuf::from("/srv/exports/acme")));
        assert!(!d.needs_credentials());
        for bad in [
            "file:///etc",
            "file:///srv/exports",
            "file:///srv/exports-other/x",
            "file:///srv/exports/../../etc",
        ] {
            assert!(refused(bad, &policy).contains("inside"), "{bad}");
        }
    }

    #[test]
    fn objects_are_named_by_company_and_time() {
        let at = time::macros::datetime!(2026-03-04 05:06:07.89 UTC);
        let (age, json) = object_names("c1", at);
        assert_eq!(age.as_ref(), "workbooks-c1-20260304T050607Z.age");
        assert_eq!(json.as_ref(), "workbooks-c1-20260304T050607Z.json");
    }
}
