-- stream-agency schema, version 3: epochs to the round, and what each agent's stream
-- service accepts.

-- The start of every epoch seen (Unix ms): exact from genesis and the epoch's first round,
-- or estimated to half a round where the gateway's figures do not allow more. Windows are
-- attributed by the time they opened against this timeline. Small: one row per epoch.
CREATE TABLE epoch_starts (
    epoch    INTEGER PRIMARY KEY,
    start_ms INTEGER NOT NULL,
    exact    INTEGER NOT NULL
) WITHOUT ROWID;

-- 1 once the service said "again at" the window's end: renew at the end, not before (no
-- 403 per window); a probe before the end every few windows finds out if that changed.
ALTER TABLE agents ADD COLUMN renew_after_end INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN windows_since_probe INTEGER NOT NULL DEFAULT 0;
-- 1 after an "already streaming, again at T" whose T had already passed (on the corrected
-- clock): a second one for the same window waits for the window's end.
ALTER TABLE agents ADD COLUMN stale_refusal INTEGER NOT NULL DEFAULT 0;
-- The agent's window length as its renewals bound it: a window opened between the request
-- and its answer, so its length lies between end - answered and end - requested. The
-- tightest bounds seen are kept (reset when a window's bounds miss them: the service
-- changed its length); the lower one, short by the quickest answer's travel, dates the
-- windows. Learned from raw times, never from a length derived from them (that would keep
-- its first error for good).
ALTER TABLE agents ADD COLUMN window_min_ms INTEGER;
ALTER TABLE agents ADD COLUMN window_max_ms INTEGER;
