//! The intake's routes: JSON in and out, every error `{"error": "..."}`. The Python
//! intake's routes are aliases under the same rules.

use std::path::PathBuf;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{json, Map, Value};

use super::auth;
use super::conn::Request;
use super::reply::{Refusal, Reply};
use crate::crypto::keys::{self, Address, Secret, STREAM_MESSAGE};
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::ops::output::Format;
use crate::ops::{health, lock};
use crate::store::Store;

/// What the routes work with.
pub struct Intake {
    pub store: Store,
    pub db: PathBuf,
    /// `--intake-name`: the `<name>` of signed action messages.
    pub name: String,
    /// The fee of intake enrollments without billing (`--intake-fee-bps`).
    pub fee_bps: u32,
    /// Billing is on: an enrollment waits for the next tick to read the agent on the
    /// escrow (registered, not cancelled; its fee) before it is renewed.
    pub billing: bool,
    pub max_tick_age_ms: i64,
    /// What `/healthz` pages about, as `serve` was started (`--warn-seconds`, ...).
    pub thresholds: health::Thresholds,
    /// What the pages show of the agency (its name, fee, whether it bills).
    pub site: crate::web::Site,
    /// `--public-url`: this agency's address for the enrollment instructions.
    pub public_url: Option<String>,
}

type Routed = std::result::Result<Reply, Refusal>;

impl Intake {
    pub fn handle(&mut self, req: &Request) -> Result<Reply> {
        Ok(match self.route(req)? {
            Ok(reply) => reply,
            Err(refusal) => Reply::error(refusal),
        })
    }

    fn route(&mut self, req: &Request) -> Result<Routed> {
        let m = req.method.as_str();
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match (m, segments.as_slice()) {
            ("GET", [""]) => Ok(Ok(self.home(req)?)),
            ("GET", ["agents"]) => Ok(Ok(self.lookup(req)?)),
            ("GET", ["agents", address]) => Ok(Ok(self.agent(req, address)?)),
            ("GET", ["v1", "agents", address, "windows"]) => self.proof(req, address),
            ("GET", ["operator"]) => Ok(Ok(self.operator_page(req)?)),
            ("GET", ["operator", "sign-in"]) => Ok(Ok(self.sign_in_form(req)?)),
            ("POST", ["operator", "sign-in"]) => Ok(Ok(self.sign_in(req)?)),
            ("POST", ["operator", "sign-out"]) => Ok(Ok(self.sign_out(req)?)),
            ("POST", ["v1", "enroll"] | ["enroll"]) => self.enroll(req),
            ("GET", ["v1", "agents", address]) => Ok(self.view(address)),
            ("POST", ["v1", "agents", address, action]) => self.act(req, address, action),
            ("GET", ["agent"]) => Ok(self.view(&query_value(&req.query, "address"))),
            ("POST", [action @ ("pause" | "resume" | "remove")]) => self.legacy_act(req, action),
            ("GET", ["v1", "report"] | ["report"]) => self.report(req),
            ("GET", ["metrics"]) => self.metrics(req),
            ("GET", ["healthz"] | ["health"]) => self.health(req),
            ("POST", ["tick"]) => Ok(Err(Refusal(
                404,
                "there is no /tick: the timer (or `run`) ticks; see `systemctl list-timers stream-agency*`".into(),
            ))),
            (_, path) if known_path(path) => Ok(Err(Refusal(
                405,
                format!("{m} is not allowed on {}", printable(&req.path)),
            ))),
            _ => Ok(Err(Refusal(404, format!("no route {}: see the README's intake section", printable(&req.path))))),
        }
    }

    /// `POST /v1/enroll {"address", "signature", "fee_bps"?}`: the signature is the credential.
    fn enroll(&mut self, req: &Request) -> Result<Routed> {
        let body = match object(&req.body) {
            Ok(b) => b,
            Err(r) => return Ok(Err(r)),
        };
        let (Some(address), Some(signature)) = (text(&body, "address"), text(&body, "signature"))
        else {
            return Ok(Err(Refusal(400, "the body needs \"address\" and \"signature\" (hex of the agent's signature of \"stream\")".into())));
        };
        let address = match auth::address(address) {
            Ok(a) => a,
            Err(r) => return Ok(Err(r)),
        };
        let Ok(sig) = keys::stream_signature(&address, signature) else {
            return Ok(Err(Refusal(
                403,
                format!("the signature is not {address}'s signature of \"{STREAM_MESSAGE}\""),
            )));
        };
        // The stream signature is a bearer secret other agencies hold too: an agent removed
        // here comes back only by its own fresh signed `enroll` action (or the operator).
        if self.store.is_removed(&address)? {
            let signed = (
                text(&body, "action_message"),
                text(&body, "action_signature"),
            );
            let (Some(message), Some(action_sig)) = signed else {
                return Ok(Err(Refusal(
                    409,
                    format!("{address} was removed here: to enroll again, add \"action_message\" (stream-agency:{}:enroll:{address}:<expiry>) and \"action_signature\", signed by the agent", self.name),
                )));
            };
            let agent = (self.name.as_str(), "enroll", &address);
            if let Err(r) =
                auth::action_message(&self.store, agent, message, action_sig, now_ms() / 1000)?
            {
                return Ok(Err(r));
            }
        }
        let fee = match self.fee_for(&address, body.get("fee_bps")) {
            Ok(fee) => fee,
            Err(r) => return Ok(Err(r)),
        };
        let secret = Secret::new(hex::encode(sig));
        let new = self
            .store
            .enroll_by_intake(&address, &secret, fee, (self.billing, now_ms()))?;
        log::info!(
            "intake: {address} enrolled ({})",
            if new { "new" } else { "updated" }
        );
        let mut view = json!(self.store.public_view(&address)?);
        if let Some(note) = crate::ops::report::fee_never_pays(&self.store, fee)? {
            view["warning"] = Value::from(note);
        }
        Ok(Ok(Reply::json(if new { 201 } else { 200 }, view)))
    }

