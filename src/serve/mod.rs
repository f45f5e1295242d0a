//! `serve`: the HTTP intake, on one thread without an async runtime. Every socket is
//! non-blocking and watched with poll(2), so a client that dribbles its request holds
//! only its own slot; every database write happens on this one thread, in short
//! transactions beside the timer's ticks and `run` (WAL, busy timeouts).
//!
//! - [`conn`]: one connection: framing, size and time limits, the answer's bytes;
//! - [`limits`]: the token bucket per client address, `X-Forwarded-For`;
//! - [`auth`]: operator tokens, the agents' signed action messages;
//! - [`routes`]: what each route does; [`pages`] the pages' routes (`crate::web` renders
//!   them), `operator` the operator's page behind its token or a session;
//! - [`reply`]: the reply and refusal types `auth` and `routes` share.

pub(crate) mod auth;
pub mod conn;
pub(crate) mod limits;
mod operator;
pub(crate) mod pages;
pub(crate) mod reply;
pub(crate) mod routes;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::error::{Error, Result};
use crate::net::clock::now_ms;
use conn::{Conn, Framed};
use limits::RateLimiter;
use reply::{Refusal, Reply};
use routes::Intake;

/// How long one poll waits at most: the deadlines are checked this often.
const POLL_MS: i64 = 200;
/// Connections one client (an IPv4 address, an IPv6 /64) may hold open at once; the
/// trusted proxy on loopback is not one client.
pub const MAX_PER_CLIENT: usize = 8;

/// The listener's limits.
pub struct Limits {
    pub max_connections: usize,
    pub rate: u32,
    pub burst: u32,
    pub trust_proxy: bool,
}

