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
//! - `mass-export`: N `export.*` events by one actor in a window (high);
//!   changes to an export schedule (`export.schedule.*`) and the scheduled
//!   pushes themselves (`export.push`, by the system, at most hourly per
//!   company) are not exports anyone asked for in a burst, and do not count;
//! - `unplanned-shutdown`: `system.shutdown` without a `system.maintenance`
//!   mark in the window before it (medium);
//! - `audit-unavailable`: an `audit.unavailable` event, i.e. a company's
//!   audit trail could not be written and the fail-closed policy applied (critical).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;
use time::{Duration, OffsetDateTime};

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
    pub const ALL: [&str; 8] = [
        FAILED_LOGINS_ACCOUNT,
        FAILED_LOGINS_CLIENT,
        NEW_NETWORK_ADMIN,
        CROSS_COMPANY_REFUSALS,
        AUDIT_CHAIN_BREAK,
        MASS_EXPORT,
        UNPLANNED_SHUTDOWN,
        AUDIT_UNAVAILABLE,
    ];
}

/// How far event times from different nodes may disagree when a maintenance
/// mark is matched to a shutdown.
const CLOCK_SKEW: Duration = Duration::minutes(1);
/// Networks remembered per user (most recently used kept).
const MAX_NETWORKS_PER_USER: usize = 32;
/// Observations between sweeps of idle windows.
const SWEEP_EVERY: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Severity, UnknownName> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(UnknownName(format!("unknown severity {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownName(pub String);

/// An alert's triage state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an alert that is {from} cannot become {to}")]
pub struct InvalidTransition {
    pub from: AlertState,
    pub to: AlertState,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }

    /// The triage life cycle: open → acknowledged → resolved, or open → resolved.
    pub fn transition(self, to: AlertState) -> Result<AlertState, InvalidTransition> {
        match (self, to) {
            (AlertState::Open, AlertState::Acknowledged)
            | (AlertState::Open, AlertState::Resolved)
            | (AlertState::Acknowledged, AlertState::Resolved) => Ok(to),
            (from, to) => Err(InvalidTransition { from, to }),
        }
    }

    /// Open and acknowledged alerts absorb repeats of the same finding.
    pub fn is_active(self) -> bool {
        !matches!(self, AlertState::Resolved)
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<AlertState, UnknownName> {
        match s {
            "open" => Ok(AlertState::Open),
            "acknowledged" => Ok(AlertState::Acknowledged),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(UnknownName(format!(
                "unknown alert state {other:?} (open, acknowledged or resolved)"
            ))),
        }
    }
}

/// N events in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Threshold {
    pub count: u32,
    pub window_secs: i64,
}

impl Threshold {
    pub const fn new(count: u32, window_secs: i64) -> Threshold {
        Threshold { count, window_secs }
    }
    pub fn window(&self) -> Duration {
        Duration::seconds(self.window_secs)
    }
}

/// Thresholds and windows of every rule. In a TOML config file:
///
/// ```toml
/// [monitor]
/// failed-logins-per-account = { count = 5, window-secs = 600 }
/// disabled-rules = ["unplanned-shutdown"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MonitorConfig {
    pub failed_logins_per_account: Threshold,
    pub failed_logins_per_client: Threshold,
    pub refused_cross_company: Threshold,
    pub mass_export: Threshold,
    /// How long before a shutdown a `system.maintenance` mark covers it.
    pub maintenance_window_secs: i64,
    /// Rule slugs that raise nothing.
    pub disabled_rules: Vec<String>,
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
        MonitorConfig {
            failed_logins_per_account: Threshold::new(5, 600),
            failed_logins_per_client: Threshold::new(20, 600),
            refused_cross_company: Threshold::new(10, 300),
            mass_export: Threshold::new(5, 600),
            maintenance_window_secs: 1800,
            disabled_rules: Vec::new(),
        }
    }
}

