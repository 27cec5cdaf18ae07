//! `jetmon`: the control plane and the operator's command line.

mod supervisor;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use jetmon_shared::config::Config;
use jetmon_shared::ring::RingFile;

/// Jetmon watches websites: is each up, how fast is it, since when has it been down.
///
/// `jetmon up` runs the whole product on this host: it creates the shared-memory rings,
/// starts `jetmon-prober` and supervises it. Configuration comes from --config, or
/// ./jetmon.toml when present, or built-in defaults that work on a laptop.
/// Exit codes: 0 success, 1 runtime error, 2 bad configuration or usage.
#[derive(Parser)]
#[command(name = "jetmon", version, about, long_about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run Jetmon: create the rings, start and supervise the prober, until SIGTERM or Ctrl-C.
    Up {
        /// Also start a small built-in demo fleet on 127.0.0.1:18090 (an always-up site, a
        /// flapping one, a slow one, a broken one) and monitor it: no internet needed.
        #[arg(long)]
        demo: bool,
        /// Stop by itself after this many seconds (for scripts and smoke tests).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
    },
    /// Validate the configuration file and print the effective settings.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Show each shard's rings: occupancy, frames, peers' pids and heartbeats.
    Rings,
    /// Create or upgrade the database schema (`jetmon up` does this too).
    Migrate,
    /// Sites and their state.
    #[command(subcommand)]
    Sites(SitesCmd),
}

#[derive(Subcommand)]
enum SitesCmd {
    /// One line per site: id, state, legacy site_status, open events, since when, name.
    List,
    /// Add sites from a file: CSV lines `url[,interval_s[,keyword]]` (a `url,…` header and
    /// `#` comments are skipped) or JSON lines `{"url": …, "interval_s": …, "keyword": …}`.
    /// One site with one HTTP check per row; interval 10..=86400 s (default 60). Targets must
    /// pass probe safety (open private ranges with prober.allow_cidrs). Bad rows are reported
    /// as FILE:LINE: problem and skipped; good rows are kept. Exit code 1 when any row was
    /// rejected.
    Import {
        /// The file to read ("-" = standard input).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Parse and validate; exit 2 with one line naming the key when something is wrong.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = Config::load_or_exit("jetmon", cli.config.as_deref());
    let result = match cli.command {
        Cmd::Up { demo, duration } => supervisor::up(
            &config,
            cli.config.as_deref(),
            demo,
            duration.map(Duration::from_secs),
        ),
        Cmd::Config(ConfigCmd::Check) => config_check(&config),
        Cmd::Rings => rings(&config),
        Cmd::Migrate => with_store(&config, |store| async move {
            let backend = store.backend();
            store.close().await;
            println!("jetmon: the {backend:?} schema is up to date");
            Ok(())
        }),
        Cmd::Sites(SitesCmd::Import { file }) => import(&config, &file),
        Cmd::Sites(SitesCmd::List) => with_store(&config, |store| async move {
            let sites = store.sites().await?;
            store.close().await;
            print_sites(&sites);
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jetmon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn import(config: &Config, file: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let safety = jetmon_prober::proto::safety::ProbeSafety::new(config.prober.allow_list());
    let (rows, bad) = jetmon_control::import::parse(&text, &safety);
    for b in &bad {
        eprintln!("{}:{}: {}", file.display(), b.line, b.problem);
    }
    let total = rows.len();
    with_store(config, |store| async move {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "importing {bar:40} {pos}/{len} sites ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut done = 0;
        for chunk in rows.chunks(jetmon_control::import::BATCH_ROWS) {
            let batch: Vec<(String, jetmon_shared::check::CheckSpec)> = chunk
                .iter()
                .map(|r| (r.url.clone(), r.spec.clone()))
                .collect();
            done += store.add_sites_with_checks(&batch).await?;
            bar.set_position(done as u64);
        }
        bar.finish_and_clear();
        store.close().await;
        println!("imported {done} site(s); {} row(s) rejected", bad.len());
        if bad.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "{} row(s) rejected (listed above); the others were imported",
                bad.len()
            )
        }
    })
}

/// Opens the store (migrating it) on a small runtime and runs `f` with it.
fn with_store<F, Fut>(config: &Config, f: F) -> Result<()>
where
    F: FnOnce(jetmon_control::store::Store) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = jetmon_control::store::Store::open(&config.control.database_url, "cli").await?;
        f(store).await
    })
}

fn print_sites(sites: &[jetmon_control::store::SiteRow]) {
    if sites.is_empty() {
        println!("no sites yet (try `jetmon up --demo`)");
        return;
    }
    println!(
        "{:>6}  {:<12} {:>6} {:>6}  {:<20}  name",
        "id", "state", "status", "events", "since"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    for s in sites {
        let since = s.last_status_change_us.map_or_else(
            || "-".to_owned(),
            |t| format!("{} s ago", now.saturating_sub(t) / 1_000_000),
        );
        println!(
            "{:>6}  {:<12} {:>6} {:>6}  {:<20}  {}",
            s.id,
            s.state.name(),
            s.site_status,
            s.active_event_count,
            since,
            s.name
        );
    }
}

fn config_check(config: &Config) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let p = &config.prober;
    println!("configuration is valid");
    println!(
        "prober: {} shard(s) ({:?}), io_memory {} KiB per shard, rings in {}",
        p.effective_shards(cores),
        p.placement,
        p.io_memory_bytes / 1024,
        p.ring_dir.display()
    );
    println!(
        "control: database {}, API on {}, {} buckets, {} veriflier(s)",
        redact_url(&config.control.database_url),
        config.control.api_listen,
        config.control.buckets,
        config.control.verifliers.len()
    );
    println!("veriflier: listens on {}", config.veriflier.listen);
    Ok(())
}

/// Hides a password in a database URL (`postgres://user:secret@host` → `user:***@host`).
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

fn rings(config: &Config) -> Result<()> {
    let p = &config.prober;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    for shard in 0..p.effective_shards(cores) {
        for (name, path) in [
            ("commands", p.command_ring_path(shard)),
            ("results", p.result_ring_path(shard)),
        ] {
            match RingFile::open(&path) {
                Ok(ring) => {
                    let s = ring.stats();
                    let age = |a: Option<Duration>| {
                        a.map(|d| format!("{:.1}s ago", d.as_secs_f64()))
                            .unwrap_or_else(|| "never".into())
                    };
                    println!(
                        "shard {shard} {name:8} {:>5.1}% used of {} KiB, {} published, {} committed, \
                         producer pid {} (heartbeat {}), consumer pid {} (heartbeat {}), {} stalls, {} corrupt",
                        100.0 * s.used_bytes as f64 / s.capacity as f64,
                        s.capacity / 1024,
                        s.frames_published,
                        s.frames_committed,
                        s.producer_pid,
                        age(s.producer_heartbeat_age),
                        s.consumer_pid,
                        age(s.consumer_heartbeat_age),
                        s.producer_stalls,
                        s.corrupt_records,
                    );
                }
                Err(e) => println!("shard {shard} {name:8} {e}"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://jm:s3cret@db:5432/x"),
            "postgres://jm:***@db:5432/x"
        );
        assert_eq!(
            super::redact_url("postgres://jm@db/x"),
            "postgres://jm@db/x"
        );
        assert_eq!(
            super::redact_url("sqlite://jetmon.db"),
            "sqlite://jetmon.db"
        );
    }
}
