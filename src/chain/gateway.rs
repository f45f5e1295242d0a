//! Client of the chain gateway (MultiversX proxy routes). Every answer is
//! `{"data": ..., "error": "...", "code": "successful" | "..."}`.

use base64::Engine as _;
use serde_json::Value;

use crate::net::http;

/// Why a gateway call gave no data, as the callers branch on it: try again later
/// (`NoAnswer`), the gateway said no (`Refused`), or it answered something of another shape
/// (`Malformed`: another network, a proxy's page, a changed API).
#[derive(Debug, Clone)]
pub enum GatewayError {
    /// No usable answer: connection failed, timed out, or the body was not JSON.
    NoAnswer(String),
    /// The gateway answered with an error (HTTP status and its message).
    Refused { status: u16, message: String },
    /// An answer whose `data` is not what the route gives.
    Malformed(String),
}

impl GatewayError {
    /// A 4xx answer: the gateway understood the request and said no.
    pub fn is_client_refusal(&self) -> bool {
        matches!(
            self,
            GatewayError::Refused {
                status: 400..=499,
                ..
            }
        )
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::NoAnswer(m)
            | GatewayError::Refused { message: m, .. }
            | GatewayError::Malformed(m) => f.write_str(m),
        }
    }
}

impl From<GatewayError> for String {
    fn from(e: GatewayError) -> String {
        e.to_string()
    }
}

pub struct Gateway {
    agent: ureq::Agent,
    base: String,
}

/// From `GET /network/status/4294967295`.
#[derive(Debug, Clone, Copy)]
pub struct NetworkStatus {
    pub epoch: i64,
    pub rounds_passed: i64,
    pub rounds_per_epoch: i64,
    /// Rounds since genesis, and the current epoch's first round, when the gateway gives them.
    pub current_round: Option<i64>,
    pub round_at_epoch_start: Option<i64>,
}

/// From `GET /network/config`.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub chain_id: String,
    pub min_gas_price: u64,
    /// The fee rule's numbers (`erd_min_gas_limit`, `erd_gas_per_data_byte`,
    /// `erd_gas_price_modifier`); `None` when the gateway leaves one out.
    pub fees: Option<crate::chain::fees::FeeRule>,
    pub round_duration_ms: i64,
    /// Genesis, Unix seconds (`erd_start_time`), when the gateway gives it.
    pub start_time_s: Option<i64>,
}

/// A JSON number or decimal string as u64 (the gateway writes both).
pub fn json_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn field_i64(v: &Value, name: &str) -> Result<i64, String> {
    json_u64(v.get(name))
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| format!("gateway answer lacks a numeric {name}"))
}

