//! The control-store columns that hold bytes wrapped or sealed under the
//! master key (or a key derived from it), so a master-key rotation can visit
//! each of them through two methods instead of one pair per table.

/// One column of sealed bytes, with the table and the id that names a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedColumn {
    /// `companies.wrapped_dek`: each company's DEK wrapped by the master key
    /// (empty once the company is destroyed: then not listed).
    CompanyKey,
    /// `company_key_versions.wrapped_dek`: retired versions of company
    /// keys, wrapped by the master key (row id `<company>/v<n>`; empty once
    /// destroyed: then not listed).
    RetiredCompanyKey,
    /// `totp_factors.sealed_secret`: users' TOTP secrets (the MFA key).
    UserTotp,
    /// `staff.sealed_totp`: staff TOTP secrets (the MFA key).
    StaffTotp,
    /// `outbox.sealed_message`: queued email (the outbox key).
    OutboxMessage,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 5] = [
        SealedColumn::CompanyKey,
        SealedColumn::RetiredCompanyKey,
        SealedColumn::UserTotp,
        SealedColumn::StaffTotp,
        SealedColumn::OutboxMessage,
    ];

    /// The table holding the column.
    pub fn sql_names_table(self) -> &'static str {
        self.sql_names().0
    }

    /// (table, id column, sealed column): fixed names, never caller input,
    /// so the SQL built from them cannot be injected into.
    pub(crate) fn sql_names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SealedColumn::CompanyKey => ("companies", "id", "wrapped_dek"),
            SealedColumn::RetiredCompanyKey => ("company_key_versions", "id", "wrapped_dek"),
            SealedColumn::UserTotp => ("totp_factors", "user_id", "sealed_secret"),
            SealedColumn::StaffTotp => ("staff", "id", "sealed_totp"),
            SealedColumn::OutboxMessage => ("outbox", "id", "sealed_message"),
        }
    }
}
