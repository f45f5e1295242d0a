//! What the intake answers: a reply, or a refusal (status, what is wrong and what to do);
//! shared by `auth` and `routes`.

use serde_json::{json, Value};

/// A refusal: status and what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub u16, pub String);

/// An answer: status, body, extra headers.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
            headers: Vec::new(),
        }
    }

    /// A page: HTML with the pages' security headers (nothing loaded from elsewhere, no
    /// framing, no referrer; every answer says nosniff).
    pub fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            body,
            headers: vec![
                (
                    "Content-Security-Policy",
                    crate::web::content_security_policy().to_string(),
                ),
                ("X-Frame-Options", "DENY".into()),
                ("Referrer-Policy", "no-referrer".into()),
            ],
        }
    }

    /// 303 See Other to `location` (a path on this origin).
    pub fn redirect(location: &str) -> Reply {
        Reply {
            status: 303,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
            headers: vec![("Location", location.to_string())],
        }
    }

    pub fn error(Refusal(status, why): Refusal) -> Reply {
        let mut reply = Reply::json(status, json!({ "error": why }));
        if status == 401 {
            // RFC 6750: a request without valid credentials is told which scheme to use.
            reply
                .headers
                .push(("WWW-Authenticate", "Bearer".to_string()));
        }
        reply
    }
}