impl Gateway {
    pub fn new(agent: ureq::Agent, base: &str) -> Self {
        Gateway {
            agent,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// A gateway at `url` through its own agent (its proxy chosen by the URL).
    pub fn connect(url: &str, timeout: std::time::Duration) -> Self {
        Gateway::new(crate::net::http::agent(timeout, url), url)
    }

    /// Sends a request and returns `data`, or why not.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Value, GatewayError> {
        let url = format!("{}{path}", self.base);
        let reply = http::send(self.agent.request(method, &url), body)
            .map_err(|e| GatewayError::NoAnswer(format!("gateway {path}: {e}")))?;
        let json: Value = serde_json::from_slice(&reply.body).map_err(|_| {
            GatewayError::NoAnswer(format!(
                "gateway {path}: HTTP {} with a body that is not JSON",
                reply.status
            ))
        })?;
        let code = json.get("code").and_then(Value::as_str).unwrap_or("");
        if !(200..300).contains(&reply.status) || code != "successful" {
            let error = json.get("error").and_then(Value::as_str).unwrap_or("");
            let error: String = error
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect();
            return Err(GatewayError::Refused {
                status: reply.status,
                message: format!("gateway {path}: HTTP {} {code}: {error}", reply.status),
            });
        }
        Ok(json.get("data").cloned().unwrap_or(Value::Null))
    }

    pub fn network_status(&self) -> Result<NetworkStatus, GatewayError> {
        parse_status(&self.call("GET", "/network/status/4294967295", None)?)
            .map_err(GatewayError::Malformed)
    }

    pub fn network_config(&self) -> Result<NetworkConfig, GatewayError> {
        parse_config(&self.call("GET", "/network/config", None)?).map_err(GatewayError::Malformed)
    }

    pub fn account_nonce(&self, address: &str) -> Result<u64, GatewayError> {
        let data = self.call("GET", &format!("/address/{address}"), None)?;
        json_u64(data.get("account").and_then(|a| a.get("nonce"))).ok_or_else(|| {
            GatewayError::Malformed("gateway account answer lacks data.account.nonce".into())
        })
    }

    /// The account's balance in atto-CLAW (`data.account.balance`, a decimal string).
    pub fn account_balance(&self, address: &str) -> Result<u128, GatewayError> {
        let data = self.call("GET", &format!("/address/{address}"), None)?;
        let balance = data.get("account").and_then(|a| a.get("balance"));
        balance
            .and_then(|b| match b {
                serde_json::Value::String(s) => s.parse().ok(),
                other => other.as_u64().map(u128::from),
            })
            .ok_or_else(|| {
                GatewayError::Malformed("gateway account answer lacks data.account.balance".into())
            })
    }

    pub fn send_transaction(&self, body: &str) -> Sent {
        match self.call("POST", "/transaction/send", Some(body)) {
            Ok(data) => match data.get("txHash").and_then(Value::as_str) {
                Some(hash) if !hash.is_empty() && hash.len() <= 128 => {
                    Sent::Accepted(hash.to_string())
                }
                _ => Sent::Unknown("gateway accepted the transaction without a txHash".into()),
            },
            // The gateway's words, read once here; callers match on the variant.
            Err(e) if e.is_client_refusal() && e.to_string().contains("lowerNonceInTx") => {
                Sent::NonceUsed(e.to_string())
            }
            Err(e) if e.is_client_refusal() => Sent::Refused(e.to_string()),
            Err(e) => Sent::Unknown(e.to_string()),
        }
    }

    /// Runs the signed transaction against the current state without committing it
    /// (`/transaction/simulate`): no gas is paid.
    pub fn simulate(&self, body: &str) -> Simulated {
        match self.call("POST", "/transaction/simulate", Some(body)) {
            Ok(data) => match parse_simulation(&data) {
                Some(Ok(())) => Simulated::Success,
                Some(Err(reason)) => Simulated::Fail(reason),
                None => Simulated::Unavailable("an answer of another shape".into()),
            },
            Err(GatewayError::Refused {
                status: 404 | 405 | 501,
                ..
            }) => Simulated::Absent,
            Err(e) => Simulated::Unavailable(e.to_string()),
        }
    }

    /// `pending`, `success`, `fail`, `invalid`; `None` when the gateway does not know it.
    pub fn transaction_status(&self, hash: &str) -> Result<Option<String>, GatewayError> {
        match self.call("GET", &format!("/transaction/{hash}/status"), None) {
            Ok(data) => Ok(data
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_string)),
            Err(GatewayError::Refused { status: 404, .. }) => Ok(None),
            Err(e @ GatewayError::Refused { .. }) if e.to_string().contains("not found") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The status of the call itself, computed from its results (`process-status`): the
    /// status and the reason when it failed.
    pub fn process_status(&self, hash: &str) -> Result<(String, Option<String>), GatewayError> {
        let data = self.call("GET", &format!("/transaction/{hash}/process-status"), None)?;
        let status = data.get("status").and_then(Value::as_str).ok_or_else(|| {
            GatewayError::Malformed("gateway process-status answer lacks data.status".into())
        })?;
        let reason = data
            .get("reason")
            .and_then(Value::as_str)
            .map(|r| {
                r.chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect::<String>()
            })
            .filter(|r| !r.is_empty());
        Ok((status.to_string(), reason))
    }

    /// The contract's error message of a failed transaction (its `signalError` event).
    pub fn transaction_error(&self, hash: &str) -> Result<Option<String>, GatewayError> {
        let path = format!("/transaction/{hash}?withResults=true");
        Ok(parse_signal_error(&self.call("GET", &path, None)?))
    }

    /// What the transaction cost once executed; `None` while its receipt has no fee.
    /// A transaction the gateway does not know (pruned) has no receipt either.
    pub fn receipt(&self, hash: &str) -> Result<Option<Receipt>, GatewayError> {
        let path = format!("/transaction/{hash}?withResults=true");
        match self.call("GET", &path, None) {
            Ok(data) => Ok(parse_receipt(&data)),
            Err(GatewayError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /transaction/cost` of an unsigned body. `Err`: the gateway does not serve it
    /// or gave no usable answer (the caller falls back to what it learned before).
    pub fn cost(&self, body: &str) -> Result<Cost, GatewayError> {
        let data = self.call("POST", "/transaction/cost", Some(body))?;
        parse_cost(&data).ok_or_else(|| {
            GatewayError::Malformed("a /transaction/cost answer of another shape".into())
        })
    }

    /// A contract view: the decoded `returnData` items.
    pub fn query(
        &self,
        contract: &str,
        function: &str,
        args: &[String],
    ) -> Result<Vec<Vec<u8>>, GatewayError> {
        let body = serde_json::json!({"scAddress": contract, "funcName": function, "args": args})
            .to_string();
        parse_query(
            &self.call("POST", "/vm-values/query", Some(&body))?,
            function,
        )
        .map_err(GatewayError::Malformed)
    }
}

/// What became of a `/transaction/send`.
#[derive(Debug)]
pub enum Sent {
    /// Accepted; the transaction's hash.
    Accepted(String),
    /// Refused (4xx): the transaction is not in the pool and its nonce is free again.
    Refused(String),
    /// Refused (4xx) for a nonce the account already used (`lowerNonceInTx`): a
    /// transaction with that nonce was executed, maybe this very one.
    NonceUsed(String),
    /// No answer, or a server error: it may or may not be in the pool.
    Unknown(String),
}

/// What `/transaction/simulate` said.
#[derive(Debug, PartialEq, Eq)]
pub enum Simulated {
    /// The call would succeed.
    Success,
    /// The call would fail with this reason (the contract's message when it has one).
    Fail(String),
    /// The gateway does not serve the route (404).
    Absent,
    /// No usable answer this time (a fault, a time-out, another shape).
    Unavailable(String),
}

// The answers' `data`, parsed by pure functions (fuzzed in tests/parsers.rs).

/// `data.result` of a simulation: `Some(Ok)` success, `Some(Err(reason))` failure, `None`
/// an answer of another shape. A cross-shard call has a result per shard: it fails if
/// either fails.
pub fn parse_simulation(data: &Value) -> Option<Result<(), String>> {
    let result = data.get("result")?;
    let shards: Vec<&Value> = match (result.get("senderShard"), result.get("receiverShard")) {
        (None, None) => vec![result],
        (a, b) => a.into_iter().chain(b).collect(),
    };
    let mut seen = false;
    for shard in shards {
        match shard.get("status").and_then(Value::as_str)? {
            "success" => seen = true,
            "fail" => {
                let reason = shard
                    .get("failReason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect();
                return Some(Err(reason));
            }
            _ => return None,
        }
    }
    seen.then_some(Ok(()))
}

pub fn parse_status(data: &Value) -> Result<NetworkStatus, String> {
    let s = data
        .get("status")
        .ok_or("gateway status answer lacks data.status")?;
    Ok(NetworkStatus {
        epoch: field_i64(s, "erd_epoch_number")?,
        rounds_passed: field_i64(s, "erd_rounds_passed_in_current_epoch")?,
        rounds_per_epoch: field_i64(s, "erd_rounds_per_epoch")?,
        current_round: field_i64(s, "erd_current_round").ok(),
        round_at_epoch_start: field_i64(s, "erd_round_at_epoch_start").ok(),
    })
}

pub fn parse_config(data: &Value) -> Result<NetworkConfig, String> {
    let c = data
        .get("config")
        .ok_or("gateway config answer lacks data.config")?;
    let num = |name: &str| {
        json_u64(c.get(name)).ok_or_else(|| format!("gateway config lacks a numeric {name}"))
    };
    Ok(NetworkConfig {
        chain_id: c
            .get("erd_chain_id")
            .and_then(Value::as_str)
            .ok_or("gateway config lacks erd_chain_id")?
            .chars()
            .take(64)
            .collect(),
        min_gas_price: num("erd_min_gas_price")?,
        fees: fee_rule(c),
        round_duration_ms: field_i64(c, "erd_round_duration")?,
        start_time_s: field_i64(c, "erd_start_time").ok(),
    })
}

/// The fee rule from `/network/config`'s `data.config`, when it gives all of it.
fn fee_rule(c: &Value) -> Option<crate::chain::fees::FeeRule> {
    let modifier = match c.get("erd_gas_price_modifier")? {
        Value::String(s) => crate::chain::fees::Ratio::parse(s)?,
        Value::Number(n) => crate::chain::fees::Ratio::parse(&n.to_string())?,
        _ => return None,
    };
    Some(crate::chain::fees::FeeRule {
        min_gas_price: json_u64(c.get("erd_min_gas_price"))?,
        min_gas_limit: json_u64(c.get("erd_min_gas_limit"))?,
        gas_per_data_byte: json_u64(c.get("erd_gas_per_data_byte"))?,
        modifier,
    })
}

/// What a transaction cost, from its receipt (`GET /transaction/<hash>?withResults=true`),
/// once executed: `fee` (atto-CLAW, after any refund) and `gasUsed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub fee_atto: u128,
    pub gas_used: u64,
}

/// The receipt's `fee` and `gasUsed`; `None` while it has none (not executed yet).
pub fn parse_receipt(data: &Value) -> Option<Receipt> {
    let tx = data.get("transaction")?;
    let fee = match tx.get("fee")? {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => u128::from(n.as_u64()?),
        _ => return None,
    };
    Some(Receipt {
        fee_atto: fee,
        gas_used: json_u64(tx.get("gasUsed"))?,
    })
}

/// What `/transaction/cost` said: the gas the transaction needs, or why it would fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cost {
    Units(u64),
    Fails(String),
}

/// `data.txGasUnits`, else `data.returnMessage`; `None` for an answer of another shape.
pub fn parse_cost(data: &Value) -> Option<Cost> {
    let message = data
        .get("returnMessage")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty());
    match (json_u64(data.get("txGasUnits")), message) {
        (_, Some(m)) => Some(Cost::Fails(m.chars().take(300).collect())),
        (Some(units), None) if units > 0 => Some(Cost::Units(units)),
        _ => None,
    }
}

/// The message of the `signalError` event (its second topic, base64), if any.
pub fn parse_signal_error(data: &Value) -> Option<String> {
    let events = data.pointer("/transaction/logs/events")?.as_array()?;
    let event = events
        .iter()
        .find(|e| e.get("identifier").and_then(Value::as_str) == Some("signalError"))?;
    let topic = event
        .pointer("/topics/1")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(topic)
        .unwrap_or_default();
    Some(
        String::from_utf8_lossy(&bytes)
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect(),
    )
}

pub fn parse_query(data: &Value, function: &str) -> Result<Vec<Vec<u8>>, String> {
    let result = data.get("data").unwrap_or(data);
    let code = result
        .get("returnCode")
        .and_then(Value::as_str)
        .unwrap_or("ok");
    if code != "ok" {
        let message = result
            .get("returnMessage")
            .and_then(Value::as_str)
            .unwrap_or("");
        let message: String = message
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        return Err(format!("view {function} failed: {code} {message}"));
    }
    let items = result
        .get("returnData")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .map(|item| match item {
            Value::Null => Ok(Vec::new()),
            Value::String(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| format!("view {function}: returnData is not base64")),
            _ => Err(format!(
                "view {function}: returnData is not a list of strings"
            )),
        })
        .collect()
}
