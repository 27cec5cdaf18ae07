//! The rings service: one command ring and one result ring per shard, the frame encoder, and
//! the routing of commands to the shard that owns their check's bucket. It reads result frames
//! into the engine (bounded per tick) and releases ring space only when told that what it read
//! is durable.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jetmon_control::ingest::Ingest;
use jetmon_control::store::StoredCheck;
use jetmon_shared::check::{bucket_of, shard_of_bucket};
use jetmon_shared::config::ProberConfig;
use jetmon_shared::frames::{
    Command, FrameEncoder, KIND_CHECK_RESULT, KIND_COMMAND, KIND_SHARD_STATS, ShardStats,
    decode_result, decode_stats,
};
use jetmon_shared::outcome::Outcome;
use jetmon_shared::ring::{Consumer, Producer, PushError, RingFile};

use super::api::Triggers;
use super::stats::warn_spool;
use super::{PROBER_STALE_AFTER, TICK};

/// Records read per shard per tick at most (a batch stays small enough to commit quickly).
const MAX_RECORDS_PER_TICK: usize = 50_000;

pub(super) struct ShardRings {
    pub commands: Producer,
    pub results: Consumer,
    /// Result frames received (and released) since start.
    pub results_seen: u64,
    /// Frames rejected as invalid.
    pub rejected: u64,
    /// The shard's latest counters.
    pub stats: Option<ShardStats>,
}

pub(super) struct Rings {
    pub shards: Vec<ShardRings>,
    encoder: FrameEncoder,
    buckets: u16,
}

