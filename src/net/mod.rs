//! The network below every client: one HTTP agent (timeouts, bounded reads, proxies, extra
//! roots; `http`), URL helpers (`url`), the network's clock sampled from every answer's
//! `Date` (`clock`), and the host's own clock against the boot clock (`host_clock`).

pub(crate) mod clock;
pub(crate) mod host_clock;
pub mod http;
pub(crate) mod url;
