//! Alerts: `--notify URL` says once when something newly needs a human and once when it is
//! resolved (the same problem at most once per `--notify-cooldown-seconds`), and
//! `--ping-url` is a dead man's switch (healthchecks.io style). The state is in the
//! database, so the ticks of a timer share it; a message not delivered waits in the
//! outbox and is tried again at the next tick. Nothing here ever fails a tick.
//!
//! What is sent is the problems' text (which never holds a signature or key) and the
//! host name. Receiver URLs often embed a token (Slack, Discord): logs name their host only.

use std::time::Duration;

use serde_json::json;

use crate::error::{Error, Result};
use crate::store::alerts::Outgoing;
use crate::store::Store;

pub const DEFAULT_COOLDOWN_S: u64 = 3_600;
pub const DEFAULT_PING_EVERY_S: u64 = 300;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The payload a receiver takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Slack and Mattermost incoming webhooks: `{"text"}`.
    Slack,
    /// Discord webhooks: `{"content"}`.
    Discord,
    /// ntfy: the text as the body, a `Title` header.
    Ntfy,
    /// `{"event", "problems", "host", "at"}`.
    Json,
}

impl Format {
    fn parse(name: &str) -> Result<Format> {
        match name {
            "slack" | "mattermost" => Ok(Format::Slack),
            "discord" => Ok(Format::Discord),
            "ntfy" => Ok(Format::Ntfy),
            "json" => Ok(Format::Json),
            other => Err(Error::usage(format!(
                "--notify-format {other:?} is unknown: use slack, mattermost, discord, ntfy or json"
            ))),
        }
    }

    /// The format a URL's host tells without doubt; generic JSON otherwise.
    fn of_url(url: &str) -> Format {
        match crate::net::url::url_host(url) {
            "hooks.slack.com" => Format::Slack,
            "discord.com" | "discordapp.com" => Format::Discord,
            "ntfy.sh" => Format::Ntfy,
            _ => Format::Json,
        }
    }
}

/// One receiver.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub format: Format,
}

/// `--notify`, `--notify-format`, `--notify-cooldown-seconds`, `--ping-url`,
/// `--ping-every-seconds` as given (flags, else `STREAM_AGENCY_*`).
#[derive(Debug, Default, Clone)]
pub struct AlertArgs {
    pub notify: Vec<String>,
    pub notify_format: Option<String>,
    pub notify_cooldown_seconds: Option<u64>,
    pub ping_url: Option<String>,
    pub ping_every_seconds: Option<u64>,
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Alerts {
    pub targets: Vec<Target>,
    pub cooldown_ms: i64,
    pub ping_url: Option<String>,
    pub ping_every_ms: i64,
}

impl AlertArgs {
    /// The alert options among the runtime options of `tick` and `run`.
    pub fn of(args: &crate::config::RuntimeArgs) -> AlertArgs {
        AlertArgs {
            notify: args.notify.clone(),
            notify_format: args.notify_format.clone(),
            notify_cooldown_seconds: args.notify_cooldown_seconds,
            ping_url: args.ping_url.clone(),
            ping_every_seconds: args.ping_every_seconds,
            allow_insecure_http: crate::config::switch(
                args.allow_insecure_http,
                "allow-insecure-http",
            )
            .unwrap_or(args.allow_insecure_http),
        }
    }