/// The listening socket: from systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`; the
/// first passed descriptor), else bound to `listen`.
pub fn listener(listen: SocketAddr, public: bool) -> Result<TcpListener> {
    let ours = crate::config::env("LISTEN_PID").and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let passed = crate::config::env("LISTEN_FDS")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if ours && passed >= 1 {
        use std::os::fd::FromRawFd;
        // SAFETY: systemd passed descriptor 3 to this very process (LISTEN_PID is ours)
        // as its first listening socket, and nothing else in the process owns it.
        let listener = unsafe { TcpListener::from_raw_fd(3) };
        listener.set_nonblocking(true).map_err(|e| {
            Error::runtime(format!("the socket passed by systemd is unusable: {e}"))
        })?;
        let local = listener.local_addr().map_err(|e| {
            Error::runtime(format!("the socket passed by systemd is unusable: {e}"))
        })?;
        // The same rule as --listen: plain HTTP off loopback only when said so.
        if !local.ip().is_loopback() && !public {
            return Err(Error::usage(format!(
                "the socket passed by systemd listens on {local}, not loopback: the intake speaks plain HTTP; put a TLS proxy in front and pass --public"
            )));
        }
        log::info!("serve: listening on the socket passed by systemd ({local})");
        return Ok(listener);
    }
    let listener = TcpListener::bind(listen)
        .map_err(|e| Error::runtime(format!("cannot listen on {listen}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::runtime(format!("cannot listen on {listen}: {e}")))?;
    log::info!("serve: listening on http://{listen}");
    Ok(listener)
}

/// Serves until `stop` is set.
pub fn serve(
    intake: &mut Intake,
    listener: &TcpListener,
    limits: &Limits,
    stop: &AtomicBool,
) -> Result<()> {
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_id = 0u64;
    let mut rate = RateLimiter::new(limits.rate, limits.burst);
    while !stop.load(Ordering::SeqCst) {
        let (listener_ready, ready) = wait(listener, &conns)?;
        let now = now_ms();
        for (id, flags) in ready {
            let Some(c) = conns.get_mut(&id) else {
                continue;
            };
            let alive = (!flags.intersects(PollFlags::IN | PollFlags::HUP) || c.read_ready(now))
                && (!flags.contains(PollFlags::OUT) || c.write_ready(now))
                && !flags.intersects(PollFlags::ERR | PollFlags::NVAL);
            if !alive {
                conns.remove(&id);
            }
        }
        // After the closed connections are gone, so that they do not count against the limit.
        if listener_ready {
            accept(listener, &mut conns, &mut next_id, limits, now);
        }
        for c in conns.values_mut() {
            answer_requests(intake, c, &mut rate, limits.trust_proxy, now)?;
        }
        conns.retain(|_, c| keep(c, now));
    }
    log::info!("serve: stopped by signal");
    Ok(())
}

/// One poll(2) over the listener and every connection: (listener readable, ready conns).
fn wait(
    listener: &TcpListener,
    conns: &HashMap<u64, Conn>,
) -> Result<(bool, Vec<(u64, PollFlags)>)> {
    let ids: Vec<u64> = conns.keys().copied().collect();
    let mut fds = Vec::with_capacity(ids.len() + 1);
    fds.push(PollFd::new(listener, PollFlags::IN));
    for id in &ids {
        let c = &conns[id];
        let interest = if c.wants_write() {
            PollFlags::OUT
        } else {
            PollFlags::IN
        };
        fds.push(PollFd::new(&c.stream, interest));
    }
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: POLL_MS * 1_000_000,
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok((false, Vec::new())),
        Err(e) => return Err(Error::runtime(format!("serve: poll failed: {e}"))),
    }
    let listener_ready = !fds[0].revents().is_empty();
    let ready = ids
        .into_iter()
        .zip(fds.iter().skip(1))
        .filter(|(_, fd)| !fd.revents().is_empty())
        .map(|(id, fd)| (id, fd.revents()))
        .collect();
    Ok((listener_ready, ready))
}

/// Accepts what is waiting; beyond `max` open connections a newcomer gets 503 and is closed.
/// Beyond `MAX_PER_CLIENT` connections of one client, its newcomer gets 503 too.
fn accept(
    listener: &TcpListener,
    conns: &mut HashMap<u64, Conn>,
    next_id: &mut u64,
    limits: &Limits,
    now: i64,
) {
    let max = limits.max_connections;
    while let Ok((stream, peer)) = listener.accept() {
        let Ok(mut c) = Conn::new(stream, peer.ip(), now) else {
            continue;
        };
        let client = limits::client_key(peer.ip());
        let one_client = !(limits.trust_proxy && peer.ip().is_loopback());
        let held = conns
            .values()
            .filter(|o| limits::client_key(o.peer) == client)
            .count();
        let refused = if conns.len() >= max {
            Some(format!(
                "the intake has {max} connections open: try again shortly"
            ))
        } else if one_client && held >= MAX_PER_CLIENT {
            Some(format!(
                "{MAX_PER_CLIENT} connections from you are open: use those"
            ))
        } else {
            None
        };
        if let Some(why) = refused {
            log::warn!("serve: {} refused: {why}", peer.ip());
            c.answer(encode(Reply::error(Refusal(503, why))), true, now);
            c.write_ready(now);
            continue;
        }
        *next_id += 1;
        conns.insert(*next_id, c);
    }
}

/// Answers every whole request in the connection's buffer (one at a time: the next only
/// once the previous answer is written).
fn answer_requests(
    intake: &mut Intake,
    c: &mut Conn,
    rate: &mut RateLimiter,
    trust_proxy: bool,
    now: i64,
) -> Result<()> {
    while !c.wants_write() && !c.closing {
        let (reply, close) = match c.take_request() {
            Framed::Partial => break,
            Framed::Refused(status, why) => {
                log::info!("serve: {} refused ({status}): {why}", c.peer);
                (Reply::error(Refusal(status, why.to_string())), true)
            }
            Framed::Request(req) => {
                let forwarded = req.last_header("x-forwarded-for");
                let ip = limits::client_ip(c.peer, forwarded, trust_proxy);
                (routed(intake, &req, ip, rate, now), req.close)
            }
        };
        c.answer(encode(reply), close, now);
        c.write_ready(now);
    }
    Ok(())
}

/// The rate limit, then the route; one log line for a refusal (never a body).
fn routed(
    intake: &mut Intake,
    req: &conn::Request,
    ip: IpAddr,
    rate: &mut RateLimiter,
    now: i64,
) -> Reply {
    let reply = match rate.take(limits::client_key(ip), now) {
        Err(seconds) => {
            let mut r = Reply::error(Refusal(
                429,
                format!("too many requests from {ip}: retry after {seconds} s"),
            ));
            r.headers.push(("Retry-After", seconds.to_string()));
            r
        }
        Ok(()) => intake.handle(req).unwrap_or_else(|e| {
            // The database busy or failing: this request fails, the intake goes on.
            log::error!(
                "serve: {} {} failed: {e}",
                req.method,
                conn::shown(&req.path)
            );
            let why = "the agency's database is busy or failing: try again in a moment";
            Reply::error(Refusal(503, why.into()))
        }),
    };
    if reply.status >= 400 {
        log::info!(
            "serve: {ip} {} {} -> {}",
            req.method,
            conn::shown(&req.path),
            reply.status
        );
    }
    reply
}

fn encode(reply: Reply) -> Vec<u8> {
    conn::response(
        reply.status,
        reply.content_type,
        &reply.body,
        &reply.headers,
    )
}

/// Whether to keep a connection: closed when done closing, or out of time (a request
/// not whole within 5 s of its first byte gets 408 first).
fn keep(c: &mut Conn, now: i64) -> bool {
    if c.closing && !c.wants_write() {
        return false;
    }
    match c.expired(now) {
        None => true,
        Some(false) => false,
        Some(true) => {
            let refusal = Refusal(408, "the request did not arrive whole within 5 s".into());
            c.answer(encode(Reply::error(refusal)), true, now);
            c.write_ready(now);
            false
        }
    }
}

/// Registers SIGTERM and SIGINT on `stop`.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    crate::ops::signals::stop_on_signals(&stop)?;
    Ok(stop)
}
