-- Add-ons (a dedicated Postgres or Redis server per add-on, on the app's network) and the
-- backups of the Postgres ones.

CREATE TABLE addons (
    id         TEXT    NOT NULL PRIMARY KEY,
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('postgres', 'redis')),
    -- The config var that holds the add-on's URL.
    config_var TEXT    NOT NULL,
    -- Everything needed to recreate the server, credentials included, sealed by the server
    -- with a key derived from the master key: the store never sees them in the clear.
    sealed     BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL,
    UNIQUE (app_id, name)
);

-- Backups name their add-on rather than point at it: the final backup outlives the add-on.
CREATE TABLE addon_backups (
    id          TEXT    NOT NULL PRIMARY KEY,
    app_id      TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    addon       TEXT    NOT NULL,
    -- Counts the app's backups: shown as `b001`, `a002`… with the trigger's letter.
    number      BIGINT  NOT NULL CHECK (number > 0),
    trigger     TEXT    NOT NULL CHECK (trigger IN ('manual', 'scheduled', 'final')),
    status      TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    -- File name under <data-dir>/backups/<app>/, once written.
    file        TEXT,
    size_bytes  BIGINT  CHECK (size_bytes >= 0),
    error       TEXT,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT ,
    UNIQUE (app_id, number)
);

CREATE INDEX addon_backups_by_addon ON addon_backups (app_id, addon, started_at);
