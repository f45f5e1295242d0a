//! The one HTTP client: a keep-alive ureq agent with connect and overall timeouts, and
//! bounded response reads (a hostile or broken server cannot make us buffer megabytes).

use std::io::Read;
use std::time::Duration;

/// The most of a response body we ever read.
pub const MAX_BODY: u64 = 64 * 1024;

pub fn agent(timeout: Duration) -> ureq::Agent {
    builder(timeout).build()
}

/// An agent whose every answer's `Date` is a sample of the network's clock.
pub fn sampling_agent(timeout: Duration, sink: crate::clock::Sink) -> ureq::Agent {
    builder(timeout)
        .middleware(crate::clock::DateSampler(sink))
        .build()
}

fn builder(timeout: Duration) -> ureq::AgentBuilder {
    ureq::AgentBuilder::new()
        .timeout_connect(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .max_idle_connections_per_host(4)
        .user_agent(concat!("stream-agency/", env!("CARGO_PKG_VERSION")))
}

/// An HTTP answer of any status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_BODY`] and was cut.
    pub truncated: bool,
    pub retry_after: Option<String>,
}

/// Sends a request; `Err` only when no HTTP answer came (connect, timeout, reset).
/// The error text names the failure, never the request body.
pub fn send(request: ureq::Request, body: Option<&str>) -> Result<Reply, String> {
    let result = match body {
        Some(b) => request
            .set("Content-Type", "application/json")
            .send_string(b),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(describe_transport(&t)),
    };
    let status = response.status();
    let retry_after = response.header("Retry-After").map(str::to_string);
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    let truncated = body.len() as u64 > MAX_BODY;
    body.truncate(MAX_BODY as usize);
    Ok(Reply {
        status,
        body,
        truncated,
        retry_after,
    })
}

fn describe_transport(t: &ureq::Transport) -> String {
    let detail = t.message().map(|m| format!(": {m}")).unwrap_or_default();
    format!("{}{detail}", t.kind())
}
