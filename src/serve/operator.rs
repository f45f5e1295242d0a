//! The operator's page: its token as `Authorization: Bearer` (scripts), or a session made
//! by signing in with it (`POST /operator/sign-in`, field `token`): a random cookie,
//! `HttpOnly`, `SameSite=Strict`, `Secure` behind TLS, of which only the SHA-256 is kept.
//! A session ends at sign-out, after 12 hours, or when its token is revoked.

use super::auth;
use super::conn::Request;
use super::pages::{SESSION_COOKIE, SESSION_MS};
use super::reply::Reply;
use super::routes::Intake;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::net::url::form_value;
use crate::web;

/// The session cookie a request carries (64 hex digits), if any.
fn session_of(req: &Request) -> Option<String> {
    req.headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Secure` when the client reached us over TLS (a proxy says so, or `--public-url` is
/// https).
fn secure(intake: &Intake, req: &Request) -> &'static str {
    let tls = req.header("x-forwarded-proto") == Some("https")
        || intake
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
    if tls {
        "; Secure"
    } else {
        ""
    }
}

impl Intake {
    /// Whether the request is the operator's: a live token, or a live session.
    fn is_operator(&self, req: &Request) -> Result<bool> {
        if auth::presents_token(req) {
            return Ok(auth::operator(req, &self.store)?.is_ok());
        }
        match session_of(req) {
            Some(s) => self
                .store
                .session_live(&auth::sha256_hex(s.as_bytes()), now_ms()),
            None => Ok(false),
        }
    }

    pub(super) fn operator_page(&self, req: &Request) -> Result<Reply> {
        if !self.is_operator(req)? {
            if auth::presents_token(req) {
                let mut reply = Reply::html(
                    401,
                    web::sign_in_page(
                        &self.site,
                        "That token is not valid (revoked, or never issued).",
                    )?,
                );
                reply.headers.push(("WWW-Authenticate", "Bearer".into()));
                return Ok(reply);
            }
            return Ok(Reply::redirect("/operator/sign-in"));
        }
        let html = web::operator_page(&self.store, &self.site, &self.db, now_ms())?;
        Ok(Reply::html(200, html))
    }

    pub(super) fn sign_in_form(&self, req: &Request) -> Result<Reply> {
        if self.is_operator(req)? {
            return Ok(Reply::redirect("/operator"));
        }
        Ok(Reply::html(200, web::sign_in_page(&self.site, "")?))
    }

    pub(super) fn sign_in(&self, req: &Request) -> Result<Reply> {
        let token = form_value(&req.body, "token").unwrap_or_default();
        let Some(name) = auth::token_name(&self.store, token.trim())? else {
            log::warn!("serve: an operator sign-in with a token that is not valid");
            let page = web::sign_in_page(&self.site, "That token is not valid (revoked, or never issued): give a live one (stream-agency token list).")?;
            return Ok(Reply::html(401, page));
        };
        // A session is as unguessable as a token: 256 random bits.
        let session = auth::new_token();
        let now = now_ms();
        self.store.add_session(
            &auth::sha256_hex(session.as_bytes()),
            &name,
            now,
            now + SESSION_MS,
        )?;
        log::info!("serve: the operator signed in (token '{name}')");
        let mut reply = Reply::redirect("/operator");
        reply.headers.push((
            "Set-Cookie",
            format!(
                "{SESSION_COOKIE}={session}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
                SESSION_MS / 1000,
                secure(self, req)
            ),
        ));
        Ok(reply)
    }

    pub(super) fn sign_out(&self, req: &Request) -> Result<Reply> {
        if let Some(s) = session_of(req) {
            self.store.end_session(&auth::sha256_hex(s.as_bytes()))?;
        }
        let mut reply = Reply::redirect("/");
        reply.headers.push((
            "Set-Cookie",
            format!(
                "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
                secure(self, req)
            ),
        ));
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> Request {
        Request {
            method: "GET".into(),
            path: "/operator".into(),
            query: String::new(),
            headers: vec![("cookie".into(), value.into())],
            body: Vec::new(),
            close: false,
        }
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_taken() {
        let good = "ab".repeat(32);
        let req = with_cookie(&format!("theme=dark; {SESSION_COOKIE}={good}; x=1"));
        assert_eq!(session_of(&req), Some(good.clone()));
        for bad in [
            format!("{SESSION_COOKIE}=\"><script>alert(1)</script>"),
            format!("{SESSION_COOKIE}={}", &good[..63]),
            format!("other_{SESSION_COOKIE}={good}"),
            String::new(),
        ] {
            assert_eq!(session_of(&with_cookie(&bad)), None, "{bad}");
        }
    }
}
