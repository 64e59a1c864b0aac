//! The object store backups go to, from its URL (`--object-store`,
//! `WORKBOOKS_OBJECT_STORE`, config key `object-store`):
//!
//! - absent: a local directory, `<data>/objects`;
//! - `file:///ABSOLUTE/PATH`: a local directory there;
//! - `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&timeout=10s&connect-timeout=5s&retries=3&virtual-hosted=false]`:
//!   an S3-compatible store. Credentials come from the standard environment
//!   variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   or the instance/container providers), never from the URL; the URL's
//!   options override the environment's `AWS_*` settings. The endpoint may be
//!   plain `http://` only when its host is a loopback address (a test or a
//!   sidecar on the same machine); anything else must be `https://`.
//!
//! Every part of an s3 URL is checked against a strict grammar before any
//! client is built, because object_store builds request URLs by pasting
//! them together (`https://s3.{region}.amazonaws.com/{bucket}`): a bucket
//! follows S3's bucket naming rules, a region is 1 to 32 lowercase letters,
//! digits and hyphens, a prefix is segments of S3's safe characters (no
//! `.` or `..` segment), and an endpoint is an http(s) URL without user,
//! query or fragment, kept in its normalised form so that every parser
//! downstream reads the same host.
//!
//! Building the store does not contact it: an unreachable store lets the
//! server start (writes go on, shipping retries and the lag alert fires),
//! while a malformed URL fails at start with one line.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

/// Per-request timeout of the S3 client unless the URL says otherwise: below
/// the shipper's lease (15 s), so a hung request ends before another node may
/// take the company's shipping over.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of one request; the shipper retries every round on top of these.
pub const DEFAULT_RETRIES: usize = 3;

const OPTIONS: &str = "endpoint, region, timeout, connect-timeout, retries, virtual-hosted";

/// A parsed object-store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreUrl {
    /// A local directory.
    Local(PathBuf),
    S3(S3Location),
}

/// Where and how to reach an S3-compatible store (no credentials in here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing slash).
    pub prefix: Option<String>,
    /// e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub retries: Option<usize>,
    pub virtual_hosted: Option<bool>,
}

impl std::fmt::Display for ObjectStoreUrl {
    /// A description safe to log (the URL never holds credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectStoreUrl::Local(dir) => write!(f, "file://{}", dir.display()),
            ObjectStoreUrl::S3(s3) => {
                write!(f, "s3://{}", s3.bucket)?;
                if let Some(prefix) = &s3.prefix {
                    write!(f, "/{prefix}")?;
                }
                if let Some(endpoint) = &s3.endpoint {
                    write!(f, " at {endpoint}")?;
                }
                Ok(())
            }
        }
    }
}

fn duration(key: &str, value: &str) -> anyhow::Result<Duration> {
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow!("option {key}: {value:?} is not a duration like 2s, 500ms or 1m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => bail!("option {key}: {value:?} is not a duration like 2s, 500ms or 1m"),
    };
    if d.is_zero() {
        bail!("option {key} must be more than 0");
    }
    Ok(d)
}

/// True when `host` names this machine only (127.0.0.0/8, ::1, localhost).
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

/// Longest key prefix accepted (S3 keys are at most 1,024 bytes).
pub const MAX_PREFIX_CHARS: usize = 512;

/// S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit, no two dots in a
/// row, not shaped like an IPv4 address, none of the reserved prefixes and
/// suffixes.
pub fn check_bucket(bucket: &str) -> anyhow::Result<()> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !bucket.contains("..")
        && bucket.parse::<std::net::Ipv4Addr>().is_err()
        && !["xn--", "sthree-", "amzn-s3-demo-"]
            .iter()
            .any(|p| bucket.starts_with(p))
        && !["-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"]
            .iter()
            .any(|x| bucket.ends_with(x));
    if !valid {
        bail!(
            "the bucket name must follow S3's naming rules: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
        );
    }
    Ok(())
}

