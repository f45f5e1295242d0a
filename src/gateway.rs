//! Client of the chain gateway (MultiversX proxy routes). Every answer is
//! `{"data": ..., "error": "...", "code": "successful" | "..."}`.

use serde_json::Value;

use crate::http;

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
}

/// From `GET /network/config`.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub chain_id: String,
    pub min_gas_price: u64,
    pub min_gas_limit: u64,
    pub gas_per_data_byte: u64,
    pub round_duration_ms: i64,
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

    /// Sends a request and returns `data`, or a one-line error (status, gateway's message).
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let reply = http::send(self.agent.request(method, &url), body)
            .map_err(|e| format!("gateway {path}: {e}"))?;
        let json: Value = serde_json::from_slice(&reply.body).map_err(|_| {
            format!(
                "gateway {path}: HTTP {} with a body that is not JSON",
                reply.status
            )
        })?;
        let code = json.get("code").and_then(Value::as_str).unwrap_or("");
        if !(200..300).contains(&reply.status) || code != "successful" {
            let error = json.get("error").and_then(Value::as_str).unwrap_or("");
            let error: String = error
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect();
            return Err(format!(
                "gateway {path}: HTTP {} {code}: {error}",
                reply.status
            ));
        }
        Ok(json.get("data").cloned().unwrap_or(Value::Null))
    }

    pub fn network_status(&self) -> Result<NetworkStatus, String> {
        let data = self.call("GET", "/network/status/4294967295", None)?;
        let s = data
            .get("status")
            .ok_or("gateway status answer lacks data.status")?;
        Ok(NetworkStatus {
            epoch: field_i64(s, "erd_epoch_number")?,
            rounds_passed: field_i64(s, "erd_rounds_passed_in_current_epoch")?,
            rounds_per_epoch: field_i64(s, "erd_rounds_per_epoch")?,
        })
    }

    pub fn network_config(&self) -> Result<NetworkConfig, String> {
        let data = self.call("GET", "/network/config", None)?;
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
                .to_string(),
            min_gas_price: num("erd_min_gas_price")?,
            min_gas_limit: num("erd_min_gas_limit")?,
            gas_per_data_byte: num("erd_gas_per_data_byte")?,
            round_duration_ms: field_i64(c, "erd_round_duration")?,
        })
    }
}
