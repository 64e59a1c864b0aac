//! Tests of the guarded egress client.
use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn every_registry_entry_parses() {
    assert_eq!(SPECIAL.len(), SPECIAL_V4.len() + SPECIAL_V6.len());
    assert!(GLOBAL_UNICAST_V6.is_some());
}

#[test]
fn special_purpose_addresses_are_internal() {
    for text in [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.5",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.255.0.9",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.0.170",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::10.0.0.5",
        "::8.8.8.8",
        "::ffff:127.0.0.1",
        "::ffff:8.8.8.8",
        "::ffff:0:10.0.0.1",
        "64:ff9b::10.0.0.5",
        "64:ff9b::8.8.8.8",
        "64:ff9b:1::a00:5",
        "100::1",
        "2001::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:2::1",
        "2001:db8::1",
        "2002:a00:5::1",
        "2002:808:808::1",
        "3fff::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "5f00::1",
        "4000::1",
    ] {
        assert!(is_internal(ip(text)), "{text} must be internal");
    }
}

#[test]
fn public_addresses_are_not_internal() {
    for text in [
        "8.8.8.8",
        "1.1.1.1",
        "52.216.8.13",
        "100.63.255.255",
        "100.128.0.1",
        "172.32.0.1",
        "192.0.1.1",
        "198.20.0.1",
        "223.255.255.255",
        "2600:1f18::1",
        "2a00:1450:4001::200e",
        "2001:4860:4860::8888",
    ] {
        assert!(!is_internal(ip(text)), "{text} is public");
    }
}

proptest! {
    #[test]
    fn embedded_ipv4_forms_are_always_internal(a in any::<u32>()) {
        let v4 = Ipv4Addr::from(a);
        let [x, y, z, w] = v4.octets();
        let forms = [
            v4.to_ipv6_mapped(),
            v4.to_ipv6_compatible(),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([x, y]), u16::from_be_bytes([z, w])),
            Ipv6Addr::new(0x2002, u16::from_be_bytes([x, y]), u16::from_be_bytes([z, w]), 0, 0, 0, 0, 1),
            Ipv6Addr::new(0x2001, 0, 0x4136, 0xe378, 0x8000, 0x63bf, !u16::from_be_bytes([x, y]), !u16::from_be_bytes([z, w])),
        ];
        for form in forms {
            prop_assert!(is_internal(IpAddr::V6(form)), "{form}");
        }
    }

    #[test]
    fn private_ranges_are_internal_whatever_the_host_bits(a in any::<u32>()) {
        for (net, bits) in [(0x0a00_0000u32, 8), (0xac10_0000, 12), (0xc0a8_0000, 16), (0x7f00_0000, 8), (0xa9fe_0000, 16), (0x6440_0000, 10), (0xc612_0000, 15), (0, 8), (0xf000_0000, 4), (0xe000_0000, 4)] {
            let host = a & (u32::MAX >> bits);
            prop_assert!(is_internal(IpAddr::V4(Ipv4Addr::from(net | host))));
        }
    }
}

#[test]
fn urls_with_internal_or_local_hosts_are_refused() {
    let url = |t: &str| url::Url::parse(t).unwrap();
    for bad in [
        "https://127.0.0.1/b",
        "https://0x7f.1/b",
        "https://2130706433/b",
        "https://[::ffff:7f00:1]/b",
        "https://localhost/b",
        "https://LOCALHOST./b",
        "https://169.254.169.254/latest/meta-data",
        "https://[64:ff9b::a00:5]/",
    ] {
        assert_eq!(
            check_url(&url(bad), false, false),
            Err(EgressError::Internal),
            "{bad}"
        );
        assert_eq!(
            check_url(&url(bad), true, false),
            Ok(()),
            "{bad} with the opt-in"
        );
    }
    // The URL object_store built from the region: the address
    // hides behind user info.
    let smuggled = url("https://s3.x@10.0.0.5:22/.amazonaws.com/b");
    assert_eq!(
        check_url(&smuggled, false, false),
        Err(EgressError::Internal)
    );
    assert_eq!(
        check_url(&smuggled, true, false),
        Err(EgressError::InvalidUrl)
    );
    assert_eq!(
        check_url(&url("https://s3.eu-west-1.amazonaws.com/b"), false, false),
        Ok(())
    );
    assert_eq!(
        check_url(&url("http://s3.example.com/b"), false, false),
        Err(EgressError::PlainHttp)
    );
    assert_eq!(
        check_url(&url("http://127.0.0.1:9000/b"), true, true),
        Ok(())
    );
}