/// A region: 1 to 32 lowercase letters, digits and hyphens, starting and
/// ending with a letter or digit (`eu-west-1`, `auto`, `nyc3`).
pub fn check_region(region: &str) -> anyhow::Result<()> {
    let valid = (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.starts_with(|c: char| c.is_ascii_alphanumeric())
        && region.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        bail!(
            "option region must be 1 to 32 lowercase letters, digits and hyphens, like eu-west-1"
        );
    }
    Ok(())
}

/// A key prefix (without its outer slashes): segments of S3's safe
/// characters (letters, digits, `!-_.*'()`), none empty, `.` or `..`.
pub fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
    let valid = prefix.len() <= MAX_PREFIX_CHARS
        && prefix
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.chars().all(safe));
    if !valid {
        bail!(
            "the key prefix must be at most {MAX_PREFIX_CHARS} characters of path segments made of letters, digits and !-_.*'() (no empty, . or .. segment)"
        );
    }
    Ok(())
}

/// Parses an S3 endpoint and returns it normalised (as `url` serialises it,
/// without a trailing slash): what the S3 client is given, so that it and
/// every check read the same host.
pub fn normalize_endpoint(endpoint: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| anyhow!("the endpoint {endpoint:?} is not a URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        bail!("the endpoint takes no query or fragment: https://HOST[:PORT][/PATH]");
    }
    check_endpoint(url.as_str())?;
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Checks an S3 endpoint; returns whether plain HTTP must be allowed for it.
pub fn check_endpoint(endpoint: &str) -> anyhow::Result<bool> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| anyhow!("the endpoint {endpoint:?} is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!("the endpoint must not carry credentials; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    }
    let Some(host) = url.host() else {
        bail!("the endpoint {endpoint:?} has no host");
    };
    match url.scheme() {
        "https" => Ok(false),
        "http" if is_loopback(&host) => Ok(true),
        "http" => bail!(
            "the endpoint {endpoint} is plain http to a host that is not loopback; use https (http is allowed only to 127.0.0.1, ::1 or localhost)"
        ),
        other => bail!("the endpoint's scheme must be https (or http to a loopback host), not {other:?}"),
    }
}

impl ObjectStoreUrl {
    pub fn parse(text: &str) -> anyhow::Result<ObjectStoreUrl> {
        let text = text.trim();
        let url = url::Url::parse(text).map_err(|e| {
            anyhow!(
                "not a URL ({e}); use file:///ABSOLUTE/PATH or s3://BUCKET[/PREFIX]?endpoint=..."
            )
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            bail!("the URL must not carry credentials; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
        }
        match url.scheme() {
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    bail!("a file URL needs an absolute path: file:///ABSOLUTE/PATH");
                }
                if url.query().is_some() {
                    bail!("a file URL takes no options");
                }
                let path = url
                    .to_file_path()
                    .map_err(|_| anyhow!("a file URL needs an absolute path: file:///ABSOLUTE/PATH"))?;
                Ok(ObjectStoreUrl::Local(path))
            }
            "s3" => {
                let bucket = url.host_str().unwrap_or("").to_string();
                if bucket.is_empty() {
                    bail!("the s3 URL names no bucket: s3://BUCKET[/PREFIX]");
                }
                check_bucket(&bucket)?;
                if url.port().is_some() || url.fragment().is_some() {
                    bail!("an s3 URL is s3://BUCKET[/PREFIX][?OPTIONS], without port or fragment");
                }
                let prefix = url.path().trim_matches('/');
                if !prefix.is_empty() {
                    check_prefix(prefix)?;
                }
                let mut s3 = S3Location {
                    bucket,
                    prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
                    endpoint: None,
                    region: None,
                    timeout: None,
                    connect_timeout: None,
                    retries: None,
                    virtual_hosted: None,
                };
                for (key, value) in url.query_pairs() {
                    let value = value.trim().to_string();
                    match key.replace('_', "-").as_str() {
                        "endpoint" => s3.endpoint = Some(normalize_endpoint(&value)?),
                        "region" if !value.is_empty() => {
                            check_region(&value)?;
                            s3.region = Some(value)
                        }
                        "timeout" => s3.timeout = Some(duration("timeout", &value)?),
                        "connect-timeout" => {
                            s3.connect_timeout = Some(duration("connect-timeout", &value)?)
                        }
                        "retries" => {
                            s3.retries = Some(value.parse().map_err(|_| {
                                anyhow!("option retries: {value:?} is not a number")
                            })?)
                        }
                        "virtual-hosted" => {
                            s3.virtual_hosted = Some(match value.as_str() {
                                "true" => true,
                                "false" => false,
                                _ => bail!("option virtual-hosted must be true or false"),
                            })
                        }
                        "access-key-id" | "secret-access-key" | "session-token" | "token" => {
                            bail!("credentials do not belong in the URL; use AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN")
                        }
                        other => bail!("unknown option {other:?} (known: {OPTIONS})"),
                    }
                }
                Ok(ObjectStoreUrl::S3(s3))
            }
            other => bail!(
                "unsupported scheme {other:?}; use file:///ABSOLUTE/PATH or s3://BUCKET[/PREFIX]?endpoint=..."
            ),
        }
    }
}

