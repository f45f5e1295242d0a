//! Client of the stream service: `POST /stream` and what its answer means.

use std::time::Instant;

use serde_json::Value;

use crate::net::http;
use zeroize::Zeroizing;

use crate::crypto::keys::{Secret, STREAM_MESSAGE};

/// What a `/stream` answer means for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx with `end_stream`: a new window, ending then.
    Opened { end_ms: i64 },
    /// 2xx without a usable `end_stream`: something started, we cannot identify it.
    OpenedWithoutEnd,
    /// 403 "already streaming": nothing new started.
    AlreadyStreaming {
        end_ms: Option<i64>,
        again_at_ms: Option<i64>,
    },
    /// 429, with `Retry-After` in ms when given.
    RateLimited { retry_after_ms: Option<i64> },
    /// 400/401/403/404: bad signature or agent not registered. The agent's own problem.
    Rejected,
    /// 5xx, other statuses, timeouts, resets.
    Transient,
}

impl Answer {
    /// The end of the agent's current window, when the answer tells it.
    pub fn end_ms(&self) -> Option<i64> {
        match *self {
            Answer::Opened { end_ms } => Some(end_ms),
            Answer::AlreadyStreaming { end_ms, .. } => end_ms,
            _ => None,
        }
    }

    /// The same answer with its times moved by `ms` (from the network's clock to the host's).
    pub fn shifted(self, ms: i64) -> Answer {
        match self {
            Answer::Opened { end_ms } => Answer::Opened {
                end_ms: end_ms + ms,
            },
            Answer::AlreadyStreaming {
                end_ms,
                again_at_ms,
            } => Answer::AlreadyStreaming {
                end_ms: end_ms.map(|t| t + ms),
                again_at_ms: again_at_ms.map(|t| t + ms),
            },
            other => other,
        }
    }

    /// The earliest time a renewal is accepted, when the answer tells it.
    pub fn again_at_ms(&self) -> Option<i64> {
        match *self {
            Answer::AlreadyStreaming { again_at_ms, .. } => again_at_ms,
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub answer: Answer,
    pub status: Option<u16>,
    /// What happened, in a few words, for `attempts` and `last_error`.
    pub reason: String,
    /// The start of the body, signature redacted, control characters removed.
    pub excerpt: String,
    pub duration_ms: i64,
}

pub struct StreamClient {
    agent: ureq::Agent,
    url: String,
}

impl StreamClient {
    pub fn new(agent: ureq::Agent, url: &str) -> Self {
        StreamClient {
            agent,
            url: url.to_string(),
        }
    }

    /// One renewal attempt.
    pub fn renew(&self, address: &str, signature: &Secret) -> Reply {
        let body = request_body(address, signature);
        let started = Instant::now();
        let result = http::send(self.agent.post(&self.url), Some(&body));
        let duration_ms = started.elapsed().as_millis() as i64;
        match result {
            Ok(reply) => {
                let (answer, reason) = classify(&reply);
                Reply {
                    answer,
                    status: Some(reply.status),
                    reason,
                    excerpt: excerpt(&reply.body, signature.expose()),
                    duration_ms,
                }
            }
            Err(e) => Reply {
                answer: Answer::Transient,
                status: None,
                reason: format!("no answer: {e}"),
                excerpt: String::new(),
                duration_ms,
            },
        }
    }
}

/// A timestamp in ms from a JSON number or numeric string; values below 10^12 are seconds.
pub fn timestamp_ms(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let ms = if n < 1e12 { n * 1000.0 } else { n };
    // Below 1 ms (a tiny fraction) or beyond year ~5000 is not a timestamp we can use.
    (1.0..1e14).contains(&ms).then_some(ms as i64)
}

/// Maps an HTTP answer to its meaning. Pure, so every branch is unit-tested.
pub fn classify(reply: &http::Reply) -> (Answer, String) {
    let json: Option<Value> = if reply.truncated {
        None
    } else {
        serde_json::from_slice(&reply.body).ok()
    };
    let field = |name: &str| timestamp_ms(json.as_ref().and_then(|j| j.get(name)));
    let status = reply.status;
    match status {
        200..=299 => match field("end_stream") {
            Some(end_ms) => (Answer::Opened { end_ms }, "renewed".into()),
            None => (
                Answer::OpenedWithoutEnd,
                format!("HTTP {status} without a usable end_stream"),
            ),
        },
        403 if String::from_utf8_lossy(&reply.body)
            .to_ascii_lowercase()
            .contains("already streaming") =>
        {
            let answer = Answer::AlreadyStreaming {
                end_ms: field("end_stream"),
                again_at_ms: field("can_stream_again_at"),
            };
            (answer, "already streaming".into())
        }
        429 => {
            let retry_after_ms = reply
                .retry_after
                .as_deref()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .map(|s| i64::from(s) * 1000);
            (Answer::RateLimited { retry_after_ms }, "rate limited (HTTP 429)".into())
        }
        400 | 401 | 403 | 404 => (
            Answer::Rejected,
            format!("rejected (HTTP {status}): bad signature or agent not registered with the stream service"),
        ),
        500..=599 => (Answer::Transient, format!("server error (HTTP {status})")),
        _ => (Answer::Transient, format!("unexpected HTTP {status}")),
    }
}

/// The JSON body of a renewal, written into one buffer big enough from the start (no
/// reallocation leaves a copy of the signature behind) that is wiped when dropped.
fn request_body(address: &str, signature: &Secret) -> Zeroizing<String> {
    let fields = [
        ("signature", signature.expose()),
        ("message", STREAM_MESSAGE),
        ("address", address),
    ];
    // Escaping makes a character at most six bytes long.
    let room: usize = fields.iter().map(|(k, v)| k.len() + 6 * v.len() + 6).sum();
    let mut body = Zeroizing::new(String::with_capacity(room + 2));
    body.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push('"');
        body.push_str(key);
        body.push_str("\":\"");
        for c in value.chars() {
            match c {
                '"' => body.push_str("\\\""),
                '\\' => body.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    body.push_str("\\u00");
                    body.push(HEX[(c as usize) >> 4] as char);
                    body.push(HEX[(c as usize) & 15] as char);
                }
                c => body.push(c),
            }
        }
        body.push('"');
    }
    body.push('}');
    body
}

