//! What the HTTP intake (`serve`) keeps: operator tokens (their SHA-256 only), the signed
//! action messages already used, removals requested by agents, and an agent's public view.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{usage, Store};
use crate::crypto::keys::Address;
use crate::error::Result;

/// One operator token as `token list` shows it (never the token).
#[derive(Debug, Serialize)]
pub struct TokenRow {
    pub name: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// What anybody may read of an agent (`GET /v1/agents/{address}`): never its signature.
#[derive(Debug, Serialize)]
pub struct PublicView {
    pub address: String,
    /// active, paused, removed, cancelled (on the escrow), held-for-debt (not renewed until
    /// the escrow shows it healthy) or waiting-for-escrow (an intake enrollment the next
    /// tick confirms): `not_renewed_because` says why.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_renewed_because: Option<String>,
    pub next_renewal_ms: Option<i64>,
    pub window_end_ms: Option<i64>,
    pub epoch: Option<i64>,
    pub windows_this_epoch: i64,
    pub windows_last_epoch: i64,
    pub open_bills: i64,
}

impl Store {
    pub fn add_token(&self, name: &str, sha256_hex: &str, now: i64) -> Result<bool> {
        let added = self.conn.execute(
            "INSERT INTO api_tokens (name, sha256, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, sha256_hex, now],
        )?;
        Ok(added == 1)
    }

    pub fn revoke_token(&self, name: &str, now: i64) -> Result<bool> {
        let revoked = self.conn.execute(
            "UPDATE api_tokens SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms IS NULL",
            params![name, now],
        )?;
        // Its sessions end with it (the page checks the token too).
        self.conn.execute(
            "DELETE FROM operator_sessions WHERE token_name = ?1",
            [name],
        )?;
        Ok(revoked == 1)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, created_ms, revoked_ms FROM api_tokens ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenRow {
                name: r.get(0)?,
                created_ms: r.get(1)?,
                revoked_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The name and SHA-256 (hex) of every token not revoked, for a constant-time
    /// comparison.
    pub fn live_tokens(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, sha256 FROM api_tokens WHERE revoked_ms IS NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A session of the operator's page, for the token `token_name`, until `expires_ms`.
    pub fn add_session(
        &self,
        sha256_hex: &str,
        token_name: &str,
        now: i64,
        expires_ms: i64,
    ) -> Result<()> {
        self.conn
            .execute("DELETE FROM operator_sessions WHERE expires_ms < ?1", [now])?;
        self.conn.execute(
            "INSERT INTO operator_sessions (sha256, token_name, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            params![sha256_hex, token_name, now, expires_ms],
        )?;
        Ok(())
    }

    /// Whether the session is live: not expired, its token not revoked.
    pub fn session_live(&self, sha256_hex: &str, now: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM operator_sessions s JOIN api_tokens t ON t.name = s.token_name
                 WHERE s.sha256 = ?1 AND s.expires_ms > ?2 AND t.revoked_ms IS NULL",
            )?
            .query_row(params![sha256_hex, now], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn end_session(&self, sha256_hex: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM operator_sessions WHERE sha256 = ?1",
            [sha256_hex],
        )?;
        Ok(())
    }

    /// Enrollment through the intake: a new agent is added active; a known one gets its
    /// signature and fee updated but keeps its status (a paused agent stays paused: whoever
    /// knows the signature could otherwise undo the agent's own signed pause); a removed
    /// one, or one that asked to be removed, is served again. Returns true when new.
    /// With `confirm` (billing on), the agent waits for the next tick to read it on the
    /// escrow before it is renewed (unless the escrow already confirmed it).
    pub fn enroll_by_intake(
        &mut self,
        address: &Address,
        signature: &crate::crypto::keys::Secret,
        fee_bps: u32,
        (confirm, now): (bool, i64),
    ) -> Result<bool> {
        let stored = self.sealed(address, signature.expose());
        let tx = self.conn.transaction()?;
        let new = super::agents::upsert_agent(&tx, (address, &stored, fee_bps), true, now)?;
        if confirm {
            tx.execute(
                "UPDATE agents SET intake_confirm_ms = COALESCE(intake_confirm_ms, ?2)
                 WHERE address = ?1 AND (escrow_status IS NULL OR escrow_status IN ('unregistered', 'cancelled'))",
                params![address.to_bech32(), now],
            )?;
        }
        tx.commit()?;
        Ok(new)
    }

    /// Whether an agent was removed, or asked to be (re-enrolling it needs its own signed
    /// `enroll` action or the operator).
    pub fn is_removed(&self, address: &Address) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM agents WHERE address = ?1
                                AND (removed_ms IS NOT NULL OR remove_requested_ms IS NOT NULL))",
            )?
            .query_row([address.to_bech32()], |r| r.get(0))?)
    }

