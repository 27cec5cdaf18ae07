//! One shard: a glommio executor on its own thread that owns a disjoint set of checks, their
//! wheel, a buffer pool, counters and its two rings. Nothing here is shared with another
//! shard; the only cross-thread state is the process-wide stop flag.
//!
//! The pacer (`Shard::tick`, every millisecond) applies commands, advances the wheel, starts
//! due probes within the limits (in flight per shard, in flight per target IP, room in the
//! result ring), moves finished results into the ring and publishes counters once a second.
//! Probes run as independent tasks: a slow or hanging site holds only its own task.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hickory_proto::rr::RecordType;
use jetmon_shared::check::{CheckType, DnsRecordType, IpPreference, ProbeOrigin, RedirectPolicy};
use jetmon_shared::config::ProberConfig;
use jetmon_shared::frames::{
    Command, FLAG_LATE, FLAG_REDIRECT_ALERT, FLAG_REDIRECT_DOWNGRADE, FLAG_REDIRECT_HOST_CHANGED,
    FrameEncoder, KIND_CHECK_RESULT, KIND_COMMAND, KIND_SHARD_STATS, ProbeResult, RedirectHop,
    ResultExtras, ShardStats, decode_command,
};
use jetmon_shared::outcome::Outcome;
use jetmon_shared::ring::{Consumer, Producer, PushError};
use jetmon_shared::shutdown;

use crate::probe::{self, ProbeBuffers, ProbeReport, micros, monitor_side};
use crate::proto::dns::{self, Answer, Cached, DnsCache};
use crate::proto::redirect;
use crate::proto::safety::{ExtraAllow, ProbeSafety};
use crate::refusal::{Refusals, Refused, blocked, refusal_note};
use crate::resolver::{self, NoAnswer, Parsed};
use crate::sched::Settings;
use crate::sched::{CheckTable, Fired};
use crate::target::{HostsFile, Resolution, Target, parse_for as parse_target, resolve_local};

/// The pacer's period while there is work.
pub const TICK: Duration = Duration::from_millis(1);
/// The longest an idle shard sleeps (it wakes earlier for its next due check). Bounds how late
/// a command (a trigger-now, a new check) is applied on a quiet shard.
pub const IDLE_TICK_MAX: Duration = Duration::from_millis(10);
/// Commands applied per tick at most (a burst of upserts must not starve probing).
pub const MAX_COMMANDS_PER_TICK: usize = 4096;
/// How often counters are published.
pub const STATS_EVERY: Duration = Duration::from_secs(1);
/// Idle probe buffers kept for reuse at most; beyond, they are freed.
pub const MAX_POOLED_BUFFERS: usize = 1024;
/// Our resolvers count as working while they gave a real answer (NOERROR or NXDOMAIN) this
/// recently. Then a SERVFAIL or a timeout for one name is that name's failure; otherwise it
/// is ours (`resolver_unavailable`, monitor-side).
pub const RESOLVER_HEALTH_WINDOW_MS: u64 = 60_000;

/// What a shard needs from the prober's configuration.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub id: u16,
    pub user_agent: Rc<str>,
    pub max_in_flight: u32,
    pub max_per_ip: u16,
    pub vantage_id: u32,
    pub lateness_threshold_us: u64,
    /// Probe safety with the operator's allow-list.
    pub safety: ProbeSafety,
    /// Our recursive resolvers (configured, else /etc/resolv.conf).
    pub resolvers: Rc<[SocketAddr]>,
    /// The name whose answer proves the resolvers work (`prober.resolver_canary`).
    pub resolver_canary: Rc<str>,
    /// The TLS client configuration every shard shares.
    pub tls: Arc<rustls::ClientConfig>,
    /// Stop when the result ring's file is deleted (nobody can read us any more). Off for a
    /// shard embedded with private rings that are unlinked on purpose once mapped.
    pub stop_when_ring_deleted: bool,
}

impl ShardConfig {
    /// `extra` adds to `prober.allow_cidrs` (the `--allow-cidr` and `--allow-target` flags).
    pub fn from_prober(
        id: u16,
        c: &ProberConfig,
        extra: &ExtraAllow,
        tls: Arc<rustls::ClientConfig>,
    ) -> ShardConfig {
        let mut allow = c.allow_list();
        allow.extend_from_slice(&extra.cidrs);
        ShardConfig {
            id,
            user_agent: Rc::from(c.user_agent.as_str()),
            max_in_flight: c.max_in_flight_per_shard,
            max_per_ip: c.max_per_target_ip,
            vantage_id: c.vantage_id,
            lateness_threshold_us: u64::from(c.lateness_threshold_ms) * 1000,
            safety: ProbeSafety::new(allow).allowing_sockets(extra.sockets.clone()),
            resolvers: Rc::from(resolver::servers(&c.resolvers)),
            resolver_canary: Rc::from(c.resolver_canary.as_str()),
            tls,
            stop_when_ring_deleted: true,
        }
    }
}

/// Unix time from a monotonic base: one clock read per use, no drift within a run.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: Instant,
    base_unix_us: u64,
}

impl Clock {
    fn new() -> Clock {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Clock {
            base: Instant::now(),
            base_unix_us: unix,
        }
    }

    fn unix_us(&self, at: Instant) -> u64 {
        self.base_unix_us + at.saturating_duration_since(self.base).as_micros() as u64
    }
}

/// A due probe waiting for a start slot.
#[derive(Debug, Clone, Copy)]
struct Ready {
    check_id: u64,
    due_ms: u64,
    origin: ProbeOrigin,
    request_id: u64,
    /// This entry holds the check's in-flight flag (taken when it became due, or on its
    /// first start attempt for re-checks and triggers).
    holds_flag: bool,
    /// When the check started (Unix µs), once it has: a probe that waited for DNS keeps the
    /// start of its resolution.
    started_us: u64,
    /// Time spent resolving the target's name (0 = from the cache or no name).
    dns_us: u32,
}

/// Pending re-checks, ordered by due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Recheck {
    due_ms: u64,
    check_id: u64,
    request_id: u64,
    remaining: u8,
    spacing_ms: u32,
}

