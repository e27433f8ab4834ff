-- The control plane's desired state, as migrations/sqlite/0001_control_plane.sql, on
-- PostgreSQL. The store's SQL is shared between the two, so the conventions are the same:
-- * ids are UUID v7 in their hyphenated text form;
-- * times are BIGINT microseconds since the Unix epoch, UTC;
-- * integers are BIGINT and yes/no values are 0/1 integers (SQLite has no other kinds);
-- * enumerations are lowercase TEXT guarded by CHECK constraints;
-- * everything an app owns goes away with it (ON DELETE CASCADE).

CREATE TABLE users (
    id            TEXT   NOT NULL PRIMARY KEY,
    email         TEXT   NOT NULL UNIQUE,
    role          TEXT   NOT NULL CHECK (role IN ('admin', 'member')),
    -- argon2id PHC string; NULL while the user can only authenticate with API tokens.
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE tokens (
    id         TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope      TEXT   NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE INDEX tokens_by_user ON tokens (user_id);

-- The foreign key to the current release is added once `releases` exists.
CREATE TABLE apps (
    id                 TEXT   NOT NULL PRIMARY KEY,
    name               TEXT   NOT NULL UNIQUE,
    owner_id           TEXT   NOT NULL REFERENCES users (id),
    created_at         BIGINT NOT NULL,
    current_release_id TEXT
);

CREATE TABLE config_vars (
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (app_id, key)
);

CREATE TABLE releases (
    id            TEXT   NOT NULL PRIMARY KEY,
    app_id        TEXT   NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    version       TEXT   NOT NULL,
    major         BIGINT NOT NULL CHECK (major >= 0),
    minor         BIGINT NOT NULL CHECK (minor >= 0),
    patch         BIGINT NOT NULL CHECK (patch >= 0),
    pre           TEXT   NOT NULL,
    image         TEXT   NOT NULL,
    config        TEXT   NOT NULL,
    processes     TEXT   NOT NULL,
    commit_sha    TEXT,
    description   TEXT   NOT NULL,
    created_by    TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    status        TEXT   NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'rolled_back')),
    status_reason TEXT,
    UNIQUE (app_id, major, minor, patch, pre),
    UNIQUE (app_id, id)
);

-- The current release must be one of this app's own releases.
ALTER TABLE apps ADD FOREIGN KEY (id, current_release_id) REFERENCES releases (app_id, id);

CREATE TABLE builds (
    id              TEXT   NOT NULL PRIMARY KEY,
    app_id          TEXT   NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    commit_sha      TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    output          TEXT   NOT NULL DEFAULT '',
    release_version TEXT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);

CREATE INDEX builds_by_app ON builds (app_id, created_at);

CREATE TABLE formation (
    app_id       TEXT   NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    process_type TEXT   NOT NULL,
    quantity     BIGINT NOT NULL CHECK (quantity >= 0),
    memory_bytes BIGINT CHECK (memory_bytes > 0),
    PRIMARY KEY (app_id, process_type)
);

CREATE TABLE audit_events (
    id        TEXT   NOT NULL PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    source_ip TEXT,
    detail    TEXT
);

CREATE INDEX audit_events_by_time ON audit_events (at);
