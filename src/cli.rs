//! Command-line definitions (argh): the global options and the list of commands. Each
//! command's own arguments live with it under `cmd/`; the runtime options of tick, run and
//! serve are declared once in `config` (with their `STREAM_AGENCY_<OPTION>` variables).

use std::path::PathBuf;

use argh::FromArgs;

use crate::cmd::{self, Ctx, Run};
use crate::error::Result;

/// Keeps Claws Network agents' funding streams alive and bills the windows per epoch.
#[derive(FromArgs, Debug)]
#[argh(
    note = "Every runtime option of tick and run can also be set as STREAM_AGENCY_<OPTION> (e.g. STREAM_AGENCY_LEAD_SECONDS); flags win.",
    error_code(1, "runtime error (database unreadable, disk full, ...)"),
    error_code(2, "usage or configuration error: nothing was done"),
    error_code(3, "another tick or run holds the database's lock"),
    error_code(4, "ran, but something needs a human (lapsed window, agent failing over an hour, epoch lost or held for billing, billing stopped by its configuration)")
)]
pub struct Cli {
    /// SQLite database file (env STREAM_AGENCY_DB; default: stream-agency.db)
    #[argh(option)]
    pub db: Option<PathBuf>,

    /// key file that encrypts stream signatures at rest (env STREAM_AGENCY_SECRET_KEY_FILE;
    /// under systemd: $CREDENTIALS_DIRECTORY/stream-agency.key)
    #[argh(option)]
    pub secret_key_file: Option<PathBuf>,

    /// extra CA certificates (PEM) trusted besides the bundled roots, for TLS-inspecting
    /// networks (env STREAM_AGENCY_CA_FILE, else SSL_CERT_FILE)
    #[argh(option)]
    pub ca_file: Option<PathBuf>,

    #[argh(subcommand)]
    pub command: Command,
}

/// The command enum and its dispatch, from one list: a new command is one line here.
macro_rules! commands {
    ($($variant:ident($ty:ty),)*) => {
        #[derive(FromArgs, Debug)]
        #[argh(subcommand)]
        pub enum Command {
            $($variant($ty),)*
        }

        impl Run for Command {
            fn run(self, ctx: &Ctx) -> Result<()> {
                match self {
                    $(Command::$variant(c) => c.run(ctx),)*
                }
            }
        }
    };
}

commands! {
    InitDb(cmd::init_db::InitDb),
    ImportMvp(cmd::import_mvp::ImportMvp),
    Keygen(cmd::secrets::Keygen),
    EncryptSecrets(cmd::secrets::EncryptSecrets),
    Enroll(cmd::enroll::Enroll),
    EnrollFromPem(cmd::enroll::EnrollFromPem),
    Pause(cmd::status::Pause),
    Resume(cmd::status::Resume),
    Remove(cmd::remove::Remove),
    Tick(cmd::tick::Tick),
    Run(cmd::run::RunCmd),
    Standby(cmd::standby::StandbyCmd),
    Absorb(cmd::absorb::Absorb),
    Serve(cmd::serve::Serve),
    Token(cmd::token::Token),
    Report(cmd::report::Report),
    Attempts(cmd::report::Attempts),
    BillingAttempts(cmd::report::BillingAttempts),
    Receivables(cmd::report::Receivables),
    Earnings(cmd::earnings::Earnings),
    Billing(cmd::billing::Billing),
    Reconcile(cmd::reconcile::Reconcile),
    Withdraw(cmd::withdraw::Withdraw),
    Check(cmd::check::Check),
    Prune(cmd::prune::Prune),
    Backup(cmd::backup::Backup),
    Restore(cmd::backup::Restore),
}

impl Cli {
    pub fn run(self) -> Result<()> {
        let ca_file = crate::config::ca_file(self.ca_file);
        crate::net::http::configure(ca_file.as_deref(), crate::config::proxy_vars())?;
        let ctx = Ctx::new(self.db, self.secret_key_file);
        self.command.run(&ctx)
    }
}