/// The endpoint the S3 client will use: the URL's, else the environment's.
fn effective_endpoint(s3: &S3Location) -> Option<String> {
    s3.endpoint.clone().or_else(|| {
        ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    })
}

fn open_s3(s3: &S3Location) -> anyhow::Result<Arc<dyn ObjectStore>> {
    build_s3(AmazonS3Builder::from_env(), s3, effective_endpoint(s3))
}

impl S3Location {
    /// Checks every part again (a location may be built without `parse`).
    fn check(&self) -> anyhow::Result<()> {
        check_bucket(&self.bucket)?;
        if let Some(region) = &self.region {
            check_region(region)?;
        }
        if let Some(prefix) = &self.prefix {
            check_prefix(prefix)?;
        }
        if let Some(endpoint) = &self.endpoint {
            normalize_endpoint(endpoint)?;
        }
        Ok(())
    }

    /// The URL requests go to, built here rather than left to object_store:
    /// the endpoint, else AWS's for the region (`us-east-1` when none), with
    /// the bucket in the host name when the location is virtual-hosted.
    pub fn request_endpoint(&self) -> anyhow::Result<url::Url> {
        self.check()?;
        let region = self.region.as_deref().unwrap_or("us-east-1");
        let text = match (&self.endpoint, self.virtual_hosted.unwrap_or(false)) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, true) => format!("https://{}.s3.{region}.amazonaws.com", self.bucket),
            (None, false) => format!("https://s3.{region}.amazonaws.com"),
        };
        url::Url::parse(&text).map_err(|e| anyhow!("the endpoint {text:?} is not a URL: {e}"))
    }

    /// A client of this location that uses these credentials and nothing
    /// from the environment (no `AWS_*` credentials, endpoint, proxy or
    /// settings): for a bucket the platform does not own, such as a
    /// customer's. Its requests go through `egress`'s guarded client
    /// (`crate::egress`): no internal address unless `egress` allows private
    /// endpoints, no redirects, no proxy.
    pub fn open_with_credentials(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        egress: &crate::egress::Egress,
    ) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let endpoint = self.request_endpoint()?;
        let allow_http = check_endpoint(endpoint.as_str())?;
        crate::egress::check_url(&endpoint, egress.allow_private(), allow_http)
            .map_err(|e| anyhow!("{e}"))?;
        let builder = AmazonS3Builder::new()
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key)
            .with_virtual_hosted_style_request(self.virtual_hosted.unwrap_or(false))
            .with_http_connector(egress.connector(
                allow_http,
                self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            ));
        let endpoint = endpoint.as_str().trim_end_matches('/').to_string();
        build_s3(builder, self, Some(endpoint))
    }
}