#[tokio::test]
async fn names_that_resolve_to_internal_addresses_are_refused() {
    for name in ["localhost", "localhost.", "127.0.0.1", "::1", "10.0.0.5"] {
        assert_eq!(
            resolve(name, false).await,
            Err(EgressError::Internal),
            "{name}"
        );
    }
    let allowed = resolve("127.0.0.1", true).await.unwrap();
    assert_eq!(allowed, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
}

/// A server on 127.0.0.1 that answers every request with `answer`;
/// returns its port and how many connections it took.
async fn answering(answer: &'static str) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 16 * 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (port, hits)
}

async fn get(egress: &Egress, url: &str) -> Result<u16, HttpError> {
    let client = egress
        .connector(true, Duration::from_secs(5), Duration::from_secs(2))
        .connect(&ClientOptions::new())
        .unwrap();
    let request = http::Request::builder()
        .uri(url)
        .body(object_store::client::HttpRequestBody::empty())
        .unwrap();
    client.execute(request).await.map(|r| r.status().as_u16())
}

/// A name that resolves to loopback goes through the guarded resolver
/// and is refused before any connection; a literal internal address is
/// refused by the request check. With the operator's opt-in both connect.
#[tokio::test]
async fn the_client_never_connects_to_internal_addresses() {
    let (port, hits) = answering("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
    let strict = Egress::new(false);
    for url in [
        format!("http://localhost:{port}/b"),
        format!("http://127.0.0.1:{port}/b"),
        format!("http://[::ffff:127.0.0.1]:{port}/b"),
    ] {
        let err = get(&strict, &url).await.unwrap_err();
        assert_eq!(strict.classify(&err), Failure::Refused, "{url}: {err:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");
    let open = Egress::new(true);
    assert_eq!(
        get(&open, &format!("http://localhost:{port}/b"))
            .await
            .unwrap(),
        204
    );
    assert_eq!(
        get(&open, &format!("http://127.0.0.1:{port}/b"))
            .await
            .unwrap(),
        204
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tls_failures_are_named() {
    let (port, _) = answering("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
    let open = Egress::new(true);
    let client = open
        .connector(false, Duration::from_secs(5), Duration::from_secs(2))
        .connect(&ClientOptions::new())
        .unwrap();
    let request = http::Request::builder()
        .uri(format!("https://127.0.0.1:{port}/b"))
        .body(object_store::client::HttpRequestBody::empty())
        .unwrap();
    let err = client.execute(request).await.unwrap_err();
    let chain: Vec<String> = causes(&err).map(|c| format!("{c:?}")).collect();
    assert_eq!(open.classify(&err), Failure::Tls, "{chain:#?}");
}

/// Redirects come back as they are (object_store fails on them); the
/// place they point at is never asked.
#[tokio::test]
async fn redirects_are_not_followed() {
    let (target, target_hits) =
        answering("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{target}/latest/meta-data\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_boxed_str(),
    );
    let (port, hits) = answering(answer).await;
    let open = Egress::new(true);
    assert_eq!(
        get(&open, &format!("http://127.0.0.1:{port}/b"))
            .await
            .unwrap(),
        307
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        target_hits.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

#[test]
fn failures_name_a_class_only() {
    assert_eq!(
        Failure::Status(503).to_string(),
        "destination answered HTTP 5xx"
    );
    assert!(Failure::Status(403).to_string().contains("HTTP 403"));
    assert!(Failure::Status(301).to_string().contains("redirect"));
    let egress = Egress::new(false);
    let refused = HttpError::new(HttpErrorKind::Unknown, EgressError::Internal);
    assert_eq!(egress.classify(&refused), Failure::Refused);
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
    assert_eq!(
        egress.classify(&HttpError::new(HttpErrorKind::Connect, io)),
        Failure::Tls
    );
    let refused_conn = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        egress.classify(&HttpError::new(HttpErrorKind::Connect, refused_conn)),
        Failure::Connect
    );
    let other =
        std::io::Error::other("Server returned non-2xx status code: 502: <html>internal</html>");
    assert_eq!(egress.classify(&other), Failure::Other);
    egress.saw(rq::StatusCode::BAD_GATEWAY);
    egress.saw(rq::StatusCode::OK);
    assert_eq!(egress.classify(&other), Failure::Status(502));
    assert_eq!(
        egress.classify(&other).to_string(),
        "destination answered HTTP 5xx"
    );
}
