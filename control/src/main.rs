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
    /// Check one target now, through the real probe engine (a private jetmon-prober), and
    /// print every phase, the outcome and the certificate. Exit codes: 0 up, 1 the check
    /// failed, 3 we could not tell (monitor-side, e.g. probe safety or our resolvers).
    Check(Box<CheckArgs>),
    /// Sites and their state.
    #[command(subcommand)]
    Sites(SitesCmd),
    /// Response-time statistics (hourly rows, daily after rollup).
    #[command(subcommand)]
    Stats(StatsCmd),
    /// API keys for the REST API: tokens are shown once and stored only as hashes.
    #[command(subcommand)]
    Keys(KeysCmd),
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key and print its token (once: it is not stored).
    Create {
        /// What the key is for (shown in listings).
        #[arg(long)]
        name: String,
        /// read, write (⊇ read) or admin (⊇ write).
        #[arg(long, default_value = "read")]
        scope: String,
        /// Expire after this many days (default: never).
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
    },
    /// One line per key: id, prefix, scope, state, name (never the token).
    List,
    /// Revoke a key now.
    Revoke { id: u64 },
    /// Replace a key by a new one (same name and scope); the old one keeps working for the
    /// grace period, then expires. Prints the new token once.
    Rotate {
        id: u64,
        #[arg(long, default_value_t = 24, value_name = "HOURS")]
        grace_hours: u32,
    },
}

