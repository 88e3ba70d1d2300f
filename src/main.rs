//! The `ordinaut` binary: parse the command line, load configuration, start logging,
//! dispatch. The only place that turns errors into an exit code.

use std::process::ExitCode;

use clap::Parser;
use ordinaut::cli::{Cli, Command, run};
use ordinaut::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ordinaut: {e}");
            // Docker reserves exit 2 in health checks: a probe answers healthy or not.
            if matches!(cli.command, Command::Healthcheck(_)) {
                return ExitCode::FAILURE;
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ordinaut: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let service = format!("ordinaut-{}", subcommand(&cli.command));
    let telemetry = ordinaut::telemetry::init(
        &config.log_level,
        config.log_format,
        &service,
        runtime.handle(),
    );
    let code = match runtime.block_on(run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ordinaut: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Queued spans are exported before the runtime (and the gRPC client on it) stops.
    telemetry.shutdown();
    code
}

/// The subcommand's name, for the default OpenTelemetry `service.name`.
fn subcommand(command: &Command) -> &'static str {
    match command {
        Command::Api => "api",
        Command::Migrate => "migrate",
        Command::Worker(_) => "worker",
        Command::Scheduler => "scheduler",
        Command::Dev(_) => "dev",
        Command::Jobs(_) => "jobs",
        Command::Schedules(_) => "schedules",
        Command::Bench(_) => "bench",
        Command::Queues { .. } => "queues",
        Command::Healthcheck(_) => "healthcheck",
        Command::Kinds(_) => "kinds",
        Command::Workflows(_) => "workflows",
    }
}
