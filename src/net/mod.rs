//! The network below every client: one HTTP agent (timeouts, bounded reads, proxies, extra
//! roots), URL helpers, and the network's clock sampled from every answer's `Date`.

pub mod clock;
pub mod http;
pub mod url;
