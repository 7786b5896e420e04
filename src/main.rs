//! The `gatehouse` command: parses the command line, loads the configuration and runs the chosen job.

use std::process::ExitCode;

use clap::Parser;
use gatehouse::config::{self, CertsCommand, Cli, Command, ServeConfig};
use gatehouse::{app, certs, commands, telemetry};

/// Exit code for a setting that cannot be used; clap uses the same for bad flags.
const EXIT_BAD_SETTING: u8 = 2;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("gatehouse: {} (see --help)", config::describe_parse_error(&e, &argv));
            return ExitCode::from(EXIT_BAD_SETTING);
        }
    };
    match cli.command {
        Command::Serve(args) => {
            let config = match ServeConfig::resolve(*args) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("gatehouse: {e}");
                    return ExitCode::from(EXIT_BAD_SETTING);
                }
            };
            telemetry::init_logging(config.log_format, &config.log);
            run_async(app::serve(config, app::shutdown_signal()))
        }
        Command::Certs(CertsCommand::Dev(args)) => {
            match certs::generate_development(&args.certs_dir, &args.hostnames) {
                Ok(paths) => {
                    println!("Wrote a new development CA and server certificate to {}", args.certs_dir.display());
                    println!("  server certificate: {}", paths.cert.display());
                    println!("  trust this CA in your browser: {}", args.certs_dir.join(certs::CA_CERT_FILE).display());
                    ExitCode::SUCCESS
                }
                Err(e) => commands::fail(&e),
            }
        }
        Command::Audit(command) => commands::audit(command),
        Command::Staff(command) => commands::staff(command),
        Command::Keys(command) => commands::keys(command),
        Command::Rooms(command) => commands::rooms(command),
        Command::Appointments(command) => commands::appointments(command),
    }
}

fn run_async(job: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return commands::fail(&e),
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => commands::fail(&format!("{e:#}")),
    }
}
