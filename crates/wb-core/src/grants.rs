//! Staff access grants: the state machine, with no IO and time passed in.
//!
//! A staff member asks for access to one company's content with a reason,
//! a scope and a duration. It is usable ("active") only once a company
//! owner or admin AND a manager who is not the requester have approved it,
//! in either order; or, for a legal mandate, once a manager (not the
//! requester) approves it quoting the mandate's reference. It is active from
//! the later of its requested start and the last approval, for its duration
//! exactly; it can be denied by either side while pending and revoked by
//! either side at any time before it ends. A request nobody approved expires
//! after `PENDING_DAYS`. Nothing is ever deleted: the grant keeps who
//! approved, denied or revoked it and when.

use std::fmt;
use std::str::FromStr;

use time::{Duration, OffsetDateTime};

use crate::roles::Permission;

/// How long a request waits for its approvals.
pub const PENDING_DAYS: i64 = 7;
/// The longest grant the platform allows (a deployment may set a lower one).
pub const MAX_DURATION_MINUTES: u32 = 72 * 60;
/// A reason is at least this many characters (after trimming)…
pub const MIN_REASON_CHARS: usize = 10;
/// …and at most this many.
pub const MAX_REASON_CHARS: usize = 2_000;
/// A requested start may lie at most this far ahead.
pub const MAX_START_AHEAD_DAYS: i64 = 30;

/// What a grant opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantScope {
    /// Read the books (accounts, entries, reports).
    BooksRead,
    /// Read and change the books.
    BooksWrite,
    /// Read and upload attachments (not the books).
    Files,
    /// The books, the attachments and the company's audit trail.
    Full,
}

impl GrantScope {
    pub const ALL: [GrantScope; 4] = [
        GrantScope::BooksRead,
        GrantScope::BooksWrite,
        GrantScope::Files,
        GrantScope::Full,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantScope::BooksRead => "books:read",
            GrantScope::BooksWrite => "books:write",
            GrantScope::Files => "files",
            GrantScope::Full => "full",
        }
    }

    /// Whether this scope covers `permission`. The company's own
    /// administration (members, keys, security policy, exports, restores,
    /// de-provisioning) is never covered: staff act on content, not on who
    /// may reach it.
    pub fn covers(self, permission: Permission) -> bool {
        use Permission::*;
        match permission {
            ReadBooks => matches!(
                self,
                GrantScope::BooksRead | GrantScope::BooksWrite | GrantScope::Full
            ),
            WriteBooks => matches!(self, GrantScope::BooksWrite | GrantScope::Full),
            ReadFiles | WriteFiles => matches!(self, GrantScope::Files | GrantScope::Full),
            ReadAudit => matches!(self, GrantScope::Full),
            ManageMembers | ManageApiKeys | ManageSecurity | Deprovision | ExportData
            | RestoreCopy | RotateKey | PurgeData => false,
        }
    }
}

impl fmt::Display for GrantScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}: use books:read, books:write, files or full")]
pub struct UnknownScope(pub String);

impl FromStr for GrantScope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<GrantScope, UnknownScope> {
        GrantScope::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| UnknownScope(s.chars().take(32).collect()))
    }
}

/// What a grant is, as seen at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantState {
    /// Waiting for an approval, or approved and waiting for its start.
    Pending,
    Active,
    Denied,
    Expired,
    Revoked,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Pending => "pending",
            GrantState::Active => "active",
            GrantState::Denied => "denied",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }
}

impl fmt::Display for GrantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who decides: the company (an owner or admin) or the platform's management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Company,
    Management,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Company => "company",
            Side::Management => "management",
        }
    }
}

/// A decision by one side: the actor id (`user:…`, `staff:…`) and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub by: String,
    pub at: OffsetDateTime,
}

/// How a grant was ended before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    Denied,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub kind: EndKind,
    pub side: Side,
    pub decision: Decision,
}

/// A legal mandate: its reference, and until when the company may not be
/// told (None: it is told at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalMandate {
    pub reference: String,
    pub disclose_after: Option<OffsetDateTime>,
}

/// A request as a staff member makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub company_id: String,
    /// `staff:…`
    pub requested_by: String,
    pub reason: String,
    pub scope: GrantScope,
    pub duration_minutes: u32,
    pub ticket: Option<String>,
    pub legal_mandate: Option<LegalMandate>,
    pub starts_at: Option<OffsetDateTime>,
}

/// Why a request or a decision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the reason must say why, in {MIN_REASON_CHARS} to {MAX_REASON_CHARS} characters")]
    Reason,
    #[error("duration_minutes must be between 1 and {0}")]
    Duration(u32),
    #[error("ticket must be 1 to 100 letters, digits or . _ : / # -")]
    Ticket,
    #[error("the legal mandate's reference must be 1 to 200 printable characters")]
    MandateReference,
    #[error("starts_at must be between now and {MAX_START_AHEAD_DAYS} days ahead")]
    Start,
    #[error("the requester cannot approve their own request")]
    SelfApproval,
    #[error("this side has already decided")]
    AlreadyDecided,
    #[error("the grant is {0}: nothing can be decided on it any more")]
    Ended(GrantState),
    #[error("a grant under a legal mandate is decided by management alone")]
    MandateNeedsNoCompany,
    #[error("approving a legal mandate needs its reference, exactly")]
    MandateMismatch,
    #[error("both sides have approved: the grant can be revoked, no longer denied")]
    AlreadyApproved,
    #[error("the grant is not approved yet: deny it instead")]
    NotApproved,
    #[error("the company decides through an owner or admin, management through a manager")]
    WrongRealm,
    #[error("disclose_after must lie after now and at most {MAX_DISCLOSE_DAYS} days ahead")]
    Disclosure,
}