#[derive(Subcommand)]
enum StatsCmd {
    /// Write every spooled result to the database now, the current hour included, then run
    /// the rollup. `jetmon up` does this by itself hourly; use this while it is stopped (e.g.
    /// before a backup). Refused while `jetmon up` holds the spool.
    Flush,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// A URL (http, https); host:port with --type tcp; a name with --type dns.
    target: String,
    /// http, tcp or dns.
    #[arg(long = "type", default_value = "http")]
    check_type: String,
    /// GET or HEAD.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Deadline for the whole check, seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u32,
    /// Required keyword in the body (repeat for several).
    #[arg(long)]
    keyword: Vec<String>,
    /// Forbidden keyword in the body (repeat for several).
    #[arg(long)]
    forbid: Vec<String>,
    /// Keywords match case-sensitively.
    #[arg(long)]
    case_sensitive: bool,
    /// Do not judge truncation and empty bodies.
    #[arg(long)]
    no_integrity: bool,
    /// A 200 with fewer body bytes is `body_empty`.
    #[arg(long)]
    min_body: Option<u32>,
    /// Accepted statuses, e.g. 200-299 (repeat for several; default 1-399).
    #[arg(long)]
    accept: Vec<String>,
    /// Extra request header "Name: value" (repeat for several).
    #[arg(long)]
    header: Vec<String>,
    /// follow, fail or alert.
    #[arg(long, default_value = "follow")]
    redirects: String,
    /// Most redirects followed (1..=10).
    #[arg(long)]
    max_redirects: Option<u8>,
    /// v4_first, v6_first, v4_only or v6_only.
    #[arg(long, default_value = "v4_first")]
    ip: String,
    /// A PEM file of extra CA certificates to trust.
    #[arg(long, value_name = "FILE")]
    extra_ca: Option<PathBuf>,
    /// DNS server ip:port to use (repeat for several; default: the configuration's, else
    /// /etc/resolv.conf).
    #[arg(long, value_name = "IP:PORT")]
    resolver: Vec<String>,
    /// Allow probing this private range (probe safety refuses it otherwise).
    #[arg(long, value_name = "CIDR")]
    allow_cidr: Vec<String>,
    /// --type tcp: the banner the server must send first.
    #[arg(long)]
    banner: Option<String>,
    /// --type dns: A, AAAA, CNAME, MX or TXT.
    #[arg(long, default_value = "A")]
    record: String,
    /// --type dns: a value that must be among the records (repeat for several).
    #[arg(long)]
    expect: Vec<String>,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
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
    if let Cmd::Check(args) = &cli.command {
        return match check(&config, args) {
            Ok(code) => ExitCode::from(code),
            Err(e) if e.is::<jetmon_control::oneoff::Interrupted>() => {
                eprintln!("jetmon: {e:#}");
                ExitCode::from(130)
            }
            Err(e) => {
                eprintln!("jetmon: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let result = match cli.command {
        Cmd::Check(_) => Ok(()),
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
        Cmd::Stats(StatsCmd::Flush) => stats_flush(&config),
        Cmd::Keys(cmd) => keys(&config, cmd),
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

/// Builds the check from the flags (every error names the flag), runs it, prints it.
fn check(config: &Config, a: &CheckArgs) -> Result<u8> {
    use anyhow::{Context, bail};
    use jetmon_shared::check::{
        CheckSpec, CheckType, DnsRecordType, HttpMethod, IpPreference, RedirectPolicy,
    };
    let name = |flag: &str, v: &str, all: &[&str]| -> anyhow::Error {
        anyhow::anyhow!("--{flag} {v:?}: expected one of {}", all.join(", "))
    };
    let check_type = CheckType::from_name(&a.check_type)
        .ok_or_else(|| name("type", &a.check_type, &["http", "tcp", "dns"]))?;
    let mut spec = CheckSpec::new(1, 1, check_type, &a.target);
    spec.method = HttpMethod::from_name(&a.method.to_ascii_uppercase())
        .ok_or_else(|| name("method", &a.method, &["GET", "HEAD"]))?;
    spec.timeout_ms = a.timeout.saturating_mul(1000);
    spec.keywords = a.keyword.clone();
    spec.forbidden_keywords = a.forbid.clone();
    spec.keyword_case_sensitive = a.case_sensitive;
    spec.check_integrity = !a.no_integrity;
    spec.min_body_bytes = a.min_body.unwrap_or(0);
    for range in &a.accept {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let parse = |s: &str| s.trim().parse::<u16>().ok();
        match (parse(lo), parse(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => spec.accepted_statuses.push((lo, hi)),
            _ => bail!("--accept {range:?}: expected a status or a range like 200-299"),
        }
    }
    for h in &a.header {
        let Some((k, v)) = h.split_once(':') else {
            bail!("--header {h:?}: expected \"Name: value\"");
        };
        spec.headers
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
    spec.redirect_policy = RedirectPolicy::from_name(&a.redirects)
        .ok_or_else(|| name("redirects", &a.redirects, &["follow", "fail", "alert"]))?;
    if let Some(m) = a.max_redirects {
        spec.max_redirects = m;
    }
    spec.ip_preference = IpPreference::from_name(&a.ip)
        .ok_or_else(|| name("ip", &a.ip, &["v4_first", "v6_first", "v4_only", "v6_only"]))?;
    spec.tcp_banner = a.banner.clone();
    spec.dns_record_type = DnsRecordType::from_name(&a.record.to_ascii_uppercase())
        .ok_or_else(|| name("record", &a.record, &["A", "AAAA", "CNAME", "MX", "TXT"]))?;
    spec.dns_expected = a.expect.clone();
    spec.validate().context("the check")?;
    for r in &a.resolver {
        r.parse::<std::net::SocketAddr>()
            .map_err(|_| anyhow::anyhow!("--resolver {r:?}: expected ip:port"))?;
    }
    for c in &a.allow_cidr {
        c.parse::<jetmon_shared::cidr::Cidr>()
            .map_err(|e| anyhow::anyhow!("--allow-cidr {c:?}: {e}"))?;
    }
    if let Some(ca) = a.extra_ca.as_ref().filter(|ca| !ca.is_file()) {
        bail!("--extra-ca {}: no such file", ca.display());
    }
    let prober = match &config.control.prober_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("jetmon-prober"),
    };
    let opts = jetmon_control::oneoff::ProberOptions {
        resolvers: a.resolver.clone(),
        extra_ca_file: a.extra_ca.clone(),
        allow_cidrs: a.allow_cidr.clone(),
    };
    let r = jetmon_control::oneoff::probe(config, &prober, spec, &opts)?;
    if a.json {
        println!("{}", jetmon_control::oneoff::json(&a.target, &r));
    } else {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        print!("{}", jetmon_control::oneoff::render(&a.target, &r, now_s));
    }
    Ok(jetmon_control::oneoff::exit_code(r.result.outcome))
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
fn keys(config: &Config, cmd: KeysCmd) -> Result<()> {
    use jetmon_control::keys::{Scope, new_token};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    with_store(config, |store| async move {
        match cmd {
            KeysCmd::Create {
                name,
                scope,
                expires_in_days,
            } => {
                let scope = Scope::from_name(&scope).ok_or_else(|| {
                    anyhow::anyhow!("--scope {scope:?}: expected read, write or admin")
                })?;
                if name.trim().is_empty() {
                    anyhow::bail!("--name: give the key a name (what it is for)");
                }
                let token = new_token()?;
                let expires = expires_in_days.map(|d| now + u64::from(d) * 86_400 * 1_000_000);
                let id = store.create_key(&name, scope, expires, &token, now).await?;
                println!("{}", token.token);
                eprintln!(
                    "jetmon: key {id} ({}, {}) created; the token above is shown once and not stored: keep it now",
                    scope.name(),
                    name
                );
            }
            KeysCmd::List => {
                let keys = store.keys().await?;
                if keys.is_empty() {
                    println!(
                        "no API keys (create one with `jetmon keys create --name NAME --scope read`)"
                    );
                }
                for k in keys {
                    let state = if k.revoked_us.is_some() {
                        "revoked".to_owned()
                    } else if !k.active(now) {
                        "expired".to_owned()
                    } else if let Some(t) = k.expires_us {
                        format!("expires in {} h", t.saturating_sub(now) / 3_600_000_000)
                    } else {
                        "active".to_owned()
                    };
                    println!(
                        "{:>4}  {}…  {:<5}  {:<16}  {}",
                        k.id,
                        k.prefix,
                        k.scope.name(),
                        state,
                        k.name
                    );
                }
            }
            KeysCmd::Revoke { id } => {
                if !store.revoke_key(id, now).await? {
                    anyhow::bail!("no active API key {id}");
                }
                eprintln!("jetmon: key {id} revoked");
            }
            KeysCmd::Rotate { id, grace_hours } => {
                let token = new_token()?;
                let grace = u64::from(grace_hours) * 3_600_000_000;
                let new_id = store.rotate_key(id, &token, grace, now).await?;
                println!("{}", token.token);
                eprintln!(
                    "jetmon: key {id} replaced by key {new_id}; the old token works for {grace_hours} more hour(s); the new token above is shown once"
                );
            }
        }
        store.close().await;
        Ok(())
    })
}

fn stats_flush(config: &Config) -> Result<()> {
    use jetmon_control::stats::{flush, spool::Spool};
    let dir = config.control.spool_dir();
    if !dir.exists() {
        println!("jetmon: nothing spooled ({} does not exist)", dir.display());
        return Ok(());
    }
    let (mut spool, _) = Spool::open(&dir)?;
    spool.seal(u64::MAX, true)?;
    let sealed = jetmon_control::stats::spool::sealed_dirs(&dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store =
            jetmon_control::store::Store::open(&config.control.database_url, &supervisor::hostname())
                .await?;
        let mut total = flush::Flushed::default();
        for d in &sealed {
            let f = flush::flush_sealed(&store, d).await?;
            total.parts += f.parts;
            total.rows += f.rows;
        }
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let c = &config.control;
        let r = flush::rollup(&store, now_s, c.stats_hourly_days, c.stats_daily_days).await?;
        store.close().await;
        println!(
            "jetmon: flushed {} hour(s): {} row(s) in {} part(s); rollup merged {} hourly row(s) into {} daily row(s), expired {}",
            sealed.len(),
            total.rows,
            total.parts,
            r.hourly_rows_merged,
            r.daily_rows_written,
            r.daily_rows_expired
        );
        Ok(())
    })
}

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
        "{:>6}  {:<12} {:>6} {:>6}  {:<14}  {:<14}  name",
        "id", "state", "status", "events", "since", "checked"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let ago = |t: Option<u64>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| format!("{} s ago", now.saturating_sub(t) / 1_000_000),
        )
    };
    for s in sites {
        println!(
            "{:>6}  {:<12} {:>6} {:>6}  {:<14}  {:<14}  {}",
            s.id,
            s.state.name(),
            s.site_status,
            s.active_event_count,
            ago(s.last_status_change_us),
            ago(s.last_checked_us),
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