/// The shard's resolver state: the cache, the names being resolved with the probes waiting
/// for them (one query per name however many checks share it), and our resolvers' health.
#[derive(Default)]
struct DnsState {
    cache: DnsCache,
    pending: HashMap<(Box<str>, RecordType), Vec<Ready>>,
    waiting: usize,
    next_server: usize,
    /// Last real answer (NOERROR/NXDOMAIN) from our resolvers, and last failed canary.
    last_good_ms: Option<u64>,
    last_bad_ms: Option<u64>,
}

/// What the shard knows of a name right now.
enum Lookup {
    Found(Vec<IpAddr>),
    Failed(ProbeReport),
    Missing(RecordType),
}

impl DnsState {
    /// Address types to try, in order, for a preference.
    fn order(pref: IpPreference) -> &'static [RecordType] {
        match pref {
            IpPreference::V4First => &[RecordType::A, RecordType::AAAA],
            IpPreference::V6First => &[RecordType::AAAA, RecordType::A],
            IpPreference::V4Only => &[RecordType::A],
            IpPreference::V6Only => &[RecordType::AAAA],
        }
    }

    /// The cached answer for `host`: the first family with addresses wins; a family with no
    /// records falls through to the next; any other negative answer is final.
    fn lookup(&self, host: &str, pref: IpPreference, now_ms: u64) -> Lookup {
        for &rtype in DnsState::order(pref) {
            match self.cache.get(host, rtype, now_ms) {
                Some(Cached::Addresses(ips)) => return Lookup::Found(ips.clone()),
                Some(Cached::Negative(Outcome::DnsNoRecords, _)) => continue,
                Some(Cached::Negative(outcome, detail)) => {
                    return Lookup::Failed(ProbeReport {
                        detail: *detail,
                        ..monitor_side(*outcome)
                    });
                }
                None => return Lookup::Missing(rtype),
            }
        }
        Lookup::Failed(monitor_side(Outcome::DnsNoRecords))
    }

    fn healthy(&self, now_ms: u64) -> bool {
        self.last_good_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= RESOLVER_HEALTH_WINDOW_MS)
    }

    /// A failure we cannot attribute yet: no recent real answer and no recent failed canary.
    fn needs_canary(&self, now_ms: u64) -> bool {
        !self.healthy(now_ms)
            && self
                .last_bad_ms
                .is_none_or(|t| now_ms.saturating_sub(t) > RESOLVER_HEALTH_WINDOW_MS / 6)
    }

    /// Notes what a canary proved.
    fn canary_result(&mut self, good: Option<bool>, now_ms: u64) {
        match good {
            Some(true) => self.last_good_ms = Some(now_ms),
            Some(false) => self.last_bad_ms = Some(now_ms),
            None => {}
        }
    }

    /// Judges a query that got no usable answer, or a SERVFAIL/REFUSED: the name's failure
    /// while our resolvers answer other names, else ours.
    fn failure_report(&self, now_ms: u64, outcome: Outcome, detail: u16) -> ProbeReport {
        if self.healthy(now_ms) {
            ProbeReport {
                detail,
                ..monitor_side(outcome)
            }
        } else {
            monitor_side(Outcome::ResolverUnavailable)
        }
    }
}

/// True for what a query can end with that may be our resolvers' fault rather than the name's.
fn ambiguous(answer: &Result<Answer, NoAnswer>) -> bool {
    !matches!(
        answer,
        Ok(Answer::Addresses { .. } | Answer::NxDomain { .. } | Answer::NoRecords { .. })
    )
}

fn record_type(t: DnsRecordType) -> RecordType {
    match t {
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Cname => RecordType::CNAME,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Txt => RecordType::TXT,
    }
}

/// Counters since the shard started (and lateness since the last stats frame).
struct Counters {
    started: u64,
    completed: [u64; 128],
    overlapping: u64,
    deferred_ip_cap: u64,
    ring_stalls: u64,
    rejected_commands: u64,
    lateness_us: Histogram<u64>,
}

/// The shard's state. Borrowed only between awaits.
pub struct Shard {
    cfg: ShardConfig,
    clock: Clock,
    table: CheckTable,
    hosts: Arc<HostsFile>,
    ready: VecDeque<Ready>,
    rechecks: BinaryHeap<Reverse<Recheck>>,
    in_flight: u32,
    per_ip: HashMap<IpAddr, u16>,
    /// Due probes waiting for their target IP to have a free slot, released one by one as
    /// that IP's probes finish: a deferred probe costs nothing until it can start.
    parked: HashMap<IpAddr, VecDeque<Ready>>,
    parked_len: usize,
    finished: VecDeque<(ProbeResult, Option<Box<Extras>>)>,
    pool: Vec<ProbeBuffers>,
    buffers_out: u32,
    commands: Consumer,
    results: Producer,
    encoder: FrameEncoder,
    ring_full: bool,
    counters: Counters,
    fired: Vec<Fired>,
    dns: DnsState,
    last_stats: Instant,
    last_checks_logged: usize,
    draining_until: Option<Instant>,
    /// Checks whose target was refused when they were configured (checks.md: a probe never
    /// goes silent). Each yields its refusal at once, and again for every trigger-now or
    /// re-check, without touching the network.
    refused: Refusals,
}

impl Shard {
    pub fn new(
        cfg: ShardConfig,
        commands: Consumer,
        results: Producer,
        hosts: Arc<HostsFile>,
    ) -> Shard {
        let clock = Clock::new();
        let now_ms = clock.unix_us(Instant::now()) / 1000;
        Shard {
            cfg,
            clock,
            table: CheckTable::new(now_ms),
            hosts,
            ready: VecDeque::new(),
            rechecks: BinaryHeap::new(),
            in_flight: 0,
            per_ip: HashMap::new(),
            parked: HashMap::new(),
            parked_len: 0,
            finished: VecDeque::new(),
            pool: Vec::new(),
            buffers_out: 0,
            commands,
            results,
            encoder: FrameEncoder::new(),
            ring_full: false,
            counters: Counters {
                started: 0,
                completed: [0; 128],
                overlapping: 0,
                deferred_ip_cap: 0,
                ring_stalls: 0,
                rejected_commands: 0,
                // 1 µs .. 1 hour at 2 significant digits.
                lateness_us: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                    .expect("constant histogram bounds are valid"),
            },
            fired: Vec::new(),
            dns: DnsState::default(),
            last_stats: Instant::now(),
            last_checks_logged: 0,
            draining_until: None,
            refused: Refusals::default(),
        }
    }

