//! Wire shapes of the public API (SPEC §5). Fields may be added, never renamed.
//! Amounts are decimal strings; JSON numbers are refused with a clear message.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use wb_core::reports::{self, Amounts, ReportLine};
use wb_store::{Account, ApiKeyRecord, Entry};

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

pub fn amounts(values: &Amounts) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|(c, a)| (c.code().to_string(), c.format(*a)))
        .collect()
}

/// Accepts only a JSON string; a number gets a message saying why.
fn decimal_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a decimal string such as \"100.50\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<String, E> {
            Err(E::custom(
                "amounts must be decimal strings such as \"100.50\", not JSON numbers",
            ))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<String, E> {
            Err(E::custom(
                "amounts must be decimal strings such as \"100.00\", not JSON numbers",
            ))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<String, E> {
            Err(E::custom(
                "amounts must be decimal strings such as \"100.00\", not JSON numbers",
            ))
        }
    }
    d.deserialize_any(Visitor)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub company_name: String,
    pub email: String,
    pub passphrase: String,
}

/// Secrets never reach `Debug` output (a logged request or a panic).
macro_rules! redacted_debug {
    ($($ty:ident),+ $(,)?) => {
        $(impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($ty), " { .. }"))
            }
        })+
    };
}

redacted_debug!(SignupRequest, SignupResponse, InvitationCreated, ApiKeyView);

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserRef {
    pub id: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    pub company: CompanyRef,
    pub user: UserRef,
    pub token: String,
    pub expires_at: String,
}

/// A login: `email` and `passphrase` (and `otp` when the account has a
/// second factor and the client has it at hand), or the second step:
/// `challenge` from the first answer and `otp` (a current authenticator
/// code or an unused recovery code).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: Option<String>,
    pub passphrase: Option<String>,
    pub otp: Option<String>,
    pub challenge: Option<String>,
    /// A passkey's answer to the challenge's `passkey` options (the
    /// `PublicKeyCredential` of `navigator.credentials.get`, as JSON).
    #[schema(value_type = Option<Object>)]
    pub passkey: Option<serde_json::Value>,
}

redacted_debug!(LoginRequest);

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub expires_at: String,
}

/// The first step of a login to an account with a second factor: no
/// session yet. Send `{"challenge","otp"}` to the same path.
#[derive(Serialize, ToSchema)]
pub struct MfaRequired {
    /// Always true.
    pub mfa_required: bool,
    /// `totp`, `recovery_code` (and `passkey` when one is registered).
    pub methods: Vec<String>,
    pub challenge: String,
    pub expires_at: String,
    /// With passkeys: `PublicKeyCredentialRequestOptions` for
    /// `navigator.credentials.get`.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passkey: Option<serde_json::Value>,
}

/// What `POST /api/v1/auth/login` answers with 200.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Session(LoginResponse),
    SecondFactor(MfaRequired),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

/// The answer to every well-formed reset request, whoever the email is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetRequested {
    pub status: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetCompletion {
    /// The token from the emailed link.
    pub token: String,
    pub passphrase: String,
}

redacted_debug!(ResetRequest, ResetCompletion);

/// Where the caller's second factors stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatusView {
    /// `none`, `pending` (enrolment started, not confirmed) or `enabled`.
    pub totp: String,
    pub totp_confirmed_at: Option<String>,
    pub recovery_codes_left: u32,
    pub passkeys: usize,
}