fn build_s3(
    mut builder: AmazonS3Builder,
    s3: &S3Location,
    endpoint: Option<String>,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    s3.check()?;
    // The S3 client's TLS uses the process-wide rustls provider (ring).
    crate::install_crypto_provider();
    builder = builder.with_bucket_name(&s3.bucket);
    let allow_http = match endpoint {
        Some(endpoint) => {
            let allow = check_endpoint(&endpoint)?;
            builder = builder.with_endpoint(endpoint);
            allow
        }
        None => false,
    };
    // AWS_ALLOW_HTTP from the environment never decides this.
    builder = builder.with_allow_http(allow_http);
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(virtual_hosted) = s3.virtual_hosted {
        builder = builder.with_virtual_hosted_style_request(virtual_hosted);
    }
    let options = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(s3.timeout.unwrap_or(DEFAULT_TIMEOUT))
        .with_connect_timeout(s3.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT));
    let retry = RetryConfig {
        max_retries: s3.retries.unwrap_or(DEFAULT_RETRIES),
        // No retry starts later than this after the first attempt, so a round
        // of the shipper ends and the next one measures and tries again.
        retry_timeout: s3.timeout.unwrap_or(DEFAULT_TIMEOUT),
        ..RetryConfig::default()
    };
    let store = builder
        .with_client_options(options)
        .with_retry(retry)
        .build()
        .map_err(|e| anyhow!("the S3 store {}: {e}", ObjectStoreUrl::S3(s3.clone())))?;
    Ok(match &s3.prefix {
        Some(prefix) => Arc::new(PrefixStore::new(store, prefix.as_str())),
        None => Arc::new(store),
    })
}

fn open_local(dir: &Path) -> anyhow::Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let store = LocalFileSystem::new_with_prefix(dir)
        .with_context(|| format!("opening object store {}", dir.display()))?;
    Ok(Arc::new(store))
}

impl ObjectStoreUrl {
    /// Builds the store (without contacting it).
    pub fn open(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        match self {
            ObjectStoreUrl::Local(dir) => open_local(dir),
            ObjectStoreUrl::S3(s3) => open_s3(s3),
        }
    }
}

/// The store named by `url`, or `<data>/objects` when there is none.
pub fn open(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match url.map(str::trim).filter(|u| !u.is_empty()) {
        None => open_local(&data_dir.join("objects")),
        Some(url) => ObjectStoreUrl::parse(url)
            .and_then(|parsed| parsed.open())
            .context("object store"),
    }
}

