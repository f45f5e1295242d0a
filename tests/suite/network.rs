//! Outgoing HTTP as operators' networks need it: every kind of call (stream service,
//! gateway, notifications, pings) through a local proxy from `HTTP_PROXY`/`HTTPS_PROXY`,
//! `NO_PROXY` honoured; a TLS server with its own CA reached with `--ca-file`, refused
//! without it.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::bill::ALICE;
use common::*;

/// A forward proxy: CONNECT tunnels and absolute-form requests, relayed byte for byte.
/// Records the first line of every connection.
struct Proxy {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn relay(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let (mut a, mut b) = (a, b);
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(std::net::Shutdown::Write);
}

fn proxied(client: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let first = head.lines().next().unwrap_or("").to_string();
    seen.lock().unwrap().push(first.clone());
    let target = first.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut client = client;
    if let Some(authority) = first.strip_prefix("CONNECT ").map(|_| target.clone()) {
        let upstream = TcpStream::connect(authority).unwrap();
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        relay(client, upstream);
    } else {
        let authority = target
            .split("://")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let mut upstream = TcpStream::connect(authority).unwrap();
        upstream.write_all(head.as_bytes()).unwrap();
        upstream.write_all(reader.buffer()).unwrap();
        relay(client, upstream);
    }
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || proxied(c, &s));
            }
        });
        Proxy { url, seen }
    }

    fn saw(&self, needle: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// A receiver that counts what it gets.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let url = common::http::serve(move |_, path, _| {
        g.lock().unwrap().push(path.to_string());
        Action::Answer(200, "{}".into(), vec![])
    });
    (url, got)
}

fn with_env(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = sb.command(args);
    cmd.envs(env.iter().copied());
    Ran::of(cmd)
}

fn enroll_alice(sb: &Sandbox) {
    let sig = wallets().into_iter().find(|w| w.1 == ALICE).unwrap().2;
    sb.ok(&["enroll", "--address", ALICE, "--signature", &sig]);
}

#[test]
fn every_kind_of_outgoing_call_goes_through_the_proxy_unless_no_proxy_names_it() {
    let proxy = Proxy::start();
    let fake = FakeClaws::steady();
    let (rx, got) = receiver();
    let rx_authority = rx.trim_start_matches("http://").to_string();
    let fake_authority = fake.url.trim_start_matches("http://").to_string();
    let sb = Sandbox::new();
    enroll_alice(&sb);
    let via = [("HTTP_PROXY", proxy.url.as_str())];
    // A notification (check finds the enrolled, never renewed agent).
    let hook = format!("{rx}/hook");
    let r = with_env(
        &sb,
        &["check", "--warn-seconds", "0", "--notify", &hook],
        &via,
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(proxy.saw(&format!("POST http://{rx_authority}/hook")), 1);
    // The stream service, the gateway and the pings of a tick.
    let ping = format!("{rx}/ping");
    let mut args = vec!["tick".to_string(), "--ping-url".into(), ping];
    args.extend(net_args(&fake));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = with_env(&sb, &args, &via);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fake.state().windows.len(), 1, "renewed through the proxy");
    assert!(proxy.saw(&format!("POST http://{fake_authority}/stream")) >= 1);
    assert!(proxy.saw(&format!("GET http://{fake_authority}/network/")) >= 1);
    assert_eq!(proxy.saw(&format!("http://{rx_authority}/ping")), 2);
    assert_eq!(got.lock().unwrap().len(), 3);
    // NO_PROXY names the receiver: its calls go direct, the others still through.
    let before = proxy.seen.lock().unwrap().len();
    let no = [
        ("HTTP_PROXY", proxy.url.as_str()),
        ("NO_PROXY", rx_authority.as_str()),
    ];
    fake.state().windows.clear();
    sb.conn()
        .execute("UPDATE agents SET next_attempt_ms = 0", [])
        .unwrap();
    assert_eq!(with_env(&sb, &args, &no).code, 0);
    assert_eq!(got.lock().unwrap().len(), 5, "pings delivered directly");
    assert_eq!(proxy.saw(&format!("http://{rx_authority}/ping")), 2);
    assert!(
        proxy.seen.lock().unwrap().len() > before,
        "the stream still proxied"
    );
}

/// A TLS server on 127.0.0.1 with a certificate for `localhost` from its own CA; returns
/// its port, the CA in PEM and the paths it was asked for.
fn tls_server() -> (u16, String, Arc<Mutex<Vec<String>>>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, g) = (config.clone(), g.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let length = content_length(&head);
                let mut body = vec![0u8; length];
                let _ = tls.read_exact(&mut body);
                g.lock()
                    .unwrap()
                    .push(head.split_whitespace().nth(1).unwrap_or("").to_string());
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
                let _ = tls.flush();
            });
        }
    });
    (port, ca.pem(), got)
}

#[test]
fn a_server_with_its_own_ca_is_reached_with_ca_file_and_refused_without() {
    let (port, ca_pem, got) = tls_server();
    let sb = Sandbox::new();
    enroll_alice(&sb);
    let hook = format!("https://localhost:{port}/hook");
    let check = ["check", "--warn-seconds", "0", "--notify", hook.as_str()];
    // Without the CA: the bundled roots do not know it, nothing is delivered.
    let r = sb.run(&check);
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("not delivered"), "{}", r.stderr);
    assert!(got.lock().unwrap().is_empty());
    // With it: delivered (the message that waited, at the next check).
    let ca = sb.dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let mut with_ca = vec!["--ca-file", ca.to_str().unwrap()];
    with_ca.extend(check);
    let r = sb.run(&with_ca);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(*got.lock().unwrap(), ["/hook"]);
    // Through a proxy from HTTPS_PROXY: a CONNECT tunnel, the CA still checked end to end.
    sb.conn().execute("DELETE FROM alerts", []).unwrap();
    let proxy = Proxy::start();
    let mut cmd = sb.command(&with_ca);
    let out = cmd.env("HTTPS_PROXY", &proxy.url).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(proxy.saw(&format!("CONNECT localhost:{port}")), 1);
    assert_eq!(got.lock().unwrap().len(), 2);
    // A file that holds no certificate is refused at once, in one line.
    std::fs::write(sb.dir.path().join("not.pem"), "hello").unwrap();
    let r = sb.run(&["--ca-file", "not.pem", "check"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("--ca-file not.pem"), "{}", r.stderr);
}

#[test]
fn an_empty_variable_is_unset_for_every_variable_read() {
    let sb = Sandbox::new();
    enroll_alice(&sb);
    // Env-file templates leave variables set but empty: none of them may break a command.
    let mut cmd = sb.command(&["report", "--format", "tsv"]);
    for name in [
        "SSL_CERT_FILE",
        "STREAM_AGENCY_CA_FILE",
        "STREAM_AGENCY_DB",
        "STREAM_AGENCY_SECRET_KEY_FILE",
        "HTTPS_PROXY",
        "NO_PROXY",
        "CREDENTIALS_DIRECTORY",
    ] {
        cmd.env(name, "");
    }
    let r = Ran::of(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("claw1"), "{}", r.stdout);
    // Set, it is read: a missing file is named.
    let mut cmd = sb.command(&["report"]);
    cmd.env("SSL_CERT_FILE", "missing.pem");
    let r = Ran::of(cmd);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("missing.pem"), "{}", r.stderr);
}
