//! Who the client is: the socket's peer address, unless the peer is one of
//! the operator's trusted proxies, in which case the address that proxy
//! says it received the request from (`X-Forwarded-For`, read from the
//! right, skipping further trusted proxies). A header from anyone else is
//! ignored, so a client cannot choose its own address for allowlists, rate
//! limits and audit.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The client address of a request, as resolved here (an extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The most hops read from it, from the right (what a client put on the
/// left is never needed: the walk stops at the first untrusted hop).
const MAX_HOPS: usize = 16;

/// The client of a request from `peer` with `forwarded` (every
/// `X-Forwarded-For` value, in order). Pure: see the module documentation.
pub fn resolve(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    // Only the rightmost hops are read: a long or strange left part (the
    // client's own) must not make the request count as the proxy's.
    let hops: Vec<&str> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let Ok(address) = hop.parse::<IpAddr>() else {
            // Not an address (a name, "unknown", a port): what is left of
            // the chain cannot be trusted; the last trusted hop's peer is
            // the client.
            return client;
        };
        client = canonical(address);
        if !is_trusted(client, trusted) {
            return client;
        }
    }
    client
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&address))
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) as the IPv4 address they
/// are, so allowlists and budgets see one address, not two spellings.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Every `X-Forwarded-For` value; bytes that are not text become U+FFFD,
/// so a client's non-ASCII junk spoils only its own hop.
fn forwarded_values(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Middleware: resolves the client address once, for everything after it.
pub async fn assign(
    trusted: std::sync::Arc<Vec<IpNet>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(peer) = peer {
        let values = forwarded_values(request.headers());
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let client = resolve(peer, &values, &trusted);
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        assert_eq!(
            resolve(ip("198.51.100.7"), &["203.0.113.9"], &[]),
            ip("198.51.100.7")
        );
        let proxies = nets(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(ip("198.51.100.7"), &["203.0.113.9"], &proxies),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_spoofed_hops_stay_left() {
        let proxies = nets(&["10.0.0.0/8"]);
        // The client claimed 1.2.3.4; the proxy appended the real peer.
        assert_eq!(
            resolve(ip("10.0.0.5"), &["1.2.3.4, 203.0.113.9"], &proxies),
            ip("203.0.113.9")
        );
        // Two trusted proxies in a row; several header lines.
        assert_eq!(
            resolve(ip("10.0.0.5"), &["203.0.113.9", "10.0.0.6"], &proxies),
            ip("203.0.113.9")
        );
        // Garbage in the chain: the last trusted hop's peer.
        assert_eq!(
            resolve(ip("10.0.0.5"), &["203.0.113.9, unknown"], &proxies),
            ip("10.0.0.5")
        );
        // No header: the proxy itself.
        assert_eq!(resolve(ip("10.0.0.5"), &[], &proxies), ip("10.0.0.5"));
        // Mapped addresses are one address.
        assert_eq!(
            resolve(ip("::ffff:10.0.0.5"), &["::ffff:203.0.113.9"], &proxies),
            ip("203.0.113.9")
        );
        // A long or strange left part (the client's) does not matter: the
        // proxy's own hop on the right names the client.
        let mut long = vec!["6.6.6.6"; 100];
        long.push("203.0.113.9");
        assert_eq!(resolve(ip("10.0.0.5"), &long, &proxies), ip("203.0.113.9"));
        let junk = "x".repeat(5000) + ", 203.0.113.9";
        assert_eq!(
            resolve(ip("10.0.0.5"), &[junk.as_str()], &proxies),
            ip("203.0.113.9")
        );
    }

    proptest! {
        /// Whatever a client sends, an untrusted peer is its own address.
        #[test]
        fn clients_cannot_choose_their_address(
            peer in any::<[u8; 4]>(),
            header in "[0-9a-f.:, ]{0,80}",
        ) {
            let peer = IpAddr::from(peer);
            let proxies = nets(&["10.0.0.0/8"]);
            let resolved = resolve(peer, &[header.as_str()], &proxies);
            if !proxies[0].contains(&peer) {
                prop_assert_eq!(resolved, peer);
            }
        }
    }
}
