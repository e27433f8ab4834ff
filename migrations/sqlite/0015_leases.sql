-- Leases: which server runs the loops that must run once (deployer and reconciler, add-ons,
-- certificates). Several servers share one PostgreSQL store; with SQLite there is one server
-- and it always holds them. A lease is taken when free or expired, and renewed by its holder.
CREATE TABLE leases (
    name        TEXT   NOT NULL PRIMARY KEY,
    -- The holding server's id (stable across its restarts) and how to reach its API.
    holder      TEXT   NOT NULL,
    holder_url  TEXT   NOT NULL,
    -- Fencing token: goes up by one every time the lease changes hands.
    term        BIGINT NOT NULL CHECK (term > 0),
    -- Microseconds since the Unix epoch by the database's clock, so servers' clocks may differ.
    acquired_at BIGINT NOT NULL,
    renewed_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
