-- Maintenance mode: the router answers the app's requests with a 503 page while its
-- processes keep running.
ALTER TABLE apps ADD COLUMN maintenance BIGINT  NOT NULL DEFAULT 0;
