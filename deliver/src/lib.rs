//! `jetmon-deliver` owns getting the outbox's rows to their receivers (docs/notifications.md):
//! its own thread, tokio runtime and database pool; claiming due rows with a lease, at most a
//! webhook's `max_in_flight` in flight and up to [`FAST_DEPTH`] times that claimed while its
//! receiver answers fast (twice while it is slow); finished attempts written in batches by a
//! task beside the sending loop; signing each
//! body with both schemes; the HTTP client ([`http`]) with probe safety at dial time; the
//! retry ladder; one `delivery_attempts` row per try. It decides nothing about *which* rows
//! exist (that is `jetmon-outbox`, written by the store with the transitions) and it never
//! touches the engine. Dependencies point down: store, outbox, secrets, shared.
//!
//! A worker that dies, or control under `kill -9`, leaves its leased rows to be claimed again
//! once the lease (`control.delivery_lease_s`) has passed: the same delivery id goes out
//! again. A database outage stops claiming and keeps finished attempts in memory until they
//! are written; nothing is lost, at worst re-sent.

pub mod http;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use jetmon_outbox::ladder::{self, Answer as Verdict, DEFAULT_LADDER_S};
use jetmon_outbox::{Kind, sign};
use jetmon_secrets::Vault;
use jetmon_shared::safety::ProbeSafety;
use jetmon_store::{Claimed, DeliveryNext, Finished, Store, WebhookTarget};
use tokio::sync::{Notify, mpsc};

/// How often due rows are looked for when nothing nudges.
const DISCOVER_EVERY: Duration = Duration::from_millis(250);
/// How often the webhooks (targets, secrets) are read again.
const TARGETS_EVERY: Duration = Duration::from_secs(2);
/// A nudge looks for due rows at most this often (a busy webhook stays hot without it).
const NUDGE_EVERY: Duration = Duration::from_millis(50);
/// Back-off while the database is away.
const DB_RETRY: Duration = Duration::from_secs(1);
/// A subscription whose attempts keep ending (one ended within this long, or none is in
/// flight) is fast: it may have [`FAST_DEPTH`] times its cap claimed, so that one claim and
/// one finishing transaction move many rows (P10: 10,000 sites down at once). Otherwise two
/// times its cap, and what was queued beyond that goes back to the outbox, so that rows do
/// not sit leased behind a hanging receiver.
const FAST_WITHIN: Duration = Duration::from_secs(1);
const FAST_DEPTH: u32 = 64;

/// What the deliverer needs.
pub struct Options {
    pub database_url: String,
    /// This process's name (the lease owner is `<host>:<pid>:<start>`).
    pub host: String,
    pub vault: Arc<Vault>,
    /// Probe safety for receivers, with `control.delivery_allow_cidrs`.
    pub safety: ProbeSafety,
    pub lease: Duration,
    pub extra_ca: Option<PathBuf>,
    pub user_agent: String,
    /// The WPCOM v1 notice's URL and bearer token, when configured.
    pub wpcom: Option<(String, String)>,
}

/// The breaker of the WPCOM notice: open after this many failures in a row…
const BREAKER_FAILURES: u32 = 5;
/// …for this long, then one attempt at a time until one succeeds.
const BREAKER_OPEN: Duration = Duration::from_secs(30);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub abandoned: AtomicU64,
    pub refused: AtomicU64,
    pub in_flight: AtomicU64,
    pub db_errors: AtomicU64,
    /// 1 while the WPCOM notice's breaker is open.
    pub wpcom_breaker_open: AtomicU64,
}

/// The running deliverer: nudge it when rows were written, stop it on the way out.
pub struct Deliverer {
    notify: Arc<Notify>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<Counters>,
}

