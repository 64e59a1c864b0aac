//! The chart of accounts as a tree, with balances as of a date; creating an account.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use wb_core::ledger::AccountType;
use wb_core::reports::Amounts;
use wb_core::{Action, NewAccount};

use super::fmt;
use super::form::Form;
use super::layout::{self, Nav};
use super::page::{see_other, Page, PageResult, View};
use super::reports::parse_day;
use crate::auth::{AppState, ReadBooks, WriteBooks};
use crate::problem::ApiError;

#[derive(Debug, Deserialize)]
pub struct AccountsQuery {
    as_of: Option<String>,
    created: Option<String>,
}

/// One account in the tree.
struct Node<'a> {
    code: &'a str,
    name: &'a str,
    kind: AccountType,
    balances: Option<&'a Amounts>,
    children: Vec<Node<'a>>,
}

fn render_nodes(view: &View, nodes: &[Node<'_>], as_of: &str) -> Markup {
    html! {
        ul {
            @for node in nodes {
                li {
                    a href={ (view.href("/reports/register")) "?account=" (node.code) "&to=" (as_of) } { (node.code) " " (node.name) }
                    " "
                    span.muted { "(" (node.kind.as_str()) ")" }
                    " — "
                    @match node.balances {
                        Some(b) => (fmt::amounts(b)),
                        None => span.muted { "no postings" },
                    }
                    @if !node.children.is_empty() { (render_nodes(view, &node.children, as_of)) }
                }
            }
        }
    }
}

fn create_form(view: &View, values: &Form, error: Option<&str>) -> Markup {
    let value = |name: &str| values.get(name).unwrap_or("").to_string();
    html! {
        h2 #new-account { "New account" }
        @if let Some(error) = error { (layout::notice("error", error)) }
        form.inline method="post" action=(view.href("/accounts")) {
            (view.csrf())
            div { label for="code" { "Code" } input #code name="code" required maxlength="32" value=(value("code")); }
            div { label for="name" { "Name" } input #name name="name" required maxlength="200" value=(value("name")); }
            div {
                label for="type" { "Type" }
                select #type name="type" {
                    @for t in AccountType::ALL {
                        option value=(t.as_str()) selected[value("type") == t.as_str()] { (t.as_str()) }
                    }
                }
            }
            div { label for="parent" { "Parent code (optional)" } input #parent name="parent" maxlength="32" value=(value("parent")); }
            div { label for="currency" { "Only currency (optional)" } input #currency name="currency" maxlength="3" size="4" value=(value("currency")); }
            div { button type="submit" { "Create account" } }
        }
    }
}

pub async fn page(
    State(platform): State<AppState>,
    page: Page<ReadBooks>,
    Query(q): Query<AccountsQuery>,
) -> PageResult<Response> {
    let as_of = match q.as_of.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => parse_day("as_of", d)?,
        None => platform.now().date(),
    };
    let (admission, view) = page.into_parts();
    let books = admission
        .read(
            &platform,
            Action::AccountsList,
            Some(format!("as_of:{as_of}")),
        )
        .await?;
    let accounts = books.accounts().await?;
    let report = books.trial_balance(as_of).await?;
    let balances: BTreeMap<&str, &Amounts> = report
        .lines
        .iter()
        .map(|l| (l.account.code.as_str(), &l.balances))
        .collect();
    // Build the tree: children under their parent, roots in code order.
    let mut children: BTreeMap<Option<&str>, Vec<&wb_app::records::Account>> = BTreeMap::new();
    let codes: std::collections::BTreeSet<&str> =
        accounts.iter().map(|a| a.code.as_str()).collect();
    for account in &accounts {
        let parent = account.parent.as_deref().filter(|p| codes.contains(p));
        children.entry(parent).or_default().push(account);
    }
    fn build<'a>(
        parent: Option<&'a str>,
        children: &BTreeMap<Option<&'a str>, Vec<&'a wb_app::records::Account>>,
        balances: &BTreeMap<&str, &'a Amounts>,
        depth: usize,
    ) -> Vec<Node<'a>> {
        let mut list = children.get(&parent).cloned().unwrap_or_default();
        list.sort_by(|a, b| a.code.cmp(&b.code));
        list.into_iter()
            .map(|a| Node {
                code: &a.code,
                name: &a.name,
                kind: a.account_type,
                balances: balances.get(a.code.as_str()).copied(),
                // Parents are checked when an account is created, so the
                // chart has no cycle; the depth bound is a second guard.
                children: if depth < 32 {
                    build(Some(&a.code), children, balances, depth + 1)
                } else {
                    Vec::new()
                },
            })
            .collect()
    }
    let tree = build(None, &children, &balances, 0);
    let as_of_text = as_of.to_string();
    let content = html! {
        // Only a code that names an account of this chart (the link's text
        // is not a message anyone can write).
        @if let Some(code) = q.created.as_deref().filter(|c| accounts.iter().any(|a| a.code == *c)) {
            (layout::notice("success", &format!("Account {code} created.")))
        }
        form.inline method="get" action=(view.href("/accounts")) {
            div { label for="as_of" { "Balances as of" } input #as_of type="date" name="as_of" value=(as_of_text); }
            div { button.secondary type="submit" { "Show" } }
        }
        @if accounts.is_empty() {
            p { "No accounts yet: create the first one below." }
        } @else {
            div.tree { (render_nodes(&view, &tree, &as_of_text)) }
        }
        (create_form(&view, &Form::default(), None))
    };
    Ok(view.render("Chart of accounts", Nav::Accounts, content))
}

pub async fn create(
    State(platform): State<AppState>,
    page: Page<WriteBooks>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let books = admission.operate(&platform).await?;
    let outcome = match NewAccount::validate(
        form.get("code").unwrap_or(""),
        form.get("name").unwrap_or(""),
        form.get("type").unwrap_or(""),
        form.get("parent"),
        form.get("currency"),
    ) {
        Ok(account) => books
            .create_account(&platform, account)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(ApiError::from(e)),
    };
    match outcome {
        Ok(created) => Ok(see_other(&format!(
            "{}?created={}",
            view.href("/accounts"),
            url::form_urlencoded::byte_serialize(created.code.as_bytes()).collect::<String>()
        ))),
        Err(e) => {
            let content = html! {
                p { a href=(view.href("/accounts")) { "Back to the chart of accounts" } }
                (create_form(&view, &form, Some(&e.detail)))
            };
            Ok((
                e.status,
                view.render("Chart of accounts", Nav::Accounts, content),
            )
                .into_response())
        }
    }
}
