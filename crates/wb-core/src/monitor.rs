//! Monitoring: rules over the audit event stream that raise alerts, and the
//! alert triage life cycle. Pure: events carry their own time, and the caller
//! feeds them one by one in collection order.
//!
//! Rules (each a stable slug, see [`rule`]):
//! - `failed-logins-account`: N failed logins for one account in a window (high);
//! - `failed-logins-client`: N failed logins from one client address (high);
//! - `new-network-admin`: an admin or owner who has logged in before logs in
//!   from a network (IPv4 /24, IPv6 /64) not seen for them (medium);
//! - `cross-company-refusals`: a burst of refused cross-company requests from
//!   one actor, or from one address under several actors (high);
//! - `audit-chain-break`: a source's events skip or repeat a sequence number,
//!   do not link to the previous hash, fail their own hash, or an explicit
//!   `audit.chain_break` event (critical);
//! - `mass-export`: N exports of data by one actor in a window (high), as
//!   [`Action::is_export_of_data`] decides: changes to an export schedule
//!   (`export.schedule.*`) and the scheduled pushes themselves (`export.push`,
//!   by the system, at most hourly per company) are not exports anyone asked
//!   for in a burst, and do not count;
//! - `unplanned-shutdown`: `system.shutdown` without a `system.maintenance`
//!   mark in the window before it (medium);
//! - `audit-unavailable`: an `audit.unavailable` event, i.e. a company's
//!   audit trail could not be written and the fail-closed policy applied (critical);
//! - `allowlist-change`: a company's IP allowlist changed (medium): who may
//!   reach the books from where is a security decision worth a second look;
//! - `mass-invitations`: N invitations sent by one actor in a window (medium).
//!
//! Rules match on [`Action`], exhaustively: a new action does not compile
//! until it is placed with a rule or among the actions no rule watches. An
//! event whose name this build does not know still goes through the chain
//! check and matches no rule.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use crate::audit::Action;

mod alert;
mod config;

pub use alert::{AlertState, InvalidTransition, Severity, UnknownName};
pub use config::{MonitorConfig, Threshold};

/// Stable rule slugs (they appear in alerts and in `disabled_rules`).
pub mod rule {
    pub const FAILED_LOGINS_ACCOUNT: &str = "failed-logins-account";
    pub const FAILED_LOGINS_CLIENT: &str = "failed-logins-client";
    pub const NEW_NETWORK_ADMIN: &str = "new-network-admin";
    pub const CROSS_COMPANY_REFUSALS: &str = "cross-company-refusals";
    pub const AUDIT_CHAIN_BREAK: &str = "audit-chain-break";
    pub const MASS_EXPORT: &str = "mass-export";
    pub const UNPLANNED_SHUTDOWN: &str = "unplanned-shutdown";
    pub const UNCLEAN_RESTART: &str = "unclean-restart";
    pub const AUDIT_UNAVAILABLE: &str = "audit-unavailable";
    pub const ALLOWLIST_CHANGE: &str = "allowlist-change";
    pub const MASS_INVITATIONS: &str = "mass-invitations";
    pub const MFA_REMOVED_ADMIN: &str = "mfa-removed-admin";
    pub const STAFF_OUTSIDE_GRANT: &str = "staff-access-outside-grant";
    pub const ALL: [&str; 13] = [
        FAILED_LOGINS_ACCOUNT,
        FAILED_LOGINS_CLIENT,
        NEW_NETWORK_ADMIN,
        CROSS_COMPANY_REFUSALS,
        AUDIT_CHAIN_BREAK,
        MASS_EXPORT,
        UNPLANNED_SHUTDOWN,
        UNCLEAN_RESTART,
        AUDIT_UNAVAILABLE,
        ALLOWLIST_CHANGE,
        MASS_INVITATIONS,
        MFA_REMOVED_ADMIN,
        STAFF_OUTSIDE_GRANT,
    ];
}

