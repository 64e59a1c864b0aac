//! Thresholds and windows of the rules, as read from the config file.

use serde::Deserialize;
use time::Duration;

use super::{rule, UnknownName};

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
    pub mass_invitations: Threshold,
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
            mass_invitations: Threshold::new(10, 600),
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
            ("mass-invitations", self.mass_invitations),
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

    pub(super) fn enabled(&self, rule: &str) -> bool {
        !self.disabled_rules.iter().any(|r| r == rule)
    }
}
