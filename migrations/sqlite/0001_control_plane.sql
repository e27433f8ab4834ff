-- The control plane's desired state: users and tokens, apps, their config, releases, builds,
-- formation, and the audit log.
--
-- Conventions (the Postgres migrations mirror them):
-- * ids are UUID v7 in their hyphenated text form;
-- * times are INTEGER microseconds since the Unix epoch, UTC, so they sort and compare as numbers;
-- * enumerations are lowercase TEXT guarded by CHECK constraints;
-- * everything an app owns goes away with it (ON DELETE CASCADE).

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    -- argon2id PHC string; NULL while the user can only authenticate with API tokens.
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE tokens (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope      TEXT    NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE apps (
    id                 TEXT    NOT NULL PRIMARY KEY,
    name               TEXT    NOT NULL UNIQUE,
    owner_id           TEXT    NOT NULL REFERENCES users (id),
    created_at         INTEGER NOT NULL,
    current_release_id TEXT,
    -- The current release must be one of this app's own releases.
    FOREIGN KEY (id, current_release_id) REFERENCES releases (app_id, id)
);

-- The app's config vars as they are now. Values are plaintext.
CREATE TABLE config_vars (
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (app_id, key)
);

CREATE TABLE releases (
    id            TEXT    NOT NULL PRIMARY KEY,
    app_id        TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- The version as cut, and its parts for ordering: a pre-release (`pre` not empty) sorts
    -- before the release of the same major.minor.patch; build metadata is ignored.
    version       TEXT    NOT NULL,
    major         INTEGER NOT NULL CHECK (major >= 0),
    minor         INTEGER NOT NULL CHECK (minor >= 0),
    patch         INTEGER NOT NULL CHECK (patch >= 0),
    pre           TEXT    NOT NULL,
    image         TEXT    NOT NULL,
    -- JSON object: the config vars snapshot.
    config        TEXT    NOT NULL,
    -- JSON object: process type to command.
    processes     TEXT    NOT NULL,
    commit_sha    TEXT,
    description   TEXT    NOT NULL,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'rolled_back')),
    status_reason TEXT,
    -- Versions are never reused within an app, whatever their build metadata.
    UNIQUE (app_id, major, minor, patch, pre),
    UNIQUE (app_id, id)
);

CREATE TABLE builds (
    id              TEXT    NOT NULL PRIMARY KEY,
    app_id          TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    commit_sha      TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    output          TEXT    NOT NULL DEFAULT '',
    release_version TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);

CREATE INDEX builds_by_app ON builds (app_id, created_at);

CREATE TABLE formation (
    app_id       TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    process_type TEXT    NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity >= 0),
    -- NULL: the server's default memory limit.
    memory_bytes INTEGER CHECK (memory_bytes > 0),
    PRIMARY KEY (app_id, process_type)
);

-- Who did what, when, from where. Not tied to apps or users: it outlives both.
CREATE TABLE audit_events (
    id        TEXT    NOT NULL PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    source_ip TEXT,
    detail    TEXT
);

CREATE INDEX audit_events_by_time ON audit_events (at);