    /// Runs the shard until a drain completes or the process is asked to stop.
    pub async fn run(shard: Rc<RefCell<Shard>>) {
        loop {
            let stop = Shard::tick(&shard);
            if stop {
                return;
            }
            let pause = shard.borrow().pause();
            glommio::timer::sleep(pause).await;
        }
    }

    /// How long to sleep before the next tick: one tick while anything is pending, else until
    /// the wheel's next due check (at most IDLE_TICK_MAX). A quiet shard costs ~10x less.
    fn pause(&self) -> Duration {
        let busy = self.in_flight > 0
            || !self.ready.is_empty()
            || !self.finished.is_empty()
            || self.draining_until.is_some()
            || self.dns.waiting > 0
            || self.commands.has_data();
        if busy {
            return TICK;
        }
        let horizon = IDLE_TICK_MAX.as_millis() as u64;
        let mut next = self
            .table
            .next_due_within(horizon)
            .map_or(horizon, |t| t.saturating_sub(self.table.wheel_ms()));
        if let Some(Reverse(r)) = self.rechecks.peek() {
            next = next.min(r.due_ms.saturating_sub(self.table.wheel_ms()));
        }
        Duration::from_millis(next.clamp(1, horizon))
    }

    /// One pacer step; true when the shard should stop.
    fn tick(rc: &Rc<RefCell<Shard>>) -> bool {
        let mut s = rc.borrow_mut();
        let now = Instant::now();
        let now_us = s.clock.unix_us(now);
        s.results.heartbeat();
        s.commands.heartbeat();
        if shutdown::requested() && s.draining_until.is_none() {
            s.draining_until = Some(now + Duration::from_secs(5));
        }
        s.apply_commands(now_us / 1000);
        if s.draining_until.is_none() {
            s.collect_due(now_us / 1000);
        }
        s.move_finished_to_ring();
        if s.draining_until.is_none() && !s.ring_full {
            s.start_probes(rc, now);
        }
        if now.duration_since(s.last_stats) >= STATS_EVERY {
            s.last_stats = now;
            s.publish_stats(now_us);
            // Rings deleted under us (an operator cleaned up, a test's temp dir went away):
            // nobody can ever read our results again, so stop instead of probing for no one.
            if s.cfg.stop_when_ring_deleted
                && s.draining_until.is_none()
                && !s.results.ring().path().exists()
            {
                eprintln!(
                    "jetmon-prober: shard {}: {} was deleted; stopping",
                    s.cfg.id,
                    s.results.ring().path().display()
                );
                s.draining_until = Some(now);
            }
        }
        s.results.flush();
        match s.draining_until {
            Some(deadline) => (s.in_flight == 0 && s.finished.is_empty()) || now >= deadline,
            None => false,
        }
    }

    fn apply_commands(&mut self, now_ms: u64) {
        let mut drained = false;
        for _ in 0..MAX_COMMANDS_PER_TICK {
            let command = match self.commands.pop() {
                Ok(Some(r)) if r.kind == KIND_COMMAND => decode_command(r.payload),
                Ok(Some(r)) => {
                    eprintln!(
                        "jetmon-prober: shard {}: ignoring ring record of kind {}",
                        self.cfg.id, r.kind
                    );
                    continue;
                }
                Ok(None) => {
                    drained = true;
                    break;
                }
                Err(e) => {
                    eprintln!("jetmon-prober: shard {}: {e}", self.cfg.id);
                    continue;
                }
            };
            match command {
                Ok(c) => self.apply(c, now_ms),
                Err(e) => {
                    self.counters.rejected_commands += 1;
                    eprintln!(
                        "jetmon-prober: shard {}: rejected command: {e}",
                        self.cfg.id
                    );
                }
            }
        }
        // Applied commands live in memory only; control re-sends everything after a restart.
        self.commands.commit();
        // Logged once a burst of commands is fully applied, not on every tick of a long load.
        if drained && self.table.len() != self.last_checks_logged {
            self.last_checks_logged = self.table.len();
            eprintln!(
                "jetmon-prober: shard {}: {} checks configured",
                self.cfg.id,
                self.table.len()
            );
        }
    }

    fn apply(&mut self, command: Command, now_ms: u64) {
        match command {
            Command::Upsert(spec) => match Refused::judge(&spec) {
                None => {
                    self.refused.remove(spec.check_id);
                    self.table.upsert(&spec, now_ms);
                }
                Some(refused) => {
                    self.counters.rejected_commands += 1;
                    eprintln!(
                        "jetmon-prober: shard {}: check {}: {}",
                        self.cfg.id, spec.check_id, refused.note
                    );
                    self.table.remove(spec.check_id);
                    self.refused.insert(spec.check_id, refused);
                    self.emit_refused(spec.check_id, ProbeOrigin::Scheduled, 0, now_ms);
                }
            },
            Command::Remove { check_id } => {
                self.table.remove(check_id);
                self.refused.remove(check_id);
            }
            Command::TriggerNow {
                check_id,
                request_id,
            } if self.refused.contains(check_id) => {
                self.emit_refused(check_id, ProbeOrigin::TriggerNow, request_id, now_ms);
            }
            Command::Recheck {
                check_id,
                request_id,
                count,
                ..
            } if count > 0 && self.refused.contains(check_id) => {
                self.emit_refused(check_id, ProbeOrigin::Recheck, request_id, now_ms);
            }
            Command::TriggerNow {
                check_id,
                request_id,
            } => {
                self.ready.push_front(Ready {
                    check_id,
                    due_ms: now_ms,
                    origin: ProbeOrigin::TriggerNow,
                    request_id,
                    holds_flag: false,
                    started_us: 0,
                    dns_us: 0,
                });
            }
            Command::Recheck {
                check_id,
                request_id,
                count,
                spacing_ms,
            } => {
                if count > 0 {
                    self.rechecks.push(Reverse(Recheck {
                        due_ms: now_ms + u64::from(spacing_ms),
                        check_id,
                        request_id,
                        remaining: count,
                        spacing_ms,
                    }));
                }
            }
            Command::Pause { check_id, paused } => {
                self.table
                    .set_paused((check_id != 0).then_some(check_id), paused, now_ms);
            }
            Command::Drain { deadline_ms } => {
                let deadline = Instant::now() + Duration::from_millis(u64::from(deadline_ms));
                self.draining_until =
                    Some(self.draining_until.map_or(deadline, |d| d.min(deadline)));
            }
        }
    }

