//! RFC 5424 syslog messages with octet-counting framing (RFC 6587 §3.4.1),
//! over TCP or TLS (RFC 5425).
//!
//! A message: `<PRI>1 TIMESTAMP HOSTNAME workbooks - ACTION [workbooks@32473
//! seq=".." source=".." actor=".." outcome=".." company=".." hash=".."] JSON`,
//! facility 10 (security/authorization), severity notice for a success and
//! warning otherwise; MSG is the event's `DrainRecord` as ASCII-only JSON.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use async_trait::async_trait;
use rustls::pki_types::ServerName;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use wb_store::CentralEvent;

use super::{error_chain, Drain, DrainError, DrainRecord, CONNECT_TIMEOUT, SEND_TIMEOUT};

/// Facility 10: security/authorization messages (authpriv).
pub const FACILITY: u8 = 10;
pub const SEVERITY_NOTICE: u8 = 5;
pub const SEVERITY_WARNING: u8 = 4;
pub const APP_NAME: &str = "workbooks";
/// SD-ID: "workbooks" under a private enterprise number.
pub const SD_ID: &str = "workbooks@32473";

/// The message's PRI: facility × 8 + severity.
pub fn priority(outcome: &str) -> u8 {
    let severity = if outcome == "success" {
        SEVERITY_NOTICE
    } else {
        SEVERITY_WARNING
    };
    FACILITY * 8 + severity
}

/// Escapes an SD-PARAM value: `"`, `\` and `]` get a backslash (RFC 5424 §6.3.3).
pub fn escape_param(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field: printable US-ASCII only (other characters become `_`), at
/// most `max` characters, or the NILVALUE `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if field.is_empty() {
        "-".into()
    } else {
        field
    }
}

/// The event's time as an RFC 5424 TIMESTAMP (UTC, at most microseconds), or `-`.
fn timestamp(at: &str) -> String {
    let Ok(t) = OffsetDateTime::parse(at, &Rfc3339) else {
        return "-".into();
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// The RFC 5424 message for one event (without framing).
pub fn format_message(event: &CentralEvent) -> String {
    let e = &event.event;
    let mut sd = format!(
        "[{SD_ID} seq=\"{}\" source=\"{}\" actor=\"{}\" outcome=\"{}\"",
        e.seq,
        escape_param(&event.source),
        escape_param(&e.actor),
        escape_param(&e.outcome)
    );
    if let Some(company) = &e.company_id {
        sd.push_str(&format!(" company=\"{}\"", escape_param(company)));
    }
    sd.push_str(&format!(" hash=\"{}\"]", escape_param(&e.hash)));
    format!(
        "<{}>1 {} {} {APP_NAME} - {} {sd} {}",
        priority(&e.outcome),
        timestamp(&e.at),
        header_field(&event.node, 255),
        header_field(&e.action, 32),
        DrainRecord::from(event).to_json_line()
    )
}

/// Appends one octet-counted frame: `LEN SP MSG`.
pub fn frame_into(buf: &mut Vec<u8>, message: &str) {
    buf.extend_from_slice(message.len().to_string().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(message.as_bytes());
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Whether the peer is still there: polls a read once without waiting. A
/// syslog collector never sends data, so end-of-stream or an error means it
/// closed the connection (stopped, restarted) and a write would be lost.
async fn still_open<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    std::future::poll_fn(|cx| {
        let mut read = ReadBuf::new(&mut buf);
        Poll::Ready(match Pin::new(&mut *stream).poll_read(cx, &mut read) {
            Poll::Pending => true,
            // Data (TLS session tickets are handled inside rustls) is ignored.
            Poll::Ready(Ok(())) => !read.filled().is_empty(),
            Poll::Ready(Err(_)) => false,
        })
    })
    .await
}

async fn write_batch<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// An RFC 5424 drain over TCP, or TLS when a client configuration is given.
pub struct SyslogDrain {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Option<Conn>,
}

impl SyslogDrain {
    pub fn new(
        host: String,
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<SyslogDrain, DrainError> {
        let tls = match tls {
            None => None,
            Some(config) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| DrainError::Tls(format!("server name {host:?}: {e}")))?;
                Some((TlsConnector::from(config), name))
            }
        };
        Ok(SyslogDrain {
            host,
            port,
            tls,
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Conn, DrainError> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| DrainError::Timeout("connecting to the syslog collector"))??;
        tcp.set_nodelay(true)?;
        let Some((connector, name)) = &self.tls else {
            return Ok(Conn::Plain(tcp));
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| DrainError::Timeout("in the TLS handshake with the syslog collector"))?
            .map_err(|e| DrainError::Tls(error_chain(&e)))?;
        Ok(Conn::Tls(Box::new(tls)))
    }
}

#[async_trait]
impl Drain for SyslogDrain {
    async fn send(&mut self, events: &[CentralEvent]) -> Result<(), DrainError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(events.len() * 1024);
        for event in events {
            frame_into(&mut bytes, &format_message(event));
        }
        let alive = match &mut self.conn {
            Some(Conn::Plain(s)) => still_open(s).await,
            Some(Conn::Tls(s)) => still_open(s.as_mut()).await,
            None => false,
        };
        if !alive {
            self.conn = None;
            self.conn = Some(self.connect().await?);
        }
        let written = match &mut self.conn {
            Some(Conn::Plain(s)) => {
                tokio::time::timeout(SEND_TIMEOUT, write_batch(s, &bytes)).await
            }
            Some(Conn::Tls(s)) => {
                tokio::time::timeout(SEND_TIMEOUT, write_batch(s.as_mut(), &bytes)).await
            }
            None => return Err(DrainError::Timeout("connecting")),
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.conn = None;
                Err(DrainError::Io(e))
            }
            Err(_) => {
                self.conn = None;
                Err(DrainError::Timeout("sending to the syslog collector"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wb_store::StoredAuditEvent;

    fn event(outcome: &str, actor: &str) -> CentralEvent {
        CentralEvent {
            central_seq: 7,
            source: "company:c1".into(),
            node: "node 1".into(),
            event: StoredAuditEvent {
                seq: 3,
                at: "2026-02-03T04:05:06.123456789+01:00".into(),
                actor: actor.into(),
                auth: "session".into(),
                client: None,
                request_id: None,
                company_id: Some("c1".into()),
                action: "login".into(),
                target: None,
                outcome: outcome.into(),
                detail: None,
                prev_hash: "00".into(),
                hash: "ab".into(),
            },
        }
    }

    #[test]
    fn escapes_sd_params() {
        assert_eq!(escape_param(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(escape_param("plain"), "plain");
    }

    #[test]
    fn formats_rfc5424() {
        let m = format_message(&event("success", "user:\"x]"));
        assert!(
            m.starts_with("<85>1 2026-02-03T03:05:06.123456Z node_1 workbooks - login [workbooks@32473 seq=\"3\" source=\"company:c1\" actor=\"user:\\\"x\\]\" outcome=\"success\" company=\"c1\" hash=\"ab\"] {"),
            "{m}"
        );
        let json = m.split_once("\"] ").unwrap().1;
        let record: DrainRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.central_seq, 7);
        assert_eq!(record.actor, "user:\"x]");
        assert!(format_message(&event("failure", "u")).starts_with("<84>1 "));
    }

    #[test]
    fn frames_by_octet_count() {
        let mut buf = Vec::new();
        frame_into(&mut buf, "héllo");
        assert_eq!(buf, "6 héllo".as_bytes());
    }
}
