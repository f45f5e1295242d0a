-- stream-agency schema, version 10: the agency's face (the pages `serve` renders), the
-- operator's wallet and the owner's cash-out.

-- One row per epoch: what the operator's page charts. Written when the epoch has closed
-- (the first full tick after it), by the process that bills (or the only one).
--  * Recorded once, because nothing can compute them again later (attempts and windows
--    are pruned, the chain's values move): active_agents .. lapses, and the chain's values
--    read that epoch (operator balance, owner's claimable, CLAW protected, promo used).
--  * Kept true afterwards from usage_windows (never pruned): counted .. outstanding, the
--    epoch's own bills. A change to one of its rows marks the epoch (trigger below) and the
--    next tick computes it again; fees only ever grow (their records may be pruned).
CREATE TABLE epoch_history (
    epoch                 INTEGER PRIMARY KEY,
    recorded_ms           INTEGER,               -- NULL: a row for an epoch before version 10
    active_agents         INTEGER,               -- agents served when the epoch closed
    windows_due           INTEGER,               -- windows of served agents that ended in the epoch
    windows_in_time       INTEGER,               -- of those, renewed no later than 2 s after their end
    counted_windows       INTEGER NOT NULL DEFAULT 0,
    billed_windows        INTEGER NOT NULL DEFAULT 0,
    paid_windows          INTEGER NOT NULL DEFAULT 0,  -- of bills settled (on time, late, at cancel)
    enforced_windows      INTEGER NOT NULL DEFAULT 0,  -- of bills slashed or delinquent
    charged_atto          TEXT NOT NULL DEFAULT '0',
    collected_atto        TEXT NOT NULL DEFAULT '0',   -- settled + slashed, as `earnings`
    outstanding_atto      TEXT NOT NULL DEFAULT '0',
    fees_atto             TEXT NOT NULL DEFAULT '0',   -- bills' and enforcements' transactions for it
    operator_balance_atto TEXT,                  -- GET /address/<operator>, read once an epoch
    claimable_owner_atto  TEXT,                  -- getClaimableOwner
    protected_atto        TEXT,                  -- getServiceStats' protected value
    promo_used            INTEGER                -- getPromoUsage
);

-- Epochs whose bills changed since their row was computed.
CREATE TABLE epoch_history_stale (
    epoch INTEGER PRIMARY KEY
);
-- (Not INSERT OR IGNORE: an outer statement's conflict clause, an upsert's, overrides a
-- trigger's.)
CREATE TRIGGER usage_windows_history_insert AFTER INSERT ON usage_windows
BEGIN
    INSERT INTO epoch_history_stale (epoch) SELECT NEW.epoch
    WHERE NOT EXISTS (SELECT 1 FROM epoch_history_stale WHERE epoch = NEW.epoch);
END;
CREATE TRIGGER usage_windows_history_update AFTER UPDATE ON usage_windows
BEGIN
    INSERT INTO epoch_history_stale (epoch) SELECT NEW.epoch
    WHERE NOT EXISTS (SELECT 1 FROM epoch_history_stale WHERE epoch = NEW.epoch);
END;
CREATE TRIGGER billing_fee_history AFTER UPDATE OF fee_atto ON billing_attempts
BEGIN
    INSERT INTO epoch_history_stale (epoch) SELECT NEW.epoch
    WHERE NOT EXISTS (SELECT 1 FROM epoch_history_stale WHERE epoch = NEW.epoch);
END;
CREATE TRIGGER enforcement_fee_history AFTER UPDATE OF fee_atto ON enforcements
BEGIN
    INSERT INTO epoch_history_stale (epoch) SELECT NEW.epoch
    WHERE NOT EXISTS (SELECT 1 FROM epoch_history_stale WHERE epoch = NEW.epoch);
END;
-- The epochs billed before this version get their rows at the first tick.
INSERT OR IGNORE INTO epoch_history_stale (epoch) SELECT DISTINCT epoch FROM usage_windows;
-- An epoch's rows, for the history's refresh and `/`'s windows this epoch. On the
-- expression `epoch + 0`, so that only the queries that ask for it by that expression use
-- it: an index on `epoch` itself would draw every `ORDER BY epoch` query into reading the
-- whole table in epoch order instead of its own, narrower index.
CREATE INDEX usage_windows_epoch ON usage_windows (epoch + 0);
CREATE INDEX billing_attempts_epoch ON billing_attempts (epoch + 0);

-- The agents served now, counted by the pages at every request without reading the
-- agents' rows (the condition is `served!` in src/store/mod.rs, and not removed).
CREATE INDEX agents_served ON agents (id)
    WHERE removed_ms IS NULL AND status = 'active' AND (escrow_status IS NOT 'cancelled' OR serve_cancelled = 1)
      AND debt_hold_ms IS NULL AND intake_confirm_ms IS NULL;

-- Sessions of the operator's page (`POST /operator/sign-in` with a live token): only the
-- SHA-256 of the cookie is kept. A session ends when its token is revoked, or at expiry.
CREATE TABLE operator_sessions (
    sha256     TEXT PRIMARY KEY,
    token_name TEXT NOT NULL REFERENCES api_tokens (name) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The owner's withdrawals from the escrow's claimableOwner (`withdraw`), written ahead of
-- the send like a bill: a row still 'pending' is resolved before any new one is sent.
CREATE TABLE owner_withdrawals (
    id          INTEGER PRIMARY KEY,
    owner       TEXT    NOT NULL,
    amount_atto TEXT    NOT NULL,
    to_address  TEXT,
    nonce       INTEGER NOT NULL,
    signed_tx   TEXT    NOT NULL,                 -- sent again, byte for byte, after a crash
    tx_hash     TEXT,
    status      TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'success', 'fail')),
    reason      TEXT,
    fee_atto    TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