    /// The result of a check refused at configuration: at once, without the network.
    fn emit_refused(&mut self, check_id: u64, origin: ProbeOrigin, request_id: u64, now_ms: u64) {
        let Some(r) = self.refused.get(check_id) else {
            return;
        };
        let result = r.result(
            check_id,
            origin,
            request_id,
            now_ms * 1000,
            self.cfg.vantage_id,
            self.cfg.id,
        );
        let extras = Box::new(Extras {
            note: Some(r.note.clone()),
            ..Extras::default()
        });
        self.complete(result, Some(extras));
    }

    fn collect_due(&mut self, now_ms: u64) {
        let mut fired = std::mem::take(&mut self.fired);
        self.table.advance(now_ms, &mut fired);
        for f in fired.drain(..) {
            let r = self.table.record(f.idx);
            let check_id = r.check_id;
            if self.table.set_in_flight(f.idx, true) {
                // Still probing the previous occurrence (a hanging site): skip this one.
                self.counters.overlapping += 1;
                continue;
            }
            self.ready.push_back(Ready {
                check_id,
                due_ms: f.due_ms,
                origin: ProbeOrigin::Scheduled,
                request_id: 0,
                holds_flag: true,
                started_us: 0,
                dns_us: 0,
            });
        }
        self.fired = fired;
        while let Some(Reverse(r)) = self.rechecks.peek().copied() {
            if r.due_ms > now_ms {
                break;
            }
            self.rechecks.pop();
            self.ready.push_back(Ready {
                check_id: r.check_id,
                due_ms: r.due_ms,
                origin: ProbeOrigin::Recheck,
                request_id: r.request_id,
                holds_flag: false,
                started_us: 0,
                dns_us: 0,
            });
            if r.remaining > 1 {
                self.rechecks.push(Reverse(Recheck {
                    due_ms: r.due_ms + u64::from(r.spacing_ms),
                    remaining: r.remaining - 1,
                    ..r
                }));
            }
        }
    }

    fn start_probes(&mut self, rc: &Rc<RefCell<Shard>>, now: Instant) {
        let now_us = self.clock.unix_us(now);
        let now_ms = now_us / 1000;
        // Each ready entry is looked at once per tick at most: entries deferred by the per-IP
        // limit go to the back and wait for the next tick.
        let mut budget = self.ready.len();
        while budget > 0 && self.in_flight < self.cfg.max_in_flight {
            budget -= 1;
            let Some(mut ready) = self.ready.pop_front() else {
                break;
            };
            let Some(idx) = self.table.index_of(ready.check_id) else {
                continue;
            };
            if !ready.holds_flag {
                if self.table.set_in_flight(idx, true) {
                    // A re-check or trigger while a probe of the check runs: next tick.
                    self.ready.push_back(ready);
                    continue;
                }
                ready.holds_flag = true;
            }
            if ready.started_us == 0 {
                ready.started_us = now_us;
                self.counters.started += 1;
                let lateness = now_us.saturating_sub(ready.due_ms * 1000);
                let _ = self.counters.lateness_us.record(lateness.max(1));
            }
            let check_type = self.table.record(idx).check_type;
            if check_type == CheckType::Dns {
                self.start_dns_check(rc, idx, ready, now);
                continue;
            }
            let mut bufs = self.pool.pop().unwrap_or_default();
            bufs.target.clear();
            bufs.target.push_str(self.table.target(idx));
            let pref = self.table.settings(idx).ip_preference;
            // Resolve, then judge the exact address we would dial (no DNS-rebinding gap).
            let step = match parse_target(check_type, &bufs.target) {
                Err(_) => Step::Failed(monitor_side(Outcome::LocalResource)),
                Ok(t) => self.resolve(&t, pref, ready.check_id, now_ms),
            };
            let addr = match step {
                Step::Dial(a) => a,
                Step::Failed(report) => {
                    self.pool.push(bufs);
                    self.finish_early(idx, ready, &report);
                    continue;
                }
                Step::Wait(host, rtype) => {
                    self.pool.push(bufs);
                    let timeout =
                        Duration::from_millis(u64::from(self.table.record(idx).timeout_ms));
                    self.wait_for_dns(rc, host, rtype, ready, now + timeout);
                    continue;
                }
            };
            let per_ip = self.per_ip.entry(addr.ip()).or_insert(0);
            if *per_ip >= self.cfg.max_per_ip {
                self.counters.deferred_ip_cap += 1;
                self.pool.push(bufs);
                self.parked.entry(addr.ip()).or_default().push_back(ready);
                self.parked_len += 1;
                continue;
            }
            *per_ip += 1;
            self.in_flight += 1;
            self.buffers_out += 1;
            let settings = self.table.settings(idx);
            // The check's timeout covers its whole run, name resolution included.
            let timeout = Duration::from_millis(u64::from(self.table.record(idx).timeout_ms));
            let deadline =
                now + timeout.saturating_sub(Duration::from_micros(u64::from(ready.dns_us)));
            let user_agent = self.cfg.user_agent.clone();
            let tls = self.cfg.tls.clone();
            let shard = rc.clone();
            glommio::spawn_local(async move {
                // The same string parsed a moment ago, so this cannot fail; if it ever did,
                // the failure would be ours (monitor-side), never the site's.
                let url = std::mem::take(&mut bufs.target);
                let report = match (check_type, parse_target(check_type, &url)) {
                    (CheckType::Tcp, Ok(_)) => {
                        probe::tcp(addr, settings.tcp_banner.as_deref(), deadline, &mut bufs).await
                    }
                    (_, Ok(target)) => {
                        Shard::http_chain(
                            &shard,
                            ready.check_id,
                            (&url, &target, addr),
                            &settings,
                            &user_agent,
                            deadline,
                            &mut bufs,
                            &tls,
                        )
                        .await
                    }
                    (_, Err(_)) => monitor_side(Outcome::LocalResource),
                };
                bufs.target = url;
                let mut s = shard.borrow_mut();
                s.finish_probe(ready, Some(addr.ip()), &report, bufs);
            })
            .detach();
        }
    }

