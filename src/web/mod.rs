//! The pages `serve` renders: what an agent's owner and the operator see. Rendered on the
//! server from the database alone (a request never waits on the gateway), through askama
//! templates (`src/web/templates`, checked at compile time, every value HTML-escaped), with
//! charts as inline SVG and one inline style sheet allowed by its hash: a page is one
//! request and asks no other host.
//!
//! - `home`: `GET /`, the agency's terms, scoreboard, how to enroll, the look-up;
//! - `agent`: `GET /agents/{address}`, an agent's status, bills and proof of service;
//! - `operator`: `GET /operator`, the business per epoch, the wallet, what needs a human;
//! - `frame`: what every page shares (the layout, the style sheet and its CSP, the
//!   short pages: a message, the sign-in form) and the figures' formats;
//! - `chart`: the SVG charts' geometry.

mod agent;
pub(crate) mod chart;
mod frame;
mod home;
mod operator;

pub use agent::{agent_page, proof_csv};
pub use frame::{content_security_policy, message_page, sign_in_page, Site};
pub use home::home_page;
pub use operator::operator_page;
