//! A real browser for the pages' tests: headless Chromium (Debian's
//! `chromium-headless-shell`, which `tests/run` brings), driven over the DevTools protocol
//! on a WebSocket. Every request the page makes and every console error are recorded.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The browser binary: `STREAM_AGENCY_TEST_BROWSER`, else Debian's headless shell.
fn binary() -> String {
    if let Ok(b) = std::env::var("STREAM_AGENCY_TEST_BROWSER") {
        return b;
    }
    for b in [
        "chromium-headless-shell",
        "/usr/lib/chromium/chromium-headless-shell",
    ] {
        if Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return b.to_string();
        }
    }
    panic!("no headless Chromium: run the tests with tests/run (it installs Debian's chromium-headless-shell), or set STREAM_AGENCY_TEST_BROWSER");
}

/// What one page load did.
#[derive(Debug, Default)]
pub struct Load {
    /// Every URL requested (redirects included), in order.
    pub urls: Vec<String>,
    /// Distinct requests (a redirect's hops are one request each).
    pub requests: usize,
    /// Console errors and uncaught exceptions (a CSP violation is one).
    pub errors: Vec<String>,
}

pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: String,
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// A browser with one tab of `width` CSS pixels (mobile emulation below 600).
    pub fn start(width: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start headless Chromium");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("Chromium exited before its DevTools endpoint was up")
                .unwrap();
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                break url.trim().to_string();
            }
        };
        // The rest of its log is drained, so a full pipe never stalls it.
        std::thread::spawn(move || for _ in lines {});
        let (ws, _) = tungstenite::connect(url.as_str()).expect("DevTools WebSocket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page", "Network", "Log", "Runtime"] {
            b.call(&format!("{domain}.enable"), json!({}));
        }
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
        b
    }

    fn read(&mut self) -> Value {
        loop {
            match self.ws.read().expect("DevTools message") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(_) => panic!("DevTools closed the connection"),
                _ => {}
            }
        }
    }

    /// One DevTools command (on the tab once attached); events read meanwhile are kept.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = Value::from(self.session.clone());
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.read();
            if m["id"] == json!(id) {
                assert!(m.get("error").is_none(), "{method}: {}", m["error"]);
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    /// Waits for the tab's load event and says what the load did.
    fn loaded(&mut self) -> Load {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .events
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            assert!(Instant::now() < deadline, "the page did not load");
            let m = self.read();
            self.events.push(m);
        }
        let mut load = Load::default();
        let mut ids = std::collections::BTreeSet::new();
        for e in self.events.drain(..) {
            let p = &e["params"];
            match e["method"].as_str() {
                Some("Network.requestWillBeSent") => {
                    load.urls
                        .push(p["request"]["url"].as_str().unwrap_or("").to_string());
                    ids.insert(p["requestId"].as_str().unwrap_or("").to_string());
                }
                Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                    load.errors.push(p["entry"]["text"].to_string())
                }
                Some("Runtime.exceptionThrown") => load.errors.push(p.to_string()),
                _ => {}
            }
        }
        load.requests = ids.len();
        load
    }

    /// Loads `url` and waits for it (redirects followed).
    pub fn open(&mut self, url: &str) -> Load {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url}));
        self.loaded()
    }

    /// Runs `expression` in the page (DevTools may, whatever the page's CSP) and returns
    /// its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Submits the page's form `selector` after setting `fields`, as a person would.
    pub fn submit(&mut self, selector: &str, fields: &[(&str, &str)]) -> Load {
        self.events.clear();
        let mut js = String::new();
        for (name, value) in fields {
            js.push_str(&format!(
                "document.querySelector({sel}).querySelector('[name={name}]').value = {v};",
                sel = json!(selector),
                v = json!(value)
            ));
        }
        js.push_str(&format!(
            "document.querySelector({}).submit(); true",
            json!(selector)
        ));
        self.eval(&js);
        self.loaded()
    }

    /// The page's `data-field` values (`data-value` where given, else the text).
    pub fn fields(&mut self) -> serde_json::Map<String, Value> {
        let v = self.eval(
            "Object.fromEntries([...document.querySelectorAll('[data-field]')].map(e => [e.dataset.field, e.dataset.value ?? e.textContent.trim()]))",
        );
        v.as_object().cloned().unwrap_or_default()
    }

    /// The page's width against the tab's: wider means it scrolls sideways (broken on a phone).
    pub fn overflow(&mut self) -> (i64, i64) {
        let v = self.eval("[document.documentElement.scrollWidth, window.innerWidth]");
        (v[0].as_i64().unwrap(), v[1].as_i64().unwrap())
    }

    /// A PNG of the tab, for a person to look at (`STREAM_AGENCY_SHOTS=DIR`).
    pub fn screenshot(&mut self, name: &str) {
        let Ok(dir) = std::env::var("STREAM_AGENCY_SHOTS") else {
            return;
        };
        use base64::Engine;
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}
