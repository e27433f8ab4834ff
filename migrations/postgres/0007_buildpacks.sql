-- The buildpacks an app is built with (`buildpacks:set`), in order. No rows: the app's
-- BUILDPACK_URL, `.buildpacks`, Dockerfile or detection decide.
CREATE TABLE app_buildpacks (
    app_id   TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    position BIGINT  NOT NULL,
    url      TEXT    NOT NULL,
    PRIMARY KEY (app_id, position)
);
