//! Entry point: parse arguments, run one command, map errors to exit statuses.

use argh::FromArgs;

use stream_agency::cli::Cli;
use stream_agency::error::exit;

fn main() {
    // Stream signatures and keys pass through this process: no core dump may hold them.
    let dumpable =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    // Our INFO lines (the journal's record) but only other crates' warnings (no "Database
    // migrated to version 3" after init-db's own line); RUST_LOG overrides.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,stream_agency=info"),
    )
    .format_timestamp_millis()
    .init();
    if let Err(e) = dumpable {
        log::debug!("cannot mark the process non-dumpable: {e}");
    }
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map(String::as_str).unwrap_or("stream-agency");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    // Packagers and scripts ask this first (argh has no --version of its own).
    if asks_version(&rest) {
        println!("stream-agency {}", env!("CARGO_PKG_VERSION"));
        return;
    }
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
    if let Err(e) = cli.run() {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// `--version` where a command would be: after the global options and their values.
fn asks_version(args: &[&str]) -> bool {
    let mut i = 0;
    while let Some(&a) = args.get(i) {
        match a {
            "--db" | "--secret-key-file" | "--ca-file" => i += 2,
            other => return other == "--version",
        }
    }
    false
}
