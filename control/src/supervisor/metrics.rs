//! Control's `/metrics` text, rendered once a second from what the services measure (the
//! shards' stats frames, the rings, ingest, the writer, the flusher, the prober service).

use std::sync::atomic::Ordering;

use jetmon_control::ingest::Ingest;
use jetmon_control::metrics;
use jetmon_control::stats::flush::FlushCounters;

use super::prober::ProberService;
use super::rings::{Rings, ShardRings};
use super::writer::Writer;

/// A per-shard metric family: name, type, help, how to read it.
type PerShard = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardRings) -> f64,
);

/// Renders control's metrics text (served by the API at `/metrics`).
pub(super) fn render(
    rings: &Rings,
    ingest: &Ingest,
    writer: &Writer,
    flush: &FlushCounters,
    prober: &ProberService,
) -> String {
    let mut t = metrics::Text::default();
    per_shard(&mut t, &rings.shards);
    totals(&mut t, ingest, writer, flush, prober.restarts);
    batch_latency(&mut t, &writer.batch_us);
    resident(&mut t, prober.pid());
    t.finish()
}

/// Families with one sample per shard.
fn per_shard(t: &mut metrics::Text, shards: &[ShardRings]) {
    t.family(
        "jetmon_checks_completed_total",
        "counter",
        "Probes completed, by shard and outcome (since the prober started).",
    );
    for (i, s) in shards.iter().enumerate() {
        let shard = i.to_string();
        for (outcome, n) in s.stats.iter().flat_map(|st| st.completed.iter()) {
            t.sample(
                "jetmon_checks_completed_total",
                &[("shard", &shard), ("outcome", outcome.name())],
                *n as f64,
            );
        }
    }
    let per_shard: [PerShard; 7] = [
        (
            "jetmon_checks_configured",
            "gauge",
            "Checks configured on the shard.",
            |s| s.stats.as_ref().map_or(0.0, |x| x.checks as f64),
        ),
        (
            "jetmon_checks_in_flight",
            "gauge",
            "Probes running now.",
            |s| s.stats.as_ref().map_or(0.0, |x| f64::from(x.in_flight)),
        ),
        (
            "jetmon_check_start_lateness_p99_seconds",
            "gauge",
            "p99 of how late probes started, over the last second.",
            |s| {
                s.stats
                    .as_ref()
                    .map_or(0.0, |x| x.lateness_p99_us as f64 / 1e6)
            },
        ),
        (
            "jetmon_checks_missed_total",
            "counter",
            "Checks whose time passed without a start.",
            |s| s.stats.as_ref().map_or(0.0, |x| x.missed as f64),
        ),
        (
            "jetmon_result_ring_used_bytes",
            "gauge",
            "Result ring bytes not yet released by control.",
            |s| s.results.ring().stats().used_bytes as f64,
        ),
        (
            "jetmon_result_ring_stalls_total",
            "counter",
            "Times the prober found the result ring full.",
            |s| s.results.ring().stats().producer_stalls as f64,
        ),
        (
            "jetmon_frames_rejected_total",
            "counter",
            "Frames control refused as invalid.",
            |s| s.rejected as f64,
        ),
    ];
    for (name, kind, help, f) in per_shard {
        t.family(name, kind, help);
        for (i, s) in shards.iter().enumerate() {
            t.sample(name, &[("shard", &i.to_string())], f(s));
        }
    }
}

/// Control-wide counters and gauges.
fn totals(
    t: &mut metrics::Text,
    ingest: &Ingest,
    c: &Writer,
    flush: &FlushCounters,
    prober_restarts: u64,
) {
    let store_waiting = !c.idle();
    let st = ingest.stats;
    let sp = ingest.spool.as_ref().map(|s| s.stats).unwrap_or_default();
    for (name, kind, help, v) in [
        (
            "jetmon_frames_ingested_total",
            "counter",
            "Result frames applied to the event engine.",
            st.results as f64,
        ),
        (
            "jetmon_ingest_replays_skipped_total",
            "counter",
            "Frames skipped as already durable (replays after a restart).",
            st.duplicates as f64,
        ),
        (
            "jetmon_transitions_total",
            "counter",
            "Transitions produced (and written).",
            st.transitions as f64,
        ),
        (
            "jetmon_rechecks_requested_total",
            "counter",
            "Fast re-check rounds asked of the prober.",
            st.rechecks as f64,
        ),
        (
            "jetmon_db_batches_total",
            "counter",
            "Batches made durable.",
            c.batches as f64,
        ),
        (
            "jetmon_db_errors_total",
            "counter",
            "Batches that failed to store (retried).",
            c.store_errors as f64,
        ),
        (
            "jetmon_db_waiting",
            "gauge",
            "1 while a batch waits for the database.",
            if store_waiting { 1.0 } else { 0.0 },
        ),
        (
            "jetmon_prober_restarts_total",
            "counter",
            "Times the prober was restarted.",
            prober_restarts as f64,
        ),
        (
            "jetmon_stats_spooled_total",
            "counter",
            "Results written to the statistics spool.",
            sp.recorded as f64,
        ),
        (
            "jetmon_stats_spool_errors_total",
            "counter",
            "Spool writes that failed (those results are missing from statistics).",
            sp.write_errors as f64,
        ),
        (
            "jetmon_stats_rows_flushed_total",
            "counter",
            "Hourly statistics rows written.",
            flush.rows.load(Ordering::Relaxed) as f64,
        ),
        (
            "jetmon_stats_flush_errors_total",
            "counter",
            "Statistics flushes or rollups that failed (retried).",
            flush.errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "jetmon_stats_flush_queue",
            "gauge",
            "Sealed hours waiting to be flushed.",
            flush.queued.load(Ordering::Relaxed) as f64,
        ),
        (
            "jetmon_stats_rolled_up_rows_total",
            "counter",
            "Hourly rows merged into daily rows.",
            flush.rolled_up_rows.load(Ordering::Relaxed) as f64,
        ),
    ] {
        t.family(name, kind, help);
        t.sample(name, &[], v);
    }
}

fn batch_latency(t: &mut metrics::Text, batch_us: &hdrhistogram::Histogram<u64>) {
    t.family(
        "jetmon_db_batch_seconds",
        "summary",
        "Time to make a batch durable.",
    );
    for q in ["0.5", "0.99", "1"] {
        let v = batch_us.value_at_quantile(q.parse().unwrap_or(1.0)) as f64 / 1e6;
        t.sample("jetmon_db_batch_seconds", &[("quantile", q)], v);
    }
    t.sample("jetmon_db_batch_seconds_count", &[], batch_us.len() as f64);
}

fn resident(t: &mut metrics::Text, prober_pid: u32) {
    t.family(
        "jetmon_process_resident_bytes",
        "gauge",
        "Resident memory of control and the prober.",
    );
    t.sample(
        "jetmon_process_resident_bytes",
        &[("process", "control")],
        metrics::rss_bytes(std::process::id()) as f64,
    );
    if prober_pid != 0 {
        t.sample(
            "jetmon_process_resident_bytes",
            &[("process", "prober")],
            metrics::rss_bytes(prober_pid) as f64,
        );
    }
}
