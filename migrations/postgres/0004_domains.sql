-- Custom domains, the certificates the router serves, and the ACME account.

-- A host name routes to one app at most: the primary key makes "already used by another app"
-- a constraint, not a racy read.
CREATE TABLE domains (
    hostname   TEXT    NOT NULL PRIMARY KEY,
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    dns_status TEXT    NOT NULL CHECK (dns_status IN ('pending', 'verified')),
    -- What the last DNS check found, for `domains`.
    dns_found  TEXT,
    checked_at BIGINT ,
    created_at BIGINT  NOT NULL
);

CREATE INDEX domains_by_app ON domains (app_id, hostname);

-- One row per name a certificate is for: a custom domain, or `*.<apps-domain>` (app_id NULL)
-- for the platform's wildcard. A row in `failed` with a chain keeps serving that chain.
CREATE TABLE certificates (
    name            TEXT    NOT NULL PRIMARY KEY,
    app_id          TEXT    REFERENCES apps (id) ON DELETE CASCADE,
    source          TEXT    NOT NULL CHECK (source IN ('acme', 'manual')),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'issued', 'failed')),
    chain_pem       TEXT,
    -- The private key, sealed with a key derived from the master key.
    key_sealed      TEXT,
    issuer          TEXT,
    serial          TEXT,
    not_before      BIGINT ,
    not_after       BIGINT ,
    last_error      TEXT,
    -- Failed attempts in a row, for the back-off.
    failures        BIGINT  NOT NULL DEFAULT 0 CHECK (failures >= 0),
    -- When the certificate manager next orders: after a back-off, or at renewal time.
    next_attempt_at BIGINT ,
    updated_at      BIGINT  NOT NULL,
    CHECK ((chain_pem IS NULL) = (key_sealed IS NULL))
);

-- Whether Slipway orders certificates for the app's custom domains (`certs:auto:*`).
ALTER TABLE apps ADD COLUMN certs_auto BIGINT  NOT NULL DEFAULT 1;

-- One ACME account per server and directory; its credentials hold the account key.
CREATE TABLE acme_accounts (
    directory   TEXT    NOT NULL PRIMARY KEY,
    credentials TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
