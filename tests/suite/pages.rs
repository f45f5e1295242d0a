//! The pages `serve` renders, in a real browser (headless Chromium over DevTools): what an
//! owner and the operator see equals `report` and `earnings`, a page is one request to its
//! own origin, nothing breaks at 360 px, hostile input is escaped or refused, and the
//! operator's session follows its token.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::common::bill::{self, Bill, ALICE};
use crate::common::browser::Browser;
use crate::common::*;

/// `serve` on a free port of the billing sandbox.
struct Serve {
    child: Option<std::process::Child>,
    origin: String,
    addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            terminate(c);
        }
    }
}

fn serve(b: &Bill) -> Serve {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = b.sb.spawn(&[
        "serve",
        "--listen",
        &listen,
        "--rate",
        "0",
        "--intake-name",
        "Lifeguard <b>&</b> Co",
    ]);
    let addr: SocketAddr = listen.parse().unwrap();
    assert!(wait_for(Duration::from_secs(10), || TcpStream::connect(
        addr
    )
    .is_ok()));
    Serve {
        child: Some(child),
        origin: format!("http://{listen}"),
        addr,
    }
}

/// Three agents renewed over a few epochs, billed, one bill paid by its agent; the
/// ledger settled and the history recorded.
fn business() -> Bill {
    let b = bill::setup(1_200, 3_000);
    let start = b.current_epoch();
    assert!(wait_for(Duration::from_secs(60), || {
        let r = b.tick();
        assert!(r.code == 0 || r.code == 4, "{}{}", r.stdout, r.stderr);
        std::thread::sleep(Duration::from_millis(150));
        b.current_epoch() >= start + 3
    }));
    b.settle_after_renewals();
    let first: i64 = b.sb.query_i64(&format!(
        "SELECT MIN(u.epoch) FROM usage_windows u JOIN agents a ON a.id = u.agent_id
         WHERE a.address = '{ALICE}' AND u.charged_atto IS NOT NULL"
    ));
    {
        let mut s = b.fake.state();
        let current = s.contract_epoch();
        let due = s.chain.bills[&(ALICE.to_string(), first as u64)].due;
        s.chain.settle(ALICE, first as u64, due, current).unwrap();
    }
    // The next epochs' ticks read the settlement and record the closed epochs' rows.
    let read = wait_for(Duration::from_secs(60), || {
        b.tick();
        std::thread::sleep(Duration::from_millis(200));
        b.sb.query_i64(&format!(
            "SELECT COUNT(*) FROM usage_windows u JOIN agents a ON a.id = u.agent_id
             WHERE a.address = '{ALICE}' AND u.epoch = {first} AND u.settlement IN ('SettledOnTime', 'SettledLate')"
        )) == 1
            && b.sb.query_i64("SELECT COUNT(*) FROM epoch_history_stale") == 0
    });
    assert!(
        read,
        "the settlement was not read: {} {}",
        b.sb.ok(&["report"]),
        b.sb.query_i64("SELECT COUNT(*) FROM epoch_history_stale")
    );
    b
}