    /// Whether the operator holds an agent (only the operator lifts it).
    pub fn operator_holds(&self, address: &Address) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM agents WHERE address = ?1 AND operator_hold_ms IS NOT NULL)",
            )?
            .query_row([address.to_bech32()], |r| r.get(0))?)
    }

    /// Records a signed message as used until `expires_s`. False: it was used already.
    pub fn use_message(&self, digest_hex: &str, expires_s: i64, now_s: i64) -> Result<bool> {
        self.conn
            .prepare_cached("DELETE FROM used_messages WHERE expires_s < ?1")?
            .execute([now_s])?;
        let fresh = self
            .conn
            .prepare_cached(
                "INSERT INTO used_messages (digest, expires_s) VALUES (?1, ?2)
                 ON CONFLICT (digest) DO NOTHING",
            )?
            .execute(params![digest_hex, expires_s])?;
        Ok(fresh == 1)
    }

    /// An agent's request to be removed: renewals stop now; the removal itself waits for
    /// its counted windows to be billed (see [`Store::finish_requested_removals`]).
    pub fn request_removal(&mut self, address: &Address, now: i64) -> Result<bool> {
        let id = self.require_agent(address)?;
        let changed = self.conn.execute(
            "UPDATE agents SET status = 'paused', remove_requested_ms = COALESCE(remove_requested_ms, ?2),
                    updated_ms = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        self.finish_requested_removals(now)?;
        Ok(changed == 1)
    }

    /// Removes the agents that asked for it and have nothing left to bill.
    pub fn finish_requested_removals(&mut self, now: i64) -> Result<usize> {
        let waiting: Vec<String> = self
            .conn
            .prepare_cached(
                "SELECT address FROM agents WHERE remove_requested_ms IS NOT NULL AND removed_ms IS NULL",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut removed = 0;
        for address in waiting {
            let Ok(address) = Address::parse(&address) else {
                continue;
            };
            let id = self.require_agent(&address)?;
            if usage::unbilled_windows(&self.conn, Some(id))? == 0 {
                self.remove(&address, false, now)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The public view of an agent, known or removed; `None` when never enrolled.
    pub fn public_view(&self, address: &Address) -> Result<Option<PublicView>> {
        let epoch = self.max_epoch_seen()?;
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, status, removed_ms IS NOT NULL OR remove_requested_ms IS NOT NULL,
                        escrow_status = 'cancelled' AND serve_cancelled = 0,
                        next_attempt_ms, expected_end_ms,
                        COALESCE(debt_hold_reason, CASE WHEN intake_confirm_ms IS NULL THEN NULL
                            WHEN escrow_status = 'unregistered' THEN 'waiting for the escrow: not registered there yet (call register on the contract); read again at every epoch'
                            WHEN escrow_status = 'cancelled' THEN 'waiting for the escrow: cancelled there (register again); read again at every epoch'
                            ELSE 'waiting for the next tick to read it on the escrow (registered, not cancelled), then renewed at the escrow''s fee' END),
                        intake_confirm_ms IS NOT NULL
                 FROM agents WHERE address = ?1",
            )?
            .query_row([address.to_bech32()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, Option<bool>>(3)?.unwrap_or(false),
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, bool>(7)?,
                ))
            })
            .optional()?;
        let Some((id, status, removed, cancelled, next, end, hold, waiting)) = row else {
            return Ok(None);
        };
        let windows = |e: Option<i64>| match e {
            Some(e) => self.windows_counted(Some(id), Some(e)),
            None => Ok(0),
        };
        let status = match (removed, cancelled, &hold) {
            (true, _, _) => "removed".to_string(),
            (false, true, _) => "cancelled".to_string(),
            (false, false, Some(_)) if waiting => "waiting-for-escrow".to_string(),
            (false, false, Some(_)) => "held-for-debt".to_string(),
            _ => status,
        };
        let open_bills = self.charges(true, Some(id))?.len() as i64;
        Ok(Some(PublicView {
            address: address.to_bech32(),
            next_renewal_ms: (status == "active").then_some(next),
            status,
            window_end_ms: end,
            epoch,
            windows_this_epoch: windows(epoch)?,
            windows_last_epoch: windows(epoch.map(|e| e - 1))?,
            open_bills,
            not_renewed_because: hold.filter(|_| !removed),
        }))
    }
}