/// How far event times from different nodes may disagree when a maintenance
/// mark is matched to a shutdown.
const CLOCK_SKEW: Duration = Duration::minutes(1);
/// Networks remembered per user (most recently used kept).
const MAX_NETWORKS_PER_USER: usize = 32;
/// Observations between sweeps of idle windows.
const SWEEP_EVERY: u64 = 10_000;

/// Where an event sits in its source's hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub prev_hash: String,
    pub hash: String,
    /// Whether `hash` matches the event's contents (checked by the caller).
    pub intact: bool,
}

/// One audit event as the monitor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedEvent {
    /// "control" or "company:<id>".
    pub source: String,
    pub source_seq: i64,
    pub at: OffsetDateTime,
    /// "user:<id>", "api_key:<id>", "staff:<id>", "anonymous", "system".
    pub actor: String,
    pub auth: String,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub company_id: Option<String>,
    /// None for a stored name this build does not know (see [`Action`]).
    pub action: Option<Action>,
    pub target: Option<String>,
    /// "success" or "failure".
    pub outcome: String,
    pub detail: Option<String>,
    pub chain: Option<ChainLink>,
}

impl ObservedEvent {
    /// An event with only the essentials; the rest can be set field by field.
    pub fn new(
        source: &str,
        source_seq: i64,
        at: OffsetDateTime,
        actor: &str,
        action: Action,
        success: bool,
    ) -> ObservedEvent {
        ObservedEvent {
            source: source.into(),
            source_seq,
            at,
            actor: actor.into(),
            auth: String::new(),
            client: None,
            request_id: None,
            company_id: None,
            action: Some(action),
            target: None,
            outcome: if success { "success" } else { "failure" }.into(),
            detail: None,
            chain: None,
        }
    }

    fn failed(&self) -> bool {
        self.outcome == "failure"
    }
}

/// What a rule found; the alert store turns it into an alert (or bumps the
/// active alert with the same `dedupe_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDraft {
    pub rule: &'static str,
    pub severity: Severity,
    pub dedupe_key: String,
    pub title: String,
    /// No secrets: ids, addresses, counts and reasons only.
    pub detail: String,
    pub company_id: Option<String>,
    pub at: OffsetDateTime,
}

/// The network an address belongs to for the new-network rule: the /24 of an
/// IPv4 address, the /64 of an IPv6 one (IPv4-mapped IPv6 counts as IPv4).
pub fn network_of(client: &str) -> Option<String> {
    let ip: IpAddr = client
        .parse()
        .ok()
        .or_else(|| client.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))?;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    Some(match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    })
}

/// Times of recent events per key, each key's window kept short.
#[derive(Debug, Default)]
struct Windows<T> {
    by_key: HashMap<String, VecDeque<(OffsetDateTime, T)>>,
}

impl<T> Windows<T> {
    /// Records one event; returns the events in the window when they reach the
    /// threshold (and starts the key's count again, so a burst fires once).
    fn hit(
        &mut self,
        key: &str,
        at: OffsetDateTime,
        value: T,
        threshold: Threshold,
    ) -> Option<Vec<(OffsetDateTime, T)>> {
        let window = threshold.window();
        let times = self.by_key.entry(key.to_string()).or_default();
        times.push_back((at, value));
        times.retain(|(t, _)| at - *t < window);
        if times.len() >= threshold.count as usize {
            let fired: Vec<_> = times.drain(..).collect();
            self.by_key.remove(key);
            return Some(fired);
        }
        None
    }

