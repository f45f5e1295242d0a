//! Agents: enrollment, pause/resume/remove, the due list and each renewal's outcome.

use rusqlite::{params, OptionalExtension};

use super::{served, usage, Shard, Store};
use crate::crypto::keys::{Address, Secret};
use crate::error::{Error, Result};
use crate::renewal::outcome::{DueAgent, Renewal, Verdict};
use zeroize::Zeroizing;

#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub enum Enrolled {
    New,
    Updated,
}

/// Active agents whose attempt is due at `?1`, most urgent (earliest window end, unknown
/// first) first. An agent that left the escrow is not renewed (nobody pays for that work)
/// unless the operator said so (`resume --even-if-cancelled`).
/// What the renewers carry (see [`Store::renewal_load`]).
#[derive(Debug, Clone, Copy)]
pub struct RenewalLoad {
    pub agents: i64,
    /// Served agents due now (a backlog).
    pub due_now: i64,
    pub window_ms: Option<i64>,
    pub latency_ms: Option<f64>,
}

const DUE: &str = concat!("WHERE ", served!(), " AND next_attempt_ms <= ?1");
const DUE_ORDER: &str =
    " ORDER BY expected_end_ms IS NOT NULL, expected_end_ms, next_attempt_ms, id";

impl Store {
    /// The id of an enrolled (not removed) agent.
    pub fn agent_id(&self, address: &Address) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM agents WHERE address = ?1 AND removed_ms IS NULL",
                [address.to_bech32()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The id of an enrolled agent, or the usage error that names it unknown.
    pub fn require_agent(&self, address: &Address) -> Result<i64> {
        self.agent_id(address)?.ok_or_else(|| {
            Error::usage(format!(
                "unknown agent {address}: enroll it first (see `report` for enrolled agents)"
            ))
        })
    }

    /// Whether any stored signature is encrypted (what a backup of this file needs). No
    /// signature leaves SQLite for it.
    pub fn has_encrypted_signatures(&self) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM agents WHERE substr(stream_signature, 1, ?1) = ?2)",
            params![
                crate::crypto::secrets::PREFIX.len(),
                crate::crypto::secrets::PREFIX
            ],
            |r| r.get(0),
        )?)
    }

    /// Whether the key given (or none) fits the signatures already stored: sealed ones need
    /// a key, and that key must open them. A one-line refusal otherwise.
    pub fn check_secret_key(&self) -> Result<()> {
        let sealed: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT address, stream_signature FROM agents
                 WHERE stream_signature LIKE 'enc:v1:%' LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((address, stored)) = sealed else {
            return Ok(());
        };
        match &self.secret_key {
            None => Err(Error::usage(
                "the signatures here are encrypted at rest: give --secret-key-file (or STREAM_AGENCY_SECRET_KEY_FILE), or new ones would be stored in plain text beside them; nothing was written",
            )),
            Some(key) if key.decrypt(&address, &stored).is_err() => Err(Error::usage(
                "--secret-key-file does not open the signatures already stored here (another key?): give the key they were sealed with; nothing was written",
            )),
            Some(_) => Ok(()),
        }
    }

    /// The signature as stored: encrypted when a key is configured.
    pub(super) fn sealed(&self, address: &Address, signature: &str) -> Zeroizing<String> {
        Zeroizing::new(match &self.secret_key {
            Some(key) => key.encrypt(&address.to_bech32(), signature),
            None => signature.to_string(),
        })
    }

    /// Adds an agent, or updates a known one's signature and fee and reactivates it.
    #[cfg(test)]
    pub fn enroll(
        &mut self,
        address: &Address,
        signature: &str,
        fee_bps: u32,
        now: i64,
    ) -> Result<Enrolled> {
        let (new, _) =
            self.enroll_many(&[(*address, Secret::new(signature.into()), fee_bps)], now)?;
        Ok(if new == 1 {
            Enrolled::New
        } else {
            Enrolled::Updated
        })
    }

    /// Enrolls agents in one transaction (all or nothing): the CLI's enroll, which
    /// reactivates a known agent. Returns (new, updated).
    pub fn enroll_many(
        &mut self,
        agents: &[(Address, Secret, u32)],
        now: i64,
    ) -> Result<(usize, usize)> {
        let sealed: Vec<Zeroizing<String>> = agents
            .iter()
            .map(|(a, s, _)| self.sealed(a, s.expose()))
            .collect();
        let tx = self.conn.transaction()?;
        let (mut new, mut updated) = (0, 0);
        for ((address, _, fee_bps), stored) in agents.iter().zip(&sealed) {
            if upsert_agent(&tx, (address, stored, *fee_bps), false, now)? {
                new += 1;
            } else {
                updated += 1;
            }
        }
        tx.commit()?;
        Ok((new, updated))
    }

    /// Encrypts every plaintext signature in place, in one transaction (a crash leaves all
    /// rows as they were). Returns how many rows were encrypted.
    pub fn encrypt_secrets(&mut self, key: &crate::crypto::secrets::SecretKey) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let rows: Vec<(i64, String, String)> = tx
            .prepare("SELECT id, address, stream_signature FROM agents")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut done = 0;
        for (id, address, stored) in rows {
            if crate::crypto::secrets::is_encrypted(&stored) {
                continue;
            }
            let sealed = key.encrypt(&address, &stored);
            tx.execute(
                "UPDATE agents SET stream_signature = ?2 WHERE id = ?1",
                params![id, sealed],
            )?;
            done += 1;
        }
        tx.commit()?;
        Ok(done)
    }

    /// Pauses or resumes; a resumed agent is due at once if its slot passed while paused.
    /// Pauses or resumes an agent. The operator's pause is also a hold (its own state):
    /// only the operator's resume lifts it, the agent's own resume changes nothing then.
    pub fn set_status(
        &self,
        address: &Address,
        active: bool,
        by_operator: bool,
        now: i64,
    ) -> Result<bool> {
        let id = self.require_agent(address)?;
        let status = if active { "active" } else { "paused" };
        let changed = self.conn.execute(
            "UPDATE agents SET status = ?2, updated_ms = ?3,
                    next_attempt_ms = CASE WHEN ?2 = 'active' THEN MIN(next_attempt_ms, ?3) ELSE next_attempt_ms END,
                    operator_hold_ms = CASE WHEN NOT ?4 THEN operator_hold_ms
                                            WHEN ?2 = 'active' THEN NULL
                                            ELSE COALESCE(operator_hold_ms, ?3) END
             WHERE id = ?1 AND (?4 OR operator_hold_ms IS NULL)
               AND (status <> ?2 OR (?4 AND (operator_hold_ms IS NULL) = (?2 = 'paused')))",
            params![id, status, now, by_operator],
        )?;
        Ok(changed == 1)
    }

    /// Removes an agent: it is never renewed or billed again and its signature is wiped,
    /// but its row and its history stay (money billed outlives the client relationship;
    /// re-enrolling the address continues it). Refused while windows wait for billing,
    /// unless forced: then they are settled as skipped by a human. Returns the number of
    /// unbilled windows dropped.
    pub fn remove(&mut self, address: &Address, force: bool, now: i64) -> Result<i64> {
        let id = self.require_agent(address)?;
        let unbilled = usage::unbilled_windows(&self.conn, Some(id))?;
        if unbilled > 0 && !force {
            return Err(Error::usage(format!(
                "agent {address} has {unbilled} counted windows not yet billed: bill them first, or pass --force to drop them"
            )));
        }
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE agents SET status = 'paused', removed_ms = ?2, stream_signature = '',
                    updated_ms = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        tx.execute(
            "UPDATE usage_windows SET kind = 'skipped-by-human', outcome = 'agent removed with --force'
             WHERE agent_id = ?1 AND (kind IS NULL OR kind = 'held')",
            [id],
        )?;
        tx.execute(
            "DELETE FROM stream_windows WHERE agent_id = ?1 AND epoch IS NULL",
            [id],
        )?;
        tx.commit()?;
        Ok(unbilled)
    }

    /// Active agents whose attempt is due, most urgent (earliest window end, unknown first) first.
    pub fn due_agents(&self, now: i64) -> Result<Vec<DueAgent>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, address, stream_signature, expected_end_ms, backoff_step,
                        window_min_ms, renew_after_end, windows_since_probe,
                        stale_refusal
             FROM agents {DUE}{}{DUE_ORDER}",
            Shard::condition(self.shard)
        ))?;
        let rows = stmt.query_map([now], |r| {
            Ok(DueAgent {
                id: r.get(0)?,
                address: r.get(1)?,
                signature: Ok(Secret::new(r.get(2)?)),
                expected_end_ms: r.get(3)?,
                backoff_step: r.get(4)?,
                window_ms: r.get(5)?,
                after_end: r.get(6)?,
                since_probe: r.get(7)?,
                stale: r.get(8)?,
            })
        })?;
        let mut due: Vec<DueAgent> = rows.collect::<Result<_, _>>()?;
        for agent in &mut due {
            if let Ok(stored) = &agent.signature {
                let key = self.secret_key.as_ref();
                match crate::crypto::secrets::reveal(key, &agent.address, stored.expose()) {
                    // No key at all for encrypted signatures: a configuration error.
                    Err(e) if key.is_none() => return Err(e),
                    // One row that does not decrypt fails that agent alone.
                    revealed => {
                        agent.signature = revealed.map(Secret::new).map_err(|e| e.to_string())
                    }
                }
            }
        }
        Ok(due)
    }

    /// Due agents' addresses and window ends, without their secrets (for `--dry-run`).
    pub fn due_list(&self, now: i64) -> Result<Vec<(String, Option<i64>)>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT address, expected_end_ms FROM agents {DUE}{}{DUE_ORDER}",
            Shard::condition(self.shard)
        ))?;
        let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the renewers carry: served agents (and those due now), their typical window
    /// length (the median of the lengths learned), the service's latency (mean of the last
    /// 500 attempts).
    pub fn renewal_load(&self, now: i64) -> Result<RenewalLoad> {
        let agents: i64 = self.conn.query_row(
            concat!("SELECT COUNT(*) FROM agents WHERE ", served!()),
            [],
            |r| r.get(0),
        )?;
        let due_now: i64 = self.conn.query_row(
            concat!(
                "SELECT COUNT(*) FROM agents WHERE ",
                served!(),
                " AND next_attempt_ms <= ?1"
            ),
            [now],
            |r| r.get(0),
        )?;
        let window_ms: Option<i64> = self
            .conn
            .query_row(
                "SELECT window_min_ms FROM agents WHERE window_min_ms IS NOT NULL
             ORDER BY window_min_ms LIMIT 1
             OFFSET (SELECT COUNT(*) FROM agents WHERE window_min_ms IS NOT NULL) / 2",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let latency_ms: Option<f64> = self.conn.query_row(
            "SELECT AVG(duration_ms) FROM
                 (SELECT duration_ms FROM attempts ORDER BY id DESC LIMIT 500)",
            [],
            |r| r.get(0),
        )?;
        Ok(RenewalLoad {
            agents,
            due_now,
            window_ms,
            latency_ms,
        })
    }

    /// The stream service asked every client to wait (429, `Retry-After`) until `until`:
    /// kept for every renewer (the later of two pauses wins).
    pub fn pause_stream_until(&self, until: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('stream_paused_until_ms', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value
             WHERE CAST(value AS INTEGER) < CAST(excluded.value AS INTEGER)",
            [until.to_string()],
        )?;
        Ok(())
    }

    /// Until when the stream service asked every client to wait, if it did.
    pub fn stream_paused_until(&self) -> Result<Option<i64>> {
        self.meta_get_i64("stream_paused_until_ms")
    }

    /// The earliest next attempt of any active agent (of this shard).
    pub fn next_due_ms(&self) -> Result<Option<i64>> {
        Ok(self.conn.query_row(
            &format!(
                concat!(
                    "SELECT MIN(next_attempt_ms) FROM agents WHERE ",
                    served!(),
                    "{}"
                ),
                Shard::condition(self.shard)
            ),
            [],
            |r| r.get(0),
        )?)
    }

    /// The earliest next attempt among served agents but `except` (whose next attempt is
    /// planned in memory while the disk refuses their records).
    pub fn next_due_ms_except(&self, except: &[i64]) -> Result<Option<i64>> {
        let ids: Vec<String> = except.iter().map(i64::to_string).collect();
        Ok(self.conn.query_row(
            &format!(
                concat!(
                    "SELECT MIN(next_attempt_ms) FROM agents WHERE ",
                    served!(),
                    " AND id NOT IN ({}){}"
                ),
                ids.join(","),
                Shard::condition(self.shard)
            ),
            [],
            |r| r.get(0),
        )?)
    }

    /// Writes one attempt: its row, the window it counts (at most once) and the agent's
    /// new schedule, in one transaction. Returns whether a new window was recorded.
    pub fn record_renewal(&mut self, r: &Renewal) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let counted = match r.window {
            Some((end, observed)) => {
                usage::insert_window(&tx, r.agent_id, end, r.opened_ms, observed, r.min_epoch)?
            }
            None => false,
        };
        tx.prepare_cached(
            "INSERT INTO attempts (agent_id, attempted_ms, duration_ms, ok, status_code, reason,
                                   end_stream_ms, can_stream_again_at_ms, counted, body_excerpt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            r.agent_id,
            r.attempted_ms,
            r.duration_ms,
            r.verdict == Verdict::Renewed,
            r.status_code,
            r.reason,
            r.end_stream_ms,
            r.can_stream_again_at_ms,
            counted,
            r.body_excerpt,
        ])?;
        let (renewed, failed_error) = match &r.verdict {
            Verdict::Renewed => (true, None),
            Verdict::Neutral => (false, None),
            Verdict::Failed(e) => (false, Some(e.as_str())),
        };
        tx.prepare_cached(
            "UPDATE agents SET
                success_count = success_count + ?2,
                failure_count = failure_count + ?3,
                last_success_ms = CASE WHEN ?2 THEN ?4 ELSE last_success_ms END,
                last_error = CASE WHEN ?2 THEN NULL WHEN ?3 THEN ?5 ELSE last_error END,
                failing_since_ms = CASE WHEN ?2 THEN NULL WHEN ?3 THEN COALESCE(failing_since_ms, ?4)
                                        ELSE failing_since_ms END,
                last_attempt_ms = ?4,
                expected_end_ms = COALESCE(?6, expected_end_ms),
                next_attempt_ms = ?7,
                backoff_step = ?8,
                renew_after_end = ?9,
                windows_since_probe = ?10,
                stale_refusal = ?11,
                window_min_ms = CASE WHEN ?12 IS NULL THEN window_min_ms
                    WHEN window_min_ms IS NULL OR ?13 < window_min_ms OR ?12 > window_max_ms THEN ?12
                    ELSE MAX(window_min_ms, ?12) END,
                window_max_ms = CASE WHEN ?12 IS NULL THEN window_max_ms
                    WHEN window_min_ms IS NULL OR ?13 < window_min_ms OR ?12 > window_max_ms THEN ?13
                    ELSE MIN(window_max_ms, ?13) END,
                updated_ms = ?4
             WHERE id = ?1",
        )?
        .execute(params![
            r.agent_id,
            renewed,
            failed_error.is_some(),
            r.attempted_ms,
            failed_error,
            r.expected_end_ms,
            r.next_attempt_ms,
            r.backoff_step,
            r.after_end,
            r.since_probe,
            r.stale,
            r.window_bounds.map(|b| b.0),
            r.window_bounds.map(|b| b.1),
        ])?;
        tx.commit()?;
        Ok(counted)
    }
}