    /// The fee of an intake enrollment: `--intake-fee-bps`; with billing, the escrow's fee
    /// replaces it once the next tick has read the agent there (the intake never waits on
    /// the gateway). A `fee_bps` in the body must equal it.
    fn fee_for(
        &self,
        address: &Address,
        asked: Option<&Value>,
    ) -> std::result::Result<u32, Refusal> {
        let fee = match self.store.escrow_fee(address) {
            Ok(Some(escrow_fee)) if self.billing => escrow_fee,
            _ => self.fee_bps,
        };
        match asked {
            None => Ok(fee),
            Some(v) if v.as_u64() == Some(u64::from(fee)) => Ok(fee),
            Some(v) => Err(Refusal(409, format!("fee_bps {v} differs from this agency's fee for you, {fee}: leave it out or send {fee}"))),
        }
    }

    fn view(&self, address: &str) -> Routed {
        let address = auth::address(address)?;
        match self.store.public_view(&address) {
            Ok(Some(view)) => Ok(Reply::json(200, json!(view))),
            Ok(None) => Err(Refusal(
                404,
                format!("{address} is not enrolled here: POST /v1/enroll first"),
            )),
            Err(e) => Err(Refusal(
                503,
                format!("the database cannot be read now ({e}): try again"),
            )),
        }
    }

    /// `POST /v1/agents/{address}/{pause|resume|remove}`: the agent's signed message, or the
    /// operator's token.
    fn act(&mut self, req: &Request, address: &str, action: &str) -> Result<Routed> {
        if !matches!(action, "pause" | "resume" | "remove") {
            return Ok(Err(Refusal(
                404,
                format!("no action {action}: pause, resume or remove"),
            )));
        }
        let agent = match auth::address(address) {
            Ok(a) => a,
            Err(r) => return Ok(Err(r)),
        };
        if self.store.agent_id(&agent)?.is_none() {
            return Ok(Err(Refusal(404, format!("{agent} is not enrolled here"))));
        }
        // A live operator token needs no signed message, whatever the body (`{}` included).
        let operator = auth::operator(req, &self.store)?;
        let body = (!req.body.is_empty()).then(|| object(&req.body));
        let signed = match &body {
            Some(Ok(b)) => text(b, "message").map(|m| (m, text(b, "signature"))),
            _ => None,
        };
        let by_operator = operator.is_ok();
        let allowed = match (operator, &body, signed) {
            (Ok(()), _, _) => Ok(()),
            (Err(r), None, _) => Err(r),
            (Err(r), Some(_), None) if auth::presents_token(req) => Err(r),
            (_, Some(Err(r)), _) => Err(r.clone()),
            (_, _, Some((msg, Some(sig)))) => auth::action_message(
                &self.store,
                (&self.name, action, &agent),
                msg,
                sig,
                now_ms() / 1000,
            )?,
            _ => Err(Refusal(
                400,
                "the body needs \"message\" and \"signature\"".into(),
            )),
        };
        if let Err(r) = allowed {
            return Ok(Err(r));
        }
        if action == "resume" && !by_operator && self.store.operator_holds(&agent)? {
            return Ok(Err(Refusal(
                403,
                format!("{agent} is held by the operator: only the operator lifts it"),
            )));
        }
        self.apply(&agent, action, by_operator)
    }

    /// The Python intake's `POST /pause|/resume|/remove {"address"}`, with an operator token.
    fn legacy_act(&mut self, req: &Request, action: &str) -> Result<Routed> {
        if let Err(r) = auth::operator(req, &self.store)? {
            return Ok(Err(r));
        }
        let body = match object(&req.body) {
            Ok(b) => b,
            Err(r) => return Ok(Err(r)),
        };
        let Some(address) = text(&body, "address") else {
            return Ok(Err(Refusal(400, "the body needs \"address\"".into())));
        };
        match auth::address(address) {
            Ok(agent) if self.store.agent_id(&agent)?.is_some() => self.apply(&agent, action, true),
            Ok(agent) => Ok(Err(Refusal(404, format!("{agent} is not enrolled here")))),
            Err(r) => Ok(Err(r)),
        }
    }

