//! URL helpers for logs, proxies and checks: the parts of a URL without parsing it whole;
//! a query string's or form's values.

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

/// Whether `text` is only a host name, an address and a port (`agency.example:443`,
/// `[::1]:8787`): what a page may repeat of a `Host` header or `--public-url`.
pub fn is_host_port(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// Whether a URL's host is the local machine (plain http is fine there).
pub fn is_loopback(url: &str) -> bool {
    let host = url_host(url);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One value of a query string or form body (`application/x-www-form-urlencoded`),
/// percent-decoded; the first when given twice.
pub fn form_value(encoded: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(encoded)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}