    pub fn resolve(self) -> Result<Alerts> {
        use crate::config::{checked_url, string_opt, u64_opt};
        let mut urls = self.notify;
        if urls.is_empty() {
            // STREAM_AGENCY_NOTIFY holds several, space- or comma-separated.
            let list = string_opt(None, "notify").unwrap_or_default();
            urls = list
                .split([' ', ','])
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect();
        }
        let format = string_opt(self.notify_format, "notify-format");
        let format = format.as_deref().map(Format::parse).transpose()?;
        let allow_http = self.allow_insecure_http;
        let targets = urls
            .into_iter()
            .map(|u| {
                let url = checked_url(&u, "notify", allow_http)?;
                let format = format.unwrap_or_else(|| Format::of_url(&url));
                Ok(Target { url, format })
            })
            .collect::<Result<Vec<_>>>()?;
        let cooldown = u64_opt(
            self.notify_cooldown_seconds,
            "notify-cooldown-seconds",
            DEFAULT_COOLDOWN_S,
        )?;
        let every = u64_opt(
            self.ping_every_seconds,
            "ping-every-seconds",
            DEFAULT_PING_EVERY_S,
        )?;
        let ping_url = string_opt(self.ping_url, "ping-url")
            .map(|u| checked_url(&u, "ping-url", allow_http))
            .transpose()?;
        Ok(Alerts {
            targets,
            cooldown_ms: cooldown.saturating_mul(1000) as i64,
            ping_url: ping_url.map(|u| u.trim_end_matches('/').to_string()),
            ping_every_ms: every.saturating_mul(1000) as i64,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

/// The message of one event ("problem" or "resolved") for one receiver, built with serde.
pub fn render(target: &Target, event: &str, problems: &[String], host: &str, at: &str) -> Outgoing {
    let head = match event {
        "problem" => format!(
            "stream-agency on {host}: {} needs a human",
            count(problems.len())
        ),
        _ => format!(
            "stream-agency on {host}: resolved, {}",
            count(problems.len())
        ),
    };
    let text = format!("{head}\n- {}", problems.join("\n- "));
    let (content_type, title, body) = match target.format {
        Format::Slack => (
            "application/json",
            None,
            json!({ "text": text }).to_string(),
        ),
        Format::Discord => (
            "application/json",
            None,
            json!({ "content": text }).to_string(),
        ),
        Format::Ntfy => (
            "text/plain; charset=utf-8",
            Some(head),
            format!("- {}", problems.join("\n- ")),
        ),
        Format::Json => (
            "application/json",
            None,
            json!({ "event": event, "problems": problems, "host": host, "at": at }).to_string(),
        ),
    };
    Outgoing {
        id: 0,
        url: target.url.clone(),
        content_type: content_type.into(),
        title,
        body,
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".into()
    } else {
        format!("{n} problems")
    }
}

/// After a tick or check: queue what changed, then deliver the outbox. Never an error:
/// what fails is logged and tried again next time.
pub fn after(store: &mut Store, alerts: &Alerts, problems: &[String], now: i64) {
    if alerts.targets.is_empty() {
        return;
    }
    if let Err(e) = queue(store, alerts, problems, now) {
        log::warn!("alerts not updated: {e}");
    }
    deliver(store);
}

fn queue(store: &mut Store, alerts: &Alerts, problems: &[String], now: i64) -> Result<()> {
    if !store.alerts_changed(problems)? {
        return Ok(());
    }
    let changes = store.update_alerts(problems, now, alerts.cooldown_ms)?;
    let (host, at) = (hostname(), crate::ops::output::utc(Some(now)));
    for (event, list) in [
        ("problem", &changes.raised),
        ("resolved", &changes.resolved),
    ] {
        if list.is_empty() {
            continue;
        }
        for t in &alerts.targets {
            store.queue_message(&render(t, event, list, &host, &at), now)?;
        }
    }
    Ok(())
}

/// Sends every queued message; one that fails stays for the next tick.
pub fn deliver(store: &Store) {
    let queued = match store.outbox() {
        Ok(q) => q,
        Err(e) => return log::warn!("notification outbox unreadable: {e}"),
    };
    if queued.is_empty() {
        return;
    }
    for m in queued {
        let mut req = crate::net::http::agent(TIMEOUT, &m.url)
            .post(&m.url)
            .set("Content-Type", &m.content_type);
        if let Some(title) = &m.title {
            req = req.set("Title", title);
        }
        let outcome = match req.send_string(&m.body) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, _)) => Err(format!("HTTP {code}")),
            Err(e) => Err(e.kind().to_string()),
        };
        if let Err(e) = &outcome {
            log::warn!(
                "notification to {} not delivered ({e}): tried again next tick",
                crate::net::url::url_host(&m.url)
            );
        }
        if let Err(e) =
            store.message_tried(m.id, outcome.as_ref().map(|_| ()).map_err(String::as_str))
        {
            log::warn!("notification outbox not updated: {e}");
        }
    }
}

/// `--ping-url`: `URL/start` before a tick, `URL` after a clean one, `URL/<status>`
/// otherwise. A failed ping is logged, never more.
pub fn ping(alerts: &Alerts, what: Ping) {
    let Some(base) = &alerts.ping_url else {
        return;
    };
    let url = match what {
        Ping::Start => format!("{base}/start"),
        Ping::Exit(0) => base.clone(),
        Ping::Exit(code) => format!("{base}/{code}"),
    };
    if let Err(e) = crate::net::http::agent(TIMEOUT, &url)
        .post(&url)
        .send_string("")
    {
        let e = match e {
            ureq::Error::Status(code, _) => format!("HTTP {code}"),
            other => other.kind().to_string(),
        };
        log::warn!("ping to {} failed ({e})", crate::net::url::url_host(base));
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Ping {
    Start,
    Exit(i32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_host_when_it_is_unambiguous() {
        assert_eq!(
            Format::of_url("https://hooks.slack.com/services/T/B/x"),
            Format::Slack
        );
        assert_eq!(
            Format::of_url("https://discord.com/api/webhooks/1/t"),
            Format::Discord
        );
        assert_eq!(Format::of_url("https://ntfy.sh/agency"), Format::Ntfy);
        assert_eq!(
            Format::of_url("https://chat.example.org/hooks/x"),
            Format::Json
        );
        assert_eq!(
            crate::net::url::url_host("https://user:pw@ntfy.sh:443/x?y"),
            "ntfy.sh"
        );
    }

    #[test]
    fn payloads_are_json_with_quotes_and_newlines_escaped() {
        let t = |format| Target {
            url: "http://127.0.0.1/x".into(),
            format,
        };
        let problems = vec!["a \"quoted\"\nline".to_string()];
        let m = render(&t(Format::Slack), "problem", &problems, "h", "now");
        let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
        assert!(v["text"].as_str().unwrap().contains("a \"quoted\"\nline"));
        let m = render(&t(Format::Json), "resolved", &problems, "h", "now");
        let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(v["event"], "resolved");
        assert_eq!(v["problems"][0], problems[0]);
        let m = render(&t(Format::Ntfy), "problem", &problems, "h", "now");
        assert!(m.title.unwrap().contains("1 problem needs a human"));
        assert!(m.content_type.starts_with("text/plain"));
    }
}
