//! Requests the server sends to hosts a customer names (the buckets of
//! scheduled export pushes, `crate::export_push`): they must not become a way
//! into the server's own machine or network (SSRF), and what comes back must
//! not become a port scanner's report.
//!
//! - [`is_internal`]: every address of the IANA IPv4 and IPv6
//!   special-purpose address registries (loopback, private, shared, link-local,
//!   documentation, benchmarking, reserved, multicast, IPv4-mapped and
//!   -compatible, NAT64, 6to4, Teredo, …), and any IPv6 address outside the
//!   global unicast block 2000::/3.
//! - [`GuardedConnector`]: the HTTP client of a customer's bucket. A host
//!   name is resolved when a connection is made ([`resolve`]) and refused if
//!   any of its addresses is internal: the addresses checked are the ones
//!   connected to, so a name that changes its answer (DNS rebinding) gains
//!   nothing. A literal IP host does not go through a resolver, so every
//!   request's URL is checked before it is sent ([`check_url`]). Redirects
//!   are never followed and no proxy is taken from the environment. The
//!   operator's `export_allow_private_endpoints` lifts the address check (for
//!   self-hosters and tests), nothing else.
//! - [`Egress::classify`]: a failed request as a coarse [`Failure`] fit to
//!   store and show the customer: never the remote body, nor an address or
//!   port the customer did not type.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use ipnet::IpNet;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::ClientOptions;
use reqwest_store as rq;

/// The IANA IPv4 special-purpose address registry (every entry, globally
/// reachable or not: none of them is a place for a customer's bucket), plus
/// multicast.
const SPECIAL_V4: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // shared address space (carrier-grade NAT)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local (cloud metadata services)
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments (DS-Lite, NAT64 discovery, …)
    "192.0.2.0/24",    // documentation (TEST-NET-1)
    "192.31.196.0/24", // AS112-v4
    "192.52.193.0/24", // AMT
    "192.88.99.0/24",  // deprecated 6to4 relay anycast
    "192.168.0.0/16",  // private
    "192.175.48.0/24", // direct delegation AS112
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation (TEST-NET-2)
    "203.0.113.0/24",  // documentation (TEST-NET-3)
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, and the limited broadcast address
];

/// The IANA IPv6 special-purpose address registry, and the other blocks that
/// embed or reach an IPv4 address (refused whole, whatever they embed).
const SPECIAL_V6: &[&str] = &[
    "::/96",             // unspecified, loopback, IPv4-compatible (deprecated)
    "::ffff:0:0/96",     // IPv4-mapped
    "::ffff:0:0:0/96",   // IPv4-translated (SIIT)
    "64:ff9b::/96",      // NAT64 well-known prefix
    "64:ff9b:1::/48",    // NAT64 local-use prefix
    "100::/63",          // discard-only, dummy prefix
    "2001::/23",         // IETF protocol assignments (Teredo 2001::/32, benchmarking, ORCHID, …)
    "2001:db8::/32",     // documentation
    "2002::/16",         // 6to4
    "2620:4f:8000::/48", // direct delegation AS112
    "3fff::/20",         // documentation
    "5f00::/16",         // SRv6 SIDs
    "fc00::/7",          // unique local
    "fe80::/10",         // link-local
    "fec0::/10",         // site-local (deprecated)
    "ff00::/8",          // multicast
];

static SPECIAL: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    SPECIAL_V4
        .iter()
        .chain(SPECIAL_V6)
        .filter_map(|net| net.parse().ok())
        .collect()
});

/// The only IPv6 block IANA allocates for global unicast.
static GLOBAL_UNICAST_V6: LazyLock<Option<IpNet>> = LazyLock::new(|| "2000::/3".parse().ok());

/// True for every address a customer-named host may not resolve to: this
/// machine, its networks, and everything special-purpose or unallocated.
pub fn is_internal(ip: IpAddr) -> bool {
    if SPECIAL.iter().any(|net| net.contains(&ip)) {
        return true;
    }
    match ip {
        IpAddr::V4(_) => false,
        IpAddr::V6(_) => !GLOBAL_UNICAST_V6
            .as_ref()
            .is_some_and(|global| global.contains(&ip)),
    }
}

/// Names that mean this machine whatever DNS says.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Why a request to a customer-named host was not sent. One line; it names
/// nothing but the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("refused: internal address")]
    Internal,
    #[error("refused: plain http")]
    PlainHttp,
    #[error("refused: not a valid URL")]
    InvalidUrl,
    #[error("the host name could not be resolved")]
    Unresolved,
}