    /// The address to dial for a target, from its literal, /etc/hosts or the DNS cache, after
    /// probe safety judged the name and the whole answer set.
    fn resolve(&self, t: &Target<'_>, pref: IpPreference, check_id: u64, now_ms: u64) -> Step {
        if let Err(why) = self.cfg.safety.check_host(t.host) {
            return Step::Failed(blocked(why));
        }
        match resolve_local(t, &self.hosts) {
            Resolution::Literal(a) | Resolution::Hosts(a) => match self.cfg.safety.check_dial(a) {
                Ok(()) => Step::Dial(a),
                Err(why) => Step::Failed(ProbeReport {
                    blocked_ip: Some(a.ip()),
                    ..blocked(why)
                }),
            },
            Resolution::NeedsDns => match self.dns.lookup(t.host, pref, now_ms) {
                Lookup::Found(ips) => match self.cfg.safety.check_answers(&ips, t.port) {
                    // Checks of a name with several addresses spread over them.
                    Ok(()) => Step::Dial(SocketAddr::new(
                        ips[(jetmon_shared::check::stable_hash(check_id) as usize) % ips.len()],
                        t.port,
                    )),
                    Err(why) => Step::Failed(ProbeReport {
                        blocked_ip: self.cfg.safety.first_refused(&ips, t.port),
                        ..blocked(why)
                    }),
                },
                Lookup::Failed(report) => Step::Failed(report),
                Lookup::Missing(rtype) => Step::Wait(Box::from(t.host), rtype),
            },
        }
    }

    /// Parks `ready` until (`host`, `rtype`) is resolved, starting the query if it is the
    /// first probe to need that name.
    fn wait_for_dns(
        &mut self,
        rc: &Rc<RefCell<Shard>>,
        host: Box<str>,
        rtype: RecordType,
        ready: Ready,
        deadline: Instant,
    ) {
        self.dns.waiting += 1;
        let key = (host, rtype);
        if let Some(waiters) = self.dns.pending.get_mut(&key) {
            waiters.push(ready);
            return;
        }
        let name = key.0.clone();
        self.dns.pending.insert(key, vec![ready]);
        let servers = self.cfg.resolvers.clone();
        let canary_name = self.cfg.resolver_canary.clone();
        let first = self.dns.next_server;
        self.dns.next_server = self.dns.next_server.wrapping_add(1);
        let shard = rc.clone();
        glommio::spawn_local(async move {
            let started = Instant::now();
            let (answer, canary) = Shard::query_addresses(
                &shard,
                &servers,
                first,
                &canary_name,
                &name,
                rtype,
                deadline,
            )
            .await;
            let took_us = micros(started.elapsed());
            let mut s = shard.borrow_mut();
            let now_ms = s.clock.unix_us(Instant::now()) / 1000;
            s.dns.canary_result(canary, now_ms);
            s.resolved(name, rtype, answer, took_us);
        })
        .detach();
    }

    /// Asks our resolvers for a name's addresses of one type, and the canary when the answer
    /// may be our resolvers' failure rather than the name's.
    async fn query_addresses(
        shard: &Rc<RefCell<Shard>>,
        servers: &[SocketAddr],
        first: usize,
        canary_name: &str,
        name: &str,
        rtype: RecordType,
        deadline: Instant,
    ) -> (Result<Answer, NoAnswer>, Option<bool>) {
        let answer =
            resolver::query(
                servers,
                first,
                name,
                rtype,
                deadline,
                |b, id| match dns::parse_response(b, id, name, rtype) {
                    Ok(Answer::Truncated) => Ok(Parsed::Truncated),
                    Ok(a) => Ok(Parsed::Done(a)),
                    Err(e) => e.as_answer().map(Parsed::Done).ok_or(e),
                },
            )
            .await;
        let canary =
            Shard::canary_if_needed(shard, &answer, servers, first, canary_name, deadline).await;
        (answer, canary)
    }

    /// When a query failed in a way that may be ours and we have no recent evidence either
    /// way, asks the canary (within the same deadline) so the failure lands on the right side.
    async fn canary_if_needed(
        shard: &Rc<RefCell<Shard>>,
        answer: &Result<Answer, NoAnswer>,
        servers: &[SocketAddr],
        first: usize,
        canary_name: &str,
        deadline: Instant,
    ) -> Option<bool> {
        let needed = ambiguous(answer) && {
            let s = shard.borrow();
            s.dns.needs_canary(s.clock.unix_us(Instant::now()) / 1000)
        };
        if needed {
            Some(resolver::canary(servers, first, canary_name, deadline).await)
        } else {
            None
        }
    }

    /// A query finished: cache what it says and send its waiting probes on (or finish them).
    fn resolved(
        &mut self,
        name: Box<str>,
        rtype: RecordType,
        answer: Result<Answer, NoAnswer>,
        took_us: u32,
    ) {
        let unavailable = self.absorb_answer(&name, rtype, &answer);
        let waiters = self.dns.pending.remove(&(name, rtype)).unwrap_or_default();
        self.dns.waiting -= waiters.len();
        for mut ready in waiters {
            ready.dns_us = ready.dns_us.saturating_add(took_us);
            match &unavailable {
                // Not cached (our resolvers are down): finish here rather than ask again.
                Some(report) => {
                    if let Some(idx) = self.table.index_of(ready.check_id) {
                        self.finish_early(idx, ready, report);
                    }
                }
                // The cache now answers; the probe goes on at the next tick.
                None => self.ready.push_front(ready),
            }
        }
    }

