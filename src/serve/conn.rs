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
/// An answer not read by its client within 5 s of being queued: the connection is closed
/// (a client that never reads must not keep its slot).
pub const DRAIN_MS: i64 = 5_000;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Headers,
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

    /// The last line of a header (`X-Forwarded-For`: the one our proxy added).
    pub fn last_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
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
    /// When the answer waiting to be written was queued (`None`: nothing waits).
    queued_ms: Option<i64>,
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
            queued_ms: None,
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
        self.queued_ms = None;
        true
    }

    /// Queues an answer (written whole when the socket allows: one write in most cases).
    pub fn answer(&mut self, bytes: Vec<u8>, close: bool, now: i64) {
        if self.outbox.is_empty() {
            self.queued_ms = Some(now);
        }
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

    /// Whether the connection has run out of time: an answer its client has not read 5 s
    /// after it was queued, or idle for 5 s (`Some(false)`: just close), or a request not
    /// whole 5 s after its first byte (`Some(true)`: answer 408).
    pub fn expired(&self, now: i64) -> Option<bool> {
        if self.queued_ms.is_some_and(|q| now - q > DRAIN_MS) {
            return Some(false);
        }
        match self.first_byte_ms {
            Some(first) if now - first > REQUEST_DEADLINE_MS => Some(true),
            None if !self.wants_write() && now - self.last_activity_ms > IDLE_MS => Some(false),
            _ => None,
        }
    }
}

/// Header lines a request may have (more: 431).
pub const MAX_HEADERS: usize = 64;

/// Frames one request from the start of `bytes`: (what it is, bytes it used). The head is
/// parsed by `httparse` (the parser under hyper, fuzzed for years), which refuses what
/// RFC 9112 says to refuse: whitespace before a header's colon, folded header lines, a
/// space or tab in a header name, a control character (NUL, a lone CR) in a value, a
/// version other than HTTP/1.0 and HTTP/1.1. On top of it, strictly: a bare LF anywhere
/// in the head, an HTTP/1.1 request without exactly one `Host`, any `Transfer-Encoding`,
/// and a `Content-Length` that is not one run of digits (no sign, no list, only once).
/// A front proxy and this parser so never frame one request differently.
pub fn frame(bytes: &[u8]) -> (Framed, usize) {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let head_len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if bytes.len() > MAX_HEAD => {
            return (Framed::Refused(431, "the request head is over 8 KiB"), 0)
        }
        Ok(httparse::Status::Partial) => return (Framed::Partial, 0),
        Err(httparse::Error::TooManyHeaders) => {
            return (Framed::Refused(431, "more than 64 header lines"), 0)
        }
        Err(e) => return (Framed::Refused(400, refusal_of(e)), 0),
    };
    if head_len > MAX_HEAD {
        return (Framed::Refused(431, "the request head is over 8 KiB"), 0);
    }
    let head = &bytes[..head_len];
    if head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
    {
        return (
            Framed::Refused(400, "a bare LF in the request head: end lines with CRLF"),
            0,
        );
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return (Framed::Refused(400, "a malformed request line"), 0);
    };
    let (headers, length) = match headers_of(parsed.headers, minor) {
        Ok(checked) => checked,
        Err(why) => return (Framed::Refused(400, why), 0),
    };
    if length > MAX_BODY {
        return (Framed::Refused(413, "the body is over 4 KiB"), 0);
    }
    if bytes.len() < head_len + length {
        return (Framed::Partial, 0);
    }
    let close = minor == 0
        || headers
            .iter()
            .any(|(h, v)| h == "connection" && v.eq_ignore_ascii_case("close"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: bytes[head_len..head_len + length].to_vec(),
        close,
    };
    (Framed::Request(request), head_len + length)
}

/// Header lines as (name in lower case, value).
type Headers = Vec<(String, String)>;