/// The first 200 characters of a body, safe to store and show: the agent's signature is
/// redacted (a broken service might echo the request) and control characters are removed.
pub fn excerpt(body: &[u8], signature: &str) -> String {
    let text = redact(&String::from_utf8_lossy(body), signature);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// Replaces every occurrence of `secret` in `text`, in any letter case, by `<redacted>`.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    // ASCII lowercasing keeps byte offsets, so matches map back onto `text`.
    let lower = text.to_ascii_lowercase();
    let needle = secret.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = lower[rest..].find(&needle) {
        out.push_str(&text[rest..rest + found]);
        out.push_str("<redacted>");
        rest += found + needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_body_is_the_json_the_service_expects() {
        let sig = Secret::new("ab\"c\\d\u{1}".into());
        let body = request_body("claw1x", &sig);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["signature"], "ab\"c\\d\u{1}");
        assert_eq!(v["message"], "stream");
        assert_eq!(v["address"], "claw1x");
        assert!(body.capacity() >= body.len());
    }

    fn reply(status: u16, body: &str) -> http::Reply {
        http::Reply {
            status,
            body: body.as_bytes().to_vec(),
            truncated: false,
            retry_after: None,
        }
    }

    #[test]
    fn answers_are_classified() {
        let end = 1_800_000_000_000i64;
        assert_eq!(
            classify(&reply(200, &format!(r#"{{"end_stream":{end},"x":[1]}}"#))).0,
            Answer::Opened { end_ms: end }
        );
        // Seconds and numeric strings are accepted.
        assert_eq!(
            classify(&reply(201, r#"{"end_stream":"1800000000"}"#)).0,
            Answer::Opened { end_ms: end }
        );
        assert_eq!(classify(&reply(200, "<html>")).0, Answer::OpenedWithoutEnd);
        assert_eq!(
            classify(&reply(200, r#"{"end_stream":-5}"#)).0,
            Answer::OpenedWithoutEnd
        );
        // A tiny fraction is no timestamp (it used to become an end at 0 ms).
        assert_eq!(
            classify(&reply(200, r#"{"end_stream":8.0e-256}"#)).0,
            Answer::OpenedWithoutEnd
        );
        assert_eq!(
            classify(&reply(
                403,
                r#"{"error":"Already Streaming","can_stream_again_at":1800000000000}"#
            ))
            .0,
            Answer::AlreadyStreaming {
                end_ms: None,
                again_at_ms: Some(end)
            }
        );
        assert_eq!(
            classify(&reply(403, r#"{"error":"forbidden"}"#)).0,
            Answer::Rejected
        );
        assert_eq!(classify(&reply(401, "")).0, Answer::Rejected);
        assert_eq!(classify(&reply(404, "")).0, Answer::Rejected);
        assert_eq!(classify(&reply(503, "")).0, Answer::Transient);
        assert_eq!(classify(&reply(302, "")).0, Answer::Transient);
        let mut limited = reply(429, "");
        limited.retry_after = Some("7".into());
        assert_eq!(
            classify(&limited).0,
            Answer::RateLimited {
                retry_after_ms: Some(7_000)
            }
        );
        let mut huge = reply(200, &format!(r#"{{"end_stream":{end}}}"#));
        huge.truncated = true;
        assert_eq!(classify(&huge).0, Answer::OpenedWithoutEnd);
    }

    #[test]
    fn excerpts_never_hold_the_signature() {
        let sig = "ab12".repeat(32);
        let body = format!("echo {} and {}\n\x07end", sig, sig.to_uppercase());
        let e = excerpt(body.as_bytes(), &sig);
        assert!(!e.to_lowercase().contains(&sig));
        assert_eq!(e, "echo <redacted> and <redacted>  end");
        assert_eq!(excerpt("x".repeat(500).as_bytes(), &sig).len(), 200);
    }
}