/// Adds an agent or updates a known one's signature and fee; a removed one (or one that
/// asked to be removed) is served again. A known agent's status becomes active, or with
/// `keep_status` stays as it is (the intake: a paused agent stays paused). A re-enrolled
/// agent is tried at once: its new signature may fix an old error. Returns true when new.
impl Store {
    /// The host clock stepped by `delta_ms`: every planned attempt and known window end
    /// moves with it, so each stays at the same real instant.
    pub fn shift_plan(&self, delta_ms: i64) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE agents SET next_attempt_ms = next_attempt_ms + ?1,
                               expected_end_ms = expected_end_ms + ?1",
            [delta_ms],
        )?)
    }
}

pub(super) fn upsert_agent(
    conn: &rusqlite::Connection,
    (address, stored, fee_bps): (&Address, &str, u32),
    keep_status: bool,
    now: i64,
) -> Result<bool> {
    let known: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM agents WHERE address = ?1)")?
        .query_row([address.to_bech32()], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO agents (address, stream_signature, fee_bps, status, next_attempt_ms, enrolled_ms, updated_ms)
         VALUES (?1, ?2, ?3, 'active', ?4, ?4, ?4)
         ON CONFLICT (address) DO UPDATE SET
            stream_signature = excluded.stream_signature,
            fee_bps = excluded.fee_bps,
            status = CASE WHEN ?5 AND removed_ms IS NULL AND remove_requested_ms IS NULL
                          THEN status ELSE 'active' END,
            next_attempt_ms = MIN(next_attempt_ms, excluded.updated_ms),
            backoff_step = 0,
            removed_ms = NULL,
            remove_requested_ms = NULL,
            updated_ms = excluded.updated_ms",
    )?
    .execute(params![address.to_bech32(), stored, fee_bps, now, keep_status])?;
    Ok(!known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory_store;

    fn alice() -> Address {
        Address::parse("claw1qyu5wthldzr8wx5c9ucg8kjagg0jfs53s8nr3zpz3hypefsdd8ss0ekavn").unwrap()
    }

    fn renewal(id: i64, end: i64) -> Renewal {
        Renewal {
            agent_id: id,
            attempted_ms: 1_000,
            opened_ms: 1_003,
            window_bounds: None,
            duration_ms: 3,
            status_code: Some(200),
            reason: "renewed".into(),
            end_stream_ms: Some(end),
            can_stream_again_at_ms: None,
            body_excerpt: String::new(),
            verdict: Verdict::Renewed,
            window: Some((end, false)),
            min_epoch: Some(4),
            expected_end_ms: Some(end),
            next_attempt_ms: end - 100,
            backoff_step: 0,
            after_end: false,
            since_probe: 0,
            stale: false,
        }
    }

    #[test]
    fn enroll_twice_updates_and_replayed_windows_count_once() {
        let mut s = memory_store();
        assert_eq!(s.enroll(&alice(), "aa", 500, 10).unwrap(), Enrolled::New);
        assert_eq!(
            s.enroll(&alice(), "bb", 700, 20).unwrap(),
            Enrolled::Updated
        );
        let id = s.agent_id(&alice()).unwrap().unwrap();
        assert!(s.record_renewal(&renewal(id, 5_000)).unwrap());
        assert!(
            !s.record_renewal(&renewal(id, 5_000)).unwrap(),
            "replayed answer"
        );
        assert!(s.record_renewal(&renewal(id, 9_000)).unwrap());
        let (ok, attempts): (i64, i64) = s
            .conn
            .query_row(
                "SELECT success_count, (SELECT COUNT(*) FROM attempts) FROM agents",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((ok, attempts), (3, 3));
        let err = s.remove(&alice(), false, 30).unwrap_err().to_string();
        assert!(err.contains("2 counted windows"), "{err}");
        assert_eq!(s.remove(&alice(), true, 30).unwrap(), 2);
        assert!(s.agent_id(&alice()).unwrap().is_none());
        let left: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM stream_windows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn window_length_is_learned_from_raw_bounds_and_relearned_when_they_miss() {
        let mut s = memory_store();
        s.enroll(&alice(), "aa", 500, 10).unwrap();
        let id = s.agent_id(&alice()).unwrap().unwrap();
        let length = |s: &Store| s.due_agents(i64::MAX).unwrap()[0].window_ms;
        assert_eq!(length(&s), None);
        let mut end = 10_000;
        let mut learn = |s: &mut Store, bounds| {
            end += 10_000;
            s.record_renewal(&Renewal {
                window_bounds: Some(bounds),
                ..renewal(id, end)
            })
            .unwrap();
        };
        learn(&mut s, (1_190, 1_204));
        assert_eq!(length(&s), Some(1_190));
        // A quicker answer raises it; a slower one changes nothing.
        learn(&mut s, (1_199, 1_230));
        assert_eq!(length(&s), Some(1_199));
        learn(&mut s, (1_150, 1_200));
        assert_eq!(length(&s), Some(1_199));
        // Bounds that miss the ones kept: the service changed its window length, either way.
        learn(&mut s, (1_500, 1_510));
        assert_eq!(length(&s), Some(1_500));
        learn(&mut s, (1_000, 1_020));
        assert_eq!(length(&s), Some(1_000));
    }

    #[test]
    fn paused_agents_are_never_due() {
        let mut s = memory_store();
        s.enroll(&alice(), "aa", 500, 10).unwrap();
        assert_eq!(s.due_agents(10).unwrap().len(), 1);
        assert!(s.set_status(&alice(), false, true, 11).unwrap());
        assert!(!s.set_status(&alice(), false, true, 11).unwrap());
        assert!(
            !s.set_status(&alice(), true, false, 11).unwrap(),
            "held by the operator"
        );
        assert!(s.due_agents(100).unwrap().is_empty());
        assert!(s.set_status(&alice(), true, true, 12).unwrap());
        assert_eq!(s.due_agents(12).unwrap().len(), 1);
    }
}
