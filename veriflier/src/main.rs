//! `jetmon-veriflier`: re-checks sites from another network when control asks, so that one
//! vantage point alone never declares a site Down.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jetmon_shared::config::Config;
use jetmon_shared::shutdown;
use jetmon_veriflier::Mode;

/// Jetmon's outage confirmation service (gRPC), run in networks other than the prober's.
///
/// Control sends it the checks of sites that seem down; it runs each once with the same probe
/// engine as jetmon-prober (the `[prober]` section sets resolvers, TLS roots and probe safety)
/// and streams the results back. Callers authenticate with the token in veriflier.token_file;
/// TLS with veriflier.tls_cert_file/tls_key_file (and client certificates with
/// veriflier.client_ca_file). Stops gracefully on SIGTERM or Ctrl-C.
/// Exit codes: 0 success, 1 runtime error, 2 bad configuration or usage.
#[derive(Parser)]
#[command(name = "jetmon-veriflier", version, about, long_about)]
struct Cli {
    /// Configuration file (TOML; `[veriflier]` and `[prober]`). Default: ./jetmon.toml if present.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Also allow probing this range, which probe safety refuses by default; adds to
    /// `prober.allow_cidrs`. Repeatable.
    #[arg(long = "allow-cidr", value_name = "CIDR", value_parser = parse_cidr)]
    allow_cidrs: Vec<jetmon_shared::cidr::Cidr>,
    /// Serve plaintext gRPC on a non-loopback address (no TLS configured): the token and the
    /// checks cross the network in clear. Refused without this flag.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Fault injection for tests: normal, always-down or hang. Built only with the
    /// `test-mode` cargo feature, which release builds never enable.
    #[cfg(feature = "test-mode")]
    #[arg(long, default_value = "normal", hide = true)]
    test_mode: String,
}

fn parse_cidr(s: &str) -> Result<jetmon_shared::cidr::Cidr, String> {
    s.parse().map_err(|e| format!("{e}"))
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
    #[cfg(feature = "test-mode")]
    let Some(mode) = Mode::from_name(&cli.test_mode) else {
        eprintln!("jetmon-veriflier: --test-mode: normal, always-down or hang");
        return ExitCode::from(2);
    };
    #[cfg(not(feature = "test-mode"))]
    let mode = Mode::Normal;
    shutdown::install();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jetmon-veriflier: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = config.veriflier.name.clone();
    let result = rt.block_on(jetmon_veriflier::serve(
        &config,
        mode,
        &cli.allow_cidrs,
        cli.insecure_plaintext,
        |addr| eprintln!("jetmon-veriflier: {name} listening on {addr}"),
        async {
            while !shutdown::requested() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    ));
    match result {
        Ok(()) => {
            eprintln!("jetmon-veriflier: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jetmon-veriflier: {e:#}");
            ExitCode::FAILURE
        }
    }
}
