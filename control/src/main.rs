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
    /// Tenants (customers): every site belongs to one; tenant keys see only their own.
    #[command(subcommand)]
    Tenants(jetmon_control::tenants::TenantsCmd),
    /// The keys that seal stored secrets (webhook secrets, check credentials and headers).
    #[command(subcommand)]
    Secrets(jetmon_control::secrets::SecretsCmd),
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
        /// A tenant key: it sees and changes only this tenant's sites (id or name).
        #[arg(long, value_name = "TENANT", conflicts_with = "gateway")]
        tenant: Option<String>,
        /// A gateway key: it acts for the tenant each request names in X-Jetmon-Tenant-ID,
        /// with the scopes X-Jetmon-Public-Scopes narrows it to (for a trusted front end).
        #[arg(long)]
        gateway: bool,
    },
    /// One line per key: id, prefix, scope, kind (tenant), state, name (never the token).
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

/// One probe now. Every setting a check has over the API is a flag of the same name (with
/// `-` or `_`), so any configured check can be reproduced by hand; `interval_s`, `retries`,
/// `retry_spacing_ms` and `critical` are the engine's (schedule and confirmation), not a
/// probe's, and are not flags.
#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 up (or advisory), 1 the check failed, 2 bad flags or \
no result, 3 we could not tell (probe safety, our resolvers), 130 interrupted."
)]
struct CheckArgs {
    /// A URL (http, https); host:port with --type tcp; a name with --type dns.
    target: String,
    /// http, tcp or dns.
    #[arg(long = "type", default_value = "http")]
    check_type: String,
    /// GET or HEAD (default GET).
    #[arg(long)]
    method: Option<String>,
    /// Deadline for the whole check, ms (1 to 120000; default 10000).
    #[arg(long = "timeout-ms", alias = "timeout_ms", value_name = "MS")]
    timeout_ms: Option<u32>,
    /// Deadline in whole seconds (shorthand for --timeout-ms).
    #[arg(long, value_name = "S", conflicts_with = "timeout_ms")]
    timeout: Option<u32>,
    /// A word the body must contain (repeat for several).
    #[arg(long = "keywords", aliases = ["keyword"], value_name = "WORD")]
    keywords: Vec<String>,
    /// A word the body must not contain (repeat for several).
    #[arg(long = "forbidden-keywords", aliases = ["forbidden_keywords", "forbid"], value_name = "WORD")]
    forbidden_keywords: Vec<String>,
    /// Keywords match case-sensitively.
    #[arg(long = "keyword-case-sensitive", aliases = ["keyword_case_sensitive", "case-sensitive"])]
    keyword_case_sensitive: bool,
    /// Do not judge truncation and empty bodies.
    #[arg(long)]
    no_integrity: bool,
    /// A 200 with fewer body bytes is `body_empty`.
    #[arg(long = "min-body-bytes", aliases = ["min_body_bytes", "min-body"], value_name = "BYTES")]
    min_body_bytes: Option<u32>,
    /// Body bytes read per check, after decompression (up to 1 MiB; default 256 KiB).
    #[arg(
        long = "body-budget-bytes",
        alias = "body_budget_bytes",
        value_name = "BYTES"
    )]
    body_budget_bytes: Option<u32>,
    /// Accepted statuses, a status or a range like 200-299 (repeat; default 1-399).
    #[arg(long = "accepted-statuses", aliases = ["accepted_statuses", "accept"], value_name = "LO-HI")]
    accepted_statuses: Vec<String>,
    /// Extra request header "Name: value" (repeat for several).
    #[arg(long)]
    header: Vec<String>,
    /// follow, fail or alert (default follow).
    #[arg(long = "redirect-policy", aliases = ["redirect_policy", "redirects"], value_name = "POLICY")]
    redirect_policy: Option<String>,
    /// Most redirects followed (0 to 10; default 10).
    #[arg(long = "max-redirects", alias = "max_redirects", value_name = "N")]
    max_redirects: Option<u8>,
    /// v4_first, v6_first, v4_only or v6_only (default v4_first).
    #[arg(long = "ip-preference", aliases = ["ip_preference", "ip"], value_name = "PREF")]
    ip_preference: Option<String>,
    /// --type tcp: the banner the server must send first.
    #[arg(long = "tcp-banner", aliases = ["tcp_banner", "banner"], value_name = "TEXT")]
    tcp_banner: Option<String>,
    /// --type dns: A, AAAA, CNAME, MX or TXT (default A).
    #[arg(long = "dns-record-type", aliases = ["dns_record_type", "record"], value_name = "TYPE")]
    dns_record_type: Option<String>,
    /// --type dns: a value that must be among the records (repeat for several).
    #[arg(long = "dns-expected", aliases = ["dns_expected", "expect"], value_name = "VALUE")]
    dns_expected: Vec<String>,
    /// Time to first byte over which the engine warns (0 = off).
    #[arg(long = "ttfb-warn-ms", alias = "ttfb_warn_ms", value_name = "MS")]
    ttfb_warn_ms: Option<u32>,
    /// Time to first byte over which the engine shows Degraded (0 = off).
    #[arg(long = "ttfb-degrade-ms", alias = "ttfb_degrade_ms", value_name = "MS")]
    ttfb_degrade_ms: Option<u32>,
    /// Total time over which the engine warns (0 = off).
    #[arg(long = "total-warn-ms", alias = "total_warn_ms", value_name = "MS")]
    total_warn_ms: Option<u32>,
    /// Total time over which the engine shows Degraded (0 = off).
    #[arg(
        long = "total-degrade-ms",
        alias = "total_degrade_ms",
        value_name = "MS"
    )]
    total_degrade_ms: Option<u32>,
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
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SitesCmd {
    /// One line per site: id, tenant, Jetmon v1 blog_id, state, legacy site_status, open
    /// events, since when, name.
    List,
    /// Add or update sites from a file: CSV lines `url[,interval_s[,keyword[,blog_id]]]` (a
    /// `url,…` header and `#` comments are skipped; quote a keyword with commas) or JSON lines
    /// `{"url": …, "interval_s": …, "keyword": …, "blog_id": …}`. blog_id is the Jetmon v1 id
    /// (unique: a row naming one another site holds is rejected).
    /// One site with one HTTP check per row; interval 10..=86400 s (default 60). A URL that is
    /// already one of the tenant's HTTP checks updates that check (interval, keyword, blog_id)
    /// instead of adding a site, so importing a file again changes nothing. Targets must pass
    /// probe safety (open private ranges with prober.allow_cidrs). Bad rows (and a URL or
    /// blog_id named twice) are reported as FILE:LINE: problem and skipped; the rest is written
    /// in one transaction, all or nothing. Exit code 1 when any row was rejected.
    Import {
        /// The file to read ("-" = standard input).
        file: PathBuf,
        /// Show what each row would add or change, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The tenant the sites belong to (id or name; default: the default tenant).
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
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
        Cmd::Sites(SitesCmd::Import {
            file,
            tenant,
            dry_run,
        }) => import(&config, &file, tenant, dry_run),
        Cmd::Secrets(cmd) => {
            let control = config.control.clone();
            with_store(&config, |store| async move {
                let done = jetmon_control::secrets::run(&control, &store, cmd).await;
                store.close().await;
                done
            })
        }
        Cmd::Tenants(cmd) => with_store(&config, |store| async move {
            let done = jetmon_control::tenants::run(&store, cmd).await;
            store.close().await;
            done
        }),
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
    use jetmon_shared::check::{CheckSpec, CheckType};
    let name = |flag: &str, v: &str, all: &[&str]| -> anyhow::Error {
        anyhow::anyhow!("--{flag} {v:?}: expected one of {}", all.join(", "))
    };
    let check_type = CheckType::from_name(&a.check_type)
        .ok_or_else(|| name("type", &a.check_type, &["http", "tcp", "dns"]))?;
    let mut spec = CheckSpec::new(1, 1, check_type, &a.target);
    let mut accepted = Vec::new();
    for range in &a.accepted_statuses {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let parse = |s: &str| s.trim().parse::<u16>().ok();
        match (parse(lo), parse(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => accepted.push([lo, hi]),
            _ => bail!("--accepted-statuses {range:?}: expected a status or a range like 200-299"),
        }
    }
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    // The API's own settings and validation: the same names, limits and messages.
    let input = jetmon_control::api::CheckInput {
        timeout_ms: a.timeout_ms.or(a.timeout.map(|s| s.saturating_mul(1000))),
        method: a.method.as_ref().map(|m| m.to_ascii_uppercase()),
        redirect_policy: a.redirect_policy.clone(),
        keywords: nonempty(&a.keywords),
        forbidden_keywords: nonempty(&a.forbidden_keywords),
        dns_record_type: a.dns_record_type.as_ref().map(|t| t.to_ascii_uppercase()),
        dns_expected: nonempty(&a.dns_expected),
        tcp_banner: a.tcp_banner.clone(),
        accepted_statuses: (!accepted.is_empty()).then_some(accepted),
        ip_preference: a.ip_preference.clone(),
        keyword_case_sensitive: a.keyword_case_sensitive.then_some(true),
        max_redirects: a.max_redirects,
        body_budget_bytes: a.body_budget_bytes,
        min_body_bytes: a.min_body_bytes,
        ttfb_warn_ms: a.ttfb_warn_ms,
        ttfb_degrade_ms: a.ttfb_degrade_ms,
        total_warn_ms: a.total_warn_ms,
        total_degrade_ms: a.total_degrade_ms,
        ..Default::default()
    };
    input.apply(&mut spec).map_err(|e| {
        // "redirect_policy: …" → "--redirect-policy: …": the flag the user typed.
        let (field, rest) = e.message.split_once(':').unwrap_or(("", &e.message));
        anyhow::anyhow!("--{}:{rest}", field.replace('_', "-"))
    })?;
    spec.check_integrity = !a.no_integrity;
    for h in &a.header {
        let Some((k, v)) = h.split_once(':') else {
            bail!("--header {h:?}: expected \"Name: value\"");
        };
        spec.headers
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
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
    Ok(jetmon_control::oneoff::exit_code(r.probed.result.outcome))
}

fn import(
    config: &Config,
    file: &std::path::Path,
    tenant: Option<String>,
    dry_run: bool,
) -> Result<()> {
    use anyhow::Context;
    use jetmon_control::import::{self, Action};
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let safety = jetmon_prober::proto::safety::ProbeSafety::new(config.prober.allow_list());
    let (rows, bad) = import::parse(&text, &safety);
    for b in &bad {
        eprintln!("{}:{}: {}", file.display(), b.line, b.problem);
    }
    with_store(config, |store| async move {
        let tenant = match tenant {
            None => jetmon_control::store::DEFAULT_TENANT,
            Some(t) => {
                store
                    .find_tenant(&t)
                    .await?
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--tenant {t:?}: no such tenant (see `jetmon tenants list`)"
                        )
                    })?
                    .id
            }
        };
        let scoped = store.scoped(jetmon_control::store::Tenancy::All);
        // What each row does, against what the tenant already has (nothing written yet).
        let mut claims = import::Claims::default();
        let (mut creates, mut updates, mut unchanged) = (Vec::new(), Vec::new(), 0usize);
        let mut rejected = bad.len();
        for chunk in rows.chunks(import::BATCH_ROWS) {
            let (urls, blog_ids) = import::keys_of(chunk);
            let existing: std::collections::HashMap<String, _> = scoped
                .http_checks_by_target(tenant, &urls)
                .await?
                .into_iter()
                .map(|c| (c.spec.target.clone(), c))
                .collect();
            let holders: std::collections::HashMap<u64, u64> = scoped
                .blog_id_owners(tenant, &blog_ids)
                .await?
                .into_iter()
                .collect();
            for r in chunk {
                let holder = r.blog_id.and_then(|b| holders.get(&b).copied());
                let at = format!("{}:{}", file.display(), r.line);
                match import::plan(r, existing.get(&r.url), holder, &mut claims) {
                    Err(problem) => {
                        eprintln!("{at}: {problem}");
                        rejected += 1;
                    }
                    Ok(Action::Create) => {
                        if dry_run {
                            println!("{at}: would add {}", r.url);
                        }
                        creates.push(jetmon_control::store::NewSite {
                            name: r.url.clone(),
                            url: r.url.clone(),
                            tags: Vec::new(),
                            checks: vec![r.spec.clone()],
                            blog_id: r.blog_id,
                            tenant_id: tenant,
                        });
                    }
                    Ok(Action::Update(up, what)) => {
                        if dry_run {
                            println!(
                                "{at}: would update site {} ({}): {}",
                                up.site_id,
                                r.url,
                                what.join(", ")
                            );
                        }
                        updates.push(*up);
                    }
                    Ok(Action::Unchanged { .. }) => unchanged += 1,
                }
            }
        }
        let (added, changed) = (creates.len(), updates.len());
        let summary = format!(
            "{added} site(s) to add, {changed} to update, {unchanged} unchanged; {rejected} row(s) \
             rejected"
        );
        if dry_run {
            store.close().await;
            println!("dry run: {summary}; nothing was written");
            return Ok(());
        }
        let bar = indicatif::ProgressBar::new((added + changed) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "importing {bar:40} {pos}/{len} rows ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        // One transaction: the whole file's changes, or (on any failure) none of them.
        let written = scoped
            .import(&updates, &creates, |n| bar.set_position(n as u64))
            .await;
        bar.finish_and_clear();
        store.close().await;
        written.context("writing the import (nothing of this file was stored)")?;
        println!(
            "imported: {added} site(s) added, {changed} updated, {unchanged} unchanged; {rejected} row(s) rejected"
        );
        if rejected == 0 {
            Ok(())
        } else {
            anyhow::bail!("{rejected} row(s) rejected (listed above); the others were imported")
        }
    })
}

/// Opens the store (migrating it) on a small runtime and runs `f` with it.
fn keys(config: &Config, cmd: KeysCmd) -> Result<()> {
    use jetmon_control::keys::{Scope, new_token};
    use jetmon_control::store::{KeyKind, NewKey};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    with_store(config, |store| async move {
        match cmd {
            KeysCmd::Create {
                name,
                scope,
                expires_in_days,
                tenant,
                gateway,
            } => {
                let scope = Scope::from_name(&scope).ok_or_else(|| {
                    anyhow::anyhow!("--scope {scope:?}: expected read, write or admin")
                })?;
                if name.trim().is_empty() {
                    anyhow::bail!("--name: give the key a name (what it is for)");
                }
                if name.chars().any(jetmon_shared::text::unprintable) {
                    anyhow::bail!(
                        "--name: no control or format characters (bidi overrides, zero-width…)"
                    );
                }
                let token = new_token()?;
                let expires = expires_in_days.map(|d| now + u64::from(d) * 86_400 * 1_000_000);
                let tenant = match tenant {
                    None => None,
                    Some(t) => Some(store.find_tenant(&t).await?.ok_or_else(|| {
                        anyhow::anyhow!(
                            "--tenant {t:?}: no such tenant (see `jetmon tenants list`)"
                        )
                    })?),
                };
                let kind = match (&tenant, gateway) {
                    (Some(_), _) => KeyKind::Tenant,
                    (None, true) => KeyKind::Gateway,
                    (None, false) => KeyKind::Operator,
                };
                let new = NewKey {
                    name: &name,
                    scope,
                    expires_us: expires,
                    kind,
                    tenant_id: tenant.as_ref().map(|t| t.id),
                };
                let id = store.create_key(&new, &token, now).await?;
                println!("{}", token.token);
                let whose = match &tenant {
                    Some(t) => format!("tenant {}", t.name),
                    None => kind.name().to_owned(),
                };
                eprintln!(
                    "jetmon: key {id} ({}, {whose}, {name}) created; the token above is shown once and not stored: keep it now",
                    scope.name(),
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
                    let kind = match k.tenant_id {
                        Some(t) => format!("tenant:{t}"),
                        None => k.kind.name().to_owned(),
                    };
                    println!(
                        "{:>4}  {}…  {:<5}  {:<10}  {:<16}  {}",
                        k.id,
                        k.prefix,
                        k.scope.name(),
                        kind,
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
            jetmon_control::secrets::open_store(&config.control, &supervisor::hostname()).await?;
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
        let store = jetmon_control::secrets::open_store(&config.control, "cli").await?;
        f(store).await
    })
}

fn print_sites(sites: &[jetmon_control::store::SiteRow]) {
    if sites.is_empty() {
        println!("no sites yet (try `jetmon up --demo`)");
        return;
    }
    println!(
        "{:>6}  {:>6}  {:>10}  {:<12} {:>6} {:>6}  {:<14}  {:<14}  name",
        "id", "tenant", "blog_id", "state", "status", "events", "since", "checked"
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
            "{:>6}  {:>6}  {:>10}  {:<12} {:>6} {:>6}  {:<14}  {:<14}  {}",
            s.id,
            s.tenant_id,
            s.blog_id.map_or_else(|| "-".to_owned(), |b| b.to_string()),
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
        jetmon_control::store::redact(&config.control.database_url),
        config.control.api_listen,
        config.control.buckets,
        config.control.verifliers.len()
    );
    println!("veriflier: listens on {}", config.veriflier.listen);
    Ok(())
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
