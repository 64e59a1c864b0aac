//! Slow and idle clients cannot hold the server's connections: a client that
//! never finishes TLS, drips a request's head, sends nothing, keeps an idle
//! connection (HTTP/1.1 or HTTP/2) or sends a body too slowly is cut off
//! within its limit while other clients are served, and connections beyond
//! the cap wait until one is free. Limits are set small (1 s) and each
//! assertion allows several times that; none asserts how fast a cut is.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wb_server::config::{ConnectionLimits, MinRate};

use super::harness::TestServer;

/// A cut that should come after about 1 s must come within this.
const CUT_WITHIN: Duration = Duration::from_secs(8);

fn one_second_limits() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 64,
        tls_handshake_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        body_min_rate: Some(MinRate {
            bytes_per_second: 1000,
            window: Duration::from_secs(1),
        }),
        ..ConnectionLimits::default()
    }
}

async fn server(limits: ConnectionLimits) -> TestServer {
    TestServer::start_configured(|config| config.connections = limits).await
}

fn port(s: &TestServer) -> u16 {
    s.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A TLS client trusting the server's certificate, offering these ALPN protocols.
fn tls(s: &TestServer, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let pem = s.data_dir.join("tls").join("cert.pem");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect_tls(s: &TestServer, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port(s))).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tls(s, alpn)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the server closes the connection (end of stream or an
/// error such as a reset); returns what was read.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asserts that the server closes the connection within [`CUT_WITHIN`].
async fn cut_off<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, who: &str) -> Vec<u8> {
    tokio::time::timeout(CUT_WITHIN, until_closed(stream))
        .await
        .unwrap_or_else(|_| panic!("{who} was not cut off within {CUT_WITHIN:?}"))
}

/// A fresh client (its own connections), so one test's pool does not hide another's limit.
fn fresh_client(s: &TestServer) -> reqwest::Client {
    let pem = std::fs::read(s.data_dir.join("tls").join("cert.pem")).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

async fn healthz(s: &TestServer, client: &reqwest::Client) -> u16 {
    client
        .get(s.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .status()
        .as_u16()
}

/// Drips header lines, one every 200 ms, never ending the head; stops
/// when the server has closed the connection.
fn drip_headers<W: tokio::io::AsyncWrite + Unpin + Send + 'static>(
    mut write: W,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if write.write_all(b"X-Drip: 1\r\n").await.is_err() {
                return;
            }
        }
    })
}

/// Header-read and handshake limits of 1 s; the idle timeout (60 s) is far
/// off, so what cuts these clients is the limit on request heads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_while_others_are_served() {
    let s = server(ConnectionLimits {
        idle_timeout: Duration::from_secs(60),
        ..one_second_limits()
    })
    .await;
    // Drips a request head, a header line every 200 ms, never ending it.
    let mut drip = connect_tls(&s, &[b"http/1.1"]).await;
    drip.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let (mut drip_read, drip_write) = tokio::io::split(drip);
    let dripping = drip_headers(drip_write);
    // A kept-alive connection that was served once, then drips the head of
    // its next request.
    let mut again = connect_tls(&s, &[b"http/1.1"]).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut again).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let (mut again_read, again_write) = tokio::io::split(again);
    let dripping_again = drip_headers(again_write);
    // Finishes TLS, then sends nothing.
    let mut silent = connect_tls(&s, &[b"http/1.1"]).await;
    // Opens TCP and never starts TLS.
    let mut no_tls = TcpStream::connect(("127.0.0.1", port(&s))).await.unwrap();

    // Meanwhile other clients are served, on fresh connections each time.
    let served = tokio::spawn({
        let client = fresh_client(&s);
        let url = s.url("/healthz");
        async move {
            let mut ok = 0;
            for _ in 0..5 {
                let status = client.get(&url).send().await.map(|r| r.status().as_u16());
                ok += usize::from(status.ok() == Some(200));
            }
            ok
        }
    });

    let (dripped, dripped_again, quiet, plain) = tokio::join!(
        cut_off(&mut drip_read, "a client dripping its headers"),
        cut_off(
            &mut again_read,
            "a kept-alive client dripping its next headers"
        ),
        cut_off(&mut silent, "a client sending nothing after TLS"),
        cut_off(&mut no_tls, "a client that never starts TLS"),
    );
    for answer in [&dripped, &dripped_again] {
        let answer = String::from_utf8_lossy(answer);
        assert!(
            !answer.contains("200 OK"),
            "a dripped request was never answered: {answer}"
        );
    }
    assert!(quiet.is_empty() && plain.is_empty());
    dripping.abort();
    dripping_again.abort();
    assert_eq!(served.await.unwrap(), 5, "the others were served");
    assert_eq!(healthz(&s, &fresh_client(&s)).await, 200);
    s.shutdown().await;
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its head.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole response");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return head;
            }
        }
    }
}

