//! The network below every client: one HTTP agent (timeouts, bounded reads, proxies, extra
//! roots), URL helpers, and the network's clock sampled from every answer's `Date`.

pub(crate) mod clock;
pub(crate) mod host_clock;
pub mod http;
pub(crate) mod url;
