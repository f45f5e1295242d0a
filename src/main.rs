//! Entry point: parse arguments, run one command, map errors to exit statuses.

use std::path::PathBuf;

use argh::FromArgs;

use stream_agency::cli::{Cli, Command};
use stream_agency::error::{exit, Error, Result};
use stream_agency::store::Store;
use stream_agency::tick::Agency;
use stream_agency::{config, manage, report, run};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map(String::as_str).unwrap_or("stream-agency");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cli = match Cli::from_args(&[name], &rest) {
        Ok(cli) => cli,
        Err(early) => {
            // --help goes to stdout with status 0; a usage error to stderr with status 2.
            if early.status.is_ok() {
                print!("{}", early.output);
                std::process::exit(exit::OK);
            }
            eprint!("{}", early.output);
            std::process::exit(exit::USAGE);
        }
    };
    if let Err(e) = dispatch(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

fn db_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("STREAM_AGENCY_DB")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from("stream-agency.db"))
}

fn dispatch(cli: Cli) -> Result<()> {
    let db = db_path(cli.db);
    match cli.command {
        Command::InitDb(_) => {
            Store::open(&db)?;
            println!(
                "database {} ready (schema version {})",
                db.display(),
                Store::schema_version()
            );
        }
        Command::Enroll(a) => manage::enroll(&db, &a.address, &a.signature, a.fee_bps)?,
        Command::EnrollFromPem(a) => manage::enroll_from_pem(&db, &a.pem, a.fee_bps)?,
        Command::Pause(a) => manage::set_status(&db, &a.address, false)?,
        Command::Resume(a) => manage::set_status(&db, &a.address, true)?,
        Command::Remove(a) => manage::remove(&db, &a.address, a.force)?,
        Command::Tick(a) => {
            let cfg = a.runtime_args().resolve()?;
            let mut agency = Agency::new(Store::open(&db)?, cfg);
            let summary = agency.tick()?;
            println!("{summary}");
            if let Some(blocked) = summary.billing.and_then(|b| b.blocked) {
                return Err(Error::usage(format!("billing stopped: {blocked}")));
            }
        }
        Command::Run(a) => {
            let cfg = a.runtime_args().resolve()?;
            let poll = config::poll_seconds(a.poll_seconds)?;
            let mut agency = Agency::new(Store::open(&db)?, cfg);
            run::run(&mut agency, poll)?;
        }
        Command::Report(_) => report::report(&Store::open(&db)?)?,
        Command::Attempts(a) => {
            let address = manage::parse_address(&a.address)?;
            report::attempts(&Store::open(&db)?, &address, a.limit)?
        }
        Command::BillingAttempts(a) => report::billing_attempts(&Store::open(&db)?, a.limit)?,
    }
    Ok(())
}
