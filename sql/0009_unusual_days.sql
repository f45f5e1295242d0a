-- stream-agency schema, version 9: money on unusual days (an outage, a restore, a default).

-- Windows counted into an epoch after its bill was sent or settled (a standby's windows
-- brought home late, say): kept alive and counted, never billed; shown by report,
-- earnings and receivables with that reason.
ALTER TABLE usage_windows ADD COLUMN late_windows INTEGER NOT NULL DEFAULT 0;
-- Set when the epoch was billed without waiting any longer for the standby's windows (its
-- copy stayed stale past --standby-wait-epochs): why, and when. `check` says so until the
-- copy is fresh past the epoch's end again.
ALTER TABLE usage_windows ADD COLUMN standby_clip TEXT;

-- An agent with --max-delinquent-epochs enforced, unpaid epochs is not renewed (nobody pays
-- for it) until the escrow shows it healthy again: since when, and why.
ALTER TABLE agents ADD COLUMN debt_hold_ms INTEGER;
ALTER TABLE agents ADD COLUMN debt_hold_reason TEXT;
-- When the last hold was lifted: only epochs enforced since count towards the next one.
ALTER TABLE agents ADD COLUMN debt_released_ms INTEGER;

-- The intake on the open internet (`serve`).
-- An agent enrolled through the intake while billing is on waits for the next tick to read
-- it on the escrow (registered, not cancelled: then renewed, at the escrow's fee): the
-- intake never waits on the gateway. Since when it waits; NULL once confirmed.
ALTER TABLE agents ADD COLUMN intake_confirm_ms INTEGER;
-- The operator's hold (`pause` from the CLI or with the operator's token): its own state,
-- which only the operator lifts; the agent's own signed `resume` does not.
ALTER TABLE agents ADD COLUMN operator_hold_ms INTEGER;
-- When the escrow status was last read (ms): an agent that cancelled, or an intake
-- enrollment waiting for the escrow, is read again every few seconds, not once an epoch,
-- so one that registers (again) is renewed and billed from its join epoch.
ALTER TABLE agents ADD COLUMN escrow_checked_ms INTEGER;
