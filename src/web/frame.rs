//! What every page shares: the layout (`base.html`), the one inline style sheet and the
//! CSP that allows it by its hash, the short pages (a message, the sign-in form), and how
//! figures are shown.

use std::sync::OnceLock;

use askama::Template;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::net::clock::now_ms;
use crate::ops::output::rfc3339;

/// The one style sheet, inline in every page.
const STYLE: &str = include_str!("style.css");

/// The `Content-Security-Policy` of every page: nothing from anywhere but the inline
/// style sheet (by its hash), forms posted to this origin only, no framing.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
        format!("default-src 'none'; style-src 'sha256-{hash}'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    })
}

/// What every page shows of the agency.
#[derive(Debug, Clone)]
pub struct Site {
    /// `--intake-name`: the agency's name.
    pub name: String,
    /// The enrollment fee without billing (`--intake-fee-bps`).
    pub fee_bps: u32,
    /// Billing is on: agents register on the escrow too.
    pub billing: bool,
}

/// The frame of every page (`base.html`).
pub struct Layout {
    pub name: String,
    pub style: &'static str,
    pub epoch: String,
    pub now: String,
}

impl Layout {
    pub(super) fn of(site: &Site, epoch: Option<i64>) -> Layout {
        Layout {
            name: site.name.clone(),
            style: STYLE,
            epoch: epoch.map(|e| e.to_string()).unwrap_or_default(),
            now: rfc3339(now_ms()),
        }
    }
}

pub(super) fn render(t: &impl Template) -> Result<String> {
    t.render()
        .map_err(|e| Error::runtime(format!("a page failed to render: {e}")))
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    layout: Layout,
    heading: &'a str,
    text: &'a str,
}

/// A page that only says something (not found, refused).
pub fn message_page(site: &Site, heading: &str, text: &str) -> Result<String> {
    render(&MessagePage {
        layout: Layout::of(site, None),
        heading,
        text,
    })
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    layout: Layout,
    problem: &'a str,
}

/// The operator's sign-in form, with what went wrong (or nothing).
pub fn sign_in_page(site: &Site, problem: &str) -> Result<String> {
    render(&SignInPage {
        layout: Layout::of(site, None),
        problem,
    })
}

/// A percentage of `part` in `whole` to one decimal, or a dash when nothing was due.
pub(super) fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "–".into();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

/// A time shown on a page (UTC), or a dash.
pub(super) fn when(ms: Option<i64>) -> String {
    ms.map_or("–".into(), |ms| rfc3339(ms).replace('T', " "))
}

/// An amount in CLAW (4 decimals, as `report`), or a dash when not known.
pub(super) fn claw(atto: Option<u128>) -> String {
    atto.map_or("–".into(), crate::ops::output::claw)
}