/// Checks a URL a request is about to go to: https (or http when allowed),
/// and unless private endpoints are allowed, no internal literal address and
/// no name of this machine. Host names are checked again, by address, when
/// they are resolved.
pub fn check_url(url: &url::Url, allow_private: bool, allow_http: bool) -> Result<(), EgressError> {
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(EgressError::PlainHttp),
    }
    let internal = match url.host() {
        None => return Err(EgressError::InvalidUrl),
        Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => is_local_name(name),
    };
    if internal && !allow_private {
        return Err(EgressError::Internal);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EgressError::InvalidUrl);
    }
    Ok(())
}

/// Resolves `host` (port 0: the URL's port is used) and refuses it when any
/// of its addresses is internal, unless private endpoints are allowed.
pub async fn resolve(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, EgressError> {
    let looked_up = tokio::net::lookup_host((host, 0)).await;
    if is_local_name(host) && !allow_private {
        return Err(EgressError::Internal);
    }
    let addrs: Vec<SocketAddr> = looked_up.map_err(|_| EgressError::Unresolved)?.collect();
    if addrs.is_empty() {
        return Err(EgressError::Unresolved);
    }
    if !allow_private && addrs.iter().any(|a| is_internal(a.ip())) {
        return Err(EgressError::Internal);
    }
    Ok(addrs)
}

/// reqwest's resolver for customer-named hosts: [`resolve`].
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    allow_private: bool,
}

impl rq::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: rq::dns::Name) -> rq::dns::Resolving {
        let host = name.as_str().to_string();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = resolve(&host, allow_private).await?;
            Ok(Box::new(addrs.into_iter()) as rq::dns::Addrs)
        })
    }
}

/// An error and its causes. `std::io::Error::source` skips the error it
/// wraps (it returns that error's source), so a wrapped error is visited
/// through `get_ref`: a TLS error sits inside two of them.
fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => io.source(),
        },
        None => e.source(),
    })
}

/// What the requests of one client saw: the last status that was not a
/// success (0: none), so a failure can name its class.
#[derive(Debug, Default)]
struct Seen {
    last_failed_status: AtomicU16,
}

/// The egress policy of one destination and what its requests saw (one per
/// push; clones share what they saw).
#[derive(Debug, Clone, Default)]
pub struct Egress {
    allow_private: bool,
    seen: Arc<Seen>,
}

impl Egress {
    pub fn new(allow_private: bool) -> Egress {
        Egress {
            allow_private,
            seen: Arc::default(),
        }
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// The HTTP client factory for the object store of this destination.
    pub fn connector(
        &self,
        allow_http: bool,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> GuardedConnector {
        GuardedConnector {
            egress: self.clone(),
            allow_http,
            timeout,
            connect_timeout,
        }
    }

    fn saw(&self, status: rq::StatusCode) {
        if !status.is_success() {
            self.seen
                .last_failed_status
                .store(status.as_u16(), Ordering::Relaxed);
        }
    }

    fn last_failed_status(&self) -> Option<u16> {
        match self.seen.last_failed_status.load(Ordering::Relaxed) {
            0 => None,
            status => Some(status),
        }
    }

    /// The class of a failed operation on this destination's store.
    pub fn classify(&self, error: &(dyn StdError + 'static)) -> Failure {
        let mut transport = None;
        let mut status = None;
        for e in causes(error) {
            if let Some(refused) = e.downcast_ref::<EgressError>() {
                return match refused {
                    EgressError::Unresolved => Failure::Unresolved,
                    _ => Failure::Refused,
                };
            }
            if e.is::<rustls::Error>() {
                return Failure::Tls;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    transport.get_or_insert(HttpErrorKind::Timeout);
                }
            }
            if let Some(http) = e.downcast_ref::<HttpError>() {
                transport.get_or_insert(http.kind());
            }
            if let Some(store) = e.downcast_ref::<object_store::Error>() {
                status = status.or(match store {
                    object_store::Error::Unauthenticated { .. } => Some(401),
                    object_store::Error::PermissionDenied { .. } => Some(403),
                    object_store::Error::NotFound { .. } => Some(404),
                    object_store::Error::AlreadyExists { .. } => Some(409),
                    object_store::Error::Precondition { .. } => Some(412),
                    _ => None,
                });
            }
        }
        if let Some(code) = status {
            return Failure::Status(code);
        }
        match transport {
            Some(HttpErrorKind::Timeout) => Failure::Timeout,
            Some(HttpErrorKind::Connect) => Failure::Connect,
            Some(HttpErrorKind::Request | HttpErrorKind::Interrupted) => Failure::Interrupted,
            Some(_) => Failure::Other,
            None => match self.last_failed_status() {
                Some(code) => Failure::Status(code),
                None => Failure::Other,
            },
        }
    }
}

/// Why a request to a customer's destination failed, as the customer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The destination is (or resolves to) an internal address.
    Refused,
    Unresolved,
    Connect,
    Timeout,
    Tls,
    Interrupted,
    /// The destination answered this HTTP status.
    Status(u16),
    Other,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused => f.write_str(
                "refused: internal address (the destination is, or resolves to, a loopback, private, link-local or reserved address)",
            ),
            Failure::Unresolved => f.write_str("could not resolve the destination's host name"),
            Failure::Connect => f.write_str("could not connect"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Tls => f.write_str("TLS handshake failed"),
            Failure::Interrupted => f.write_str("the connection was interrupted"),
            Failure::Status(401) => f.write_str(
                "the destination did not accept the credentials (HTTP 401): check access_key_id and secret_access_key",
            ),
            Failure::Status(403) => f.write_str(
                "access denied by the destination (HTTP 403): check the key's permissions on the bucket",
            ),
            Failure::Status(404) => f.write_str(
                "the destination has no such bucket (HTTP 404): check the bucket, endpoint and region",
            ),
            Failure::Status(code @ 300..=399) => write!(
                f,
                "the destination answered with a redirect (HTTP {code}), which is not followed: check the endpoint and region"
            ),
            Failure::Status(code @ 400..=499) => {
                write!(f, "the destination refused the request (HTTP {code})")
            }
            Failure::Status(500..=599) => f.write_str("destination answered HTTP 5xx"),
            Failure::Status(code) => write!(f, "the destination answered HTTP {code}"),
            Failure::Other => f.write_str("the request failed"),
        }
    }
}

