//! `GET /metrics`: Prometheus text format, unauthenticated, so aggregates only
//! (no company ids, names or counts per company). The values are this node's:
//! each node reports the companies its shipper holds the lease for.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::auth::AppState;

pub async fn metrics(State(platform): State<AppState>) -> impl IntoResponse {
    let s = platform.shipping.snapshot(platform.now());
    let lines = [
        (
            "workbooks_backup_lag_seconds_max",
            "gauge",
            "Age in seconds of the oldest change-journal record not yet shipped to object storage, over all companies (0 when all are caught up).",
            format!("{:.3}", s.lag_seconds_max),
        ),
        (
            "workbooks_backup_companies_lagging",
            "gauge",
            "Companies whose shipping lag is past the alert threshold or whose uploads keep failing.",
            s.companies_lagging.to_string(),
        ),
        (
            "workbooks_backup_shipped_records_total",
            "counter",
            "Change-journal records shipped to object storage by this process.",
            s.shipped_records_total.to_string(),
        ),
        (
            "workbooks_backup_ship_failures_total",
            "counter",
            "Failed attempts to ship a company's change journal.",
            s.ship_failures_total.to_string(),
        ),
    ];
    let mut body = String::new();
    for (name, kind, help, value) in lines {
        body.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
