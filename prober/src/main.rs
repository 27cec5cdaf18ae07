//! `jetmon-prober`: Jetmon's data plane. One shard per core reads check settings from its
//! command ring and writes one result frame per probe into its result ring.
//!
//! This build carries the shard plumbing (rings, commands, heartbeats, drain) and a
//! `--dry-run` mode that applies commands without probing. The probe engine itself is the
//! next milestone (see docs/architecture.md).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use jetmon_shared::config::{Config, ProberConfig};
use jetmon_shared::frames::{Command, KIND_COMMAND, decode_command};
use jetmon_shared::ring::{Consumer, Producer, RingFile};
use jetmon_shared::shutdown;

/// Jetmon's probe engine: one shard per core, fed and drained through shared-memory rings.
///
/// Normally started by `jetmon up`, which creates the rings and supervises this process.
/// Exit codes: 0 after a clean drain or signal, 1 on a runtime error, 2 on bad config.
#[derive(Parser)]
#[command(name = "jetmon-prober", version, about, long_about)]
struct Cli {
    /// Configuration file (TOML; the `[prober]` section). Default: ./jetmon.toml if present.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Shard count, overriding `prober.shards` (control passes it so both sides agree).
    #[arg(long)]
    shards: Option<u16>,
    /// Apply commands and keep the rings alive, but probe nothing.
    #[arg(long)]
    dry_run: bool,
}

/// How often a shard heartbeats and polls its command ring in dry-run mode.
const TICK: Duration = Duration::from_millis(50);

struct Shard {
    id: u16,
    commands: Consumer,
    results: Producer,
    /// Checks configured, by id (upserts are idempotent).
    checks: std::collections::HashMap<u64, jetmon_shared::check::CheckSpec>,
}

fn main() {
    let cli = Cli::parse();
    let config = Config::load_or_exit("jetmon-prober", cli.config.as_deref());
    if let Err(e) = run(&cli, &config.prober) {
        eprintln!("jetmon-prober: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli, config: &ProberConfig) -> Result<()> {
    if !cli.dry_run {
        bail!(
            "the probe engine is not in this build yet; run with --dry-run to exercise the \
             rings and commands"
        );
    }
    shutdown::install();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let shards = cli.shards.unwrap_or_else(|| config.effective_shards(cores));
    let mut shards: Vec<Shard> = (0..shards)
        .map(|id| attach(config, id))
        .collect::<Result<_>>()?;
    eprintln!(
        "jetmon-prober: {} shard(s) attached in {} (dry run: commands applied, nothing probed)",
        shards.len(),
        config.ring_dir.display()
    );
    let mut draining: Option<Instant> = None;
    loop {
        for shard in &mut shards {
            shard.commands.heartbeat();
            shard.results.heartbeat();
            while let Some(record) = shard.commands.pop()? {
                if record.kind != KIND_COMMAND {
                    eprintln!(
                        "jetmon-prober: shard {}: ignoring record kind {}",
                        shard.id, record.kind
                    );
                    continue;
                }
                match decode_command(record.payload) {
                    Ok(Command::Drain { deadline_ms }) => {
                        eprintln!(
                            "jetmon-prober: shard {}: drain within {deadline_ms} ms",
                            shard.id
                        );
                        draining.get_or_insert_with(Instant::now);
                    }
                    Ok(command) => apply(shard, &command),
                    Err(e) => eprintln!("jetmon-prober: shard {}: rejected command: {e}", shard.id),
                }
            }
            // Nothing to make durable on this side: applied commands are released at once.
            shard.commands.commit();
            shard.results.flush();
        }
        if draining.is_some() || shutdown::requested() {
            let checks: usize = shards.iter().map(|s| s.checks.len()).sum();
            eprintln!("jetmon-prober: stopped ({checks} checks configured)");
            return Ok(());
        }
        std::thread::sleep(TICK);
    }
}

fn attach(config: &ProberConfig, id: u16) -> Result<Shard> {
    let commands =
        RingFile::open_or_create(&config.command_ring_path(id), config.command_ring_bytes)
            .and_then(RingFile::consumer)
            .with_context(|| format!("shard {id}"))?;
    let results = RingFile::open_or_create(&config.result_ring_path(id), config.result_ring_bytes)
        .and_then(RingFile::producer)
        .with_context(|| format!("shard {id}"))?;
    Ok(Shard {
        id,
        commands,
        results,
        checks: Default::default(),
    })
}

fn apply(shard: &mut Shard, command: &Command) {
    match command {
        Command::Upsert(spec) => {
            shard.checks.insert(spec.check_id, (**spec).clone());
            eprintln!(
                "jetmon-prober: shard {}: check {} ({} {}) every {} ms",
                shard.id,
                spec.check_id,
                spec.check_type.name(),
                spec.target,
                spec.interval_ms
            );
        }
        Command::Remove { check_id } => {
            shard.checks.remove(check_id);
            eprintln!(
                "jetmon-prober: shard {}: check {check_id} removed",
                shard.id
            );
        }
        other => eprintln!("jetmon-prober: shard {}: {other:?}", shard.id),
    }
}