/// The headers (names in lower case) and the body's length, or why they are refused:
/// exactly one `Host` in HTTP/1.1, no `Transfer-Encoding`, a plain `Content-Length`.
fn headers_of(
    parsed: &[httparse::Header<'_>],
    minor: u8,
) -> std::result::Result<(Headers, usize), &'static str> {
    let mut headers = Vec::with_capacity(parsed.len());
    for h in parsed {
        let value =
            std::str::from_utf8(h.value).map_err(|_| "a header value that is not UTF-8 text")?;
        headers.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let count = |n: &str| headers.iter().filter(|(h, _)| h == n).count();
    if minor == 1 && count("host") != 1 {
        return Err("an HTTP/1.1 request needs exactly one Host header");
    }
    if count("transfer-encoding") > 0 {
        return Err(if count("content-length") > 0 {
            "both Content-Length and Transfer-Encoding: send Content-Length only"
        } else {
            "Transfer-Encoding is not accepted: send the body with Content-Length"
        });
    }
    let length = content_length(&headers)?;
    Ok((headers, length))
}

/// The body's length: no `Content-Length` is 0; one is a run of 1 to 6 ASCII digits.
fn content_length(headers: &[(String, String)]) -> std::result::Result<usize, &'static str> {
    let mut values = headers.iter().filter(|(h, _)| h == "content-length");
    match (values.next(), values.next()) {
        (None, _) => Ok(0),
        (Some(_), Some(_)) => Err("more than one Content-Length"),
        (Some((_, v)), None)
            if v.is_empty() || v.len() > 6 || !v.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Err("Content-Length is not a plain number of bytes")
        }
        (Some((_, v)), None) => Ok(v.parse().unwrap_or(usize::MAX)),
    }
}

/// The one-line refusal of what `httparse` found wrong.
fn refusal_of(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => {
            "a malformed header name (no space before the colon, no folded lines)"
        }
        httparse::Error::HeaderValue => "a header value with a control character",
        httparse::Error::Version => "only HTTP/1.0 and HTTP/1.1 are spoken here",
        httparse::Error::NewLine => "a malformed line ending: end lines with CRLF",
        _ => "a malformed request line",
    }
}

/// What a client sent, for a log line: control characters and non-ASCII escaped, so no
/// client can write a fake journal line; at most 200 characters.
pub fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

/// An HTTP/1.1 answer with a JSON (or text) body, in one buffer.
pub fn response(status: u16, content_type: &str, body: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        303 => "See Other",
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
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
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
        let post = b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(frame(post), (Framed::Partial, 0)));
        let big = format!(
            "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
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

    /// A client that never reads its answers (none half-received from it) loses its
    /// connection once an answer has waited `DRAIN_MS` unwritten.
    #[test]
    fn an_answer_nobody_reads_closes_the_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let mut c = Conn::new(server, peer.ip(), 0).unwrap();
        // More than any socket buffer holds.
        c.answer(vec![b'x'; 64 << 20], false, 0);
        assert!(c.write_ready(0));
        assert!(c.wants_write(), "the answer did not pile up");
        assert_eq!(c.expired(DRAIN_MS), None);
        assert_eq!(c.expired(DRAIN_MS + 1), Some(false));
        drop(client);
    }

    /// Each framing an attacker tried against the hand-written parser is refused (400).
    #[test]
    fn what_rfc_9112_refuses_is_refused() {
        let refused: [&[u8]; 11] = [
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX\tA: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
            b"GET / HTTP/1.9\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
            b"GET /\nforged log line HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for bytes in refused {
            assert!(
                matches!(frame(bytes), (Framed::Refused(400, _), 0)),
                "{:?}: {:?}",
                String::from_utf8_lossy(bytes),
                frame(bytes).0
            );
        }
        let lf_only = b"GET / HTTP/1.1\nHost: a\n\n";
        assert!(matches!(frame(lf_only), (Framed::Refused(400, _), 0)));
        let te = b"POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n";
        assert!(matches!(frame(te), (Framed::Refused(400, _), 0)));
        // HTTP/1.0 needs no Host; one request is framed, the bytes after it wait.
        let ok = b"POST /e HTTP/1.0\r\nContent-Length: 2\r\n\r\nokGET";
        assert!(matches!(frame(ok), (Framed::Request(_), 41)));
        assert_eq!(shown("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }
}
