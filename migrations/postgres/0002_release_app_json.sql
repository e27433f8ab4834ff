-- A release keeps the app.json it was built with: its health checks judge its containers,
-- and a rollback to it brings them back.
ALTER TABLE releases ADD COLUMN app_json TEXT NOT NULL DEFAULT '{}';
