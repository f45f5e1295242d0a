-- An enforcement refused for now ("Still in grace period", a gateway refusal) is tried
-- again: said by a flag, not by the words of its outcome.
ALTER TABLE enforcements ADD COLUMN retry INTEGER NOT NULL DEFAULT 0 CHECK (retry IN (0, 1));
UPDATE enforcements SET retry = 1 WHERE status = 'failed' AND outcome LIKE 'retry:%';
