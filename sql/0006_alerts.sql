-- stream-agency schema, version 6: alerts (`--notify`), shared by every tick of a timer.

-- One row per problem that needed a human, keyed by its text with its running figures
-- ("600 s ago", "for 12 min") taken out; active while resolved_ms is NULL.
CREATE TABLE alerts (
    problem     TEXT PRIMARY KEY,
    text        TEXT NOT NULL,                        -- as last said
    raised_ms   INTEGER NOT NULL,
    -- when its last "problem" message was queued (the cooldown counts from here)
    notified_ms INTEGER,
    -- this episode's "problem" message was queued: its resolution is said too
    told        INTEGER NOT NULL DEFAULT 0,
    resolved_ms INTEGER
) WITHOUT ROWID;

-- Messages not yet accepted by their receiver, oldest first: retried at every tick.
CREATE TABLE notify_outbox (
    id           INTEGER PRIMARY KEY,
    url          TEXT NOT NULL,
    content_type TEXT NOT NULL,
    title        TEXT,
    body         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    tries        INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
