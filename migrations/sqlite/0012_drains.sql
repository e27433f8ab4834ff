-- Log drains: where an app's log lines are shipped (`drains:add URL`). The URL may hold
-- credentials, so it is kept sealed like config vars; `url_shown` is its redacted form, for
-- listings that need no secret.
CREATE TABLE drains (
    id         TEXT    NOT NULL PRIMARY KEY,
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    url_sealed TEXT    NOT NULL,
    url_shown  TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE INDEX drains_by_app ON drains (app_id, created_at);
