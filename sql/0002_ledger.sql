-- stream-agency schema, version 2: the chain is the ledger.
-- Every billing outcome and decision gets a kind from a fixed vocabulary (behaviour never
-- depends on the human reason text any more); the amounts charged and the settlement
-- state of each billed epoch; agents are marked removed instead of deleted, so that the
-- records of money billed outlive the client relationship.

-- What became of an (agent, epoch). NULL: open, to be billed.
ALTER TABLE usage_windows ADD COLUMN kind TEXT CHECK (kind IN (
    'billed',                -- our transaction, confirmed by getEpochState
    'billed-found-on-chain', -- the contract had it billed already
    'billed-by-mvp',         -- imported: the Python MVP marked it billed, not confirmed
    'expired',               -- older than the contract's max_backbill_epochs
    'refused',               -- the contract's rules make it unbillable for good
    'clipped',               -- the contract's guards allow 0 windows
    'held',                  -- failed for a reason we cannot explain: waits for a human
    'skipped-by-human',      -- `billing skip`
    'lost'                   -- `reconcile --apply`: the chain lacks it and can no longer take it
));
ALTER TABLE usage_windows ADD COLUMN charged_atto TEXT;           -- window_reward * windows * fee_bps / 10000, decimal
ALTER TABLE usage_windows ADD COLUMN settlement TEXT CHECK (settlement IN
    ('Billed', 'SettledOnTime', 'SettledLate', 'Slashed', 'Delinquent'));
ALTER TABLE usage_windows ADD COLUMN settlement_checked_epoch INTEGER; -- epoch of the last getEpochState read

UPDATE usage_windows SET kind = CASE
    WHEN billed = 1 AND outcome = 'billed (found on chain)' THEN 'billed-found-on-chain'
    WHEN billed = 1 THEN 'billed'
    WHEN outcome LIKE 'expired%' THEN 'expired'
    WHEN outcome LIKE 'refused%' THEN 'refused'
    WHEN outcome LIKE 'clipped%' THEN 'clipped'
    WHEN outcome IS NOT NULL THEN 'held'       -- "needs a human: failed 3 times": held, not lost
END;
UPDATE usage_windows SET settlement = 'Billed' WHERE kind IN ('billed', 'billed-found-on-chain');
CREATE INDEX usage_windows_open ON usage_windows (agent_id, epoch) WHERE kind IS NULL OR kind = 'held';

-- What one billing transaction or decision came to.
ALTER TABLE billing_attempts ADD COLUMN kind TEXT CHECK (kind IN (
    'pending', 'billed', 'billed-found-on-chain', 'expired', 'refused', 'clipped', 'held',
    'retry',              -- "try later" (Epoch not closed yet, nonce used by a failed call)
    'gateway-refused',    -- refused before reaching the chain; its nonce is free again
    'skipped-by-human', 'retried-by-human', 'lost', 'mvp'
));
ALTER TABLE billing_attempts ADD COLUMN charged_atto TEXT;        -- expected charge, decimal
ALTER TABLE billing_attempts ADD COLUMN unresolved_ms INTEGER;    -- first seen final without a state on the contract (waits, bounded)

UPDATE billing_attempts SET kind = CASE
    WHEN status = 'pending' THEN 'pending'
    WHEN status = 'success' THEN 'billed'
    WHEN reason = 'already billed on chain' THEN 'billed-found-on-chain'
    WHEN reason LIKE 'expired%' THEN 'expired'
    WHEN reason LIKE 'clipped%' THEN 'clipped'
    WHEN reason LIKE 'refused by the gateway%' THEN 'gateway-refused'
    WHEN reason LIKE 'failed, will retry%' OR reason LIKE 'nonce used%' THEN 'retry'
    WHEN reason LIKE '%(treated as done)' THEN 'billed-found-on-chain'
    WHEN reason LIKE 'refused%' OR reason LIKE 'failed: %' THEN 'refused'
    ELSE 'held'
END;

-- Removed agents keep their row (and so their history); their secret is wiped.
ALTER TABLE agents ADD COLUMN removed_ms INTEGER;