/// A registered passkey.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl From<&wb_store::PasskeyRecord> for PasskeyView {
    fn from(p: &wb_store::PasskeyRecord) -> Self {
        PasskeyView {
            id: p.id.clone(),
            name: p.name.clone(),
            created_at: rfc3339(p.created_at),
            last_used_at: p.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPasskeyRequest {
    pub passphrase: String,
    /// How the person will recognise it ("laptop", "phone").
    pub name: String,
}

/// A registration to finish: hand `options` to `navigator.credentials.create`.
#[derive(Serialize, ToSchema)]
pub struct PasskeyOfferView {
    pub ceremony: String,
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishPasskeyRequest {
    pub ceremony: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create`, as JSON.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PassphraseOnly {
    pub passphrase: String,
}

redacted_debug!(
    NewPasskeyRequest,
    PasskeyOfferView,
    FinishPasskeyRequest,
    PassphraseOnly
);

/// An authenticator enrolment, shown once: add it to an app, then confirm
/// with a first code.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolmentView {
    /// The secret in base32 (to type in by hand).
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as a QR code (an SVG document).
    pub qr_svg: String,
}

/// Recovery codes, shown once: each logs in once in place of a code.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesView {
    pub recovery_codes: Vec<String>,
}

/// The passphrase again, for a change to the account's second factors.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reauthentication {
    pub passphrase: String,
    /// A current code (or an unused recovery code), where one is asked for.
    pub otp: Option<String>,
}

redacted_debug!(Reauthentication);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpRequest {
    pub otp: String,
}

redacted_debug!(OtpRequest);

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: UserRef,
    pub companies: Vec<MembershipView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipView {
    pub company: CompanyRef,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyView {
    pub id: String,
    pub name: String,
    pub status: String,
    pub created_at: String,
    /// The caller's role in this company.
    pub role: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccountRequest {
    pub code: String,
    pub name: String,
    /// asset, liability, equity, income or expense
    #[serde(rename = "type")]
    pub account_type: String,
    pub parent: Option<String>,
    /// Restricts the account to one ISO 4217 currency.
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub code: String,
    pub name: String,
    #[serde(rename = "type")]
    pub account_type: String,
    pub parent: Option<String>,
    pub currency: Option<String>,
    pub created_at: String,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            id: a.id.to_string(),
            code: a.code.clone(),
            name: a.name.clone(),
            account_type: a.account_type.as_str().into(),
            parent: a.parent.clone(),
            currency: a.currency.map(|c| c.code().to_string()),
            created_at: rfc3339(a.created_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostingBody {
    pub account: String,
    /// Signed decimal string, debit positive: "100.00", "-100.00".
    #[serde(deserialize_with = "decimal_string")]
    pub amount: String,
    pub currency: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntryRequest {
    /// YYYY-MM-DD
    pub date: String,
    pub description: String,
    pub reference: Option<String>,
    pub postings: Vec<PostingBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub entries: Vec<NewEntryRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    pub id: String,
    pub date: String,
    pub description: String,
    pub reference: Option<String>,
    pub postings: Vec<PostingBody>,
    pub reverses: Option<String>,
    pub reversed_by: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

impl From<&Entry> for EntryView {
    fn from(e: &Entry) -> Self {
        EntryView {
            id: e.id.to_string(),
            date: e.date.to_string(),
            description: e.description.clone(),
            reference: e.reference.clone(),
            postings: e
                .postings
                .iter()
                .map(|p| PostingBody {
                    account: p.account.clone(),
                    amount: p.currency.format(i128::from(p.amount)),
                    currency: p.currency.code().to_string(),
                })
                .collect(),
            reverses: e.reverses.map(|id| id.to_string()),
            reversed_by: e.reversed_by.map(|id| id.to_string()),
            created_at: rfc3339(e.created_at),
            created_by: e.created_by.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    pub entries: Vec<EntryView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryList {
    pub entries: Vec<EntryView>,
    /// Pass as `after` to get the next page; absent on the last page (and
    /// with `order=desc`).
    pub next_after: Option<String>,
    /// With `order=desc`: pass as `before` to get the next page; left out on
    /// the last page and in ascending order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseRequest {
    pub date: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportAccount {
    pub code: String,
    pub name: String,
    #[serde(rename = "type")]
    pub account_type: String,
    pub balances: BTreeMap<String, String>,
}

impl From<&ReportLine> for ReportAccount {
    fn from(l: &ReportLine) -> Self {
        ReportAccount {
            code: l.account.code.clone(),
            name: l.account.name.clone(),
            account_type: l.account.account_type.as_str().into(),
            balances: amounts(&l.balances),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrialBalanceView {
    pub as_of: String,
    /// Signed balances, debit positive.
    pub accounts: Vec<ReportAccount>,
    pub totals: BTreeMap<String, String>,
}

impl From<&reports::TrialBalance> for TrialBalanceView {
    fn from(t: &reports::TrialBalance) -> Self {
        TrialBalanceView {
            as_of: t.as_of.to_string(),
            accounts: t.lines.iter().map(Into::into).collect(),
            totals: amounts(&t.totals),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SectionView {
    pub accounts: Vec<ReportAccount>,
    pub totals: BTreeMap<String, String>,
}

impl From<&reports::Section> for SectionView {
    fn from(s: &reports::Section) -> Self {
        SectionView {
            accounts: s.lines.iter().map(Into::into).collect(),
            totals: amounts(&s.totals),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceSheetView {
    pub as_of: String,
    /// Debit-normal amounts.
    pub assets: SectionView,
    /// Credit-normal amounts.
    pub liabilities: SectionView,
    /// Credit-normal amounts; totals include current earnings.
    pub equity: SectionView,
    pub current_earnings: BTreeMap<String, String>,
    pub liabilities_and_equity: BTreeMap<String, String>,
    pub balanced: bool,
}

impl From<&reports::BalanceSheet> for BalanceSheetView {
    fn from(b: &reports::BalanceSheet) -> Self {
        BalanceSheetView {
            as_of: b.as_of.to_string(),
            assets: (&b.assets).into(),
            liabilities: (&b.liabilities).into(),
            equity: (&b.equity).into(),
            current_earnings: amounts(&b.current_earnings),
            liabilities_and_equity: amounts(&b.liabilities_and_equity),
            balanced: b.balanced,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncomeStatementView {
    pub from: String,
    pub to: String,
    pub income: SectionView,
    pub expenses: SectionView,
    pub net_income: BTreeMap<String, String>,
}

impl From<&reports::IncomeStatement> for IncomeStatementView {
    fn from(i: &reports::IncomeStatement) -> Self {
        IncomeStatementView {
            from: i.from.to_string(),
            to: i.to.to_string(),
            income: (&i.income).into(),
            expenses: (&i.expenses).into(),
            net_income: amounts(&i.net_income),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterLineView {
    pub date: String,
    pub entry_id: String,
    pub description: String,
    pub amount: String,
    pub currency: String,
    /// Running balance in this currency after the posting.
    pub balance: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterView {
    pub account: String,
    pub from: String,
    pub to: String,
    pub opening: BTreeMap<String, String>,
    pub postings: Vec<RegisterLineView>,
    pub closing: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKeyRequest {
    pub name: String,
    /// admin, accountant or viewer
    pub role: String,
    /// 1 to 365; default 90.
    pub expires_in_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKeyRequest {
    /// How long the old secret keeps working: 0 (default: revoked at once)
    /// to 24 hours.
    pub overlap_hours: Option<i64>,
}

/// A rotated key: the new one (its token shown here once) and the old one
/// as it is now (expiring at the end of the overlap, or revoked).
#[derive(Serialize, ToSchema)]
pub struct RotatedApiKey {
    pub key: ApiKeyView,
    pub previous: ApiKeyView,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    /// Present only in the response that creates the key: it is not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role.as_str().into(),
            created_by: k.created_by.clone(),
            created_at: rfc3339(k.created_at),
            expires_at: rfc3339(k.expires_at),
            revoked_at: k.revoked_at.map(rfc3339),
            token: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

pub fn parse_date(field: &str, text: &str) -> Result<Date, crate::error::ServiceError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format).map_err(|_| {
        crate::error::ServiceError::unprocessable(
            "invalid-date",
            format!(
                "{field} must be a date like 2026-01-31, not {:?}",
                text.chars().take(40).collect::<String>()
            ),
        )
    })
}

// ---- Members and invitations ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitationRequest {
    pub email: String,
    /// owner (owners only), admin, accountant or viewer
    pub role: String,
}

/// The answer to the inviter: the token is shown here once (and emailed).
#[derive(Serialize, ToSchema)]
pub struct InvitationCreated {
    pub id: String,
    pub token: String,
    pub expires_at: String,
    pub email: String,
    pub role: String,
}

/// A pending invitation, never with its token.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: String,
    pub expires_at: String,
}

impl From<&wb_store::InvitationRecord> for InvitationView {
    fn from(i: &wb_store::InvitationRecord) -> Self {
        InvitationView {
            id: i.id.clone(),
            email: i.email.clone(),
            role: i.role.as_str().into(),
            invited_by: i.invited_by.clone(),
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
        }
    }
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// Required when the invited email has no account yet.
    pub passphrase: Option<String>,
    pub name: Option<String>,
}

impl std::fmt::Debug for AcceptInvitationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptInvitationRequest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub last_login_at: Option<String>,
}

impl From<&wb_store::MemberRecord> for MemberView {
    fn from(m: &wb_store::MemberRecord) -> Self {
        MemberView {
            user_id: m.user_id.clone(),
            email: m.email.clone(),
            name: m.name.clone(),
            role: m.role.as_str().into(),
            last_login_at: m.last_login_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    pub role: String,
}

// ---- Security policy ----

#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityPolicyView {
    pub mfa_required: bool,
    pub session_ttl_minutes: Option<u32>,
    pub idle_timeout_minutes: Option<u32>,
    pub ip_allowlist: Vec<String>,
    pub min_passphrase_strength: u8,
    pub api_key_max_days: Option<u32>,
    /// A company key version older than this many days raises an alert
    /// (null: the platform's 365).
    pub key_max_age_days: Option<u32>,
}

impl From<&wb_core::security_policy::SecurityPolicy> for SecurityPolicyView {
    fn from(p: &wb_core::security_policy::SecurityPolicy) -> Self {
        SecurityPolicyView {
            mfa_required: p.mfa_required,
            session_ttl_minutes: p.session_ttl_minutes,
            idle_timeout_minutes: p.idle_timeout_minutes,
            ip_allowlist: p.ip_allowlist.iter().map(ToString::to_string).collect(),
            min_passphrase_strength: p.min_passphrase_strength,
            api_key_max_days: p.api_key_max_days,
            key_max_age_days: p.key_max_age_days,
        }
    }
}

/// A field that may be absent (keep), null (clear) or a value (set).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Fields left out keep their current value; `null` clears a limit.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityPolicyRequest {
    pub mfa_required: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub session_ttl_minutes: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub idle_timeout_minutes: Option<Option<u32>>,
    pub ip_allowlist: Option<Vec<String>>,
    pub min_passphrase_strength: Option<u8>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub api_key_max_days: Option<Option<u32>>,
    /// 30 to 3650 days; null: the platform's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub key_max_age_days: Option<Option<u32>>,
    /// Apply an allowlist that excludes the caller's own address.
    #[serde(default)]
    pub confirm_lockout: bool,
}

impl From<SecurityPolicyRequest> for crate::security::PolicyChange {
    fn from(r: SecurityPolicyRequest) -> Self {
        crate::security::PolicyChange {
            mfa_required: r.mfa_required,
            session_ttl_minutes: r.session_ttl_minutes,
            idle_timeout_minutes: r.idle_timeout_minutes,
            ip_allowlist: r.ip_allowlist,
            min_passphrase_strength: r.min_passphrase_strength,
            api_key_max_days: r.api_key_max_days,
            key_max_age_days: r.key_max_age_days,
            confirm_lockout: r.confirm_lockout,
        }
    }
}

// ---- The caller's own account ----

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Names the session in `DELETE /api/v1/me/sessions/{id}` (not a credential).
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
    pub last_seen_at: Option<String>,
    pub client: Option<String>,
    pub user_agent: Option<String>,
    /// The session making this request.
    pub current: bool,
}

impl From<&crate::account::SessionInfo> for SessionView {
    fn from(s: &crate::account::SessionInfo) -> Self {
        SessionView {
            id: s.id.clone(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            last_seen_at: s.last_seen_at.map(rfc3339),
            client: s.client.clone(),
            user_agent: s.user_agent.clone(),
            current: s.current,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsEnded {
    pub sessions_ended: usize,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PassphraseChange {
    pub current: String,
    pub new: String,
}

impl std::fmt::Debug for PassphraseChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassphraseChange { .. }")
    }
}
