//! The one HTTP client: a keep-alive ureq agent with connect and overall timeouts, and
//! bounded response reads (a hostile or broken server cannot make us buffer megabytes).

use std::io::Read;
use std::time::Duration;

/// The most of a response body we ever read.
pub const MAX_BODY: u64 = 64 * 1024;

/// An agent for requests to `url` (its proxy is chosen by the URL; see [`proxy_for`]).
pub fn agent(timeout: Duration, url: &str) -> ureq::Agent {
    builder(timeout, url).build()
}

/// An agent whose every answer's `Date` is a sample of the network's clock.
pub fn sampling_agent(timeout: Duration, sink: crate::net::clock::Sink, url: &str) -> ureq::Agent {
    builder(timeout, url)
        .middleware(crate::net::clock::DateSampler(sink))
        .build()
}

fn builder(timeout: Duration, url: &str) -> ureq::AgentBuilder {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .max_idle_connections_per_host(4)
        .user_agent(concat!("stream-agency/", env!("CARGO_PKG_VERSION")));
    let vars = PROXIES.get().map_or(&[][..], Vec::as_slice);
    let env = |name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(proxy) = proxy_for(url, &env) {
        match ureq::Proxy::new(&proxy) {
            Ok(p) => b = b.proxy(p),
            Err(e) => log::warn!("proxy for {} ignored: {e}", crate::net::url::url_host(url)),
        }
    }
    if let Some(Some(tls)) = TLS.get() {
        b = b.tls_config(tls.clone());
    }
    b
}

/// The proxy for `url` from the environment as curl reads it: `https_proxy`/`HTTPS_PROXY`
/// for https, `http_proxy` for http (the upper-case `HTTP_PROXY` too), else `ALL_PROXY`;
/// none when `NO_PROXY` names the host (`*`, a domain and its subdomains, `.domain`, an
/// address, or `host:port`).
pub fn proxy_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
    };
    let host = crate::net::url::url_host(url).to_ascii_lowercase();
    let port = crate::net::url::url_authority(url)
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.contains(']'));
    let excluded = get(&["no_proxy", "NO_PROXY"]).is_some_and(|list| {
        list.split(',')
            .map(|e| e.trim().to_ascii_lowercase())
            .any(|e| {
                let (name, want_port) = match e.rsplit_once(':') {
                    Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                        (n.to_string(), Some(p.to_string()))
                    }
                    _ => (e.clone(), None),
                };
                let name = name.trim_start_matches('.');
                let host_ok = e == "*" || host == name || host.ends_with(&format!(".{name}"));
                host_ok && (want_port.is_none() || want_port.as_deref() == port)
            })
    });
    if excluded {
        return None;
    }
    let https = url.to_ascii_lowercase().starts_with("https://");
    let scheme = if https {
        &["https_proxy", "HTTPS_PROXY"][..]
    } else {
        &["http_proxy", "HTTP_PROXY"][..]
    };
    get(scheme).or_else(|| get(&["all_proxy", "ALL_PROXY"]))
}

/// The proxy variables [`proxy_for`] reads, as `config` read them from the environment.
pub const PROXY_VARS: [&str; 8] = [
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// The proxy variables every agent is built with (none until [`configure`]).
static PROXIES: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();

/// Called once, before any agent is built: the extra roots of `--ca-file` and the proxy
/// variables (the environment is read by `config` alone).
pub fn configure(
    ca_file: Option<&std::path::Path>,
    proxies: Vec<(&'static str, String)>,
) -> crate::error::Result<()> {
    let _ = PROXIES.set(proxies);
    trust_extra_roots(ca_file)
}

/// The TLS configuration every agent uses: `None` inside for ureq's own (the bundled roots).
static TLS: std::sync::OnceLock<Option<std::sync::Arc<rustls::ClientConfig>>> =
    std::sync::OnceLock::new();

/// `--ca-file` (else `SSL_CERT_FILE`): its certificates are trusted besides the bundled
/// roots, for networks that inspect TLS.
fn trust_extra_roots(ca_file: Option<&std::path::Path>) -> crate::error::Result<()> {
    use crate::error::Error;
    use rustls_pki_types::pem::PemObject;
    let Some(path) = ca_file else {
        let _ = TLS.set(None);
        return Ok(());
    };
    let shown = path.display();
    let bad = |why: String| {
        Error::usage(format!(
            "--ca-file {shown}: {why}: give a PEM file of CA certificates"
        ))
    };
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no certificate in it".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = TLS.set(Some(std::sync::Arc::new(config)));
    Ok(())
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

#[cfg(test)]
mod proxy_tests {
    use super::proxy_for;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_proxy_follows_the_scheme_and_no_proxy() {
        let vars = [
            ("HTTPS_PROXY", "http://tls-proxy:3128"),
            ("http_proxy", "http://plain-proxy:3128"),
            (
                "NO_PROXY",
                "internal.example, .corp.example,10.0.0.7,127.0.0.1:9000",
            ),
        ];
        let e = env(&vars);
        let p = |url| proxy_for(url, &e);
        assert_eq!(
            p("https://api.claws.network/x").as_deref(),
            Some("http://tls-proxy:3128")
        );
        assert_eq!(
            p("http://127.0.0.1:8080/x").as_deref(),
            Some("http://plain-proxy:3128")
        );
        assert_eq!(p("https://internal.example/x"), None);
        assert_eq!(p("https://a.internal.example/x"), None);
        assert_eq!(p("https://b.corp.example/x"), None);
        assert!(p("https://notinternal.example/x").is_some());
        assert_eq!(p("http://10.0.0.7/x"), None);
        assert_eq!(p("http://127.0.0.1:9000/x"), None);
        assert!(p("http://127.0.0.1:9001/x").is_some());
        let all = [("ALL_PROXY", "socks5://s:1080"), ("no_proxy", "*")];
        assert_eq!(
            proxy_for("https://x/", &env(&all[..1])).as_deref(),
            Some("socks5://s:1080")
        );
        assert_eq!(proxy_for("https://x/", &env(&all)), None);
        assert_eq!(proxy_for("https://x/", &env(&[])), None);
    }
}
