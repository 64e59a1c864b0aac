//! The record a drain ships: one central event with every field needed to
//! verify its source chain offline (`wb_core::audit::verify` per source).

use serde::{Deserialize, Serialize};
use wb_store::{CentralEvent, StoredAuditEvent};

/// One audit event as written to a drain (a JSONL line, an element of an
/// HTTPS batch, the MSG of a syslog message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRecord {
    /// Position in the central collection (what the drain's cursor pages by).
    pub central_seq: i64,
    /// "control" or "company:<id>": the chain the event belongs to.
    pub source: String,
    /// The node that collected the event.
    pub node: String,
    /// Sequence number in the source chain.
    pub seq: i64,
    /// RFC 3339, exactly as hashed.
    pub at: String,
    pub actor: String,
    pub auth: String,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub company_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&CentralEvent> for DrainRecord {
    fn from(c: &CentralEvent) -> DrainRecord {
        let e = &c.event;
        DrainRecord {
            central_seq: c.central_seq,
            source: c.source.clone(),
            node: c.node.clone(),
            seq: e.seq,
            at: e.at.clone(),
            actor: e.actor.clone(),
            auth: e.auth.clone(),
            client: e.client.clone(),
            request_id: e.request_id.clone(),
            company_id: e.company_id.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

impl DrainRecord {
    /// The event as its source chain stored it; `.chained()` feeds `verify`.
    pub fn to_stored(&self) -> StoredAuditEvent {
        StoredAuditEvent {
            seq: self.seq,
            at: self.at.clone(),
            actor: self.actor.clone(),
            auth: self.auth.clone(),
            client: self.client.clone(),
            request_id: self.request_id.clone(),
            company_id: self.company_id.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            outcome: self.outcome.clone(),
            detail: self.detail.clone(),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }

    /// One line of JSON, ASCII only (non-ASCII characters as `\u` escapes), so
    /// that it is also a valid RFC 5424 MSG without a BOM. No newline.
    pub fn to_json_line(&self) -> String {
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        ascii_json(&json)
    }
}

/// Escapes every non-ASCII character of serialized JSON as `\uXXXX` (surrogate
/// pairs above U+FFFF). Non-ASCII characters only occur inside strings, where
/// the escape means the same character.
pub fn ascii_json(json: &str) -> String {
    if json.is_ascii() {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_is_escaped_and_round_trips() {
        let record = DrainRecord {
            central_seq: 1,
            source: "control".into(),
            node: "n".into(),
            seq: 1,
            at: "2026-01-01T00:00:00Z".into(),
            actor: "user:é😀".into(),
            auth: "session".into(),
            client: None,
            request_id: None,
            company_id: None,
            action: "login".into(),
            target: None,
            outcome: "success".into(),
            detail: Some("line\nbreak \"quoted\"".into()),
            prev_hash: "0".into(),
            hash: "1".into(),
        };
        let line = record.to_json_line();
        assert!(line.is_ascii());
        assert!(!line.contains('\n'));
        let back: DrainRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, record);
    }
}