impl MonitorConfig {
    /// Rejects thresholds that could never fire or always fire, and unknown rules.
    pub fn validate(&self) -> Result<(), UnknownName> {
        let thresholds = [
            ("failed-logins-per-account", self.failed_logins_per_account),
            ("failed-logins-per-client", self.failed_logins_per_client),
            ("refused-cross-company", self.refused_cross_company),
            ("mass-export", self.mass_export),
        ];
        for (name, t) in thresholds {
            if t.count < 2 || t.window_secs < 1 {
                return Err(UnknownName(format!(
                    "monitor rule {name}: count must be at least 2 and window-secs at least 1"
                )));
            }
        }
        if self.maintenance_window_secs < 1 {
            return Err(UnknownName(
                "monitor: maintenance-window-secs must be at least 1".into(),
            ));
        }
        for r in &self.disabled_rules {
            if !rule::ALL.contains(&r.as_str()) {
                return Err(UnknownName(format!(
                    "monitor: unknown rule {r:?} in disabled-rules (known: {})",
                    rule::ALL.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn enabled(&self, rule: &str) -> bool {
        !self.disabled_rules.iter().any(|r| r == rule)
    }
}

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
    pub action: String,
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
        action: &str,
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
            action: action.into(),
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
        match e.action.as_str() {
            "auth.login" if e.failed() => self.failed_login(e, &mut out),
            "auth.login" => self.successful_login(e, &mut out),
            "access.company" if e.failed() => self.refused_company(e, &mut out),
            "audit.chain_break" => {
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
            "system.maintenance" if self.last_maintenance.is_none_or(|m| e.at > m) => {
                self.last_maintenance = Some(e.at);
            }
            "system.shutdown" => {
                self.running.remove(&node_of(e));
                self.shutdown(e, &mut out);
            }
            "system.start" => self.start(e, &mut out),
            "audit.unavailable" => {
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
            action if counts_as_export(action) => self.export(e, &mut out),
            _ => {}
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

    fn export(&mut self, e: &ObservedEvent, out: &mut Vec<AlertDraft>) {
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
                    e.action
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

/// True for the `export.*` events the mass-export rule counts.
fn counts_as_export(action: &str) -> bool {
    action.starts_with("export.")
        && action != "export.push"
        && !action.starts_with("export.schedule.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

    /// Feeds events with consecutive sequence numbers per source.
    struct Feed {
        monitor: Monitor,
        seqs: HashMap<String, i64>,
    }

    impl Feed {
        fn new() -> Feed {
            Feed::with(MonitorConfig::default())
        }
        fn with(config: MonitorConfig) -> Feed {
            let mut monitor = Monitor::new(config);
            monitor.set_admins(["admin-1", "owner-1"]);
            Feed {
                monitor,
                seqs: HashMap::new(),
            }
        }
        fn send(&mut self, mut e: ObservedEvent) -> Vec<AlertDraft> {
            let seq = self.seqs.entry(e.source.clone()).or_insert(0);
            *seq += 1;
            e.source_seq = *seq;
            self.monitor.observe(&e)
        }
        fn send_all(&mut self, events: Vec<ObservedEvent>) -> Vec<AlertDraft> {
            events.into_iter().flat_map(|e| self.send(e)).collect()
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        T0 + Duration::seconds(secs)
    }

    fn login(secs: i64, user: &str, email: &str, client: &str, ok: bool) -> ObservedEvent {
        let mut e = ObservedEvent::new(
            "control",
            0,
            at(secs),
            &format!("user:{user}"),
            "auth.login",
            ok,
        );
        e.auth = "passphrase".into();
        e.client = Some(client.into());
        if !ok {
            e.target = Some(format!("email:{email}"));
            e.detail = Some("wrong passphrase".into());
        }
        e
    }

    fn refusal(secs: i64, actor: &str, client: &str, company: &str) -> ObservedEvent {
        let mut e = ObservedEvent::new("control", 0, at(secs), actor, "access.company", false);
        e.client = Some(client.into());
        e.company_id = Some(company.into());
        e
    }

    fn export(secs: i64, actor: &str, company: &str) -> ObservedEvent {
        let mut e = ObservedEvent::new(
            &format!("company:{company}"),
            0,
            at(secs),
            actor,
            "export.entries",
            true,
        );
        e.company_id = Some(company.into());
        e
    }

    fn post(secs: i64, actor: &str, company: &str) -> ObservedEvent {
        let mut e = ObservedEvent::new(
            &format!("company:{company}"),
            0,
            at(secs),
            actor,
            "entry.post",
            true,
        );
        e.company_id = Some(company.into());
        e
    }

    fn system(secs: i64, action: &str) -> ObservedEvent {
        ObservedEvent::new("control", 0, at(secs), "system", action, true)
    }

    fn rules(alerts: &[AlertDraft]) -> Vec<&'static str> {
        alerts.iter().map(|a| a.rule).collect()
    }

    #[test]
    fn failed_logins_for_one_account_fire_once_per_burst() {
        let mut f = Feed::new();
        let alerts = f.send_all(
            (0..6)
                .map(|i| login(i * 30, "u1", "ann@x.example", &format!("10.0.{i}.1"), false))
                .collect(),
        );
        assert_eq!(rules(&alerts), [rule::FAILED_LOGINS_ACCOUNT]);
        let a = &alerts[0];
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.dedupe_key, "failed-logins-account:email:ann@x.example");
        assert!(a.detail.contains("5 failed logins for ann@x.example"));
        assert_eq!(a.at, at(120));
    }

    #[test]
    fn four_failures_then_success_is_quiet() {
        let mut f = Feed::new();
        let mut events: Vec<_> = (0..4)
            .map(|i| login(i * 10, "u1", "ann@x.example", "10.0.0.1", false))
            .collect();
        events.push(login(50, "u1", "ann@x.example", "10.0.0.1", true));
        assert!(f.send_all(events).is_empty());
    }

    #[test]
    fn spaced_out_failures_are_quiet() {
        let mut f = Feed::new();
        // One failure every three minutes: never five in ten minutes.
        let events = (0..20)
            .map(|i| login(i * 180, "u1", "ann@x.example", "10.0.0.1", false))
            .collect();
        assert!(f.send_all(events).is_empty());
    }

    #[test]
    fn failed_logins_from_one_client_fire() {
        let mut f = Feed::new();
        // 20 accounts, 1 failure each, from one address: spraying.
        let alerts = f.send_all(
            (0..20)
                .map(|i| {
                    login(
                        i,
                        &format!("u{i}"),
                        &format!("u{i}@x.example"),
                        "198.51.100.7",
                        false,
                    )
                })
                .collect(),
        );
        assert_eq!(rules(&alerts), [rule::FAILED_LOGINS_CLIENT]);
        assert_eq!(alerts[0].dedupe_key, "failed-logins-client:198.51.100.7");
        // 19 from one address is quiet.
        let mut f = Feed::new();
        let alerts = f.send_all(
            (0..19)
                .map(|i| {
                    login(
                        i,
                        &format!("u{i}"),
                        &format!("u{i}@x.example"),
                        "198.51.100.7",
                        false,
                    )
                })
                .collect(),
        );
        assert!(alerts.is_empty());
    }

    #[test]
    fn admin_login_from_new_network_fires() {
        let mut f = Feed::new();
        assert!(f
            .send(login(0, "admin-1", "", "203.0.113.10", true))
            .is_empty());
        // Same /24: quiet.
        assert!(f
            .send(login(60, "admin-1", "", "203.0.113.99", true))
            .is_empty());
        let alerts = f.send(login(120, "admin-1", "", "192.0.2.5", true));
        assert_eq!(rules(&alerts), [rule::NEW_NETWORK_ADMIN]);
        assert_eq!(alerts[0].severity, Severity::Medium);
        assert!(alerts[0].dedupe_key.ends_with("192.0.2.0/24"));
        // Now known.
        assert!(f
            .send(login(180, "admin-1", "", "192.0.2.6", true))
            .is_empty());
        // Back to the first network: still known.
        assert!(f
            .send(login(240, "admin-1", "", "203.0.113.1", true))
            .is_empty());
    }

    #[test]
    fn new_network_rule_spares_first_logins_and_non_admins() {
        let mut f = Feed::new();
        // First login ever: nothing to compare with.
        assert!(f
            .send(login(0, "owner-1", "", "203.0.113.10", true))
            .is_empty());
        // A non-admin moving networks: quiet.
        assert!(f
            .send(login(0, "clerk", "", "203.0.113.10", true))
            .is_empty());
        assert!(f.send(login(10, "clerk", "", "192.0.2.1", true)).is_empty());
        // IPv6: same /64 quiet, other /64 fires for the owner.
        assert!(
            f.send(login(20, "owner-1", "", "2001:db8:1:2::1", true))
                .len()
                == 1
        );
        assert!(f
            .send(login(30, "owner-1", "", "2001:db8:1:2:ffff::9", true))
            .is_empty());
        assert_eq!(
            rules(&f.send(login(40, "owner-1", "", "2001:db8:1:3::1", true))),
            [rule::NEW_NETWORK_ADMIN]
        );
    }

    #[test]
    fn networks_are_prefixes() {
        assert_eq!(
            network_of("203.0.113.77").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            network_of("::ffff:203.0.113.77").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            network_of("2001:db8:a:b:c:d:e:f").as_deref(),
            Some("2001:db8:a:b::/64")
        );
        assert_eq!(
            network_of("203.0.113.77:443").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(network_of("not an address"), None);
    }

    #[test]
    fn refused_cross_company_bursts_fire() {
        let mut f = Feed::new();
        let alerts = f.send_all(
            (0..10)
                .map(|i| refusal(i * 5, "user:mallory", "198.51.100.9", &format!("c{i}")))
                .collect(),
        );
        assert_eq!(rules(&alerts), [rule::CROSS_COMPANY_REFUSALS]);
        assert_eq!(
            alerts[0].dedupe_key,
            "cross-company-refusals:actor:user:mallory"
        );

        // Many API keys from one address.
        let mut f = Feed::new();
        let alerts = f.send_all(
            (0..10)
                .map(|i| refusal(i, &format!("api_key:k{i}"), "198.51.100.9", "c1"))
                .collect(),
        );
        assert_eq!(rules(&alerts), [rule::CROSS_COMPANY_REFUSALS]);
        assert_eq!(
            alerts[0].dedupe_key,
            "cross-company-refusals:client:198.51.100.9"
        );

        // Nine, or ten spread over an hour: quiet.
        let mut f = Feed::new();
        let mut events: Vec<_> = (0..9)
            .map(|i| refusal(i, "user:mallory", "198.51.100.9", "c1"))
            .collect();
        events.extend((0..10).map(|i| refusal(1000 + i * 400, "user:eve", "198.51.100.10", "c1")));
        assert!(f.send_all(events).is_empty());
    }

    #[test]
    fn sequence_gap_and_broken_link_and_explicit_break_are_critical() {
        let mut m = Monitor::new(MonitorConfig::default());
        let ev = |seq: i64| post(seq, "user:u1", "c1");
        let mut e = ev(1);
        e.source_seq = 1;
        assert!(m.observe(&e).is_empty());
        let mut e = ev(2);
        e.source_seq = 2;
        assert!(m.observe(&e).is_empty());
        let mut e = ev(5);
        e.source_seq = 5;
        let alerts = m.observe(&e);
        assert_eq!(rules(&alerts), [rule::AUDIT_CHAIN_BREAK]);
        assert_eq!(alerts[0].severity, Severity::Critical);
        assert_eq!(alerts[0].company_id.as_deref(), Some("c1"));
        assert!(
            alerts[0].detail.contains("events 3 to 4 are missing"),
            "{}",
            alerts[0].detail
        );
        // A repeat of an old sequence number.
        let mut e = ev(6);
        e.source_seq = 4;
        assert_eq!(rules(&m.observe(&e)), [rule::AUDIT_CHAIN_BREAK]);

        // Hash links.
        let mut m = Monitor::new(MonitorConfig::default());
        let linked = |seq: i64, prev: &str, hash: &str, intact: bool| {
            let mut e = post(seq, "user:u1", "c2");
            e.source_seq = seq;
            e.chain = Some(ChainLink {
                prev_hash: prev.into(),
                hash: hash.into(),
                intact,
            });
            e
        };
        assert!(m.observe(&linked(1, "0", "a", true)).is_empty());
        assert!(m.observe(&linked(2, "a", "b", true)).is_empty());
        let alerts = m.observe(&linked(3, "x", "c", true));
        assert!(
            alerts[0].detail.contains("does not link"),
            "{}",
            alerts[0].detail
        );
        let alerts = m.observe(&linked(4, "c", "d", false));
        assert!(alerts[0].detail.contains("altered"), "{}", alerts[0].detail);

        // An explicit report from the forwarder or verifier.
        let mut m = Monitor::new(MonitorConfig::default());
        let mut e = ObservedEvent::new("control", 1, at(0), "system", "audit.chain_break", false);
        e.target = Some("company:c9".into());
        e.detail = Some("event 17 was altered".into());
        let alerts = m.observe(&e);
        assert_eq!(rules(&alerts), [rule::AUDIT_CHAIN_BREAK]);
        assert_eq!(alerts[0].company_id.as_deref(), Some("c9"));
        assert_eq!(alerts[0].dedupe_key, "audit-chain-break:company:c9");
    }

    #[test]
    fn complete_sources_must_start_at_one() {
        let mut m = Monitor::new(MonitorConfig::default());
        let mut e = post(0, "user:u1", "c1");
        e.source_seq = 3;
        assert!(
            m.observe(&e).is_empty(),
            "mid-stream start takes a baseline"
        );
        let mut m = Monitor::new(MonitorConfig::default());
        m.expect_complete_sources(true);
        assert_eq!(rules(&m.observe(&e)), [rule::AUDIT_CHAIN_BREAK]);
    }

    #[test]
    fn mass_export_fires_and_normal_exports_do_not() {
        let mut f = Feed::new();
        let alerts = f.send_all((0..5).map(|i| export(i * 60, "api_key:k1", "c1")).collect());
        assert_eq!(rules(&alerts), [rule::MASS_EXPORT]);
        assert_eq!(alerts[0].company_id.as_deref(), Some("c1"));
        let mut f = Feed::new();
        let mut events: Vec<_> = (0..4).map(|i| export(i * 60, "user:u1", "c1")).collect();
        events.extend((0..5).map(|i| export(i * 60, &format!("user:v{i}"), "c1")));
        events.extend((0..5).map(|i| export(1000 + i * 200, "user:u2", "c1")));
        assert!(f.send_all(events).is_empty());

        // Scheduled pushes (by the system, in every company) and schedule
        // changes are not a burst of exports.
        let mut f = Feed::new();
        let mut events = Vec::new();
        for i in 0..10 {
            let company = format!("c{i}");
            for action in [
                "export.push",
                "export.schedule.set",
                "export.schedule.delete",
            ] {
                let mut e = export(i * 10, "system", &company);
                e.action = action.into();
                events.push(e);
            }
        }
        assert!(f.send_all(events).is_empty());
        assert!(counts_as_export("export.create") && counts_as_export("export.download"));
    }

    #[test]
    fn shutdown_needs_a_maintenance_mark() {
        let mut f = Feed::new();
        assert!(f.send(system(0, "system.start")).is_empty());
        let alerts = f.send(system(100, "system.shutdown"));
        assert_eq!(rules(&alerts), [rule::UNPLANNED_SHUTDOWN]);
        assert_eq!(alerts[0].severity, Severity::Medium);

        let mut f = Feed::new();
        f.send(system(0, "system.maintenance"));
        assert!(f.send(system(600, "system.shutdown")).is_empty());
        assert!(f.send(system(700, "system.start")).is_empty());
        // A start with no shutdown since the previous start: unclean.
        let mut g = Feed::new();
        let started = |at: i64| {
            let mut e = system(at, "system.start");
            e.detail = Some("workbooks 0.1.0 on node n1, config sha256:x".into());
            e
        };
        assert!(g.send(started(0)).is_empty());
        assert_eq!(rules(&g.send(started(60))), vec![rule::UNCLEAN_RESTART]);
        // A second shutdown after the window: unplanned.
        assert_eq!(
            rules(&f.send(system(3600, "system.shutdown"))),
            [rule::UNPLANNED_SHUTDOWN]
        );
    }

    #[test]
    fn audit_unavailable_is_critical() {
        let mut f = Feed::new();
        let mut e = system(0, "audit.unavailable");
        e.outcome = "failure".into();
        e.company_id = Some("c1".into());
        e.target = Some("report.trial_balance".into());
        e.detail = Some("disk full".into());
        let alerts = f.send(e);
        assert_eq!(rules(&alerts), [rule::AUDIT_UNAVAILABLE]);
        assert_eq!(alerts[0].severity, Severity::Critical);
        assert_eq!(alerts[0].dedupe_key, "audit-unavailable:company:c1");
        assert_eq!(alerts[0].company_id.as_deref(), Some("c1"));
    }

    #[test]
    fn disabled_rules_and_custom_thresholds() {
        let config: MonitorConfig = serde_json::from_str(
            r#"{"failed-logins-per-account": {"count": 3, "window-secs": 60},
                "disabled-rules": ["unplanned-shutdown"]}"#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.failed_logins_per_client, Threshold::new(20, 600));
        let mut f = Feed::with(config);
        assert!(f.send(system(0, "system.shutdown")).is_empty());
        let alerts = f.send_all(
            (0..3)
                .map(|i| login(i, "u1", "ann@x.example", "10.0.0.1", false))
                .collect(),
        );
        assert_eq!(rules(&alerts), [rule::FAILED_LOGINS_ACCOUNT]);

        let bad = MonitorConfig {
            disabled_rules: vec!["nope".into()],
            ..MonitorConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = MonitorConfig {
            mass_export: Threshold::new(0, 60),
            ..MonitorConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn idle_windows_are_swept() {
        let mut f = Feed::new();
        // Stale single failures for many accounts...
        for i in 0..100 {
            f.send(login(i, "u", &format!("u{i}@x.example"), "10.0.0.1", false));
        }
        assert_eq!(f.monitor.failed_by_account.by_key.len(), 100);
        // ...are forgotten once the stream has moved past their window.
        for i in 0..SWEEP_EVERY as i64 {
            f.send(post(3600 + i, "user:u", "c1"));
        }
        assert!(f.monitor.failed_by_account.by_key.is_empty());
        // Recent state survives a sweep and still fires.
        let t = 3600 + SWEEP_EVERY as i64;
        let alerts = f.send_all(
            (0..5)
                .map(|i| login(t + i, "u", "ann@x.example", "10.0.0.1", false))
                .collect(),
        );
        assert_eq!(rules(&alerts), [rule::FAILED_LOGINS_ACCOUNT]);
    }

    #[test]
    fn alert_state_machine() {
        use AlertState::*;
        assert_eq!(Open.transition(Acknowledged), Ok(Acknowledged));
        assert_eq!(Open.transition(Resolved), Ok(Resolved));
        assert_eq!(Acknowledged.transition(Resolved), Ok(Resolved));
        for (from, to) in [
            (Open, Open),
            (Acknowledged, Acknowledged),
            (Acknowledged, Open),
            (Resolved, Open),
            (Resolved, Acknowledged),
            (Resolved, Resolved),
        ] {
            assert_eq!(from.transition(to), Err(InvalidTransition { from, to }));
        }
        assert_eq!(
            Resolved.transition(Acknowledged).unwrap_err().to_string(),
            "an alert that is resolved cannot become acknowledged"
        );
        for s in [Open, Acknowledged, Resolved] {
            assert_eq!(s.as_str().parse::<AlertState>(), Ok(s));
        }
        assert!(Severity::Critical > Severity::High && Severity::Medium > Severity::Low);
        assert_eq!("high".parse::<Severity>(), Ok(Severity::High));
    }

    /// Normal traffic: successful logins from each user's own network, and
    /// postings, reads and the odd single failed login.
    fn normal_event() -> impl Strategy<Value = (u8, u8, u8, u8)> {
        (0u8..4, 0u8..6, 0u8..=255, 0u8..20)
    }

    proptest! {
        #[test]
        fn normal_traffic_raises_nothing(
            events in proptest::collection::vec(normal_event(), 1..300),
            gap in 1i64..120,
        ) {
            let mut f = Feed::new();
            let users = ["admin-1", "owner-1", "clerk-1", "clerk-2", "viewer", "api"];
            let mut failures_left: HashMap<&str, u8> = HashMap::new();
            for (i, (kind, who, host, co)) in events.into_iter().enumerate() {
                let t = i as i64 * gap;
                let user = users[who as usize];
                // Each user has one home /24.
                let client = format!("10.{who}.7.{host}");
                let company = format!("c{co}");
                let e = match kind {
                    0 => login(t, user, &format!("{user}@x.example"), &client, true),
                    1 => post(t, &format!("user:{user}"), &company),
                    2 => {
                        let mut e = post(t, &format!("user:{user}"), &company);
                        e.action = "report.trial_balance".into();
                        e
                    }
                    _ => {
                        // At most two typos per user.
                        let left = failures_left.entry(user).or_insert(2);
                        if *left == 0 {
                            login(t, user, "", &client, true)
                        } else {
                            *left -= 1;
                            login(t, user, &format!("{user}@x.example"), &client, false)
                        }
                    }
                };
                let alerts = f.send(e);
                prop_assert!(alerts.is_empty(), "unexpected alerts: {:?}", alerts);
            }
        }
    }
}