    /// Caches what a query says (its addresses or the name's failure). Returns the report
    /// when the failure is ours (`resolver_unavailable`), which is never cached.
    fn absorb_answer(
        &mut self,
        name: &str,
        rtype: RecordType,
        answer: &Result<Answer, NoAnswer>,
    ) -> Option<ProbeReport> {
        let now_ms = self.clock.unix_us(Instant::now()) / 1000;
        let failure = match answer {
            Ok(
                a @ (Answer::Addresses { .. } | Answer::NxDomain { .. } | Answer::NoRecords { .. }),
            ) => {
                self.dns.last_good_ms = Some(now_ms);
                self.dns.cache.put(name, rtype, a, now_ms);
                None
            }
            Ok(a) => {
                let report = self.dns.failure_report(
                    now_ms,
                    a.failure().unwrap_or(Outcome::DnsServfail),
                    a.detail(),
                );
                if report.outcome != Outcome::ResolverUnavailable {
                    self.dns.cache.put(name, rtype, a, now_ms);
                }
                Some(report)
            }
            Err(NoAnswer) => {
                let report =
                    self.dns
                        .failure_report(now_ms, Outcome::DnsServfail, dns::detail::TIMEOUT);
                if report.outcome != Outcome::ResolverUnavailable {
                    self.dns
                        .cache
                        .put_failure(name, rtype, report.outcome, report.detail, now_ms);
                }
                Some(report)
            }
        };
        failure.filter(|r| r.outcome == Outcome::ResolverUnavailable)
    }

    /// Resolves a redirect hop's target from inside its probe task: the cache, else a query
    /// of its own (hops are rare; they do not join other probes' queries), then probe safety
    /// on the answer set and the address.
    async fn resolve_hop(
        shard: &Rc<RefCell<Shard>>,
        t: &Target<'_>,
        pref: IpPreference,
        check_id: u64,
        deadline: Instant,
    ) -> Result<SocketAddr, ProbeReport> {
        // At most one query per address family (A, then AAAA on "no records").
        for _ in 0..3 {
            let (name, rtype, servers, canary_name, first) = {
                let mut s = shard.borrow_mut();
                let now_ms = s.clock.unix_us(Instant::now()) / 1000;
                match s.resolve(t, pref, check_id, now_ms) {
                    Step::Dial(a) => return Ok(a),
                    Step::Failed(report) => return Err(report),
                    Step::Wait(name, rtype) => {
                        let first = s.dns.next_server;
                        s.dns.next_server = s.dns.next_server.wrapping_add(1);
                        (
                            name,
                            rtype,
                            s.cfg.resolvers.clone(),
                            s.cfg.resolver_canary.clone(),
                            first,
                        )
                    }
                }
            };
            let (answer, canary) = Shard::query_addresses(
                shard,
                &servers,
                first,
                &canary_name,
                &name,
                rtype,
                deadline,
            )
            .await;
            let mut s = shard.borrow_mut();
            let now_ms = s.clock.unix_us(Instant::now()) / 1000;
            s.dns.canary_result(canary, now_ms);
            if let Some(report) = s.absorb_answer(&name, rtype, &answer) {
                return Err(report);
            }
        }
        Err(monitor_side(Outcome::ResolverUnavailable))
    }