/// A new operator token named `ops`, as `token new` prints it.
fn new_token(b: &Bill) -> String {
    let printed = b.sb.ok(&["token", "new", "--name", "ops"]);
    let token = printed.split_whitespace().find(|w| w.len() == 64);
    token.unwrap().to_string()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn report_row(b: &Bill, address: &str) -> Value {
    let report = json_of(&b.sb.ok(&["report", "--all", "--format", "json"]));
    report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
        .unwrap()
}

/// Every page: one request, to its own origin, no console error (a style the CSP refused
/// is one), nothing wider than the phone, no script.
fn assert_clean(
    browser: &mut Browser,
    load: &crate::common::browser::Load,
    origin: &str,
    what: &str,
) {
    assert!(
        load.urls.iter().all(|u| u.starts_with(origin)),
        "{what}: a request left the origin: {:?}",
        load.urls
    );
    assert!(
        load.errors.is_empty(),
        "{what}: console errors {:?}",
        load.errors
    );
    let (scroll, inner) = browser.overflow();
    assert!(
        scroll <= inner,
        "{what}: {scroll} px wide in a {inner} px viewport"
    );
    assert_eq!(
        browser.eval("document.scripts.length"),
        Value::from(0),
        "{what}"
    );
    // The inline style applied (the CSP allowed it by its hash): the body has no margin.
    assert_eq!(
        browser.eval("getComputedStyle(document.body).marginTop"),
        Value::from("0px"),
        "{what}"
    );
}

#[test]
fn the_pages_show_what_report_and_earnings_say_in_a_real_browser() {
    let b = business();
    let s = serve(&b);
    let token = new_token(&b);
    for width in [360, 1280] {
        let mut browser = Browser::start(width);
        // The start page: one request; the scoreboard as the ledger.
        let load = browser.open(&format!("{}/", s.origin));
        assert_eq!(load.requests, 1, "{:?}", load.urls);
        assert_clean(&mut browser, &load, &s.origin, "/");
        browser.screenshot(&format!("home-{width}"));
        let f = browser.fields();
        let served = b.sb.query_i64(
            "SELECT COUNT(*) FROM agents WHERE status = 'active' AND removed_ms IS NULL",
        );
        assert_eq!(f["protected_now"], Value::from(served.to_string()));
        let all = b.sb.query_i64("SELECT SUM(windows) FROM usage_windows");
        assert!(all > 0);
        assert_eq!(f["windows_all"], Value::from(all.to_string()));
        // The agency's name is text, not markup.
        assert_eq!(
            browser.eval("document.querySelectorAll('header b').length"),
            Value::from(0)
        );
        assert!(browser
            .eval("document.title")
            .as_str()
            .unwrap()
            .contains("Lifeguard <b>&</b> Co"));

        // The look-up form leads to the agent's page: report's figures.
        let load = browser.submit("form[action='/agents']", &[("address", ALICE)]);
        assert_eq!(
            load.requests, 1,
            "a look-up is one request and its redirect: {:?}",
            load.urls
        );
        assert_clean(&mut browser, &load, &s.origin, "/agents/{address}");
        browser.screenshot(&format!("agent-{width}"));
        let f = browser.fields();
        let row = report_row(&b, ALICE);
        for field in [
            "status",
            "renewed",
            "pending",
            "billed",
            "unbillable",
            "billed_claw",
            "outstanding_claw",
        ] {
            let want = match &row[field] {
                Value::String(t) => t.clone(),
                v => v.to_string(),
            };
            assert_eq!(f[field], Value::from(want), "{field} on the agent's page");
        }
        // Its proof of service: the windows behind the shown epoch's count.
        let rows = browser.eval("document.querySelectorAll('#proof + p + div tbody tr').length");
        assert!(rows.as_i64().unwrap() > 0);

        // The operator's page: to sign-in first, then earnings' totals.
        let load = browser.open(&format!("{}/operator", s.origin));
        assert_eq!(
            browser.eval("location.pathname"),
            Value::from("/operator/sign-in")
        );
        assert_clean(&mut browser, &load, &s.origin, "/operator/sign-in");
        let load = browser.submit("form[action='/operator/sign-in']", &[("token", &token)]);
        assert_eq!(browser.eval("location.pathname"), Value::from("/operator"));
        assert_clean(&mut browser, &load, &s.origin, "/operator");
        browser.screenshot(&format!("operator-{width}"));
        let f = browser.fields();
        let earnings = json_of(&b.sb.ok(&["earnings", "--format", "json"]));
        for field in [
            "charged_atto",
            "collected_atto",
            "outstanding_atto",
            "fees_atto",
            "net_atto",
            "windows",
        ] {
            let want = match &earnings["total"][field] {
                Value::String(t) => t.clone(),
                v => v.to_string(),
            };
            assert_eq!(
                f[field],
                Value::from(want),
                "{field} on the operator's page"
            );
        }
        assert_ne!(f["charged_atto"], Value::from("0"));
        assert_ne!(
            f["collected_atto"],
            Value::from("0"),
            "the paid bill is collected"
        );
        let balance = b.fake.state().chain.operator_balance;
        assert_ne!(
            f["operator_balance"],
            Value::from("–"),
            "the wallet was read at an epoch's close (fake's now: {balance})"
        );
        let charts = browser.eval("document.querySelectorAll('svg polyline').length");
        assert!(charts.as_i64().unwrap() >= 5, "{charts}");
        // One sign-out later the page asks to sign in again.
        browser.submit("form[action='/operator/sign-out']", &[]);
        browser.open(&format!("{}/operator", s.origin));
        assert_eq!(
            browser.eval("location.pathname"),
            Value::from("/operator/sign-in")
        );
    }
    // The JSON and CSV of an epoch's windows: as many as counted.
    let epoch = b.sb.query_i64(&format!(
        "SELECT MAX(u.epoch) FROM usage_windows u JOIN agents a ON a.id = u.agent_id WHERE a.address = '{ALICE}' AND u.windows > 0"
    ));
    let counted = b.sb.query_i64(&format!(
        "SELECT u.windows FROM usage_windows u JOIN agents a ON a.id = u.agent_id WHERE a.address = '{ALICE}' AND u.epoch = {epoch}"
    ));
    let (status, _, body) = get(
        s.addr,
        &format!("/v1/agents/{ALICE}/windows?epoch={epoch}"),
        &[],
    );
    assert_eq!(status, 200);
    let proof = json_of(&body);
    assert_eq!(proof["counted"], Value::from(counted));
    assert_eq!(proof["windows"].as_array().unwrap().len() as i64, counted);
    let (status, _, csv) = get(
        s.addr,
        &format!("/v1/agents/{ALICE}/windows?epoch={epoch}&format=csv"),
        &[],
    );
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count() as i64, counted + 1);
    assert!(!body.contains("signature") && !csv.contains("signature"));
}