impl Deliverer {
    /// Starts the thread; fails when the client cannot be built (a bad CA file).
    pub fn start(o: Options) -> Result<Deliverer> {
        let client = http::Client::new(o.safety.clone(), o.extra_ca.as_deref(), &o.user_agent)?;
        let notify = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (n, s, c) = (notify.clone(), stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("jetmon-deliver".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("jetmon: deliveries: no runtime: {e}");
                        return;
                    }
                };
                rt.block_on(run(o, client, n, s, c));
            })
            .context("starting the delivery thread")?;
        Ok(Deliverer {
            notify,
            stop,
            thread: Some(thread),
            counters,
        })
    }

    /// New rows may be due: look now rather than at the next tick.
    pub fn nudge(&self) {
        self.notify.notify_one();
    }

    /// Prometheus text of the counters.
    pub fn metrics(&self) -> String {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP jetmon_deliveries_total Delivery attempts by outcome.\n\
             # TYPE jetmon_deliveries_total counter\n\
             jetmon_deliveries_total{{outcome=\"delivered\"}} {}\n\
             jetmon_deliveries_total{{outcome=\"failed\"}} {}\n\
             jetmon_deliveries_total{{outcome=\"abandoned\"}} {}\n\
             jetmon_deliveries_total{{outcome=\"refused\"}} {}\n\
             # HELP jetmon_deliveries_in_flight Deliveries being sent now.\n\
             # TYPE jetmon_deliveries_in_flight gauge\n\
             jetmon_deliveries_in_flight {}\n\
             # HELP jetmon_delivery_db_errors_total Database errors of the deliverer (it retries).\n\
             # TYPE jetmon_delivery_db_errors_total counter\n\
             jetmon_delivery_db_errors_total {}\n\
             # HELP jetmon_wpcom_breaker_open Whether the WPCOM notice circuit breaker is open (1) or closed (0).\n\
             # TYPE jetmon_wpcom_breaker_open gauge\n\
             jetmon_wpcom_breaker_open {}\n",
            g(&c.delivered),
            g(&c.failed),
            g(&c.abandoned),
            g(&c.refused),
            g(&c.in_flight),
            g(&c.db_errors),
            g(&c.wpcom_breaker_open),
        )
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.notify.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Where a subscription's rows go: a webhook (signed), or the WPCOM notice (a bearer token).
struct Dest {
    target: WebhookTarget,
    bearer: Option<String>,
}

/// The circuit breaker of a destination that has one (the WPCOM notice).
#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// One subscription as the loop keeps it.
struct Sub {
    kind: Kind,
    dest: Arc<Dest>,
    in_flight: u32,
    /// When an attempt of it last ended.
    last_end: Option<Instant>,
    queue: VecDeque<Claimed>,
    /// It may have more due rows than it claimed last time.
    hot: bool,
    breaker: Option<Breaker>,
}

impl Sub {
    fn new(kind: Kind, dest: Dest) -> Sub {
        Sub {
            breaker: (kind == Kind::Wpcom).then(Breaker::default),
            kind,
            dest: Arc::new(dest),
            in_flight: 0,
            last_end: None,
            queue: VecDeque::new(),
            hot: true,
        }
    }

    /// How many may be in flight now: the cap; none while the breaker is open; one while it
    /// is half-open (after its pause, until an attempt succeeds).
    fn cap(&self) -> u32 {
        match &self.breaker {
            Some(b) if b.open_until.is_some_and(|t| Instant::now() < t) => 0,
            Some(b) if b.failures >= BREAKER_FAILURES => 1,
            _ => self.dest.target.max_in_flight,
        }
    }

    fn fast(&self) -> bool {
        self.in_flight == 0 || self.last_end.is_some_and(|t| t.elapsed() < FAST_WITHIN)
    }

    /// How many rows it may hold, in flight and queued.
    fn depth(&self) -> u32 {
        let factor = if self.fast() { FAST_DEPTH } else { 2 };
        factor * self.cap()
    }

    fn room(&self) -> u32 {
        self.depth()
            .saturating_sub(self.in_flight + u32::try_from(self.queue.len()).unwrap_or(u32::MAX))
    }

    /// Worth a claim: it may have due rows and room for half its depth (one claim brings
    /// many rows rather than one per finished attempt).
    fn wants_claim(&self) -> bool {
        self.hot && self.can_send() && self.room() >= (self.depth() / 2).max(1)
    }

    /// Rows queued beyond what a slow subscription may hold, taken off the back.
    fn excess(&mut self) -> Vec<Claimed> {
        let keep = usize::try_from(self.depth().saturating_sub(self.in_flight)).unwrap_or(0);
        if self.queue.len() > keep {
            self.queue.split_off(keep).into()
        } else {
            Vec::new()
        }
    }

    fn can_send(&self) -> bool {
        self.kind == Kind::Wpcom || !self.dest.target.secrets.is_empty()
    }
}

type SubKey = (u8, u64);
/// A finishing transaction under way: the attempts it writes, and how it went.
type Writing = tokio::task::JoinHandle<(Vec<Finished>, Result<()>)>;

async fn run(
    o: Options,
    client: http::Client,
    notify: Arc<Notify>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let client = Arc::new(client);
    let owner = format!("{}:{}:{}", o.host, std::process::id(), now_us());
    let store = loop {
        match Store::open(&o.database_url, &o.host).await {
            Ok(s) => break s.with_vault(o.vault.clone()),
            Err(e) => {
                counters.db_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("jetmon: deliveries: {e:#}; retrying");
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(DB_RETRY).await;
            }
        }
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
    let mut subs: HashMap<SubKey, Sub> = HashMap::new();
    if let Some((url, token)) = &o.wpcom {
        let target = WebhookTarget {
            id: 1,
            url: url.clone(),
            max_in_flight: 4,
            retry_ladder_s: Vec::new(),
            secrets: Vec::new(),
        };
        subs.insert(
            (Kind::Wpcom.code(), 1),
            Sub::new(
                Kind::Wpcom,
                Dest {
                    target,
                    bearer: Some(token.clone()),
                },
            ),
        );
    }
    let mut finished: Vec<Finished> = Vec::new();
    let mut last_targets: Option<Instant> = None;
    let mut last_discover: Option<Instant> = None;
    // When the database last failed us; None once it is time to try again.
    let mut db_down_since: Option<Instant> = None;
    // Deliveries stopped for a database error and have not been seen to work since (the log
    // says so once each way).
    let mut paused = false;
    // Every row claimed here and not yet recorded as finished (queued, in flight, or done
    // and waiting to be written).
    let mut held: HashSet<String> = HashSet::new();
    // A database error happened: a claim may have been committed with its answer lost.
    let mut reconcile = false;
    let mut nudged = true;
    // The finished attempts being written, and their rows.
    let mut writing: Option<Writing> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = now_us();
        if db_down_since.is_some_and(|t| t.elapsed() >= DB_RETRY) {
            db_down_since = None;
        }
        // 1. What the last attempts did, in one transaction written beside the loop (one at
        //    a time; what ends meanwhile goes in the next, so a storm makes big batches). A
        //    delivered row lets its site's next row be claimed once it is written.
        if writing.is_none() && !finished.is_empty() && db_down_since.is_none() {
            let batch = std::mem::take(&mut finished);
            let (store, owner) = (store.clone(), owner.clone());
            writing = Some(tokio::spawn(async move {
                let r = store.finish_deliveries(&owner, &batch).await;
                (batch, r)
            }));
        }
        // 2. The webhooks.
        if db_down_since.is_none() && last_targets.is_none_or(|t| t.elapsed() >= TARGETS_EVERY) {
            match store.webhook_targets(now).await {
                Ok(targets) => {
                    last_targets = Some(Instant::now());
                    let w = Kind::Webhook.code();
                    let seen: HashSet<SubKey> = targets.iter().map(|t| (w, t.id)).collect();
                    for t in targets {
                        let key = (w, t.id);
                        let dest = Dest {
                            target: t,
                            bearer: None,
                        };
                        match subs.get_mut(&key) {
                            Some(s) => s.dest = Arc::new(dest),
                            None => {
                                subs.insert(key, Sub::new(Kind::Webhook, dest));
                            }
                        }
                    }
                    // A webhook disabled or deleted: what it had queued here goes back when
                    // the lease ends (or is gone with it).
                    subs.retain(|k, s| {
                        let keep = k.0 != w || seen.contains(k) || s.in_flight > 0;
                        if !keep {
                            for c in &s.queue {
                                held.remove(&c.id);
                            }
                        }
                        keep
                    });
                }
                Err(e) => db_error(&counters, &mut db_down_since, &mut paused, &e),
            }
        }
        // 2b. After an error, take up the rows this worker leased without knowing it; a
        //     row of a subscription no longer here goes back to the outbox.
        if reconcile && db_down_since.is_none() {
            match store.leased_by(&owner).await {
                Ok(rows) => {
                    reconcile = false;
                    let mut orphans = Vec::new();
                    for row in rows {
                        if held.contains(&row.id) {
                            continue;
                        }
                        match subs.get_mut(&(row.kind, row.subscription_id)) {
                            Some(s) => {
                                held.insert(row.id.clone());
                                s.queue.push_back(row);
                            }
                            None => orphans.push(row.id),
                        }
                    }
                    if let Err(e) = store.release_deliveries(&owner, &orphans).await {
                        db_error(&counters, &mut db_down_since, &mut paused, &e);
                        reconcile = true;
                    }
                }
                Err(e) => db_error(&counters, &mut db_down_since, &mut paused, &e),
            }
        }
        // 3. Time to look again: every subscription may have due rows. Looking is the claim
        //    itself (an index seek per subscription, LIMITed); a scan of every pending row
        //    would cost far more once a hanging receiver has backed thousands up. A webhook
        //    made since the last read arrives with the next read of the webhooks.
        let since = last_discover.map(|t| t.elapsed());
        let look = since.is_none_or(|e| e >= DISCOVER_EVERY || (nudged && e >= NUDGE_EVERY));
        if db_down_since.is_none() && look {
            nudged = false;
            last_discover = Some(Instant::now());
            for s in subs.values_mut() {
                s.hot = true;
            }
        }
        // 4. Claim for the hot ones with room, then send what the caps allow.
        let lease_until = now + u64::try_from(o.lease.as_micros()).unwrap_or(u64::MAX);
        let mut breaker_open = false;
        for ((kind, id), s) in &mut subs {
            if db_down_since.is_some() {
                break;
            }
            breaker_open |= s
                .breaker
                .as_ref()
                .is_some_and(|b| b.failures >= BREAKER_FAILURES);
            let excess = s.excess();
            if !excess.is_empty() {
                let ids: Vec<String> = excess.into_iter().map(|c| c.id).collect();
                for id in &ids {
                    held.remove(id);
                }
                if let Err(e) = store.release_deliveries(&owner, &ids).await {
                    db_error(&counters, &mut db_down_since, &mut paused, &e);
                    reconcile = true;
                }
            }
            if s.wants_claim() {
                let want = s.room();
                match store
                    .claim_deliveries(&owner, *kind, *id, want, now, lease_until)
                    .await
                {
                    Ok(rows) => {
                        s.hot = u32::try_from(rows.len()).unwrap_or(0) >= want;
                        // A row already held (its lease ran out while it waited here) is
                        // not queued twice.
                        s.queue
                            .extend(rows.into_iter().filter(|r| held.insert(r.id.clone())));
                    }
                    Err(e) => {
                        db_error(&counters, &mut db_down_since, &mut paused, &e);
                        reconcile = true;
                    }
                }
            }
            while s.in_flight < s.cap() {
                let Some(row) = s.queue.pop_front() else {
                    break;
                };
                s.in_flight += 1;
                counters.in_flight.fetch_add(1, Ordering::Relaxed);
                let (client, dest, tx, counters) = (
                    client.clone(),
                    s.dest.clone(),
                    done_tx.clone(),
                    counters.clone(),
                );
                tokio::spawn(async move {
                    let f = attempt(&client, &dest, row, &counters).await;
                    let _ = tx.send(f);
                });
            }
        }
        if paused && db_down_since.is_none() && last_targets.is_some_and(|t| t.elapsed() < DB_RETRY)
        {
            eprintln!("jetmon: deliveries resumed: the database answers again");
            paused = false;
        }
        counters
            .wpcom_breaker_open
            .store(u64::from(breaker_open), Ordering::Relaxed);
        // 5. Wait for an attempt to end, a nudge, or the next look.
        let wait = if db_down_since.is_some() {
            DB_RETRY
        } else if nudged {
            // A nudge that came too soon after the last look: look once the pause is over.
            NUDGE_EVERY
        } else {
            DISCOVER_EVERY
        };
        tokio::select! {
            f = done_rx.recv() => {
                if let Some(f) = f {
                    ended(&mut subs, &f, &counters);
                    finished.push(f);
                }
                while let Ok(f) = done_rx.try_recv() {
                    ended(&mut subs, &f, &counters);
                    finished.push(f);
                }
            }
            w = async {
                match writing.as_mut() {
                    Some(h) => h.await,
                    None => std::future::pending().await,
                }
            } => {
                writing = None;
                match w {
                    Ok((batch, Ok(()))) => {
                        for f in batch {
                            held.remove(&f.id);
                            if let Some(s) = subs.get_mut(&(f.kind, f.subscription_id)) {
                                s.hot = true;
                            }
                        }
                    }
                    Ok((batch, Err(e))) => {
                        db_error(&counters, &mut db_down_since, &mut paused, &e);
                        // Written first when the database answers again, in their order.
                        finished.splice(0..0, batch);
                    }
                    // Its rows stay leased here and go out again once the lease has passed.
                    Err(e) => eprintln!("jetmon: deliveries: recording attempts failed: {e}"),
                }
            }
            () = notify.notified() => nudged = true,
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Stopping: what was sent is recorded (best effort); what was claimed and not sent goes
    // back at once instead of after the lease.
    if let Some(h) = writing.take()
        && let Ok((batch, r)) = h.await
        && r.is_err()
    {
        finished.splice(0..0, batch);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while subs.values().any(|s| s.in_flight > 0) && Instant::now() < deadline {
        if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(100), done_rx.recv()).await
        {
            ended(&mut subs, &f, &counters);
            finished.push(f);
        }
    }
    let _ = store.finish_deliveries(&owner, &finished).await;
    let unsent: Vec<String> = subs
        .values()
        .flat_map(|s| s.queue.iter().map(|c| c.id.clone()))
        .collect();
    let _ = store.release_deliveries(&owner, &unsent).await;
    store.close().await;
}

fn ended(subs: &mut HashMap<SubKey, Sub>, f: &Finished, counters: &Counters) {
    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    let Some(s) = subs.get_mut(&(f.kind, f.subscription_id)) else {
        return;
    };
    s.in_flight = s.in_flight.saturating_sub(1);
    s.last_end = Some(Instant::now());
    if let Some(b) = &mut s.breaker {
        if matches!(f.next, DeliveryNext::RetryAt(_)) {
            b.failures += 1;
            if b.failures >= BREAKER_FAILURES {
                if b.open_until.is_none_or(|t| Instant::now() >= t) {
                    eprintln!(
                        "jetmon: the WPCOM notice failed {} times in a row; pausing it {} s \
                         (its notices wait in the outbox)",
                        b.failures,
                        BREAKER_OPEN.as_secs()
                    );
                }
                b.open_until = Some(Instant::now() + BREAKER_OPEN);
            }
        } else if f.next == DeliveryNext::Delivered {
            if b.failures >= BREAKER_FAILURES {
                eprintln!("jetmon: the WPCOM notice is answering again");
            }
            *b = Breaker::default();
        }
    }
}

fn db_error(
    counters: &Counters,
    since: &mut Option<Instant>,
    paused: &mut bool,
    e: &anyhow::Error,
) {
    counters.db_errors.fetch_add(1, Ordering::Relaxed);
    if !*paused {
        eprintln!("jetmon: deliveries paused: {e:#}; retrying every second, nothing is lost");
        *paused = true;
    }
    *since = Some(Instant::now());
}

/// Sends one row and says what becomes of it.
async fn attempt(
    client: &http::Client,
    dest: &Dest,
    row: Claimed,
    counters: &Counters,
) -> Finished {
    let target = &dest.target;
    let started = Instant::now();
    let at_us = now_us();
    let t = at_us / 1_000_000;
    let body = Bytes::from(row.payload.clone().into_bytes());
    let secrets: Vec<&str> = target.secrets.iter().map(String::as_str).collect();
    let headers: Vec<(&'static str, String)> = match &dest.bearer {
        // The WPCOM notice: Jetmon v1's shape, a bearer token.
        Some(token) => vec![
            ("authorization", format!("Bearer {token}")),
            ("x-jetmon-delivery", row.id.clone()),
        ],
        None => vec![
            ("x-jetmon-event", row.event_type.clone()),
            ("x-jetmon-delivery", row.id.clone()),
            ("x-jetmon-signature", sign::jetmon(&secrets, t, &body)),
            ("webhook-id", row.id.clone()),
            ("webhook-timestamp", t.to_string()),
            (
                "webhook-signature",
                sign::standard(&secrets, &row.id, t, &body),
            ),
        ],
    };
    let result = client.post(&target.url, &headers, body).await;
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let number = row.attempts + 1;
    let ladder: &[u32] = if target.retry_ladder_s.is_empty() {
        DEFAULT_LADDER_S
    } else {
        &target.retry_ladder_s
    };
    let (verdict, status, error, excerpt) = match &result {
        Ok(a) => (
            Verdict::Status(a.status),
            Some(a.status),
            None,
            Some(a.excerpt.clone()),
        ),
        Err(http::Failure::Failed(e)) => (Verdict::Failed, None, Some(e.clone()), None),
        Err(http::Failure::Refused(e)) => (Verdict::Refused, None, Some(e.clone()), None),
    };
    let next = match ladder::next(verdict, number, ladder) {
        ladder::Next::Delivered => {
            counters.delivered.fetch_add(1, Ordering::Relaxed);
            DeliveryNext::Delivered
        }
        ladder::Next::RetryIn(s) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            DeliveryNext::RetryAt(at_us + u64::from(s) * 1_000_000)
        }
        ladder::Next::Abandon => {
            if verdict == Verdict::Refused {
                counters.refused.fetch_add(1, Ordering::Relaxed);
            }
            counters.abandoned.fetch_add(1, Ordering::Relaxed);
            DeliveryNext::Abandoned
        }
        ladder::Next::Disable => {
            counters.abandoned.fetch_add(1, Ordering::Relaxed);
            DeliveryNext::Disable(format!(
                "the receiver answered 410 Gone to delivery {}",
                row.id
            ))
        }
    };
    Finished {
        id: row.id,
        kind: row.kind,
        subscription_id: row.subscription_id,
        attempt: number,
        at_us,
        duration_us,
        status,
        error,
        excerpt,
        next,
    }
}
