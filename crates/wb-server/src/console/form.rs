//! A console form's fields, as the guard read them (urlencoded; repeated
//! names keep their order, for an entry's posting lines).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::guard::FormFields;
use super::page::PageError;

#[derive(Clone, Default)]
pub struct Form(Vec<(String, String)>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be passphrases or codes: names only.
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// The longest value of one field (a passphrase, a description...).
const MAX_FIELD_BYTES: usize = 16 * 1024;

impl Form {
    pub fn from_pairs(fields: Vec<(String, String)>) -> Form {
        Form(fields)
    }

    /// The field's value, trimmed; None when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The field's value as sent (passphrases are not trimmed).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of a repeated field, in order (blank ones included, so
    /// parallel columns of a table line up).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Form {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Form, PageError> {
        let fields = parts
            .extensions
            .remove::<FormFields>()
            .map(|f| f.0)
            .unwrap_or_default();
        if fields
            .iter()
            .any(|(k, v)| k.len() > 64 || v.len() > MAX_FIELD_BYTES)
        {
            return Err(PageError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                title: "Form too large".into(),
                detail: "A field of this form is too long.".into(),
                back_to: None,
            });
        }
        Ok(Form(fields))
    }
}
