-- Pipelines: apps grouped by stage, so a release built once in staging is promoted, with its
-- image, to production.

CREATE TABLE pipelines (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    -- Deleting the user deletes their pipelines; the apps in them stay.
    owner_id   TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);

-- An app is in one pipeline at most: the app is the key.
CREATE TABLE pipeline_apps (
    app_id      TEXT    NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    pipeline_id TEXT    NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    stage       TEXT    NOT NULL CHECK (stage IN ('staging', 'production')),
    added_at    INTEGER NOT NULL
);

CREATE INDEX pipeline_apps_by_pipeline ON pipeline_apps (pipeline_id, stage);
