//! One way to show access grants, for the company's transparency page and
//! the staff console alike: each grant as the JSON API answers it
//! (`api::grants::GrantView`), with what was done under it.

use maud::{html, Markup};

use crate::api::grants::GrantView;

/// An RFC 3339 time as the console shows it (to the second, UTC).
pub fn at(text: &str) -> String {
    match text.split_once('.') {
        Some((seconds, _)) => format!("{} UTC", seconds.replace('T', " ")),
        None => text.replace('T', " ").replace('Z', " UTC"),
    }
}

fn side(side: &str) -> &str {
    match side {
        "company" => "the company",
        "management" => "management",
        other => other,
    }
}

/// The grants, newest first; `controls` renders each grant's buttons.
pub fn grants(list: &[GrantView], controls: impl Fn(&GrantView) -> Markup) -> Markup {
    html! {
        @if list.is_empty() {
            p { "No access grants." }
        }
        @for g in list {
            section.card.grant data-grant=(g.id) data-state=(g.state) aria-labelledby={ "grant-" (g.id) } {
                h2 id={ "grant-" (g.id) } {
                    "Grant " (g.id) " "
                    span class={ "badge " (g.state) } data-grant-state { (g.state) }
                }
                dl.facts {
                    dt { "Company" } dd { (g.company) }
                    dt { "Requested by" } dd { (g.requested_by) " at " (at(&g.requested_at)) }
                    dt { "Reason" } dd { (g.reason) }
                    dt { "Ticket" } dd { (g.ticket.as_deref().unwrap_or("none")) }
                    dt { "Scope" } dd { (g.scope) }
                    dt { "Duration" } dd { (g.duration_minutes) " minutes" }
                    @if let Some(reference) = &g.legal_mandate {
                        dt { "Legal mandate" } dd { (reference) }
                    }
                    dt { "Approvals" }
                    dd {
                        @if g.approvals.is_empty() { "none yet" }
                        @for (i, a) in g.approvals.iter().enumerate() {
                            @if i > 0 { "; " }
                            (side(&a.side)) ": " (a.by) " at " (at(&a.at))
                        }
                    }
                    dt { "Starts" } dd { (g.starts_at.as_deref().map(at).unwrap_or_else(|| "once approved".into())) }
                    dt { "Ends" } dd { (g.ends_at.as_deref().map(at).unwrap_or_else(|| "not set yet".into())) }
                    @if let Some(e) = &g.ended {
                        dt { "Ended" } dd { (e.kind) " by " (side(&e.side)) " (" (e.by) ") at " (at(&e.at)) }
                    }
                }
                // A grant that never opened has no actions to show.
                @if let Some(actions) = g.actions.as_ref().filter(|_| g.ends_at.is_some()) {
                    @if actions.is_empty() {
                        p.hint { "Nothing was done under this grant (the list is a few seconds behind)." }
                    } @else {
                        div.table-wrap {
                            table data-grant-actions {
                                caption { "Actions under grant " (g.id) }
                                thead { tr { th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Outcome" } } }
                                tbody {
                                    @for a in actions {
                                        tr {
                                            td { (at(&a.at)) }
                                            td { (a.action) }
                                            td { (a.target.as_deref().unwrap_or("")) }
                                            td { span class={ "badge " (a.outcome) } { (a.outcome) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                (controls(g))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_to_the_second() {
        assert_eq!(at("2026-12-04T15:01:02.123Z"), "2026-12-04 15:01:02 UTC");
        assert_eq!(at("2026-12-04T15:01:02Z"), "2026-12-04 15:01:02 UTC");
    }
}
