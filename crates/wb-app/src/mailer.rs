//! Email messages and where they go (no queue, no platform: `crate::mail`
//! queues and delivers them). Where queued email goes: files a person can open (the default), or an
//! SMTP server (`smtp-url`). Both build the same RFC 5322 message with lettre.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use serde::{Deserialize, Serialize};

/// One plain-text message to one recipient.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for Message {
    // The body may hold a single-use link.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait]
pub trait MailSender: Send + Sync {
    /// Delivers one message; `id` is its outbox id (stable across retries).
    /// The error is one line, safe to store and show an operator.
    async fn send(&self, id: &str, message: &Message) -> Result<(), String>;
}

/// A sender address (`Name <user@host>` or `user@host`).
pub fn mailbox(text: &str) -> Result<Mailbox, String> {
    text.parse()
        .map_err(|_| "not a valid email address".to_string())
}

/// The message as RFC 5322 bytes.
fn build(from: &Mailbox, id: &str, message: &Message) -> Result<lettre::Message, String> {
    let to: Mailbox = message
        .to
        .parse()
        .map_err(|_| "the recipient is not a valid address".to_string())?;
    lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(message.subject.clone())
        .message_id(Some(format!("<{id}@workbooks>")))
        .header(ContentType::TEXT_PLAIN)
        .body(message.body.clone())
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// Writes each message to `<dir>/<id>.eml`.
pub struct FileSender {
    dir: PathBuf,
    from: Mailbox,
}

impl FileSender {
    pub fn new(dir: PathBuf, from: Mailbox) -> FileSender {
        FileSender { dir, from }
    }
}

#[async_trait]
impl MailSender for FileSender {
    async fn send(&self, id: &str, message: &Message) -> Result<(), String> {
        let bytes = build(&self.from, id, message)?.formatted();
        let (dir, name) = (self.dir.clone(), format!("{id}.eml"));
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            // Written whole, then renamed: a reader never sees half a message.
            let partial = dir.join(format!(".{name}.partial"));
            wb_crypto::write_private_file(&partial, &bytes)?;
            std::fs::rename(&partial, dir.join(&name))
        })
        .await
        .map_err(|e| format!("the file writer failed: {e}"))?
        .map_err(|e| format!("cannot write the message file: {}", e.kind()))
    }
}

/// Sends through an SMTP server.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpSender")
    }
}

/// Why an `smtp-url` is refused (never echoes the URL: it may hold a password).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmtpUrlError {
    #[error("smtp-url must start with smtp:// or smtps://")]
    Scheme,
    #[error("smtp-url has no host")]
    NoHost,
    #[error(
        "smtp-url sends in clear to a host that is not loopback: use smtps:// or add ?tls=required"
    )]
    Cleartext,
    #[error("smtp-url is not a valid SMTP URL")]
    Invalid,
}

impl SmtpSender {
    /// `smtps://user:pass@host[:port]` (TLS), `smtp://host?tls=required`
    /// (STARTTLS) or `smtp://127.0.0.1:port` (clear, loopback only).
    pub fn from_url(url: &str, from: Mailbox) -> Result<SmtpSender, SmtpUrlError> {
        let parsed = url::Url::parse(url).map_err(|_| SmtpUrlError::Invalid)?;
        let host = parsed.host().ok_or(SmtpUrlError::NoHost)?;
        let loopback = match host {
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
            // smtp:// is not a "special" scheme: its host, even an IP
            // address, comes back as an opaque name.
            url::Host::Domain(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        };
        match parsed.scheme() {
            "smtps" => {}
            "smtp" => {
                let tls = parsed
                    .query_pairs()
                    .any(|(k, v)| k == "tls" && (v == "required" || v == "opportunistic"));
                if !tls && !loopback {
                    return Err(SmtpUrlError::Cleartext);
                }
            }
            _ => return Err(SmtpUrlError::Scheme),
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| SmtpUrlError::Invalid)?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(SmtpSender { transport, from })
    }
}

#[async_trait]
impl MailSender for SmtpSender {
    async fn send(&self, id: &str, message: &Message) -> Result<(), String> {
        let email = build(&self.from, id, message)?;
        self.transport.send(email).await.map(|_| ()).map_err(|e| {
            // lettre's errors name the server's answer, not credentials.
            let mut line = format!("SMTP delivery failed: {e}");
            line.truncate(300);
            line.replace('\n', " ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Mailbox {
        "Work-books <no-reply@example.com>".parse().unwrap()
    }

    #[test]
    fn debug_hides_the_body() {
        let m = Message {
            to: "a@example.com".into(),
            subject: "s".into(),
            body: "secret-link".into(),
        };
        assert!(!format!("{m:?}").contains("secret-link"));
    }

    #[test]
    fn smtp_urls_are_checked() {
        assert!(SmtpSender::from_url("smtp://127.0.0.1:2525", from()).is_ok());
        assert!(SmtpSender::from_url("smtp://[::1]:2525", from()).is_ok());
        assert_eq!(
            SmtpSender::from_url("smtp://10.0.0.1:25", from()).err(),
            Some(SmtpUrlError::Cleartext)
        );
        assert!(SmtpSender::from_url("smtps://u:p@mail.example.com", from()).is_ok());
        assert!(SmtpSender::from_url("smtp://mail.example.com?tls=required", from()).is_ok());
        assert_eq!(
            SmtpSender::from_url("smtp://u:secret@mail.example.com", from()).err(),
            Some(SmtpUrlError::Cleartext)
        );
        assert_eq!(
            SmtpSender::from_url("http://mail.example.com", from()).err(),
            Some(SmtpUrlError::Scheme)
        );
        let err = SmtpSender::from_url("smtp://u:secret@mail.example.com", from())
            .err()
            .unwrap();
        assert!(!err.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn the_file_sender_writes_an_rfc5322_message() {
        let dir = tempfile::tempdir().unwrap();
        let sender = FileSender::new(dir.path().to_path_buf(), from());
        let m = Message {
            to: "ana@example.com".into(),
            subject: "You are invited".into(),
            body: "Open https://books.example/invite#abc".into(),
        };
        sender.send("m1", &m).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("m1.eml")).unwrap();
        assert!(text.contains("To: ana@example.com"), "{text}");
        assert!(text.contains("Subject: You are invited"), "{text}");
        assert!(text.contains("https://books.example/invite#abc"), "{text}");
        assert!(sender
            .send(
                "m2",
                &Message {
                    to: "not an address".into(),
                    ..m
                }
            )
            .await
            .is_err());
    }
}
