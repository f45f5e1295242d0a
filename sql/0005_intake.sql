-- stream-agency schema, version 5: the HTTP intake (`serve`).

-- Operator tokens: only their SHA-256 is kept (the token is printed once by `token new`).
CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE,                  -- hex of SHA-256(token)
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

-- Signed action messages already accepted (SHA-256 of the message text), kept until they
-- expire: a replay gets 409, also after a restart.
CREATE TABLE used_messages (
    digest    TEXT PRIMARY KEY,
    expires_s INTEGER NOT NULL
) WITHOUT ROWID;

-- `POST /v1/agents/{address}/remove`: renewals stop at once; the agent is removed (as the
-- CLI's `remove`, history kept) once its counted windows are billed.
ALTER TABLE agents ADD COLUMN remove_requested_ms INTEGER;
