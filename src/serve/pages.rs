//! The pages' routes (`crate::web` renders them): `/`, `/agents/{address}`, the proof of
//! service (`/v1/agents/{address}/windows`), and the operator's page behind its token or a
//! session cookie (`/operator`, `/operator/sign-in`, `/operator/sign-out`).

use serde_json::json;

use super::auth;
use super::conn::Request;
use super::reply::{Refusal, Reply};
use super::routes::Intake;
use crate::error::Result;
use crate::net::clock::now_ms;
use crate::net::url::form_value;
use crate::web;

/// The session cookie's name, and how long a session lasts.
pub const SESSION_COOKIE: &str = "stream_agency_session";
pub const SESSION_MS: i64 = 12 * 3_600_000;

impl Intake {
    fn page(&self, status: u16, heading: &str, text: &str) -> Result<Reply> {
        Ok(Reply::html(
            status,
            web::message_page(&self.site, heading, text)?,
        ))
    }

    /// This agency's address as the client reached it: `--public-url`, else the request's
    /// `Host` (only host name, address and port characters), `https` behind a TLS proxy.
    fn base_url(&self, req: &Request) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = req
            .header("host")
            .filter(|h| crate::net::url::is_host_port(h))
            .unwrap_or("localhost");
        let scheme = match req.header("x-forwarded-proto") {
            Some("https") => "https",
            _ => "http",
        };
        format!("{scheme}://{host}")
    }

    pub(super) fn home(&self, req: &Request) -> Result<Reply> {
        let html = web::home_page(&self.store, &self.site, &self.base_url(req), now_ms())?;
        Ok(Reply::html(200, html))
    }

    /// `GET /agents?address=A` (the look-up form): to the agent's page.
    pub(super) fn lookup(&self, req: &Request) -> Result<Reply> {
        let asked = form_value(req.query.as_bytes(), "address").unwrap_or_default();
        match auth::address(asked.trim()) {
            Ok(a) => Ok(Reply::redirect(&format!("/agents/{a}"))),
            Err(Refusal(_, why)) => self.page(400, "Not an agent's address", &why),
        }
    }

    /// The epoch a query asks for: `None` when not given, `Err` when not a number.
    fn epoch_asked(req: &Request) -> std::result::Result<Option<i64>, Refusal> {
        match form_value(req.query.as_bytes(), "epoch").filter(|e| !e.trim().is_empty()) {
            None => Ok(None),
            Some(e) => e
                .trim()
                .parse::<u32>()
                .map(|e| Some(i64::from(e)))
                .map_err(|_| {
                    Refusal(
                        400,
                        "epoch must be a whole number (an epoch of the chain)".into(),
                    )
                }),
        }
    }

    pub(super) fn agent(&self, req: &Request, address: &str) -> Result<Reply> {
        let agent = match auth::address(address) {
            Ok(a) => a,
            Err(Refusal(_, why)) => return self.page(400, "Not an agent's address", &why),
        };
        let epoch = match Self::epoch_asked(req) {
            Ok(e) => e,
            Err(Refusal(_, why)) => return self.page(400, "Not an epoch", &why),
        };
        match web::agent_page(&self.store, &self.site, &agent, epoch)? {
            Some(html) => Ok(Reply::html(200, html)),
            None => self.page(
                404,
                "Not enrolled here",
                &format!("{agent} is not enrolled with this agency: see how to enroll on the start page."),
            ),
        }
    }

    /// `GET /v1/agents/{address}/windows?epoch=E[&format=csv]`: the windows behind the
    /// epoch's count, for an owner to check the bill against the stream service.
    pub(super) fn proof(
        &self,
        req: &Request,
        address: &str,
    ) -> Result<std::result::Result<Reply, Refusal>> {
        let agent = match auth::address(address) {
            Ok(a) => a,
            Err(r) => return Ok(Err(r)),
        };
        let epoch = match Self::epoch_asked(req) {
            Ok(Some(e)) => e,
            Ok(None) => {
                return Ok(Err(Refusal(
                    400,
                    "give ?epoch=E (an epoch on the agent's page)".into(),
                )))
            }
            Err(r) => return Ok(Err(r)),
        };
        let Some(id) = self.store.agent_id(&agent)? else {
            return Ok(Err(Refusal(404, format!("{agent} is not enrolled here"))));
        };
        let windows = self.store.proof_windows(id, epoch)?;
        if form_value(req.query.as_bytes(), "format").as_deref() == Some("csv") {
            let mut reply = Reply::html(200, web::proof_csv(&windows));
            reply.content_type = "text/csv; charset=utf-8";
            reply.headers.push((
                "Content-Disposition",
                format!("attachment; filename=\"{agent}-epoch-{epoch}.csv\""),
            ));
            return Ok(Ok(reply));
        }
        let count = self.store.windows_counted(Some(id), Some(epoch))?;
        Ok(Ok(Reply::json(
            200,
            json!({"address": agent.to_bech32(), "epoch": epoch, "counted": count,
                   "listed": windows.len(), "windows": windows}),
        )))
    }
}