    fn sweep(&mut self, now: OffsetDateTime, window: Duration) {
        self.by_key.retain(|_, times| {
            times.retain(|(t, _)| now - *t < window);
            !times.is_empty()
        });
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ChainHead {
    seq: i64,
    hash: Option<String>,
}

/// Consumes audit events one by one and reports what the rules find.
#[derive(Debug)]
pub struct Monitor {
    config: MonitorConfig,
    admins: HashSet<String>,
    failed_by_account: Windows<()>,
    failed_by_client: Windows<()>,
    refused_by_actor: Windows<()>,
    /// Refusals by client address, with the actor of each.
    refused_by_client: Windows<String>,
    exports_by_actor: Windows<Option<String>>,
    invitations_by_actor: Windows<Option<String>>,
    /// Networks each user id has logged in from, most recent last.
    networks: HashMap<String, VecDeque<String>>,
    chains: HashMap<String, ChainHead>,
    /// Whether a source first seen must start at sequence 1.
    complete_sources: bool,
    last_maintenance: Option<OffsetDateTime>,
    /// Nodes whose last recorded system event was a start.
    running: std::collections::HashSet<String>,
    latest: Option<OffsetDateTime>,
    /// Observations since the last sweep.
    observed: u64,
}

impl Monitor {
    pub fn new(config: MonitorConfig) -> Monitor {
        Monitor {
            config,
            admins: HashSet::new(),
            failed_by_account: Windows::default(),
            failed_by_client: Windows::default(),
            refused_by_actor: Windows::default(),
            refused_by_client: Windows::default(),
            exports_by_actor: Windows::default(),
            invitations_by_actor: Windows::default(),
            networks: HashMap::new(),
            chains: HashMap::new(),
            complete_sources: false,
            last_maintenance: None,
            running: std::collections::HashSet::new(),
            latest: None,
            observed: 0,
        }
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The user ids (without the "user:" prefix) that are an admin or owner of
    /// some company; the new-network rule watches them.
    pub fn set_admins<I, S>(&mut self, user_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.admins = user_ids.into_iter().map(Into::into).collect();
    }

    /// Declares that the stream starts at the beginning of every source, so a
    /// source whose first event is not sequence 1 has lost events. Off by
    /// default: a monitor that starts mid-stream takes each source's first
    /// event as its baseline.
    pub fn expect_complete_sources(&mut self, complete: bool) {
        self.complete_sources = complete;
    }

    /// Feeds one event; returns the alerts it raises (usually none).
    pub fn observe(&mut self, e: &ObservedEvent) -> Vec<AlertDraft> {
        let mut out = Vec::new();
        self.observed += 1;
        if self.latest.is_none_or(|l| e.at > l) {
            self.latest = Some(e.at);
        }
        if self.observed >= SWEEP_EVERY {
            self.observed = 0;
            self.sweep();
        }
        self.check_chain(e, &mut out);
        let Some(action) = e.action else {
            return out;
        };
        match action {
            Action::AuthLogin if e.failed() => self.failed_login(e, &mut out),
            Action::AuthLogin => self.successful_login(e, &mut out),
            // Staff logins count like customers' (their targets differ:
            // `staff-email:…`, or `staff:ID` for a wrong code after a right
            // passphrase).
            Action::StaffLogin if e.failed() => self.failed_login(e, &mut out),
            Action::AccessCompany if e.failed() => self.refused_company(e, &mut out),
            Action::StaffRefused => {
                // Every refused staff request: there is no threshold for
                // staff reaching where they may not.
                let company = e.company_id.clone();
                self.push(
                    &mut out,
                    AlertDraft {
                        rule: rule::STAFF_OUTSIDE_GRANT,
                        severity: Severity::High,
                        dedupe_key: format!(
                            "{}:{}:{}",
                            rule::STAFF_OUTSIDE_GRANT,
                            e.actor,
                            company.as_deref().unwrap_or("-")
                        ),
                        title: format!("Staff request refused for {}", e.actor),
                        detail: e.detail.clone().unwrap_or_default(),
                        company_id: company,
                        at: e.at,
                    },
                );
            }
            Action::AuditChainBreak => {
                let what = e.detail.as_deref().unwrap_or("no detail");
                let source = e.target.as_deref().unwrap_or(&e.source);
                self.push(
                    &mut out,
                    AlertDraft {
                        rule: rule::AUDIT_CHAIN_BREAK,
                        severity: Severity::Critical,
                        dedupe_key: format!("{}:{source}", rule::AUDIT_CHAIN_BREAK),
                        title: format!("Audit chain break reported for {source}"),
                        detail: format!("{} reported: {what}", e.actor),
                        company_id: company_of_source(source).or_else(|| e.company_id.clone()),
                        at: e.at,
                    },
                );
            }
            Action::SystemMaintenance => {
                if self.last_maintenance.is_none_or(|m| e.at > m) {
                    self.last_maintenance = Some(e.at);
                }
            }
            Action::SystemShutdown => {
                self.running.remove(&node_of(e));
                self.shutdown(e, &mut out);
            }
            Action::SystemStart => self.start(e, &mut out),
            Action::AuditUnavailable => {
                let scope = e
                    .company_id
                    .as_deref()
                    .map_or_else(|| e.source.clone(), |c| format!("company:{c}"));
                self.push(
                    &mut out,
                    AlertDraft {
                        rule: rule::AUDIT_UNAVAILABLE,
                        severity: Severity::Critical,
                        dedupe_key: format!("{}:{scope}", rule::AUDIT_UNAVAILABLE),
                        title: format!("Audit trail of {scope} could not be written"),
                        detail: format!(
                            "recording {} failed: {}",
                            e.target.as_deref().unwrap_or("an event"),
                            e.detail.as_deref().unwrap_or("no detail")
                        ),
                        company_id: e.company_id.clone(),
                        at: e.at,
                    },
                );
            }
            Action::ExportCreate
            | Action::ExportDownload
            | Action::ExportPush
            | Action::ExportScheduleDelete
            | Action::ExportScheduleSet => {
                if action.is_export_of_data() {
                    self.export(e, action, &mut out);
                }
            }
            Action::SecurityPolicySet if !e.failed() => {
                if e.detail
                    .as_deref()
                    .is_some_and(crate::security_policy::allowlist_changed)
                {
                    let company = e.company_id.clone().unwrap_or_default();
                    self.push(
                        &mut out,
                        AlertDraft {
                            rule: rule::ALLOWLIST_CHANGE,
                            severity: Severity::Medium,
                            dedupe_key: format!(
                                "{}:{company}:{}",
                                rule::ALLOWLIST_CHANGE,
                                e.source_seq
                            ),
                            title: format!("IP allowlist of company {company} changed"),
                            detail: format!("{} changed the company's IP allowlist", e.actor),
                            company_id: e.company_id.clone(),
                            at: e.at,
                        },
                    );
                }
            }
            Action::AuthMfaRemove if !e.failed() => self.mfa_removed(e, &mut out),
            Action::InvitationCreate if !e.failed() => {
                let threshold = self.config.mass_invitations;
                if let Some(fired) =
                    self.invitations_by_actor
                        .hit(&e.actor, e.at, e.company_id.clone(), threshold)
                {
                    self.push(
                        &mut out,
                        AlertDraft {
                            rule: rule::MASS_INVITATIONS,
                            severity: Severity::Medium,
                            dedupe_key: format!("{}:{}", rule::MASS_INVITATIONS, e.actor),
                            title: format!("Many invitations sent by {}", e.actor),
                            detail: format!(
                                "{} invitations within {} s",
                                fired.len(),
                                threshold.window_secs
                            ),
                            company_id: e.company_id.clone(),
                            at: e.at,
                        },
                    );
                }
            }
            // Watched by no rule (successful company access included). Listed
            // rather than matched by `_`, so that a new action is placed here
            // or with a rule on purpose.
            Action::AccessCompany
            | Action::AccessPermission
            | Action::ApiKeysList
            | Action::AuditList
            | Action::ExportScheduleRead
            | Action::ExportsGet
            | Action::ExportsList
            | Action::AccountCreate
            | Action::AccountRegister
            | Action::AccountsList
            | Action::AlertAcknowledge
            | Action::AlertRaise
            | Action::AlertResolve
            | Action::ApiKeyCreate
            | Action::ApiKeyRevoke
            | Action::AuditCheckpoint
            | Action::AuditImport
            | Action::AuditRecord
            | Action::AuthLogout
            | Action::BackupVerify
            | Action::CompanyCreate
            | Action::CompanyMove
            | Action::CompanyDeprovision
            | Action::CompanyDeprovisionCancel
            | Action::CompanyDestroyStep
            | Action::CompanyDestroyed
            | Action::DestructionCertificateRead
            | Action::CompanyKeyRotate
            | Action::CompanyKeyStatusRead
            | Action::CompanyKeyVersionDestroy
            | Action::RetentionSet
            | Action::RetentionRead
            | Action::ExportExpire
            | Action::DataPurge
            | Action::DataPurgePreview
            | Action::DataPurgeBackups
            | Action::SandboxApprove
            | Action::SandboxRestore
            | Action::SandboxDestroy
            | Action::CompanyRead
            | Action::DashboardRead
            | Action::CompanyRestore
            | Action::CompanyRestoreInPlace
            | Action::RestoresList
            | Action::CompanySignup
            | Action::DrRestore
            | Action::DrRestoreApiKey
            | Action::DrRestoreExportSchedule
            | Action::DrRestoreMember
            | Action::DrRestoreSecondFactors
            | Action::DrRestoreSecurityPolicy
            | Action::DrRestoreGrant
            | Action::DrRestoreUser
            | Action::EntriesList
            | Action::EntryPost
            | Action::EntryRead
            | Action::EntryReverse
            | Action::FileDownload
            | Action::FileUpload
            | Action::FilesList
            | Action::AccessAddress
            | Action::AccessSession
            | Action::AuthPassphraseChange
            | Action::AuthSessionRevoke
            | Action::AuthMfaEnrol
            | Action::AuthMfaRemove
            | Action::AuthRecoveryCodes
            | Action::AuthPassphraseReset
            | Action::ApiKeyRotate
            | Action::SecurityPolicyRead
            | Action::SecurityPolicySet
            | Action::InvitationAccept
            | Action::InvitationCreate
            | Action::InvitationRevoke
            | Action::InvitationsList
            | Action::MailUndeliverable
            | Action::MemberRemove
            | Action::MemberRole
            | Action::MembersList
            | Action::JournalReplay
            | Action::KeysRotateMaster
            | Action::MemberAdd
            | Action::ReportBalanceSheet
            | Action::ReportIncomeStatement
            | Action::ReportTrialBalance
            | Action::UserCreate
            | Action::StaffCreate
            | Action::StaffRoles
            | Action::StaffDisable
            | Action::StaffResetMfa
            | Action::StaffLogin
            | Action::StaffLogout
            | Action::StaffView
            | Action::GrantRequest
            | Action::GrantApprove
            | Action::GrantDeny
            | Action::GrantRevoke
            | Action::GrantsList
            | Action::GrantUse => {}
        }
        out
    }

    fn push(&self, out: &mut Vec<AlertDraft>, draft: AlertDraft) {
        if self.config.enabled(draft.rule) {
            out.push(draft);
        }
    }

    fn check_chain(&mut self, e: &ObservedEvent, out: &mut Vec<AlertDraft>) {
        let mut problems = Vec::new();
        let previous = self.chains.get(&e.source).cloned();
        match &previous {
            Some(head) if e.source_seq == head.seq + 1 => {
                if let (Some(prev), Some(link)) = (&head.hash, &e.chain) {
                    if &link.prev_hash != prev {
                        problems.push(format!(
                            "event {} does not link to event {}",
                            e.source_seq, head.seq
                        ));
                    }
                }
            }
            Some(head) if e.source_seq > head.seq + 1 => problems.push(format!(
                "{} missing (gap after event {})",
                missing(head.seq + 1, e.source_seq - 1),
                head.seq
            )),
            Some(head) => problems.push(format!(
                "event {} arrived again or out of order after {}",
                e.source_seq, head.seq
            )),
            None if self.complete_sources && e.source_seq > 1 => problems.push(format!(
                "the first event collected is {}; {} missing",
                e.source_seq,
                missing(1, e.source_seq - 1)
            )),
            None if self.complete_sources && e.source_seq < 1 => {
                problems.push(format!("event {} has no valid sequence", e.source_seq))
            }
            None => {}
        }
        if let Some(link) = &e.chain {
            if !link.intact {
                problems.push(format!(
                    "event {} does not match its hash (altered)",
                    e.source_seq
                ));
            }
        }
        let advances = previous.as_ref().is_none_or(|h| e.source_seq > h.seq);
        if advances {
            self.chains.insert(
                e.source.clone(),
                ChainHead {
                    seq: e.source_seq,
                    hash: e.chain.as_ref().map(|c| c.hash.clone()),
                },
            );
        }
        if !problems.is_empty() {
            self.push(
                out,
                AlertDraft {
                    rule: rule::AUDIT_CHAIN_BREAK,
                    severity: Severity::Critical,
                    dedupe_key: format!("{}:{}", rule::AUDIT_CHAIN_BREAK, e.source),
                    title: format!("Audit chain break in {}", e.source),
                    detail: problems.join("; "),
                    company_id: company_of_source(&e.source),
                    at: e.at,
                },
            );
        }
    }

    fn failed_login(&mut self, e: &ObservedEvent, out: &mut Vec<AlertDraft>) {
        let account = e.target.as_deref().filter(|t| !t.is_empty());
        if let Some(account) = account {
            let t = self.config.failed_logins_per_account;
            if let Some(hits) = self.failed_by_account.hit(account, e.at, (), t) {
                let shown = account.strip_prefix("email:").unwrap_or(account);
                self.push(
                    out,
                    AlertDraft {
                        rule: rule::FAILED_LOGINS_ACCOUNT,
                        severity: Severity::High,
                        dedupe_key: format!("{}:{account}", rule::FAILED_LOGINS_ACCOUNT),
                        title: format!("Repeated failed logins for {shown}"),
                        detail: format!(
                            "{} failed logins for {shown} within {}",
                            hits.len(),
                            minutes(t.window_secs)
                        ),
                        company_id: None,
                        at: e.at,
                    },
                );
            }
        }
        if let Some(client) = e.client.as_deref().filter(|c| !c.is_empty()) {
            let t = self.config.failed_logins_per_client;
            if let Some(hits) = self.failed_by_client.hit(client, e.at, (), t) {
                self.push(
                    out,
                    AlertDraft {
                        rule: rule::FAILED_LOGINS_CLIENT,
                        severity: Severity::High,
                        dedupe_key: format!("{}:{client}", rule::FAILED_LOGINS_CLIENT),
                        title: format!("Repeated failed logins from {client}"),
                        detail: format!(
                            "{} failed logins from client {client} within {}",
                            hits.len(),
                            minutes(t.window_secs)
                        ),
                        company_id: None,
                        at: e.at,
                    },
                );
            }
        }
    }

    /// A second factor taken off the account of an owner or admin (by
    /// themselves or an operator): the account is now one passphrase away.
    fn mfa_removed(&mut self, e: &ObservedEvent, out: &mut Vec<AlertDraft>) {
        let account = e.target.as_deref().unwrap_or(&e.actor);
        let Some(user) = account.strip_prefix("user:") else {
            return;
        };
        if !self.admins.contains(user) {
            return;
        }
        self.push(
            out,
            AlertDraft {
                rule: rule::MFA_REMOVED_ADMIN,
                severity: Severity::High,
                dedupe_key: format!("{}:user:{user}:{}", rule::MFA_REMOVED_ADMIN, e.source_seq),
                title: format!("Second factor removed from admin user:{user}"),
                detail: format!(
                    "{} removed a second factor ({}) of user:{user}, an owner or admin",
                    e.actor,
                    e.detail.as_deref().unwrap_or("no detail")
                ),
                company_id: None,
                at: e.at,
            },
        );
    }

    fn successful_login(&mut self, e: &ObservedEvent, out: &mut Vec<AlertDraft>) {
        let Some(user) = e.actor.strip_prefix("user:") else {
            return;
        };
        let Some(network) = e.client.as_deref().and_then(network_of) else {
            return;
        };
        let known = self.networks.entry(user.to_string()).or_default();
        if let Some(i) = known.iter().position(|n| *n == network) {
            // Seen before: keep it as the most recently used.
            if let Some(n) = known.remove(i) {
                known.push_back(n);
            }
            return;
        }
        let first_login = known.is_empty();
        let previous: Vec<String> = known.iter().rev().take(3).cloned().collect();
        known.push_back(network.clone());
        while known.len() > MAX_NETWORKS_PER_USER {
            known.pop_front();
        }
        if first_login || !self.admins.contains(user) {
            return;
        }
        self.push(
            out,
            AlertDraft {
                rule: rule::NEW_NETWORK_ADMIN,
                severity: Severity::Medium,
                dedupe_key: format!("{}:user:{user}:{network}", rule::NEW_NETWORK_ADMIN),
                title: format!("Admin user:{user} logged in from a new network"),
                detail: format!(
                    "user:{user} (an admin or owner) logged in from {} in network {network}; \
                     recent networks: {}",
                    e.client.as_deref().unwrap_or(""),
                    previous.join(", ")
                ),
                company_id: None,
                at: e.at,
            },
        );
    }

    fn refused_company(&mut self, e: &ObservedEvent, out: &mut Vec<AlertDraft>) {
        let t = self.config.refused_cross_company;
        if e.actor != "anonymous" && !e.actor.is_empty() {
            if let Some(hits) = self.refused_by_actor.hit(&e.actor, e.at, (), t) {
                self.push(
                    out,
                    AlertDraft {
                        rule: rule::CROSS_COMPANY_REFUSALS,
                        severity: Severity::High,
                        dedupe_key: format!("{}:actor:{}", rule::CROSS_COMPANY_REFUSALS, e.actor),
                        title: format!("Burst of refused cross-company requests by {}", e.actor),
                        detail: format!(
                            "{} requests by {} to companies it has no access to within {}",
                            hits.len(),
                            e.actor,
                            minutes(t.window_secs)
                        ),
                        company_id: None,
                        at: e.at,
                    },
                );
            }
        }
        // By address: only when several identities are involved (one actor's
        // burst is reported above).
        if let Some(client) = e.client.as_deref().filter(|c| !c.is_empty()) {
            let windows = &mut self.refused_by_client;
            let times = windows.by_key.entry(client.to_string()).or_default();
            times.push_back((e.at, e.actor.clone()));
            times.retain(|(at, _)| e.at - *at < t.window());
            let actors: HashSet<&str> = times.iter().map(|(_, a)| a.as_str()).collect();
            if times.len() >= t.count as usize && actors.len() >= 2 {
                let (count, distinct) = (times.len(), actors.len());
                windows.by_key.remove(client);
                self.push(
                    out,
                    AlertDraft {
                        rule: rule::CROSS_COMPANY_REFUSALS,
                        severity: Severity::High,
                        dedupe_key: format!("{}:client:{client}", rule::CROSS_COMPANY_REFUSALS),
                        title: format!("Burst of refused cross-company requests from {client}"),
                        detail: format!(
                            "{count} refused cross-company requests from client {client} by \
                             {distinct} identities within {}",
                            minutes(t.window_secs)
                        ),
                        company_id: None,
                        at: e.at,
                    },
                );
            }
        }
    }

    fn export(&mut self, e: &ObservedEvent, action: Action, out: &mut Vec<AlertDraft>) {
        let t = self.config.mass_export;
        let Some(hits) = self
            .exports_by_actor
            .hit(&e.actor, e.at, e.company_id.clone(), t)
        else {
            return;
        };
        let companies: HashSet<Option<&str>> = hits.iter().map(|(_, c)| c.as_deref()).collect();
        let company_id = match companies.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(one)] => Some(one.to_string()),
            _ => None,
        };
        self.push(
            out,
            AlertDraft {
                rule: rule::MASS_EXPORT,
                severity: Severity::High,
                dedupe_key: format!("{}:{}", rule::MASS_EXPORT, e.actor),
                title: format!("Mass export by {}", e.actor),
                detail: format!(
                    "{} exports by {} within {} (latest: {})",
                    hits.len(),
                    e.actor,
                    minutes(t.window_secs),
                    action
                ),
                company_id,
                at: e.at,
            },
        );
    }

    /// A node that starts again with no shutdown recorded since its last start
    /// went down uncleanly: a crash, `kill -9` or a power cut.
    fn start(&mut self, e: &ObservedEvent, out: &mut Vec<AlertDraft>) {
        let node = node_of(e);
        if !self.running.insert(node.clone()) {
            self.push(
                out,
                AlertDraft {
                    rule: rule::UNCLEAN_RESTART,
                    severity: Severity::High,
                    dedupe_key: format!("{}:{node}", rule::UNCLEAN_RESTART),
                    title: format!("Node {node} restarted without a recorded shutdown"),
                    detail: format!(
                        "{} recorded system.start ({}) while its previous start had no system.shutdown: crash, kill or power loss",
                        e.source,
                        e.detail.as_deref().unwrap_or("no detail")
                    ),
                    company_id: None,
                    at: e.at,
                },
            );
        }
    }

    fn shutdown(&mut self, e: &ObservedEvent, out: &mut Vec<AlertDraft>) {
        let window = Duration::seconds(self.config.maintenance_window_secs);
        let planned = self
            .last_maintenance
            .is_some_and(|m| m <= e.at + CLOCK_SKEW && e.at - m <= window);
        if planned {
            return;
        }
        self.push(
            out,
            AlertDraft {
                rule: rule::UNPLANNED_SHUTDOWN,
                severity: Severity::Medium,
                dedupe_key: format!("{}:{}", rule::UNPLANNED_SHUTDOWN, e.source),
                title: "Shutdown without a planned-maintenance mark".into(),
                detail: format!(
                    "{} recorded system.shutdown ({}) with no system.maintenance mark in the {} before it",
                    e.source,
                    e.detail.as_deref().unwrap_or("no detail"),
                    minutes(self.config.maintenance_window_secs)
                ),
                company_id: None,
                at: e.at,
            },
        );
    }

    fn sweep(&mut self) {
        let Some(now) = self.latest else { return };
        let c = &self.config;
        self.failed_by_account
            .sweep(now, c.failed_logins_per_account.window());
        self.failed_by_client
            .sweep(now, c.failed_logins_per_client.window());
        self.refused_by_actor
            .sweep(now, c.refused_cross_company.window());
        self.refused_by_client
            .sweep(now, c.refused_cross_company.window());
        self.exports_by_actor.sweep(now, c.mass_export.window());
        self.invitations_by_actor
            .sweep(now, c.mass_invitations.window());
    }
}

fn missing(first: i64, last: i64) -> String {
    if first == last {
        format!("event {first} is")
    } else {
        format!("events {first} to {last} are")
    }
}

fn company_of_source(source: &str) -> Option<String> {
    source.strip_prefix("company:").map(str::to_string)
}

fn minutes(secs: i64) -> String {
    if secs % 60 == 0 {
        let m = secs / 60;
        format!("{m} minute{}", if m == 1 { "" } else { "s" })
    } else {
        format!("{secs} seconds")
    }
}

/// The node a system event is about: its detail reads "... on node <id>, ...".
fn node_of(e: &ObservedEvent) -> String {
    e.detail
        .as_deref()
        .and_then(|d| d.split(" on node ").nth(1))
        .and_then(|rest| rest.split([',', ' ']).next())
        .filter(|n| !n.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

#[cfg(test)]
mod tests;
