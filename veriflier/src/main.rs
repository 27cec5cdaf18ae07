//! `jetmon-veriflier`: re-checks sites from another network when control asks, so that one
//! vantage point alone never declares a site Down.
//!
//! This build validates its configuration; the gRPC service is the veriflier milestone
//! (docs/architecture.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jetmon_shared::config::Config;

/// Jetmon's outage confirmation service (gRPC), run in networks other than the prober's.
///
/// Exit codes: 0 success, 1 runtime error, 2 bad configuration or usage.
#[derive(Parser)]
#[command(name = "jetmon-veriflier", version, about, long_about)]
struct Cli {
    /// Configuration file (TOML; the `[veriflier]` section). Default: ./jetmon.toml if present.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = Config::load_or_exit("jetmon-veriflier", cli.config.as_deref());
    if cli.check_config {
        println!(
            "configuration is valid; would listen on {}",
            config.veriflier.listen
        );
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "jetmon-veriflier: the confirmation service is not in this build yet; \
         --check-config validates a configuration"
    );
    ExitCode::FAILURE
}
