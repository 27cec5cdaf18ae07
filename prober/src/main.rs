//! `jetmon-prober`: Jetmon's data plane. One glommio executor per shard reads check settings
//! from its command ring, probes on io_uring and writes one result frame per probe into its
//! result ring. `--dry-run` applies commands without probing (to test a deployment's rings).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use jetmon_prober::target::HostsFile;
use jetmon_shared::config::{Config, ProberConfig};
use jetmon_shared::frames::{Command, KIND_COMMAND, decode_command};
use jetmon_shared::ring::{Consumer, Producer, RingFile};
use jetmon_shared::shutdown;

/// Jetmon's probe engine: one shard per core, fed and drained through shared-memory rings.
///
/// Normally started by `jetmon up`, which creates the rings and supervises this process.
/// Each shard locks `prober.io_memory_bytes` of memory for io_uring: the total must fit in
/// the memlock limit (`ulimit -l`; systemd `LimitMEMLOCK=`).
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
    /// Also allow probing this range, which probe safety refuses by default (private,
    /// loopback…); adds to `prober.allow_cidrs`. Repeatable. Example: 127.0.0.0/8.
    #[arg(long = "allow-cidr", value_name = "CIDR", value_parser = parse_cidr)]
    allow_cidrs: Vec<jetmon_shared::cidr::Cidr>,
    /// Also allow probing exactly this address and port (nothing else of its range); what
    /// `jetmon up --demo` passes for its demo fleet. Repeatable. Example: 127.0.0.1:18090.
    #[arg(long = "allow-target", value_name = "IP:PORT")]
    allow_targets: Vec<std::net::SocketAddr>,
}

fn parse_cidr(s: &str) -> Result<jetmon_shared::cidr::Cidr, String> {
    s.parse().map_err(|e| format!("{e}"))
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
    shutdown::install();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let shards = cli.shards.unwrap_or_else(|| config.effective_shards(cores));
    if !cli.dry_run {
        let extra = jetmon_prober::proto::safety::ExtraAllow {
            cidrs: cli.allow_cidrs.clone(),
            sockets: cli.allow_targets.clone(),
        };
        return run_shards(config, shards, cores, &extra);
    }
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

/// Starts one executor per shard and waits for all of them.
fn run_shards(
    config: &ProberConfig,
    shards: u16,
    cores: usize,
    extra_allow: &jetmon_prober::proto::safety::ExtraAllow,
) -> Result<()> {
    jetmon_prober::exec::check_memlock(config.io_memory_bytes, shards)?;
    let hosts = Arc::new(HostsFile::system());
    let resolvers = jetmon_prober::resolver::servers(&config.resolvers);
    if resolvers.is_empty() {
        eprintln!(
            "jetmon-prober: warning: no DNS resolvers (prober.resolvers is empty and {} names none); \
             checks of names will report resolver_unavailable",
            jetmon_prober::resolver::RESOLV_CONF
        );
    } else {
        let list: Vec<String> = resolvers.iter().map(ToString::to_string).collect();
        eprintln!("jetmon-prober: DNS resolvers: {}", list.join(", "));
    }
    let (tls, roots) = jetmon_prober::tls::client_config(config.tls_extra_ca_file.as_deref())
        .map_err(|e| anyhow::anyhow!("prober.tls_extra_ca_file: {e}"))?;
    eprintln!(
        "jetmon-prober: TLS roots: {} built in, {} from {}, {} extra",
        roots.builtin,
        roots.os,
        roots.os_bundle.unwrap_or("no OS bundle"),
        roots.extra
    );
    let mut handles = Vec::new();
    for id in 0..shards {
        let Shard {
            commands, results, ..
        } = attach(config, id)?;
        let handle = jetmon_prober::exec::spawn_shard(
            id,
            config,
            cores,
            extra_allow,
            tls.clone(),
            hosts.clone(),
            commands,
            results,
            false,
        )?;
        handles.push((id, handle));
    }
    eprintln!(
        "jetmon-prober: {shards} shard(s) running, rings in {}",
        config.ring_dir.display()
    );
    let mut failed = None;
    for (id, handle) in handles {
        if let Err(e) = handle.join() {
            let line =
                jetmon_prober::exec::explain_executor_error(&e.to_string(), config.io_memory_bytes);
            eprintln!("jetmon-prober: shard {id}: {line}");
            shutdown::request();
            failed.get_or_insert(line);
        }
    }
    match failed {
        Some(line) => bail!("{line}"),
        None => {
            eprintln!("jetmon-prober: stopped");
            Ok(())
        }
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
