-- The entry list filtered by account pages in entry id order: the account's
-- postings by entry id, so a page reads its rows and stops (the index by
-- date serves the register and date ranges). IF NOT EXISTS: a database whose
-- recorded version was set back (tests do) may hold it already.
CREATE INDEX IF NOT EXISTS postings_by_account_entry ON postings(account_id, entry_id);
