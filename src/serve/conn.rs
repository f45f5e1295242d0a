//! One client connection of the intake: bytes in until a whole request (head at most
//! [`MAX_HEAD`], body at most [`MAX_BODY`]) within [`REQUEST_DEADLINE_MS`] of its first
//! byte, then one answer written whole. Non-blocking: a slow client only holds its own slot.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};

/// Request head (request line and headers) at most 8 KiB: 431 beyond.
pub const MAX_HEAD: usize = 8 * 1024;
/// Body at most 4 KiB: 413 beyond.
pub const MAX_BODY: usize = 4 * 1024;
/// The whole request within 5 s of its first byte (408), and a connection that sends
/// nothing, or stays idle between keep-alive requests, closed after 5 s.
pub const REQUEST_DEADLINE_MS: i64 = 5_000;
pub const IDLE_MS: i64 = 5_000;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the bytes received so far amount to.
#[derive(Debug)]
pub enum Framed {
    /// More bytes are needed.
    Partial,
    Request(Request),
    /// A request that is refused before it is read whole: status and error line.
    Refused(u16, &'static str),
}

pub struct Conn {
    pub stream: TcpStream,
    pub peer: IpAddr,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    /// When the current request's first byte came (`None`: between requests).
    first_byte_ms: Option<i64>,
    pub last_activity_ms: i64,
    /// Close once the outbox is written.
    pub closing: bool,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: IpAddr, now: i64) -> std::io::Result<Conn> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            peer,
            inbox: Vec::new(),
            outbox: Vec::new(),
            first_byte_ms: None,
            last_activity_ms: now,
            closing: false,
        })
    }

    pub fn wants_write(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Reads what is there. Returns false when the peer closed or the socket failed.
    pub fn read_ready(&mut self, now: i64) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if self.first_byte_ms.is_none() {
                        self.first_byte_ms = Some(now);
                    }
                    self.last_activity_ms = now;
                    self.inbox.extend_from_slice(&buf[..n]);
                    // Never hold more than one request's worth.
                    if self.inbox.len() > MAX_HEAD + MAX_BODY {
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Writes what it can of the answer. Returns false when the socket failed.
    pub fn write_ready(&mut self, now: i64) -> bool {
        while !self.outbox.is_empty() {
            match self.stream.write(&self.outbox) {
                Ok(0) => return false,
                Ok(n) => {
                    self.outbox.drain(..n);
                    self.last_activity_ms = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }

    /// Queues an answer (written whole when the socket allows: one write in most cases).
    pub fn answer(&mut self, bytes: Vec<u8>, close: bool) {
        self.outbox.extend_from_slice(&bytes);
        self.closing |= close;
    }

    /// The next request, if its bytes are all here.
    pub fn take_request(&mut self) -> Framed {
        match frame(&self.inbox) {
            (Framed::Request(r), used) => {
                self.inbox.drain(..used);
                self.first_byte_ms = (!self.inbox.is_empty()).then_some(self.last_activity_ms);
                Framed::Request(r)
            }
            (other, _) => other,
        }
    }

    /// Whether the connection has run out of time: a request not whole 5 s after its
    /// first byte (`Some(true)`: answer 408), or idle for 5 s (`Some(false)`: just close).
    pub fn expired(&self, now: i64) -> Option<bool> {
        match self.first_byte_ms {
            Some(first) if now - first > REQUEST_DEADLINE_MS => Some(true),
            None if !self.wants_write() && now - self.last_activity_ms > IDLE_MS => Some(false),
            _ => None,
        }
    }
}

/// Frames one request from the start of `bytes`: (what it is, bytes it used).
pub fn frame(bytes: &[u8]) -> (Framed, usize) {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        if bytes.len() > MAX_HEAD {
            return (Framed::Refused(431, "the request head is over 8 KiB"), 0);
        }
        return (Framed::Partial, 0);
    };
    if head_end + 4 > MAX_HEAD {
        return (Framed::Refused(431, "the request head is over 8 KiB"), 0);
    }
    let Ok(head) = std::str::from_utf8(&bytes[..head_end]) else {
        return (Framed::Refused(400, "the request head is not text"), 0);
    };
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (Framed::Refused(400, "a malformed request line"), 0);
    };
    if !version.starts_with("HTTP/1.") {
        return (Framed::Refused(400, "only HTTP/1.x is spoken here"), 0);
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return (Framed::Refused(400, "a malformed header line"), 0);
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let has = |n: &str| headers.iter().any(|(h, _)| h == n);
    if has("transfer-encoding") {
        let why = if has("content-length") {
            "both Content-Length and Transfer-Encoding: send Content-Length only"
        } else {
            "Transfer-Encoding is not accepted: send the body with Content-Length"
        };
        return (Framed::Refused(400, why), 0);
    }
    let lengths: Vec<&String> = headers
        .iter()
        .filter(|(h, _)| h == "content-length")
        .map(|(_, v)| v)
        .collect();
    let length = match lengths.as_slice() {
        [] => 0,
        [one] => match one.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return (Framed::Refused(400, "Content-Length is not a number"), 0),
        },
        _ => return (Framed::Refused(400, "more than one Content-Length"), 0),
    };
    if length > MAX_BODY {
        return (Framed::Refused(413, "the body is over 4 KiB"), 0);
    }
    let body_start = head_end + 4;
    if bytes.len() < body_start + length {
        return (Framed::Partial, 0);
    }
    let close = headers
        .iter()
        .any(|(h, v)| h == "connection" && v.eq_ignore_ascii_case("close"))
        || version == "HTTP/1.0";
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: bytes[body_start..body_start + length].to_vec(),
        close,
    };
    (Framed::Request(request), body_start + length)
}

/// An HTTP/1.1 answer with a JSON (or text) body, in one buffer.
pub fn response(status: u16, content_type: &str, body: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_framed_within_their_limits() {
        let get = b"GET /v1/agents/x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let (framed, used) = frame(get);
        let Framed::Request(r) = framed else {
            panic!("{framed:?}")
        };
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("GET", "/v1/agents/x", "y=1")
        );
        assert_eq!(used, get.len());
        assert!(matches!(
            frame(b"GET / HTTP/1.1\r\nHost"),
            (Framed::Partial, 0)
        ));
        let post = b"POST /e HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(frame(post), (Framed::Partial, 0)));
        let big = format!(
            "POST /e HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            frame(big.as_bytes()),
            (Framed::Refused(413, _), 0)
        ));
        let both = b"POST /e HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx";
        assert!(matches!(frame(both), (Framed::Refused(400, _), 0)));
        let head = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(frame(&head), (Framed::Refused(431, _), 0)));
        assert!(matches!(
            frame(b"GET /\r\n\r\n"),
            (Framed::Refused(400, _), 0)
        ));
        let two = b"POST /e HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy";
        assert!(matches!(frame(two), (Framed::Refused(400, _), 0)));
    }
}