/// An idle timeout of 1 s; the header-read limit (60 s) is far off, so
/// what closes these connections is the idle timeout, for either protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_kept_alive_connections_are_closed() {
    let s = server(ConnectionLimits {
        header_read_timeout: Duration::from_secs(60),
        ..one_second_limits()
    })
    .await;
    // HTTP/1.1: one request on a kept-alive connection, then nothing.
    let mut h1 = connect_tls(&s, &[b"http/1.1"]).await;
    h1.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut h1).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "kept alive: {head}");
    cut_off(&mut h1, "an idle HTTP/1.1 connection").await;

    // HTTP/2: one request, then the connection stays open without requests.
    let h2 = connect_tls(&s, &[b"h2"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h2),
    )
    .await
    .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let request = axum::http::Request::get(s.url("/healthz"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = sender.send_request(request).await.expect("HTTP/2 request");
    assert_eq!(response.status(), 200);
    drop(response);
    tokio::time::timeout(CUT_WITHIN, connection)
        .await
        .expect("an idle HTTP/2 connection was not closed")
        .unwrap()
        .ok();
    assert!(sender.is_closed(), "the HTTP/2 connection is gone");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_sent_too_slowly_is_cut_off() {
    let s = server(one_second_limits()).await;
    let mut slow = connect_tls(&s, &[b"http/1.1"]).await;
    slow.write_all(
        b"POST /api/v1/signup HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"company_name\": ",
    )
    .await
    .unwrap();
    // Then nothing more: far under 1,000 bytes a second.
    let answer = cut_off(&mut slow, "a client sending its body too slowly").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("urn:workbooks:problem:request-body-too-slow"),
        "{answer}"
    );
    // A body sent at once is not affected.
    let company = s.signup("Quick Body Ltd").await;
    assert!(!company.id.is_empty());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let s = server(ConnectionLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        ..one_second_limits()
    })
    .await;
    let first = connect_tls(&s, &[b"http/1.1"]).await;
    let _second = connect_tls(&s, &[b"http/1.1"]).await;
    let waiting = tokio::spawn({
        let client = fresh_client(&s);
        let url = s.url("/healthz");
        async move { client.get(&url).send().await.map(|r| r.status().as_u16()) }
    });
    // Both connections are held: the third is not served while they are.
    let mut waiting = waiting;
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut waiting)
            .await
            .is_err(),
        "a third connection was served beyond the cap of two"
    );
    drop(first);
    let status = tokio::time::timeout(CUT_WITHIN, waiting)
        .await
        .expect("the waiting connection was not served once one closed")
        .unwrap()
        .expect("request");
    assert_eq!(status, 200);
    s.shutdown().await;
}

/// A client that asks for a large response and then reads nothing of it
/// does not hold the connection: once the send buffers are full and stay
/// full for the idle timeout (1 s), the server gives up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_response_is_cut_off() {
    let s = server(ConnectionLimits {
        header_read_timeout: Duration::from_secs(60),
        ..one_second_limits()
    })
    .await;
    let t = s.signup("Unread Ltd").await;
    // Larger than the kernel's largest send buffer (4 MiB) and our small
    // receive buffer together.
    const SIZE: usize = 12 * 1024 * 1024;
    let uploaded = s
        .send(
            reqwest::Method::POST,
            &t.path("/files?name=big.bin"),
            Some(&t.token),
            super::harness::Body::Raw {
                content_type: Some("application/octet-stream"),
                bytes: (0..SIZE).map(|i| (i % 251) as u8).collect(),
            },
            &[],
        )
        .await
        .ok(201);
    let file = uploaded["id"].as_str().unwrap().to_string();

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket
        .connect(([127, 0, 0, 1], port(&s)).into())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tls(&s, &[b"http/1.1"]).connect(name, tcp).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        t.path(&format!("/files/{file}")),
        t.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read nothing for several idle timeouts, then read what is left.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let received = cut_off(&mut stream, "a client reading nothing of its response").await;
    assert!(
        String::from_utf8_lossy(&received[..received.len().min(64)]).starts_with("HTTP/1.1 200"),
        "the download had started"
    );
    assert!(
        received.len() < SIZE,
        "the server waited for the client: {} of {SIZE} bytes sent",
        received.len()
    );
    s.shutdown().await;
}