/// One GET: (status, head, body).
fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    s.write_all(text.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_string(), body.to_string())
}

#[test]
fn hostile_input_is_escaped_or_refused_and_a_revoked_tokens_session_ends() {
    let b = bill::setup(1_200, 3_000);
    b.tick();
    let s = serve(&b);
    let mut browser = Browser::start(360);
    // An address, a query string and a look-up made to inject markup or script.
    for path in [
        "/agents/claw1%3Cscript%3Ealert(1)%3C/script%3E".to_string(),
        format!("/agents/{ALICE}?epoch=%3Cimg%20src=x%20onerror=alert(1)%3E"),
        "/agents?address=%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_string(),
        "/agents?address=%22%3E%3Csvg%20onload=alert(1)%3E".to_string(),
    ] {
        let load = browser.open(&format!("{}{path}", s.origin));
        assert!(
            load.errors.iter().all(|e| !e.contains("alert")),
            "{path}: {:?}",
            load.errors
        );
        let injected = browser.eval("document.querySelectorAll('script, img, main svg[onload], [onerror], [onload]').length");
        assert_eq!(injected, Value::from(0), "{path}");
        let (status, _, body) = get(s.addr, &path, &[]);
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(
            !body.contains("<script") && !body.contains("<img") && !body.contains("<svg onload"),
            "{path}: {body}"
        );
    }
    // A raw '<' in the path never comes back as markup either.
    let (status, _, body) = get(s.addr, "/agents/<script>alert(1)</script>", &[]);
    assert!(status == 400 || status == 404, "{status}");
    assert!(!body.contains("<script>alert"), "{body}");
    // A cookie made to inject: no session, to the sign-in; nothing echoed.
    let (status, head, body) = get(
        s.addr,
        "/operator",
        &["Cookie: stream_agency_session=\"><script>alert(1)</script>"],
    );
    assert_eq!(status, 303, "{head}{body}");
    let answer = format!("{head}\r\n\r\n{body}");
    assert!(answer.contains("Location: /operator/sign-in") && !answer.contains("<script"));
    // A wrong token signs nobody in.
    browser.open(&format!("{}/operator/sign-in", s.origin));
    browser.submit("form[action='/operator/sign-in']", &[("token", "00")]);
    assert_eq!(
        browser.eval("location.pathname"),
        Value::from("/operator/sign-in")
    );
    // A session ends when its token is revoked.
    let token = new_token(&b);
    browser.submit("form[action='/operator/sign-in']", &[("token", &token)]);
    assert_eq!(browser.eval("location.pathname"), Value::from("/operator"));
    let cookie = browser.call("Network.getCookies", serde_json::json!({}));
    let c = &cookie["cookies"][0];
    assert_eq!(c["httpOnly"], Value::from(true));
    assert_eq!(c["sameSite"], Value::from("Strict"));
    b.sb.ok(&["token", "revoke", "--name", "ops"]);
    browser.open(&format!("{}/operator", s.origin));
    assert_eq!(
        browser.eval("location.pathname"),
        Value::from("/operator/sign-in")
    );
    // Scripts with the token as a bearer still read it; a revoked one gets 401.
    let (status, _, _) = get(
        s.addr,
        "/operator",
        &[&format!("Authorization: Bearer {token}")],
    );
    assert_eq!(status, 401);
}
