-- stream-agency schema, version 4: the escrow as deployed (its EpochState enum, each
-- agent's lifecycle on it, what is still due on each bill, and collections).

-- Versions 2-3 read getEpochState one index off (the contract's Billed is 1, not 0): every
-- recorded settlement may be wrong, and the old names cannot be mapped back (index 0 and 5
-- both became 'Billed'). They are forgotten here and re-read from the chain by the next
-- billing passes (`receivables --refresh` re-reads them at once); until then a bill reads
-- as unknown, which counts as open: nothing is believed paid that the chain has not said.
UPDATE usage_windows SET settlement = NULL, settlement_checked_epoch = NULL
 WHERE settlement IS NOT NULL;

-- What is still due on a billed epoch, as getEpochDebt last said (decimal atto-CLAW).
ALTER TABLE usage_windows ADD COLUMN due_atto TEXT;
-- 1: the agent cancelled while owing and its bond paid this bill (getAgentFinancials
-- outstanding 0), although its state stays Billed on the contract.
ALTER TABLE usage_windows ADD COLUMN paid_at_cancel INTEGER NOT NULL DEFAULT 0;

-- The agent on the escrow, as getAgentInfo last said: NULL until read.
ALTER TABLE agents ADD COLUMN escrow_status TEXT CHECK (escrow_status IN
    ('active', 'paused', 'suspended', 'cancelled', 'unregistered'));
ALTER TABLE agents ADD COLUMN escrow_joined_epoch INTEGER;
ALTER TABLE agents ADD COLUMN escrow_checked_epoch INTEGER;   -- the epoch of that read
-- `resume --even-if-cancelled`: renew it although it left the escrow (the operator's word).
ALTER TABLE agents ADD COLUMN serve_cancelled INTEGER NOT NULL DEFAULT 0;
-- 1 once the contract refused a bill with 'Exceeds probation windows cap': its bills are
-- capped at 12 windows until it has 3 bills settled on time.
ALTER TABLE agents ADD COLUMN escrow_probation INTEGER NOT NULL DEFAULT 0;

-- enforceEpoch(agent, epoch) transactions (--enforce-after-grace): at most one per bill,
-- written before it is sent, like billing_attempts.
CREATE TABLE enforcements (
    id              INTEGER PRIMARY KEY,
    agent_id        INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    epoch           INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    nonce           INTEGER NOT NULL,
    signed_tx       TEXT    NOT NULL,
    tx_hash         TEXT,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    due_before_atto TEXT    NOT NULL,                 -- getEpochDebt before sending
    taken_atto      TEXT,                             -- taken from the bond
    outcome         TEXT,                             -- Slashed, Delinquent, or why it failed
    UNIQUE (agent_id, epoch)
);
CREATE INDEX enforcements_pending ON enforcements (status) WHERE status = 'pending';
