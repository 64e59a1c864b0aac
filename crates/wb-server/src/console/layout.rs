//! The page shell: head, header (company switcher, account menu), company
//! navigation, help dialog. Every page is one of these around its content.

use maud::{html, Markup, DOCTYPE};
use wb_core::{Permission, Role};

use super::assets;

/// htmx's configuration: no eval, no script tags from responses, no page
/// HTML kept in localStorage, no requests to other origins, no inline style
/// injected for indicators (the CSP would refuse it).
const HTMX_CONFIG: &str = r#"{"allowEval":false,"allowScriptTags":false,"historyCacheSize":0,"selfRequestsOnly":true,"includeIndicatorStyles":false,"refreshOnHistoryMiss":true}"#;

/// Who is looking, and where: what the header shows.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    pub email: Option<String>,
    /// (id, name, role) of every company the viewer belongs to.
    pub companies: Vec<(String, String, String)>,
    /// The company the page is about: (id, name, role).
    pub current: Option<(String, String, String)>,
    pub csrf: String,
}

/// Which part of the company navigation is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    None,
    Dashboard,
    Accounts,
    Entries,
    NewEntry,
    Reports,
    Members,
    ApiKeys,
    Security,
    Audit,
    Backups,
    Access,
    Retention,
}

/// The company's pages, each with the permission it needs (a role without
/// it does not see the link; the door refuses the page anyway).
const COMPANY_NAV: [(Nav, &str, &str, Permission); 12] = [
    (Nav::Dashboard, "", "Dashboard", Permission::ReadBooks),
    (
        Nav::Accounts,
        "/accounts",
        "Accounts",
        Permission::ReadBooks,
    ),
    (Nav::Entries, "/entries", "Entries", Permission::ReadBooks),
    (
        Nav::NewEntry,
        "/entries/new",
        "New entry",
        Permission::WriteBooks,
    ),
    (Nav::Reports, "/reports", "Reports", Permission::ReadBooks),
    (
        Nav::Members,
        "/members",
        "Members",
        Permission::ManageMembers,
    ),
    (
        Nav::ApiKeys,
        "/api-keys",
        "API keys",
        Permission::ManageApiKeys,
    ),
    (
        Nav::Security,
        "/security",
        "Security",
        Permission::ManageSecurity,
    ),
    (Nav::Audit, "/audit", "Audit trail", Permission::ReadAudit),
    (Nav::Backups, "/backups", "Backups", Permission::ExportData),
    (
        Nav::Access,
        "/access",
        "Staff access",
        Permission::ManageSecurity,
    ),
    (
        Nav::Retention,
        "/retention",
        "Data retention",
        Permission::ManageSecurity,
    ),
];

/// A hidden field with the form's CSRF token.
pub fn csrf_field(chrome: &Chrome) -> Markup {
    html! { input type="hidden" name="_csrf" value=(chrome.csrf); }
}

pub(super) fn head(title: &str, csrf: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="htmx-config" content=(HTMX_CONFIG);
            meta name="csrf-token" content=(csrf);
            link rel="icon" href="data:,";
            title { (title) " · Work-books" }
            link rel="stylesheet" href=(assets::url("console.css"));
            script src=(assets::url("htmx.min.js")) defer {}
            script src=(assets::url("console.js")) defer {}
        }
    }
}

/// A page of the signed-in console.
pub fn page(chrome: &Chrome, title: &str, nav: Nav, content: Markup) -> Markup {
    let full_title = match &chrome.current {
        Some((_, name, _)) => format!("{title} · {name}"),
        None => title.to_string(),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&full_title, &chrome.csrf))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Work-books" }
                    @if let Some((id, name, role)) = &chrome.current {
                        p.current-company {
                            span.visually-hidden { "Company: " }
                            strong data-company-name { (name) }
                            " "
                            span.muted { "(" (role) ")" }
                        }
                        @if chrome.companies.len() > 1 {
                            form.switcher method="get" action="/" {
                                label for="company-switch" { "Switch company" }
                                select #company-switch name="company" data-autosubmit {
                                    @for (cid, cname, _) in &chrome.companies {
                                        option value=(cid) selected[cid == id] { (cname) }
                                    }
                                }
                                button type="submit" { "Go" }
                            }
                        }
                    }
                    @if let Some(email) = &chrome.email {
                        nav.account aria-label="Your account" {
                            a href="/account" { (email) }
                            form method="post" action="/logout" {
                                (csrf_field(chrome))
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                @if let Some((id, _, role)) = &chrome.current {
                    @let role = role.parse::<Role>().ok();
                    nav.company aria-label="Company" {
                        ul {
                            @for (item, rest, label, _) in COMPANY_NAV.iter().filter(|n| role.is_some_and(|r| r.allows(n.3))) {
                                li {
                                    a href={ "/c/" (id) (rest) }
                                      aria-current=[(*item == nav).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
                footer {
                    p { "Press " kbd { "?" } " for keyboard shortcuts. " a href="/help" { "Help" } }
                }
                (help_dialog())
            }
        }
    }
}

fn help_dialog() -> Markup {
    html! {
        dialog #shortcuts aria-labelledby="shortcuts-title" {
            h2 #shortcuts-title { "Keyboard shortcuts" }
            (shortcut_list())
            form method="dialog" { button type="submit" { "Close" } }
        }
    }
}

pub fn shortcut_list() -> Markup {
    html! {
        dl.shortcuts {
            dt { kbd { "n" } } dd { "New entry" }
            dt { kbd { "/" } } dd { "Search entries" }
            dt { kbd { "g" } " " kbd { "d" } } dd { "Go to the dashboard" }
            dt { kbd { "g" } " " kbd { "a" } } dd { "Go to accounts" }
            dt { kbd { "g" } " " kbd { "e" } } dd { "Go to entries" }
            dt { kbd { "g" } " " kbd { "r" } } dd { "Go to reports" }
            dt { kbd { "?" } } dd { "Show this help" }
        }
    }
}

/// A page outside any session (login, signup, errors).
pub fn public_page(title: &str, csrf: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, csrf))
            body.public {
                header.top { a.brand href="/" { "Work-books" } }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// A minimal page with a message (refusals before any page context exists).
pub fn bare_page(title: &str, message: &str) -> Markup {
    bare_page_back(title, message, "/", "Back to Work-books")
}

/// A minimal page with a message and a link back to `back`.
pub fn bare_page_back(title: &str, message: &str, back: &str, back_label: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                link rel="icon" href="data:,";
                title { (title) " · Work-books" }
                link rel="stylesheet" href=(assets::url("console.css"));
            }
            body.public {
                main #main {
                    h1 { (title) }
                    p { (message) }
                    p { a href=(back) { (back_label) } }
                }
            }
        }
    }
}

/// A message above a page's content.
pub fn notice(kind: &str, text: &str) -> Markup {
    let role = if kind == "error" { "alert" } else { "status" };
    html! { div class={ "notice " (kind) } role=(role) { (text) } }
}
