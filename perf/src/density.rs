//! P3/P4 (prober side): N checks at a 300 s interval on one pinned shard for a bounded window;
//! every occurrence scheduled inside the window must start (missed = 0) and start on time
//! (lateness = start - scheduled). `--mix` makes 1% of sites answer 500, 1% slow by 2 s and
//! 1% hang until the 10 s timeout: nobody else's check may be delayed by them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use jetmon_shared::check::{CheckSpec, CheckType, ProbeOrigin, phase_ms};
use jetmon_shared::outcome::Outcome;

use crate::prober::ProberUnderTest;

pub struct DensityArgs {
    pub checks: u32,
    pub interval: Duration,
    pub duration: Duration,
    pub sites: u32,
    pub port: u16,
    pub cpu: usize,
    pub mix: bool,
    pub fleet_script: std::path::PathBuf,
}

const TIMEOUT_MS: u32 = 10_000;

pub fn run(args: &DensityArgs, prober_bin: &Path) -> Result<String> {
    let mut p = ProberUnderTest::start(prober_bin, args.cpu, 64 << 20)?;
    std::thread::sleep(Duration::from_millis(300));
    let rss_empty = p.rss()?.anon;
    let interval_ms = args.interval.as_millis() as u32;
    if args.mix {
        set_mix(args)?;
    }
    let mut ignore = |_: &jetmon_shared::frames::ProbeResult| {};
    let load_start = Instant::now();
    for id in 1..=u64::from(args.checks) {
        let site = (id % u64::from(args.sites)) as u32 + 1;
        let url = format!("http://{}:{}/?c={id}", crate::fleet_addr(site), args.port);
        let mut spec = CheckSpec::new(id, id, CheckType::Http, &url);
        spec.interval_ms = interval_ms;
        spec.timeout_ms = TIMEOUT_MS;
        p.upsert(spec, &mut ignore)?;
    }
    p.flush();
    // Wait until the shard reports every check configured.
    let deadline = Instant::now() + Duration::from_secs(120);
    while p.last_stats.as_ref().map(|s| s.checks) != Some(u64::from(args.checks)) {
        if Instant::now() > deadline {
            bail!(
                "the prober did not configure {} checks in time: {:?}",
                args.checks,
                p.last_stats
            );
        }
        p.pump(Duration::from_millis(200), &mut ignore)?;
    }
    eprintln!(
        "density: {} checks configured in {:.1?}",
        args.checks,
        load_start.elapsed()
    );

    let now_ms = unix_ms();
    let window = (
        now_ms + 2_000,
        now_ms + 2_000 + args.duration.as_millis() as u64,
    );
    let expected: u64 = (1..=u64::from(args.checks))
        .map(|id| occurrences(window, interval_ms, phase_ms(id, interval_ms)))
        .sum();
    let mut lateness = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    // Lateness of checks whose site is healthy: what slow and hanging sites must not affect.
    let mut others = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mix: std::collections::HashSet<u32> = if args.mix {
        mix_sites(args.sites).into_iter().map(|(s, _)| s).collect()
    } else {
        Default::default()
    };
    let (mut received, mut by_outcome) = (0u64, std::collections::BTreeMap::<&str, u64>::new());
    p.pump(Duration::from_millis(1_900), &mut ignore)?;
    let (u0, s0) = p.cpu()?;
    let cpu_start = Instant::now();
    let mut on_result = |r: &jetmon_shared::frames::ProbeResult| {
        let due_ms = r.scheduled_at_us / 1000;
        if r.origin == ProbeOrigin::Scheduled && due_ms >= window.0 && due_ms < window.1 {
            received += 1;
            let late = r.started_at_us.saturating_sub(r.scheduled_at_us).max(1);
            let _ = lateness.record(late);
            if !mix.contains(&((r.check_id % u64::from(args.sites)) as u32 + 1)) {
                let _ = others.record(late);
            }
            *by_outcome.entry(r.outcome.name()).or_default() += 1;
        }
    };
    // Until the window ends, plus four timeouts: a probe parked behind a hanging IP's limit
    // (8 slots held 10 s each by ~200 checks per fleet address: ~84% busy) can wait more than
    // one timeout for a slot, then run a whole timeout itself.
    let until = Duration::from_millis(window.1.saturating_sub(unix_ms()))
        + Duration::from_millis(4 * u64::from(TIMEOUT_MS) + 2_000);
    p.pump(until, &mut on_result)?;
    let cpu_window = cpu_start.elapsed();
    let (u1, s1) = p.cpu()?;
    let rss = p.rss()?;
    if args.mix {
        reset_mix(args)?;
    }
    let missed = expected.saturating_sub(received);
    let prober_missed = p.last_stats.as_ref().map(|s| s.missed).unwrap_or(0);
    let ms = |us: u64| us as f64 / 1000.0;
    let outcomes: Vec<String> = by_outcome.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let ok = by_outcome.get(Outcome::Ok.name()).copied().unwrap_or(0);
    let n = received.max(1) as f64;
    Ok(format!(
        "RESULT scenario=density checks={} interval_s={} duration_s={} mix={} expected={expected} missed={missed} \
         prober_missed={prober_missed} lateness_p50_ms={:.2} lateness_p99_ms={:.2} lateness_max_ms={:.2} lateness_p99_ms_healthy_sites={:.2} \
         prober_rss_mb={:.1} prober_peak_rss_mb={:.1} prober_anon_mb={:.1} prober_shared_mb={:.1} \
         bytes_per_check={:.0} user_us_per_check={:.1} \
         sys_us_per_check={:.1} cpu_core_share={:.3} ok={ok} outcomes={}",
        args.checks,
        args.interval.as_secs(),
        args.duration.as_secs(),
        u8::from(args.mix),
        ms(lateness.value_at_quantile(0.5)),
        ms(lateness.value_at_quantile(0.99)),
        ms(lateness.max()),
        ms(others.value_at_quantile(0.99)),
        rss.total as f64 / 1e6,
        rss.peak as f64 / 1e6,
        rss.anon as f64 / 1e6,
        rss.total.saturating_sub(rss.anon) as f64 / 1e6,
        rss.anon.saturating_sub(rss_empty) as f64 / f64::from(args.checks),
        (u1 - u0).as_secs_f64() * 1e6 / n,
        (s1 - s0).as_secs_f64() * 1e6 / n,
        ((u1 - u0) + (s1 - s0)).as_secs_f64() / cpu_window.as_secs_f64(),
        outcomes.join(","),
    ))
}

