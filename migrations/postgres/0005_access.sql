-- App collaborators, audit outcomes, and where each token has been used from.

-- Users who may use an app besides its owner (and admins).
CREATE TABLE collaborators (
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (app_id, user_id)
);

CREATE INDEX collaborators_by_user ON collaborators (user_id);

-- `ok`, `denied` (401/403/404 on an authorization check, failed logins) or `failed` (the call
-- was allowed and went wrong). Events written before this migration have none.
ALTER TABLE audit_events ADD COLUMN outcome TEXT CHECK (outcome IN ('ok', 'denied', 'failed'));

CREATE INDEX audit_events_by_actor ON audit_events (actor, at);
CREATE INDEX audit_events_by_target ON audit_events (target, at);

-- Addresses a token was used from, so the first use from a new one is audited.
CREATE TABLE token_addresses (
    token_id   TEXT    NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    address    TEXT    NOT NULL,
    first_seen BIGINT  NOT NULL,
    PRIMARY KEY (token_id, address)
);
