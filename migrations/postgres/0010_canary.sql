-- Canary releases: how an app's next code release goes out, and the canary running now.
-- Error rates are kept in basis points (100 = 1%) so both backends store exact integers.

CREATE TABLE canary_policies (
    app_id                 TEXT    NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    percent                BIGINT  NOT NULL,
    duration_secs          BIGINT  NOT NULL,
    max_error_basis_points BIGINT  NOT NULL,
    max_p99_ms             BIGINT ,
    sticky                 BIGINT  NOT NULL DEFAULT 0
);

-- One canary per app at most, with the policy it started under.
CREATE TABLE canaries (
    app_id                 TEXT    NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    release_id             TEXT    NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    percent                BIGINT  NOT NULL,
    duration_secs          BIGINT  NOT NULL,
    max_error_basis_points BIGINT  NOT NULL,
    max_p99_ms             BIGINT ,
    sticky                 BIGINT  NOT NULL DEFAULT 0,
    started_at             BIGINT  NOT NULL
);

-- Per-app rate limit at the router, per client IP.
CREATE TABLE rate_limits (
    app_id   TEXT    NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    requests BIGINT  NOT NULL,
    period   TEXT    NOT NULL CHECK (period IN ('second', 'minute')),
    burst    BIGINT  NOT NULL
);
