//! Alert severity and the triage life cycle.

use std::fmt;
use std::str::FromStr;

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
