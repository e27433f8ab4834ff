-- SSH public keys, registered per user, that authenticate git pushes over SSH.

-- The fingerprint is unique across users: a key identifies exactly one user, so the SSH server
-- can tell who is pushing from the key alone.
CREATE TABLE ssh_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The key's comment, or a name the user gave it.
    name         TEXT    NOT NULL,
    -- The OpenSSH key type, like `ssh-ed25519`.
    algorithm    TEXT    NOT NULL,
    -- `<algorithm> <base64>` without the comment.
    public_key   TEXT    NOT NULL,
    -- `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    fingerprint  TEXT    NOT NULL UNIQUE,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT 
);

CREATE INDEX ssh_keys_by_user ON ssh_keys (user_id, created_at);
