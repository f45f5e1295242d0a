-- What every transaction really cost (`fee`, `gasUsed` of its receipt, once executed), the
-- gas limit it was sent with, and the bills held back because their expected fee is more
-- than their charge.
ALTER TABLE billing_attempts ADD COLUMN gas_limit INTEGER;
ALTER TABLE billing_attempts ADD COLUMN fee_atto TEXT;           -- decimal; NULL until known
ALTER TABLE billing_attempts ADD COLUMN gas_used INTEGER;
ALTER TABLE enforcements ADD COLUMN gas_limit INTEGER;
ALTER TABLE enforcements ADD COLUMN fee_atto TEXT;
ALTER TABLE enforcements ADD COLUMN gas_used INTEGER;

-- A bill (or an enforcement of one) not sent because it would cost more than it brings in:
-- weighed again each epoch while the contract still takes it (one row per bill and kind;
-- gone once it is sent or settled).
CREATE TABLE unprofitable (
    agent_id       INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    epoch          INTEGER NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('bill', 'enforcement')),
    charge_atto    TEXT    NOT NULL,
    fee_atto       TEXT    NOT NULL,               -- the expected fee when last weighed
    weighed_epoch  INTEGER NOT NULL,               -- the current epoch when last weighed
    created_ms     INTEGER NOT NULL,
    PRIMARY KEY (agent_id, epoch, kind)
);
