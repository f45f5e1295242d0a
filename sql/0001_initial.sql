-- stream-agency schema, version 1.
-- Table and column names of agents, attempts, usage_windows and billing_attempts are a
-- public interface: operators script reports against them with sqlite3. Times are Unix ms.

CREATE TABLE agents (
    id                   INTEGER PRIMARY KEY,
    address              TEXT    NOT NULL UNIQUE,           -- claw1... (lowercase bech32)
    stream_signature     TEXT    NOT NULL,                  -- hex signature of "stream": a bearer secret
    fee_bps              INTEGER NOT NULL CHECK (fee_bps BETWEEN 1 AND 10000),
    status               TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    expected_end_ms      INTEGER,                           -- end of the current window, when known
    next_attempt_ms      INTEGER NOT NULL DEFAULT 0,        -- when the next /stream call is due
    success_count        INTEGER NOT NULL DEFAULT 0,        -- renewals that opened a window
    failure_count        INTEGER NOT NULL DEFAULT 0,        -- attempts that failed (errors; "already streaming" is not one)
    backoff_step         INTEGER NOT NULL DEFAULT 0,        -- attempts in a row without a new window
    last_attempt_ms      INTEGER,
    last_success_ms      INTEGER,
    last_error           TEXT,
    failing_since_ms     INTEGER,                           -- first failure since the last success
    enrolled_ms          INTEGER NOT NULL,
    updated_ms           INTEGER NOT NULL
);
CREATE INDEX agents_due ON agents (status, next_attempt_ms);

-- One row per POST /stream.
CREATE TABLE attempts (
    id                     INTEGER PRIMARY KEY,
    agent_id               INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    attempted_ms           INTEGER NOT NULL,
    duration_ms            INTEGER NOT NULL,
    ok                     INTEGER NOT NULL,                -- 1 when a new window was opened
    status_code            INTEGER,                         -- NULL: no HTTP answer (timeout, reset)
    reason                 TEXT    NOT NULL,
    end_stream_ms          INTEGER,
    can_stream_again_at_ms INTEGER,
    counted                INTEGER NOT NULL DEFAULT 0,      -- 1 when this answer counted a window
    body_excerpt           TEXT                             -- bounded, signature redacted
);
CREATE INDEX attempts_agent ON attempts (agent_id, attempted_ms);

-- Every distinct window the agency counts, identified by (agent, end of window), so a
-- duplicated or replayed answer never counts twice. epoch stays NULL while the chain's
-- epoch is unknown (gateway down); it is attributed later from the epoch timeline.
CREATE TABLE stream_windows (
    agent_id      INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    end_stream_ms INTEGER NOT NULL,
    opened_ms     INTEGER NOT NULL,
    observed      INTEGER NOT NULL DEFAULT 0,               -- 1: found already open (--count-observed-windows)
    min_epoch     INTEGER,                                  -- highest epoch seen before it opened
    epoch         INTEGER,
    PRIMARY KEY (agent_id, end_stream_ms)
) WITHOUT ROWID;
CREATE INDEX stream_windows_unattributed ON stream_windows (agent_id, min_epoch) WHERE epoch IS NULL;

-- Windows counted per (agent, epoch): what billing charges.
CREATE TABLE usage_windows (
    agent_id        INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    epoch           INTEGER NOT NULL,
    windows         INTEGER NOT NULL DEFAULT 0,
    billed          INTEGER NOT NULL DEFAULT 0,             -- 1 once settled on chain (or found billed)
    billed_ms       INTEGER,
    billed_windows  INTEGER,                                -- windows the chain charged
    clipped_windows INTEGER NOT NULL DEFAULT 0,             -- above the contract's guards, not charged
    billed_tx_hash  TEXT,
    outcome         TEXT,                                   -- billed, billed-on-chain, expired, refused: reason
    PRIMARY KEY (agent_id, epoch)
) WITHOUT ROWID;

-- One row per billEpoch transaction (or per decision not to send one).
CREATE TABLE billing_attempts (
    id           INTEGER PRIMARY KEY,
    agent_id     INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    epoch        INTEGER NOT NULL,
    windows      INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    nonce        INTEGER,
    tx_hash      TEXT,
    signed_tx    TEXT,                                      -- the exact body sent, for identical re-sends
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'success', 'failed', 'skipped')),
    reason       TEXT
);
CREATE INDEX billing_attempts_agent ON billing_attempts (agent_id, epoch);
CREATE INDEX billing_attempts_pending ON billing_attempts (status) WHERE status = 'pending';

-- Small facts learned from the chain (highest epoch seen, round duration, ...).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