/// Deletes every object under `prefix` (a whole path segment); answers how
/// many objects and bytes went. What is already gone counts as nothing, so
/// a repeated call after a crash is harmless.
pub async fn delete_under(
    store: &dyn ObjectStore,
    prefix: &object_store::path::Path,
) -> anyhow::Result<(u64, u64)> {
    use futures_util::TryStreamExt;
    use object_store::ObjectStoreExt;
    let listed: Vec<_> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| anyhow!("listing {prefix}: {e}"))?;
    let (mut items, mut bytes) = (0, 0);
    for meta in listed {
        match store.delete(&meta.location).await {
            Ok(()) => {
                items += 1;
                bytes += meta.size;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => bail!("deleting {}: {e}", meta.location),
        }
    }
    Ok((items, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(text: &str) -> S3Location {
        match ObjectStoreUrl::parse(text).unwrap() {
            ObjectStoreUrl::S3(s3) => s3,
            other => panic!("{other:?}"),
        }
    }

    fn refused(text: &str) -> String {
        let err = ObjectStoreUrl::parse(text).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        err
    }

    #[test]
    fn file_urls_name_absolute_directories() {
        assert_eq!(
            ObjectStoreUrl::parse("file:///var/lib/wb/objects").unwrap(),
            ObjectStoreUrl::Local(PathBuf::from("/var/lib/wb/objects"))
        );
        assert!(refused("file://relative/objects").contains("absolute path"));
        assert!(refused("file:///x?timeout=2s").contains("no options"));
    }

    #[test]
    fn s3_urls_with_bucket_prefix_and_options() {
        let loc = s3(
            "s3://backups/eu/node-1/?endpoint=http://127.0.0.1:9000&region=us-east-1&timeout=2s&connect_timeout=500ms&retries=0",
        );
        assert_eq!(loc.bucket, "backups");
        assert_eq!(loc.prefix.as_deref(), Some("eu/node-1"));
        assert_eq!(loc.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(loc.region.as_deref(), Some("us-east-1"));
        assert_eq!(loc.timeout, Some(Duration::from_secs(2)));
        assert_eq!(loc.connect_timeout, Some(Duration::from_millis(500)));
        assert_eq!(loc.retries, Some(0));

        let plain = s3("s3://backups");
        assert_eq!((plain.prefix, plain.endpoint), (None, None));
        // Percent-encoded endpoints work too.
        let encoded = s3("s3://bkt?endpoint=https%3A%2F%2Fs3.example.com%2F");
        assert_eq!(encoded.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!(
            ObjectStoreUrl::S3(s3("s3://bkt/p?endpoint=https://s3.example.com")).to_string(),
            "s3://bkt/p at https://s3.example.com"
        );
    }

    #[test]
    fn bad_schemes_and_missing_buckets_are_refused() {
        assert!(refused("gs://bucket").contains("unsupported scheme"));
        assert!(refused("https://s3.example.com/bucket").contains("unsupported scheme"));
        assert!(refused("/var/lib/objects").contains("not a URL"));
        assert!(refused("s3://").contains("no bucket"));
        assert!(refused("s3:///prefix").contains("no bucket"));
        assert!(refused("s3://bkt?colour=blue").contains("unknown option"));
        assert!(refused("s3://bkt?timeout=soon").contains("timeout"));
        assert!(refused("s3://bkt?timeout=0s").contains("more than 0"));
        // The platform's own store follows the same grammar (issue 10).
        assert!(refused("s3://bkt?region=x%3A1").contains("region"));
        assert!(refused("s3://bkt?region=x%4010.0.0.5%3A22%2F").contains("region"));
        assert!(refused("s3://b").contains("bucket"));
        assert!(refused("s3://bkt/a%2F..").contains("prefix"));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:9000",
            "http://127.9.9.9",
            "http://[::1]:9000",
            "http://localhost:9000",
        ] {
            assert!(check_endpoint(ok).unwrap(), "{ok}");
        }
        assert!(!check_endpoint("https://s3.example.com").unwrap());
        for bad in [
            "http://10.0.0.5:9000",
            "http://s3.example.com",
            "http://localhost.example.com",
        ] {
            let err = check_endpoint(bad).unwrap_err().to_string();
            assert!(err.contains("not loopback"), "{bad}: {err}");
        }
        assert!(refused("s3://bkt?endpoint=http://192.168.1.2:9000").contains("use https"));
        assert!(refused("s3://bkt?endpoint=ftp://127.0.0.1").contains("scheme"));
    }

    #[test]
    fn credentials_never_come_from_the_url() {
        let err = refused("s3://AKIA:secret@bucket");
        assert!(err.contains("credentials"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(refused("s3://bkt?secret_access_key=x").contains("AWS_SECRET_ACCESS_KEY"));
        assert!(check_endpoint("https://k:s@s3.example.com")
            .unwrap_err()
            .to_string()
            .contains("credentials"));
    }

    #[test]
    fn absent_url_is_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        open(None, dir.path()).unwrap();
        assert!(dir.path().join("objects").is_dir());
        let there = dir.path().join("elsewhere");
        let url = format!("file://{}", there.display());
        open(Some(&url), dir.path()).unwrap();
        assert!(there.is_dir());
        let err = format!("{:#}", open(Some("s3://"), dir.path()).unwrap_err());
        assert!(err.starts_with("object store: "), "{err}");
    }
}
