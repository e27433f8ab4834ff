-- Per-app metrics time series (`slipway metrics`, dashboard graphs, alerts): one row per app
-- per bucket, short buckets (a minute) and long ones (an hour) told apart by their width. The
-- server prunes them: a day of short buckets, 30 days of long ones.
CREATE TABLE metric_buckets (
    app_id         TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    width_secs     BIGINT  NOT NULL,
    -- Bucket start, microseconds since the Unix epoch like every stored time.
    at             BIGINT  NOT NULL,
    requests_1xx   BIGINT  NOT NULL,
    requests_2xx   BIGINT  NOT NULL,
    requests_3xx   BIGINT  NOT NULL,
    requests_4xx   BIGINT  NOT NULL,
    requests_5xx   BIGINT  NOT NULL,
    response_bytes BIGINT  NOT NULL,
    -- JSON array of [bucket, count] pairs: the non-empty buckets of the latency histogram.
    latency        TEXT    NOT NULL,
    -- JSON array of [dyno, cpu percent, memory bytes, memory limit bytes or null].
    processes      TEXT    NOT NULL,
    restarts       BIGINT  NOT NULL,
    PRIMARY KEY (app_id, width_secs, at)
);

-- Pruning and the platform's figures read every app's buckets of one width by time.
CREATE INDEX metric_buckets_by_time ON metric_buckets (width_secs, at);
