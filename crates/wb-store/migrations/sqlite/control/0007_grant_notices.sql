-- What the company was last told of each access grant ('pending', 'active',
-- 'expired', 'denied' or 'revoked'); the notice job tells the rest exactly
-- once. Grants from before this table were told of their decisions already.
CREATE TABLE grant_notices (
    grant_id TEXT PRIMARY KEY REFERENCES access_grants(id),
    told     TEXT NOT NULL
);
INSERT INTO grant_notices (grant_id, told)
    SELECT id, COALESCE(ended_kind, 'pending') FROM access_grants;

-- What was done under an access grant: a company's events by authentication
-- (`grant:<id>`), without scanning the company's whole history.
CREATE INDEX IF NOT EXISTS collected_by_company_auth ON collected_events(company_id, auth, central_seq);
