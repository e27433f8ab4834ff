-- Webhooks, alert rules and alert state (`webhooks:*`, `alerts:*`).

-- Where an app's release and alert events are POSTed. The signing secret is sealed like config
-- vars; the `last_*` columns say how the latest delivery ended, after its retries.
CREATE TABLE webhooks (
    id               TEXT    NOT NULL PRIMARY KEY,
    app_id           TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    url              TEXT    NOT NULL,
    -- Comma-separated event kinds: `release`, `alert`.
    events           TEXT    NOT NULL,
    secret_sealed    TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    last_event       TEXT,
    last_ok          INTEGER,
    last_status      TEXT,
    last_attempts    INTEGER,
    last_delivery_at BIGINT
);

CREATE INDEX webhooks_by_app ON webhooks (app_id, created_at);

-- Thresholds an app set. A rule without a row has its default; a NULL threshold turns the
-- rule off (a rule that is on by default needs a row to be off).
CREATE TABLE alert_rules (
    app_id     TEXT   NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    rule       TEXT   NOT NULL,
    threshold  TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, rule)
);

-- Alerts firing now: a row per breach, so an alert fires once, recovers once, and a server
-- restart neither repeats nor forgets it.
CREATE TABLE alerts_firing (
    app_id   TEXT   NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    rule     TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    message  TEXT   NOT NULL,
    fired_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, rule)
);
