//! Alerts (`--notify`): which problems were said, and the messages not yet delivered.

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::error::Result;

/// A queued message for one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: i64,
    pub url: String,
    pub content_type: String,
    pub title: Option<String>,
    pub body: String,
}

/// What changed since the last look: problems to say, resolutions to say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub raised: Vec<String>,
    pub resolved: Vec<String>,
}

/// A problem's identity: its text without the figures that grow while it lasts ("window
/// ended 600 s ago" is the same problem a minute later).
pub fn alert_key(problem: &str) -> String {
    let mut key = String::with_capacity(problem.len());
    let mut rest = problem;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let (before, from) = rest.split_at(start);
        key.push_str(before);
        let end = from
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(from.len());
        let (digits, after) = from.split_at(end);
        let running = [" s ", " s)", " min", " s;", " s,"]
            .iter()
            .any(|u| after.starts_with(u))
            || after == " s";
        let glued = key.ends_with(|c: char| c.is_ascii_alphanumeric());
        key.push_str(if running && !glued { "#" } else { digits });
        rest = after;
    }
    key.push_str(rest);
    key
}

impl Store {
    /// The problems open now, as last said, with since when (for the operator's page).
    pub fn open_alerts(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT text, raised_ms FROM alerts WHERE resolved_ms IS NULL ORDER BY raised_ms",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Problems needing a human (key, text as said, whether it was said), as kept.
    fn active_alerts(&self) -> Result<Vec<(String, String, bool)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT problem, text, told FROM alerts WHERE resolved_ms IS NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether `problems` differ from the active alerts (an unchanged set writes nothing).
    pub fn alerts_changed(&self, problems: &[String]) -> Result<bool> {
        let active = self.active_alerts()?;
        let keys: Vec<String> = problems.iter().map(|p| alert_key(p)).collect();
        Ok(active.len() != keys.len() || keys.iter().any(|k| !active.iter().any(|a| &a.0 == k)))
    }

    /// Brings the alerts to `problems`, in one transaction: a new problem is said unless
    /// it was said less than `cooldown_ms` ago; a resolution is said for a problem whose
    /// episode was said. Resolved alerts older than the cooldown are forgotten.
    pub fn update_alerts(
        &mut self,
        problems: &[String],
        now: i64,
        cooldown_ms: i64,
    ) -> Result<Changes> {
        let active = self.active_alerts()?;
        let keys: Vec<String> = problems.iter().map(|p| alert_key(p)).collect();
        let tx = self.conn.transaction()?;
        let mut changes = Changes::default();
        for (p, key) in problems.iter().zip(&keys) {
            if active.iter().any(|a| &a.0 == key) {
                continue;
            }
            let notified: Option<Option<i64>> = tx
                .query_row(
                    "SELECT notified_ms FROM alerts WHERE problem = ?1",
                    [key],
                    |r| r.get(0),
                )
                .optional()?;
            let tell = notified.flatten().is_none_or(|at| now - at >= cooldown_ms);
            tx.execute(
                "INSERT INTO alerts (problem, text, raised_ms, notified_ms, told, resolved_ms)
                 VALUES (?1, ?4, ?2, CASE WHEN ?3 THEN ?2 END, ?3, NULL)
                 ON CONFLICT (problem) DO UPDATE SET text = ?4, raised_ms = ?2, resolved_ms = NULL,
                     told = ?3, notified_ms = CASE WHEN ?3 THEN ?2 ELSE notified_ms END",
                params![key, now, tell, p],
            )?;
            if tell {
                changes.raised.push(p.clone());
            }
        }
        for (key, text, told) in &active {
            if keys.contains(key) {
                continue;
            }
            tx.execute(
                "UPDATE alerts SET resolved_ms = ?2 WHERE problem = ?1",
                params![key, now],
            )?;
            if *told {
                changes.resolved.push(text.clone());
            }
        }
        tx.execute(
            "DELETE FROM alerts WHERE resolved_ms IS NOT NULL AND ?1 - COALESCE(notified_ms, 0) >= ?2",
            params![now, cooldown_ms],
        )?;
        tx.commit()?;
        Ok(changes)
    }

    pub fn queue_message(&self, m: &Outgoing, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO notify_outbox (url, content_type, title, body, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![m.url, m.content_type, m.title, m.body, now],
        )?;
        Ok(())
    }

    pub fn outbox(&self) -> Result<Vec<Outgoing>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, url, content_type, title, body FROM notify_outbox ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Outgoing {
                id: r.get(0)?,
                url: r.get(1)?,
                content_type: r.get(2)?,
                title: r.get(3)?,
                body: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn outbox_len(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM notify_outbox", [], |r| r.get(0))?)
    }

    /// A message delivered (`Ok`) is deleted; one refused keeps its error for the next try.
    pub fn message_tried(&self, id: i64, outcome: std::result::Result<(), &str>) -> Result<()> {
        match outcome {
            Ok(()) => self
                .conn
                .execute("DELETE FROM notify_outbox WHERE id = ?1", [id])?,
            Err(e) => self.conn.execute(
                "UPDATE notify_outbox SET tries = tries + 1, last_error = ?2 WHERE id = ?1",
                params![id, e],
            )?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::alert_key;

    #[test]
    fn running_figures_leave_the_key_and_the_rest_stays() {
        let a = "claw1xyz9: window ended 600 s ago without renewal";
        let b = "claw1xyz9: window ended 661 s ago without renewal";
        assert_eq!(alert_key(a), alert_key(b));
        assert_eq!(
            alert_key("x: failing for 12 min: HTTP 502"),
            "x: failing for # min: HTTP 502"
        );
        // Epochs and addresses are part of what the problem is.
        assert_ne!(
            alert_key("claw1q epoch 12 billing held"),
            alert_key("claw1q epoch 13 billing held")
        );
        assert_ne!(alert_key("claw1q2 s x"), alert_key("claw1q3 s x"));
    }
}