/// The object store's HTTP client factory for a customer-named destination
/// (see the module documentation). It takes nothing from the store's
/// `ClientOptions`: its timeouts are given here.
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    egress: Egress,
    allow_http: bool,
    timeout: Duration,
    connect_timeout: Duration,
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        // reqwest's TLS uses the process-wide rustls provider (ring).
        crate::install_crypto_provider();
        let client = rq::Client::builder()
            .user_agent(concat!(
                "workbooks/",
                env!("CARGO_PKG_VERSION"),
                " export-push"
            ))
            .redirect(rq::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(GuardedResolver {
                allow_private: self.egress.allow_private,
            })
            .https_only(!self.allow_http)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            // Compression would change the Content-Length object_store sets.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(GuardedService {
            client,
            egress: self.egress.clone(),
            allow_http: self.allow_http,
        }))
    }
}

#[derive(Debug)]
struct GuardedService {
    client: rq::Client,
    egress: Egress,
    allow_http: bool,
}

fn refused(e: EgressError) -> HttpError {
    // Not retried: it would be refused again.
    HttpError::new(HttpErrorKind::Unknown, e)
}

/// A transport error as object_store expects it (its kind decides retries),
/// without the URL.
fn transport_error(e: rq::Error) -> HttpError {
    let refused = causes(&e).any(|c| c.is::<EgressError>());
    if refused {
        return HttpError::new(HttpErrorKind::Unknown, e.without_url());
    }
    let io_kinds: Vec<std::io::ErrorKind> = causes(&e)
        .filter_map(|c| c.downcast_ref::<std::io::Error>().map(std::io::Error::kind))
        .collect();
    let io_kind = |kinds: &[std::io::ErrorKind]| io_kinds.iter().any(|k| kinds.contains(k));
    let kind = if e.is_timeout() || io_kind(&[std::io::ErrorKind::TimedOut]) {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else if io_kind(&[
        std::io::ErrorKind::ConnectionAborted,
        std::io::ErrorKind::ConnectionReset,
        std::io::ErrorKind::BrokenPipe,
        std::io::ErrorKind::UnexpectedEof,
    ]) {
        HttpErrorKind::Interrupted
    } else if e.is_request() || e.is_body() {
        HttpErrorKind::Request
    } else {
        HttpErrorKind::Unknown
    };
    HttpError::new(kind, e.without_url())
}

#[async_trait]
impl HttpService for GuardedService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        // Parsed fallibly (object_store's own client unwraps this), and the
        // URL checked is the URL sent.
        let url =
            rq::Url::parse(&parts.uri.to_string()).map_err(|_| refused(EgressError::InvalidUrl))?;
        check_url(&url, self.egress.allow_private, self.allow_http).map_err(refused)?;
        let mut outgoing = rq::Request::new(parts.method, url);
        *outgoing.headers_mut() = parts.headers;
        *outgoing.body_mut() = Some(match body.as_bytes() {
            Some(bytes) => rq::Body::from(bytes.clone()),
            None => rq::Body::wrap(body),
        });
        let response = self
            .client
            .execute(outgoing)
            .await
            .map_err(transport_error)?;
        self.egress.saw(response.status());
        let response: http::Response<rq::Body> = response.into();
        let (parts, body) = response.into_parts();
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::new(body.map_err(transport_error)),
        ))
    }
}

#[cfg(test)]
mod tests;