impl Rings {
    /// Opens (or creates) every shard's rings. A command ring with no live consumer can only
    /// hold stale commands (a `Drain` among them would stop the next prober): it is recreated.
    pub fn open(p: &ProberConfig, shard_count: u16, buckets: u16) -> Result<Rings> {
        let shards = (0..shard_count)
            .map(|i| -> Result<ShardRings> {
                let path = p.command_ring_path(i);
                if RingFile::open(&path).is_ok_and(|r| !consumer_alive(&r)) {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("resetting {}", path.display()))?;
                }
                let commands = RingFile::open_or_create(&path, p.command_ring_bytes)
                    .and_then(RingFile::producer)?;
                let results = RingFile::open_or_create(&p.result_ring_path(i), p.result_ring_bytes)
                    .and_then(RingFile::consumer)?;
                Ok(ShardRings {
                    commands,
                    results,
                    results_seen: 0,
                    rejected: 0,
                    stats: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Rings {
            shards,
            encoder: FrameEncoder::new(),
            buckets,
        })
    }

    /// A result ring older than the stored position (rings recreated, database kept) starts
    /// its shard afresh.
    pub fn check_positions(&self, ingest: &mut Ingest) {
        for (i, s) in self.shards.iter().enumerate() {
            let published = s.results.ring().stats().frames_published;
            if ingest.position(i as u16) > published {
                eprintln!(
                    "jetmon: shard {i}: the result ring is newer than the stored position; starting it afresh"
                );
                ingest.reset_shard(i as u16);
            }
        }
    }

    pub fn heartbeat(&mut self) {
        for s in &mut self.shards {
            s.results.heartbeat();
        }
    }

    /// Releases everything read so far (it is durable, or nothing durable came of it).
    pub fn commit(&mut self) {
        for s in &mut self.shards {
            s.results.commit();
        }
    }

    /// Whether any shard's prober heartbeat is stale.
    pub fn stale(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.results.producer_status().heartbeat_age > PROBER_STALE_AFTER)
    }

    /// The prober on the other side, when one is alive with a fresh heartbeat.
    pub fn live_peer(&self) -> Option<u32> {
        match self.shards.first().map(|s| s.results.producer_status()) {
            Some(peer) if peer.alive && peer.heartbeat_age < PROBER_STALE_AFTER => Some(peer.pid),
            _ => None,
        }
    }

    /// Reads what the shards produced (bounded per tick) into the engine.
    /// Returns whether every ring was read to its end (no backlog left).
    pub fn read(
        &mut self,
        ingest: &mut Ingest,
        now_us: u64,
        commands: &mut Vec<Command>,
        triggers: &mut Triggers,
    ) -> Result<bool> {
        let mut drained = true;
        for (i, s) in self.shards.iter_mut().enumerate() {
            for n in 0..=MAX_RECORDS_PER_TICK {
                if n == MAX_RECORDS_PER_TICK {
                    drained = false;
                    break;
                }
                let Some(record) = s.results.pop()? else {
                    break;
                };
                match record.kind {
                    KIND_CHECK_RESULT => match decode_result(record.payload) {
                        Ok(frame) => {
                            s.results_seen += 1;
                            if frame.result.request_id != 0 {
                                triggers.result(&frame);
                            }
                            ingest.frame(i as u16, &frame.result, &frame.extras, now_us, commands);
                        }
                        Err(_) => s.rejected += 1,
                    },
                    KIND_SHARD_STATS => {
                        if let Ok(stats) = decode_stats(record.payload) {
                            s.stats = Some(stats);
                        }
                    }
                    _ => s.rejected += 1,
                }
            }
        }
        // Spooled before the rings are committed (the spool's positions make replays harmless).
        if let Some(spool) = &mut ingest.spool
            && let Err(e) = spool.sync()
        {
            warn_spool(&e);
        }
        Ok(drained)
    }

    /// Sends queued commands to the shards owning their checks.
    pub fn send_queued(&mut self, commands: &mut Vec<Command>) -> Result<()> {
        for command in commands.drain(..) {
            let check_id = match &command {
                Command::Recheck { check_id, .. } => *check_id,
                Command::Upsert(spec) => spec.check_id,
                Command::Remove { check_id } => *check_id,
                Command::TriggerNow { check_id, .. } => *check_id,
                _ => continue,
            };
            let shard = self.shard_of(check_id);
            if let Some(s) = self.shards.get_mut(shard) {
                send(&mut s.commands, &mut self.encoder, &command)?;
            }
        }
        Ok(())
    }

    /// Sends one page of stored checks as upserts.
    pub fn send_checks(&mut self, checks: &[StoredCheck]) -> Result<()> {
        for spec in checks.iter().map(|c| &c.spec) {
            let shard = self.shard_of(spec.check_id);
            send(
                &mut self.shards[shard].commands,
                &mut self.encoder,
                &Command::Upsert(Box::new(spec.clone())),
            )?;
        }
        Ok(())
    }

    /// Asks every shard to drain within `deadline`.
    pub fn drain(&mut self, deadline: Duration) -> Result<()> {
        for s in self.shards.iter_mut() {
            send(
                &mut s.commands,
                &mut self.encoder,
                &Command::Drain {
                    deadline_ms: deadline.as_millis() as u32,
                },
            )?;
        }
        Ok(())
    }

    /// bucket = stable_hash(check_id) % buckets; a bucket belongs to one shard.
    fn shard_of(&self, check_id: u64) -> usize {
        shard_of_bucket(bucket_of(check_id, self.buckets), self.shards.len() as u16) as usize
    }

    /// The periodic status lines on stderr.
    pub fn status(&self, ingest: &Ingest) {
        for (i, s) in self.shards.iter().enumerate() {
            let peer = s.results.producer_status();
            let commands = s.commands.ring().stats();
            let (checks, in_flight, ok) = s.stats.as_ref().map_or((0, 0, 0), |st| {
                let ok = st
                    .completed
                    .iter()
                    .find(|(o, _)| *o == Outcome::Ok)
                    .map_or(0, |(_, n)| *n);
                (st.checks, st.in_flight, ok)
            });
            eprintln!(
                "jetmon: shard {i}: prober pid {} {}, heartbeat {:.1}s ago, commands {}/{} applied, \
                 {checks} checks, {in_flight} in flight, {} results ({ok} ok since the prober started)",
                peer.pid,
                if peer.alive { "alive" } else { "not running" },
                peer.heartbeat_age.as_secs_f64(),
                commands.frames_committed,
                commands.frames_published,
                s.results_seen,
            );
        }
        let st = ingest.stats;
        eprintln!(
            "jetmon: ingest: {} results applied, {} replays skipped, {} transitions, {} re-checks asked",
            st.results, st.duplicates, st.transitions, st.rechecks
        );
    }
}

fn consumer_alive(ring: &RingFile) -> bool {
    let s = ring.stats();
    s.consumer_pid != 0
        && jetmon_shared::ring::process_alive(s.consumer_pid)
        && s.consumer_heartbeat_age
            .is_some_and(|a| a < PROBER_STALE_AFTER)
}

fn send(ring: &mut Producer, encoder: &mut FrameEncoder, command: &Command) -> Result<()> {
    let bytes = encoder.command(command);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ring.try_push(KIND_COMMAND, bytes) {
            Ok(()) => {
                ring.flush();
                return Ok(());
            }
            Err(PushError::Full) if Instant::now() < deadline => std::thread::sleep(TICK),
            Err(e) => return Err(e).context("sending a command to the prober"),
        }
    }
}