/// A legal mandate may keep a grant from the company at most this long.
pub const MAX_DISCLOSE_DAYS: i64 = 365;

fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Checks a request against the platform's rules; `max_minutes` is the
/// deployment's cap (at most `MAX_DURATION_MINUTES`).
pub fn check_request(
    request: &GrantRequest,
    max_minutes: u32,
    now: OffsetDateTime,
) -> Result<(), GrantError> {
    let reason = request.reason.trim();
    let chars = reason.chars().count();
    if !(MIN_REASON_CHARS..=MAX_REASON_CHARS).contains(&chars) || !printable(reason) {
        return Err(GrantError::Reason);
    }
    let max = max_minutes.clamp(1, MAX_DURATION_MINUTES);
    if request.duration_minutes == 0 || request.duration_minutes > max {
        return Err(GrantError::Duration(max));
    }
    if let Some(ticket) = &request.ticket {
        let ok = (1..=100).contains(&ticket.len())
            && ticket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/#-".contains(&b));
        if !ok {
            return Err(GrantError::Ticket);
        }
    }
    if let Some(mandate) = &request.legal_mandate {
        let reference = mandate.reference.trim();
        if reference.is_empty() || reference.chars().count() > 200 || !printable(reference) {
            return Err(GrantError::MandateReference);
        }
        if let Some(after) = mandate.disclose_after {
            if after <= now || after > now + Duration::days(MAX_DISCLOSE_DAYS) {
                return Err(GrantError::Disclosure);
            }
        }
    }
    if !request.requested_by.starts_with("staff:") {
        return Err(GrantError::WrongRealm);
    }
    if let Some(start) = request.starts_at {
        // A minute of slack for clocks that differ a little.
        if start < now - Duration::minutes(1) || start > now + Duration::days(MAX_START_AHEAD_DAYS)
        {
            return Err(GrantError::Start);
        }
    }
    Ok(())
}

/// A grant and everything decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub company_id: String,
    pub requested_by: String,
    pub reason: String,
    pub scope: GrantScope,
    pub duration: Duration,
    pub ticket: Option<String>,
    pub legal_mandate: Option<LegalMandate>,
    pub requested_at: OffsetDateTime,
    /// The earliest start asked for (None: as soon as approved).
    pub starts_at: Option<OffsetDateTime>,
    pub company_approval: Option<Decision>,
    pub management_approval: Option<Decision>,
    pub ending: Option<Ending>,
}

impl Grant {
    /// A new pending grant from a checked request.
    pub fn new(id: String, request: GrantRequest, now: OffsetDateTime) -> Grant {
        Grant {
            id,
            company_id: request.company_id,
            requested_by: request.requested_by,
            reason: request.reason.trim().to_string(),
            scope: request.scope,
            duration: Duration::minutes(i64::from(request.duration_minutes)),
            ticket: request.ticket,
            legal_mandate: request.legal_mandate.map(|m| LegalMandate {
                reference: m.reference.trim().to_string(),
                disclose_after: m.disclose_after,
            }),
            requested_at: now,
            starts_at: request.starts_at,
            company_approval: None,
            management_approval: None,
            ending: None,
        }
    }

    /// Whether every approval it needs is in.
    pub fn approved(&self) -> bool {
        self.management_approval.is_some()
            && (self.company_approval.is_some() || self.legal_mandate.is_some())
    }

    /// When the last approval came in (None until approved).
    pub fn approved_at(&self) -> Option<OffsetDateTime> {
        if !self.approved() {
            return None;
        }
        let management = self.management_approval.as_ref()?.at;
        Some(match &self.company_approval {
            Some(company) => management.max(company.at),
            None => management,
        })
    }

    /// When it opens: the later of the requested start and the last approval.
    pub fn opens_at(&self) -> Option<OffsetDateTime> {
        let approved = self.approved_at()?;
        Some(match self.starts_at {
            Some(start) => start.max(approved),
            None => approved,
        })
    }

    /// When it closes by itself: the requested start plus the duration
    /// (a late approval shortens the window, never moves it), or without a
    /// requested start the last approval plus the duration.
    pub fn closes_at(&self) -> Option<OffsetDateTime> {
        let approved = self.approved_at()?;
        Some(self.starts_at.unwrap_or(approved) + self.duration)
    }

    /// When a request nobody approved stops waiting.
    pub fn pending_until(&self) -> OffsetDateTime {
        self.requested_at + Duration::days(PENDING_DAYS)
    }