/// Occurrences of `phase + k·interval` in `[from, to)`.
fn occurrences((from, to): (u64, u64), interval_ms: u32, phase_ms: u32) -> u64 {
    let (i, p) = (u64::from(interval_ms), u64::from(phase_ms));
    // Number of k >= 0 with p + k·i < x.
    let below = |x: u64| if x <= p { 0 } else { (x - p - 1) / i + 1 };
    below(to) - below(from)
}

/// 1% of sites each: 500, slow, hang.
fn mix_sites(sites: u32) -> Vec<(u32, &'static str)> {
    let step = 100;
    (1..=sites)
        .filter_map(|s| match s % step {
            1 => Some((s, "500")),
            2 => Some((s, "slow")),
            3 => Some((s, "hang")),
            _ => None,
        })
        .collect()
}

fn set_mix(args: &DensityArgs) -> Result<()> {
    for (site, mode) in mix_sites(args.sites) {
        let status = std::process::Command::new(&args.fleet_script)
            .args([
                "set",
                &format!("{}:{}", crate::fleet_addr(site), args.port),
                mode,
            ])
            .status()?;
        if !status.success() {
            bail!("perf/fleet set failed");
        }
    }
    std::thread::sleep(Duration::from_millis(1_100));
    Ok(())
}

fn reset_mix(args: &DensityArgs) -> Result<()> {
    std::process::Command::new(&args.fleet_script)
        .arg("reset")
        .status()?;
    Ok(())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_in_a_window() {
        assert_eq!(occurrences((0, 1000), 1000, 0), 1); // t = 0
        assert_eq!(occurrences((1, 1000), 1000, 0), 0);
        assert_eq!(occurrences((0, 3000), 1000, 500), 3);
        assert_eq!(occurrences((600, 1500), 1000, 500), 0); // t = 1500 is excluded
        assert_eq!(occurrences((600, 1501), 1000, 500), 1);
        assert_eq!(mix_sites(300).len(), 9);
    }
}
