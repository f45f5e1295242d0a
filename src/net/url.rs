//! URL helpers for logs, proxies and checks: the parts of a URL without parsing it whole.

/// The `host[:port]` of a URL (no scheme, user or path).
pub fn url_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// The host of a URL (no scheme, user, port or path; an IPv6 address without brackets).
pub fn url_host(url: &str) -> &str {
    let authority = url_authority(url);
    if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    }
}

/// Whether a URL's host is the local machine (plain http is fine there).
pub fn is_loopback(url: &str) -> bool {
    let host = url_host(url);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