    /// The state at `now`.
    pub fn state(&self, now: OffsetDateTime) -> GrantState {
        // An ending holds from the moment it is recorded, whatever the
        // clock of the node that recorded it said.
        if let Some(ending) = &self.ending {
            return match ending.kind {
                EndKind::Denied => GrantState::Denied,
                EndKind::Revoked => GrantState::Revoked,
            };
        }
        match (self.opens_at(), self.closes_at()) {
            (Some(_), Some(closes)) if now >= closes => GrantState::Expired,
            (Some(opens), Some(_)) if now >= opens => GrantState::Active,
            (Some(_), Some(_)) => GrantState::Pending,
            _ if now >= self.pending_until() => GrantState::Expired,
            _ => GrantState::Pending,
        }
    }

    /// Whether staff may use it at `now` for `permission`.
    pub fn allows(&self, permission: Permission, now: OffsetDateTime) -> bool {
        self.state(now) == GrantState::Active && self.scope.covers(permission)
    }

    /// When the state will next change by itself (None: it will not), so
    /// a cache of "active" knows when to stop believing it.
    pub fn next_change(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self.state(now) {
            GrantState::Pending => match self.opens_at() {
                Some(opens) => Some(opens),
                None => Some(self.pending_until()),
            },
            GrantState::Active => self.closes_at(),
            _ => None,
        }
    }

    /// Whether the company may be shown this grant at `now` (a mandate may
    /// forbid telling it until `disclose_after`).
    pub fn disclosed_to_company(&self, now: OffsetDateTime) -> bool {
        match &self.legal_mandate {
            Some(LegalMandate {
                disclose_after: Some(after),
                ..
            }) => now >= *after,
            _ => true,
        }
    }

    /// The latest time anything was decided (or asked).
    fn last_decided(&self) -> OffsetDateTime {
        [&self.company_approval, &self.management_approval]
            .into_iter()
            .flatten()
            .map(|d| d.at)
            .fold(self.requested_at, OffsetDateTime::max)
    }

    /// Checks `decision` can be taken by `side`, and dates it no earlier
    /// than what was decided before (a node with a slow clock cannot slip a
    /// decision in before another).
    fn open_for_decision(&self, side: Side, decision: &mut Decision) -> Result<(), GrantError> {
        let realm = match side {
            Side::Company => "user:",
            Side::Management => "staff:",
        };
        if !decision.by.starts_with(realm) {
            return Err(GrantError::WrongRealm);
        }
        decision.at = decision.at.max(self.last_decided());
        match self.state(decision.at) {
            GrantState::Pending | GrantState::Active => Ok(()),
            ended => Err(GrantError::Ended(ended)),
        }
    }

    /// An approval by `side`. A manager may not approve their own request;
    /// a legal mandate is approved by management alone, quoting its
    /// reference (`mandate_reference`).
    pub fn approve(
        &mut self,
        side: Side,
        decision: Decision,
        mandate_reference: Option<&str>,
    ) -> Result<(), GrantError> {
        let mut decision = decision;
        self.open_for_decision(side, &mut decision)?;
        if self.approved() {
            return Err(GrantError::AlreadyDecided);
        }
        match side {
            Side::Company => {
                if self.legal_mandate.is_some() {
                    return Err(GrantError::MandateNeedsNoCompany);
                }
                if self.company_approval.is_some() {
                    return Err(GrantError::AlreadyDecided);
                }
                self.company_approval = Some(decision);
            }
            Side::Management => {
                if decision.by == self.requested_by {
                    return Err(GrantError::SelfApproval);
                }
                if self.management_approval.is_some() {
                    return Err(GrantError::AlreadyDecided);
                }
                if let Some(mandate) = &self.legal_mandate {
                    if mandate_reference.map(str::trim) != Some(mandate.reference.as_str()) {
                        return Err(GrantError::MandateMismatch);
                    }
                }
                self.management_approval = Some(decision);
            }
        }
        Ok(())
    }

    /// A refusal by `side` while the grant still waits for approvals.
    pub fn deny(&mut self, side: Side, decision: Decision) -> Result<(), GrantError> {
        let mut decision = decision;
        self.open_for_decision(side, &mut decision)?;
        if side == Side::Company && self.legal_mandate.is_some() {
            return Err(GrantError::MandateNeedsNoCompany);
        }
        if self.approved() {
            return Err(GrantError::AlreadyApproved);
        }
        self.ending = Some(Ending {
            kind: EndKind::Denied,
            side,
            decision,
        });
        Ok(())
    }

    /// Ends an approved grant at once (before or during its window).
    pub fn revoke(&mut self, side: Side, decision: Decision) -> Result<(), GrantError> {
        let mut decision = decision;
        self.open_for_decision(side, &mut decision)?;
        if side == Side::Company && self.legal_mandate.is_some() {
            return Err(GrantError::MandateNeedsNoCompany);
        }
        if !self.approved() {
            return Err(GrantError::NotApproved);
        }
        self.ending = Some(Ending {
            kind: EndKind::Revoked,
            side,
            decision,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
