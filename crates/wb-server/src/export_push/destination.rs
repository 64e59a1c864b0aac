//! Where a company's scheduled exports go: a bucket the customer names
//! (`s3://BUCKET[/PREFIX]?endpoint=https://…&region=…`, parsed by the same
//! rules as the platform's own object store, `crate::objects`) or, when the
//! operator opted in, a directory on the server (`file:///…`).
//!
//! A customer-named destination makes the server send requests where the
//! customer says, so by default it may not point at the server's own
//! machine or network: endpoints on loopback, private, link-local or
//! unspecified addresses (and `localhost`) are refused unless the operator
//! allows them (`ServerConfig::export_allow_private_endpoints`, for
//! self-hosters and tests), and `file://` destinations are refused unless
//! they lie under `ServerConfig::export_file_root`. Host names are not
//! resolved here: a public name that resolves to a private address is not
//! caught (the operator's egress firewall is the control for that).

use std::net::IpAddr;
use std::path::{Component, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use time::OffsetDateTime;

use super::Credentials;
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

/// What the operator lets customers name as a destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// `file:///…` destinations must lie under this directory; None refuses them.
    pub file_root: Option<PathBuf>,
    /// Allow S3 endpoints on loopback, private and link-local addresses.
    pub allow_private_endpoints: bool,
}

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

/// True for addresses of this machine or its private network.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT (shared address space)
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

fn internal_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => is_internal(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => is_internal(IpAddr::V6(*ip)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

fn check_s3(s3: &S3Location, policy: &DestinationPolicy) -> Result<(), DestinationError> {
    if let Some(endpoint) = &s3.endpoint {
        let url = url::Url::parse(endpoint)
            .map_err(|e| refuse(format!("the endpoint is not a URL: {e}")))?;
        let host = url
            .host()
            .ok_or_else(|| refuse("the endpoint has no host"))?;
        if internal_host(&host) && !policy.allow_private_endpoints {
            return Err(refuse(format!(
                "the endpoint {endpoint} is on a loopback, private or link-local address; \
                 name a bucket reachable over the internet with https"
            )));
        }
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

    /// A client of the destination (not contacted yet).
    pub fn open(&self, credentials: Option<&Credentials>) -> anyhow::Result<Arc<dyn ObjectStore>> {
        match (self, credentials) {
            (Destination::S3(s3), Some(c)) => {
                s3.open_with_credentials(c.access_key_id.expose(), c.secret_access_key.expose())
            }
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
            "s3://b?endpoint=http://127.0.0.1:9000",
            "s3://b?endpoint=https://localhost:9000",
            "s3://b?endpoint=https://10.1.2.3",
            "s3://b?endpoint=https://192.168.0.10",
            "s3://b?endpoint=https://169.254.169.254",
            "s3://b?endpoint=https://[::1]:9000",
            "s3://b?endpoint=https://[fd00::1]",
            "s3://b?endpoint=https://[::ffff:10.0.0.1]",
            "s3://b?endpoint=https://100.64.0.1",
        ] {
            let why = refused(url, &strict());
            assert!(
                why.contains("loopback, private or link-local"),
                "{url}: {why}"
            );
        }
        let open = DestinationPolicy {
            allow_private_endpoints: true,
            ..strict()
        };
        assert!(Destination::parse("s3://b?endpoint=http://127.0.0.1:9000", &open).is_ok());
        // Plain http stays refused off loopback, whatever the policy.
        assert!(refused("s3://b?endpoint=http://10.1.2.3", &open).contains("https"));
    }

    #[test]
    fn credentials_in_the_url_and_bad_urls_are_refused() {
        let why = refused("s3://AKIAEXAMPLE:s3cr3t@bucket", &strict());
        assert!(why.contains("access_key_id"), "{why}");
        assert!(!why.contains("s3cr3t"), "{why}");
        assert!(refused("s3://b?secret_access_key=s3cr3t", &strict()).contains("access_key_id"));
        assert!(refused("ftp://b", &strict()).contains("unsupported scheme"));
        assert!(refused("", &strict()).contains("required"));
        assert!(refused("s3://b?timeout=30m", &strict()).contains("at most 20m"));
        let Destination::S3(s3) = Destination::parse("s3://b", &strict()).unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s3.timeout, Some(DEFAULT_TIMEOUT));
        assert!(refused("s3://b?retries=50", &strict()).contains("at most 5"));
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