    fn apply(&mut self, agent: &Address, action: &str, by_operator: bool) -> Result<Routed> {
        let now = now_ms();
        match action {
            "pause" => self.store.set_status(agent, false, by_operator, now)?,
            "resume" => self.store.set_status(agent, true, by_operator, now)?,
            _ => self.store.request_removal(agent, now)?,
        };
        log::info!("intake: {agent} {action}");
        let view = self.store.public_view(agent)?;
        Ok(Ok(Reply::json(200, json!(view))))
    }

    fn report(&self, req: &Request) -> Result<Routed> {
        if let Err(r) = auth::operator(req, &self.store)? {
            return Ok(Err(r));
        }
        let rows = crate::ops::report::report_rows(&self.store, false)?;
        Ok(Ok(Reply {
            status: 200,
            content_type: "application/json",
            body: rows.render(Format::Json),
            headers: Vec::new(),
        }))
    }

    fn metrics(&self, req: &Request) -> Result<Routed> {
        if let Err(r) = auth::operator(req, &self.store)? {
            return Ok(Err(r));
        }
        Ok(Ok(Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: health::prometheus_text(&self.store, &self.db, now_ms())?,
            headers: Vec::new(),
        }))
    }

    /// 200 only when the last tick is recent and `check` finds nothing that needs a human.
    /// Anyone gets the verdict; the reasons (agents' addresses, errors, held bills) only a
    /// caller with the operator's token.
    fn health(&self, req: &Request) -> Result<Routed> {
        let now = now_ms();
        let mut reasons = health::check(&self.store, now, self.thresholds)?;
        match lock::last_tick_ms(&self.db) {
            Some(t) if now - t <= self.max_tick_age_ms => {}
            Some(t) => reasons.push(format!(
                "the last tick finished {} s ago (more than --max-tick-age-seconds {}): is the timer or run going?",
                (now - t) / 1000,
                self.max_tick_age_ms / 1000
            )),
            None => reasons.push("no tick has finished yet: enable the timer or run".into()),
        }
        if reasons.is_empty() {
            return Ok(Ok(Reply::json(200, json!({"ok": true}))));
        }
        if auth::operator(req, &self.store)?.is_err() {
            let error = "needs attention: the reasons are for the operator (Authorization: Bearer TOKEN), or run `stream-agency check`";
            return Ok(Ok(Reply::json(503, json!({"ok": false, "error": error}))));
        }
        let error = format!("needs attention: {}", reasons[0]);
        Ok(Ok(Reply::json(
            503,
            json!({"ok": false, "error": error, "reasons": reasons}),
        )))
    }
}

/// A path some route serves (with another method: 405, not 404).
fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        [""] | ["agents"]
            | ["agents", _]
            | ["operator"]
            | ["operator", "sign-in" | "sign-out"]
            | ["v1", "enroll" | "report"]
            | ["v1", "agents", _]
            | ["v1", "agents", _, _]
            | ["enroll"
                | "agent"
                | "pause"
                | "resume"
                | "remove"
                | "report"
                | "metrics"
                | "healthz"
                | "health"
                | "tick"]
    )
}

/// A JSON body that is one object with no key twice.
fn object(body: &[u8]) -> std::result::Result<Map<String, Value>, Refusal> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let map = de.deserialize_map(UniqueKeys).map_err(|e| {
        Refusal(
            400,
            format!("the body must be one JSON object with each key once: {e}"),
        )
    })?;
    de.end()
        .map_err(|_| Refusal(400, "the body has bytes after its JSON object".into()))?;
    Ok(map)
}

fn text<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// A JSON object's keys, refused when one appears twice (serde_json keeps the last).
struct UniqueKeys;

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut access: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            if map.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!("duplicate key \"{key}\"")));
            }
        }
        Ok(map)
    }
}

/// A path as an answer may repeat it: anything but letters, digits and `/._~:-`
/// percent-encoded, so no markup ever comes back (whatever reads the answer).
fn printable(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes().take(200) {
        if b.is_ascii_alphanumeric() || b"/._~:-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One value of a query string, percent-decoded; empty when absent.
fn query_value(query: &str, key: &str) -> String {
    crate::net::url::form_value(query.as_bytes(), key).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_one_object_with_unique_keys() {
        assert!(object(br#"{"a": 1, "b": "x"}"#).is_ok());
        assert_eq!(object(br#"{"a": 1, "a": 2}"#).unwrap_err().0, 400);
        assert!(object(b"[1, 2]").is_err());
        assert!(object(b"{\"a\": 1} x").is_err());
        assert!(object(b"not json").is_err());
        assert_eq!(query_value("x=1&address=claw1q", "address"), "claw1q");
    }
}