    /// An HTTP(S) check: the first exchange, then each redirect hop per the check's policy.
    /// Phases are the final hop's, except `total_us`, which covers the whole chain.
    #[allow(clippy::too_many_arguments)]
    async fn http_chain(
        shard: &Rc<RefCell<Shard>>,
        check_id: u64,
        first: (&str, &Target<'_>, SocketAddr),
        settings: &Settings,
        user_agent: &str,
        deadline: Instant,
        bufs: &mut ProbeBuffers,
        tls: &Arc<rustls::ClientConfig>,
    ) -> ProbeReport {
        let started = Instant::now();
        let (url, target, addr) = first;
        // Pooled buffers: the chain is this probe's only.
        bufs.chain.clear();
        let mut report = probe::http(target, addr, settings, user_agent, deadline, bufs, tls).await;
        if !report.redirect {
            return report;
        }
        let original = url.to_owned();
        let mut current = original.clone();
        let mut seen = vec![original.clone()];
        let mut hops: u8 = 0;
        let mut flags = 0u8;
        let limit = settings.max_redirects;
        let finish = |mut r: ProbeReport, hops: u8, flags: u8| {
            r.redirects = hops;
            r.flags |= flags;
            r.phases.total_us = micros(started.elapsed());
            r
        };
        loop {
            if settings.redirect_policy == RedirectPolicy::Fail {
                report.outcome = Outcome::RedirectPolicy;
                report.redirect = false;
                return finish(report, hops, flags);
            }
            let loop_or_limit = |d: u16| ProbeReport {
                detail: d,
                http_status: report.http_status,
                ..monitor_side(Outcome::RedirectLoopOrLimit)
            };
            if hops >= limit {
                return finish(loop_or_limit(redirect::detail::TOO_MANY_HOPS), hops, flags);
            }
            let next = match redirect::next_hop(&current, &bufs.location) {
                Ok(n) => n,
                Err(redirect::BadLocation::TooLong) => {
                    return finish(loop_or_limit(redirect::detail::URL_TOO_LONG), hops, flags);
                }
                Err(redirect::BadLocation::Unsafe(why)) => {
                    // The note names what the server wrote.
                    bufs.final_url.clear();
                    bufs.final_url
                        .push_str(&jetmon_shared::check::redact_userinfo(
                            &String::from_utf8_lossy(&bufs.location),
                        ));
                    return finish(
                        ProbeReport {
                            http_status: report.http_status,
                            ..blocked(why)
                        },
                        hops,
                        flags,
                    );
                }
                Err(redirect::BadLocation::Invalid) => {
                    let r = ProbeReport {
                        detail: crate::proto::http::Detail::BadLocation as u16,
                        http_status: report.http_status,
                        ..monitor_side(Outcome::HttpMalformed)
                    };
                    return finish(r, hops, flags);
                }
            };
            hops += 1;
            bufs.chain.push((report.http_status, next.url.clone()));
            if next.downgrade {
                flags |= FLAG_REDIRECT_DOWNGRADE;
            }
            if seen.contains(&next.url) {
                return finish(loop_or_limit(redirect::detail::LOOP), hops, flags);
            }
            seen.push(next.url.clone());
            current = next.url;
            if redirect::host_of(&current) != redirect::host_of(&original) {
                flags |= FLAG_REDIRECT_HOST_CHANGED;
            } else {
                flags &= !FLAG_REDIRECT_HOST_CHANGED;
            }
            bufs.final_url.clear();
            bufs.final_url.push_str(&current);
            let Ok(target) = Target::parse_url(&current) else {
                return finish(monitor_side(Outcome::LocalResource), hops, flags);
            };
            let addr = match Shard::resolve_hop(
                shard,
                &target,
                settings.ip_preference,
                check_id,
                deadline,
            )
            .await
            {
                Ok(a) => a,
                Err(r) => return finish(r, hops, flags),
            };
            report = probe::http(&target, addr, settings, user_agent, deadline, bufs, tls).await;
            if !report.redirect {
                // Policy `alert`: a completed chain that ends elsewhere or on plain http.
                let downgraded = original
                    .get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
                    && current
                        .get(..7)
                        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
                let mut flags = flags;
                if settings.redirect_policy == RedirectPolicy::Alert
                    && (downgraded || flags & FLAG_REDIRECT_HOST_CHANGED != 0)
                {
                    flags |= FLAG_REDIRECT_ALERT;
                }
                return finish(report, hops, flags);
            }
        }
    }

    /// A `dns` check: one query to our resolvers, no cache (it checks what DNS says now).
    fn start_dns_check(&mut self, rc: &Rc<RefCell<Shard>>, idx: u32, ready: Ready, now: Instant) {
        let settings = self.table.settings(idx);
        let name: Box<str> = Box::from(self.table.target(idx));
        let rtype = record_type(settings.dns_record_type);
        let deadline = now + Duration::from_millis(u64::from(self.table.record(idx).timeout_ms));
        let servers = self.cfg.resolvers.clone();
        let canary_name = self.cfg.resolver_canary.clone();
        let first = self.dns.next_server;
        self.dns.next_server = self.dns.next_server.wrapping_add(1);
        self.in_flight += 1;
        self.buffers_out += 1;
        let bufs = self.pool.pop().unwrap_or_default();
        let shard = rc.clone();
        glommio::spawn_local(async move {
            let started = Instant::now();
            let values = resolver::query(&servers, first, &name, rtype, deadline, |b, id| {
                match dns::parse_values(b, id, &name, rtype) {
                    Ok(dns::Values::Negative(Answer::Truncated)) => Ok(Parsed::Truncated),
                    Ok(v) => Ok(Parsed::Done(v)),
                    Err(e) => e
                        .as_answer()
                        .map(|a| Parsed::Done(dns::Values::Negative(a)))
                        .ok_or(e),
                }
            })
            .await;
            let as_answer = match &values {
                Ok(dns::Values::Negative(a)) => Ok(a.clone()),
                Ok(dns::Values::Found(_)) => Ok(Answer::NoRecords { ttl_s: 0 }),
                Err(NoAnswer) => Err(NoAnswer),
            };
            let canary = Shard::canary_if_needed(
                &shard,
                &as_answer,
                &servers,
                first,
                &canary_name,
                deadline,
            )
            .await;
            let took_us = micros(started.elapsed());
            let mut s = shard.borrow_mut();
            let now_ms = s.clock.unix_us(Instant::now()) / 1000;
            s.dns.canary_result(canary, now_ms);
            let mut report = match &values {
                Ok(v) => {
                    let (outcome, detail) = dns::check_values(v, &settings.dns_expected, rtype);
                    let real_answer = match v {
                        dns::Values::Found(_) => true,
                        dns::Values::Negative(a) => {
                            matches!(a, Answer::NxDomain { .. } | Answer::NoRecords { .. })
                        }
                    };
                    if real_answer {
                        s.dns.last_good_ms = Some(now_ms);
                        ProbeReport {
                            detail,
                            ..monitor_side(outcome)
                        }
                    } else {
                        s.dns.failure_report(now_ms, outcome, detail)
                    }
                }
                Err(NoAnswer) => {
                    s.dns
                        .failure_report(now_ms, Outcome::DnsServfail, dns::detail::TIMEOUT)
                }
            };
            report.phases.dns_us = took_us;
            report.phases.total_us = took_us;
            s.finish_probe(ready, None, &report, bufs);
        })
        .detach();
    }

    /// Finishes a check that never reached the network (refused by safety, a DNS failure).
    fn finish_early(&mut self, idx: u32, ready: Ready, report: &ProbeReport) {
        self.table.set_in_flight(idx, false);
        let result = self.result_of(idx, ready, report);
        let extras = refusal_note(report, self.table.target(idx)).map(|note| {
            Box::new(Extras {
                note: Some(note),
                ..Extras::default()
            })
        });
        self.complete(result, extras);
    }

    fn finish_probe(
        &mut self,
        ready: Ready,
        ip: Option<IpAddr>,
        report: &ProbeReport,
        mut bufs: ProbeBuffers,
    ) {
        self.in_flight -= 1;
        self.buffers_out -= 1;
        if let Some(ip) = ip {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
            // A slot for this IP is free: the longest-waiting probe parked behind it goes next.
            if let Some(queue) = self.parked.get_mut(&ip) {
                if let Some(next) = queue.pop_front() {
                    self.parked_len -= 1;
                    self.ready.push_front(next);
                }
                if queue.is_empty() {
                    self.parked.remove(&ip);
                }
            }
        }
        // Probes that reach here were dialled: a refusal is a redirect hop's, named by where
        // it led (its Location as written, or the hop's URL).
        let refused = (report.outcome == Outcome::ProbeSafetyBlocked)
            .then(|| refusal_note(report, &format!("redirect to {}", bufs.final_url)))
            .flatten();
        let extras = (report.tls.not_after_s != 0
            || report.tls.version != 0
            || report.redirects > 0
            || refused.is_some())
        .then(|| {
            Box::new(Extras {
                final_url: (report.redirects > 0).then(|| bufs.final_url.clone()),
                issuer: bufs.issuer.clone(),
                san_count: report.tls.san_count,
                cipher: report.tls.cipher,
                note: refused,
                chain: std::mem::take(&mut bufs.chain),
            })
        });
        if self.pool.len() < MAX_POOLED_BUFFERS {
            self.pool.push(bufs);
        }
        // The check may have been removed (or replaced) while we probed.
        if let Some(idx) = self.table.index_of(ready.check_id) {
            self.table.set_in_flight(idx, false);
            let result = self.result_of(idx, ready, report);
            self.complete(result, extras);
        }
    }

    fn result_of(&self, idx: u32, ready: Ready, report: &ProbeReport) -> ProbeResult {
        let r = self.table.record(idx);
        let started_us = ready.started_us;
        let mut phases = report.phases;
        if ready.dns_us > 0 {
            phases.dns_us = ready.dns_us;
            phases.total_us = phases.total_us.saturating_add(ready.dns_us);
        }
        let scheduled_us = ready.due_ms * 1000;
        let late = started_us.saturating_sub(scheduled_us) > self.cfg.lateness_threshold_us;
        ProbeResult {
            check_id: r.check_id,
            site_id: r.site_id,
            seq: 0, // assigned when the frame enters the ring
            scheduled_at_us: scheduled_us,
            started_at_us: started_us,
            request_id: ready.request_id,
            cert_not_after_s: report.tls.not_after_s,
            phases,
            bytes_read: report.bytes_read,
            vantage_id: self.cfg.vantage_id,
            generation: r.generation,
            http_status: report.http_status,
            outcome: report.outcome,
            detail: report.detail,
            tls_version: report.tls.version,
            shard: self.cfg.id,
            redirect_count: report.redirects,
            origin: ready.origin,
            check_type: r.check_type,
            flags: if late { FLAG_LATE } else { 0 } | report.flags,
        }
    }

    fn complete(&mut self, result: ProbeResult, extras: Option<Box<Extras>>) {
        let code = result.outcome.code() as usize;
        if code < self.counters.completed.len() {
            self.counters.completed[code] += 1;
        }
        self.finished.push_back((result, extras));
        self.move_finished_to_ring();
    }

    /// Moves finished results into the ring in order; stops (and stalls probing) when full.
    fn move_finished_to_ring(&mut self) {
        while let Some((mut result, extras)) = self.finished.pop_front() {
            result.seq = self.results.frames_pushed();
            let view = extras
                .as_deref()
                .map_or(ResultExtras::default(), |e| ResultExtras {
                    final_url: e.final_url.as_deref(),
                    cert_issuer: (!e.issuer.is_empty()).then_some(e.issuer.as_str()),
                    cert_san_count: e.san_count,
                    tls_cipher: e.cipher,
                    note: e.note.as_deref(),
                    redirect_chain: e
                        .chain
                        .iter()
                        .map(|(status, url)| RedirectHop {
                            status: *status,
                            url,
                        })
                        .collect(),
                });
            let bytes = self.encoder.result(&result, &view);
            match self.results.try_push(KIND_CHECK_RESULT, bytes) {
                Ok(()) => self.ring_full = false,
                Err(PushError::Full) => {
                    if !self.ring_full {
                        self.counters.ring_stalls += 1;
                    }
                    self.ring_full = true;
                    self.finished.push_front((result, extras));
                    return;
                }
                Err(e) => {
                    eprintln!(
                        "jetmon-prober: shard {}: dropping an unencodable result: {e}",
                        self.cfg.id
                    );
                }
            }
        }
    }

    fn publish_stats(&mut self, now_us: u64) {
        let h = &self.counters.lateness_us;
        let completed = jetmon_shared::outcome::Outcome::ALL
            .iter()
            .filter_map(|o| {
                let n = self
                    .counters
                    .completed
                    .get(o.code() as usize)
                    .copied()
                    .unwrap_or(0);
                (n > 0).then_some((*o, n))
            })
            .collect();
        let stats = ShardStats {
            shard: self.cfg.id,
            at_us: now_us,
            checks: self.table.len() as u64,
            started: self.counters.started,
            completed,
            in_flight: self.in_flight,
            ready: (self.ready.len() + self.parked_len) as u32,
            missed: self.table.missed,
            overlapping: self.counters.overlapping,
            deferred_ip_cap: self.counters.deferred_ip_cap,
            ring_stalls: self.counters.ring_stalls,
            lateness_count: h.len(),
            lateness_p50_us: h.value_at_quantile(0.5),
            lateness_p99_us: h.value_at_quantile(0.99),
            lateness_max_us: h.max(),
            buffers_in_use: self.buffers_out,
            buffers_pooled: self.pool.len() as u32,
            table_bytes: self.table.heap_bytes() as u64,
        };
        let bytes = self.encoder.stats(&stats);
        if self.results.try_push(KIND_SHARD_STATS, bytes).is_ok() {
            self.counters.lateness_us.reset();
        }
    }
}

/// The variable-length part of a result (HTTPS and redirected results only).
#[derive(Debug, Default)]
struct Extras {
    final_url: Option<String>,
    issuer: String,
    san_count: u16,
    cipher: u16,
    /// A sentence for a person (probe-safety refusals, targets refused at configuration).
    note: Option<String>,
    /// Each redirect followed: the status that redirected and where it led.
    chain: Vec<(u16, String)>,
}

/// Where resolving a target got to.
enum Step {
    Dial(SocketAddr),
    Failed(ProbeReport),
    /// The name is not cached: wait for a query of this type.
    Wait(Box<str>, RecordType),
}
