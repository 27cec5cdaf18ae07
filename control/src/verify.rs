//! Control's verification client (states-and-events.md, detection step 3): Seems Down events
//! whose local re-checks all failed are sent, batched, to every healthy veriflier over gRPC;
//! their votes make the verdict the engine applies. Design: docs/veriflier.md.
//!
//! Runs on a thread of its own (tokio, current-thread) so a slow or hanging veriflier never
//! holds the supervisor's loop: the supervisor hands requests over a channel and picks
//! verdicts up each tick. Each round asks every veriflier that is healthy (or whose back-off
//! has run out) with a deadline of the longest check timeout + 5 s; one that errors or times
//! out abstains and backs off (5 s doubling to 5 min). Quorum = `min(veriflier_quorum,
//! healthy)` but never below `veriflier_quorum_floor` (1 when a single veriflier is
//! configured): down votes ≥ quorum confirm, anything less is a false alarm.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jetmon_shared::config::ControlConfig;
use jetmon_shared::frames::{Command, FrameEncoder};
use jetmon_shared::outcome::{Outcome, OutcomeClass};
use jetmon_veriflier::pb;
use jetmon_veriflier::pb::veriflier_client::VeriflierClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::engine::{Verdict, Vote, VoteKind};
use crate::store::Store;

/// Requests gathered this long make one round (one call per veriflier).
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// Checks per call (the veriflier's limit).
const MAX_BATCH: usize = 500;
const DEADLINE_GRACE: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How soon requests whose checks could not be read are tried again.
const RETRY_READ: Duration = Duration::from_secs(5);

/// A veriflier's health as the metrics show it.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub name: String,
    pub healthy: bool,
    pub asked: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

struct Peer {
    client: VeriflierClient<Channel>,
    token: MetadataValue<Ascii>,
}

/// Handle the supervisor holds.
pub struct Verifier {
    tx: tokio::sync::mpsc::UnboundedSender<(u64, u64)>,
    verdicts: Receiver<Verdict>,
    pub peers: Arc<Mutex<Vec<PeerState>>>,
}

impl Verifier {
    /// Starts the client when verifliers are configured (None otherwise: local confirmation).
    /// Token and CA files are read now, so a mistake stops `jetmon up` with one line.
    pub fn start(config: &ControlConfig, host: &str) -> Result<Option<Verifier>> {
        if config.verifliers.is_empty() {
            return Ok(None);
        }
        let mut specs = Vec::new();
        for (i, p) in config.verifliers.iter().enumerate() {
            let token = jetmon_veriflier::read_token(&p.token_file)
                .with_context(|| format!("control.verifliers[{i}] ({})", p.name))?;
            let token = String::from_utf8(token)
                .ok()
                .and_then(|t| format!("Bearer {t}").parse::<MetadataValue<Ascii>>().ok())
                .with_context(|| {
                    format!(
                        "control.verifliers[{i}] ({}): the token is not printable ASCII",
                        p.name
                    )
                })?;
            let read = |f: &Option<std::path::PathBuf>| -> Result<Option<Vec<u8>>> {
                match f {
                    Some(f) => Ok(Some(std::fs::read(f).with_context(|| {
                        format!(
                            "control.verifliers[{i}] ({}): reading {}",
                            p.name,
                            f.display()
                        )
                    })?)),
                    None => Ok(None),
                }
            };
            let tls = Tls {
                server_name: p.tls_server_name.clone(),
                ca: read(&p.ca_file)?,
                identity: match (read(&p.client_cert_file)?, read(&p.client_key_file)?) {
                    (Some(c), Some(k)) => Some((c, k)),
                    (None, None) => None,
                    _ => anyhow::bail!(
                        "control.verifliers[{i}] ({}): client_cert_file and client_key_file go together",
                        p.name
                    ),
                },
            };
            specs.push((p.name.clone(), p.url.clone(), token, tls));
        }
        let peers = Arc::new(Mutex::new(
            specs
                .iter()
                .map(|(name, ..)| PeerState {
                    name: name.clone(),
                    healthy: true,
                    ..PeerState::default()
                })
                .collect::<Vec<_>>(),
        ));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (vtx, verdicts) = std::sync::mpsc::channel();
        let (url, host) = (config.database_url.clone(), host.to_owned());
        let vault = crate::secrets::vault(config);
        let detection = config.detection.clone();
        let shared = peers.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("verify runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut clients = Vec::new();
                    for (name, url, token, tls) in specs {
                        match channel(&url, &tls) {
                            Ok(ch) => clients.push(Peer {
                                client: VeriflierClient::new(ch),
                                token,
                            }),
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.context(format!("veriflier {name}"))));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    let db = (url.as_str(), host.as_str(), vault);
                    run(rx, vtx, Arc::new(clients), shared, db, detection).await;
                });
            })
            .context("starting the verification client")?;
        ready_rx
            .recv()
            .context("the verification client did not start")??;
        Ok(Some(Verifier {
            tx,
            verdicts,
            peers,
        }))
    }

    /// Asks the verifliers about a Seems Down event.
    pub fn ask(&self, check_id: u64, event_id: u64) {
        let _ = self.tx.send((check_id, event_id));
    }

    /// Prometheus families: each veriflier's health, rounds it was asked in, errors.
    pub fn metrics(&self) -> String {
        let mut t = crate::metrics::Text::default();
        let peers = self.peers.lock().map(|p| p.clone()).unwrap_or_default();
        type Read = fn(&PeerState) -> f64;
        let families: [(&str, &str, &str, Read); 3] = [
            (
                "jetmon_veriflier_healthy",
                "gauge",
                "1 while the veriflier answers (0: abstaining, backing off).",
                |p| f64::from(u8::from(p.healthy)),
            ),
            (
                "jetmon_veriflier_rounds_total",
                "counter",
                "Verification rounds the veriflier was asked in.",
                |p| p.asked as f64,
            ),
            (
                "jetmon_veriflier_errors_total",
                "counter",
                "Rounds the veriflier did not answer (error or timeout).",
                |p| p.errors as f64,
            ),
        ];
        for (name, kind, help, read) in families {
            t.family(name, kind, help);
            for p in &peers {
                t.sample(name, &[("veriflier", &p.name)], read(p));
            }
        }
        t.finish()
    }

    /// Verdicts ready now.
    pub fn verdicts(&self) -> Vec<Verdict> {
        self.verdicts.try_iter().collect()
    }
}

/// TLS material for one veriflier: a CA to trust, a client identity to present.
struct Tls {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

fn channel(url: &str, t: &Tls) -> Result<Channel> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{url:?} is not a URL"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &t.ca {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some(name) = &t.server_name {
            tls = tls.domain_name(name.clone());
        }
        if let Some((cert, key)) = &t.identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls).context("TLS to the veriflier")?;
    }
    Ok(endpoint.connect_lazy())
}

async fn run(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(u64, u64)>,
    verdicts: Sender<Verdict>,
    peers: Arc<Vec<Peer>>,
    states: Arc<Mutex<Vec<PeerState>>>,
    (url, host, vault): (&str, &str, Arc<jetmon_secrets::Vault>),
    detection: jetmon_shared::config::DetectionConfig,
) {
    let mut store: Option<Store> = None;
    // Requests that could not be read yet (the database away): retried, never dropped — an
    // event waiting for a verdict that never comes would stay Seems Down.
    let mut carry: Vec<(u64, u64)> = Vec::new();
    loop {
        if carry.is_empty() {
            match rx.recv().await {
                Some(r) => carry.push(r),
                None => return,
            }
        } else {
            tokio::time::sleep(RETRY_READ).await;
        }
        tokio::time::sleep(BATCH_WINDOW).await;
        while let Ok(more) = rx.try_recv() {
            carry.push(more);
        }
        let mut batch = std::mem::take(&mut carry);
        batch.sort_unstable();
        batch.dedup_by_key(|r| r.0);
        if store.is_none() {
            match Store::open(url, host).await {
                Ok(s) => store = Some(s.with_vault(vault.clone())),
                Err(e) => {
                    eprintln!("jetmon: verification cannot read the checks (will retry): {e:#}")
                }
            }
        }
        let Some(s) = &store else {
            carry = batch;
            continue;
        };
        let mut specs = Vec::new();
        for (check_id, event_id) in batch {
            match s.check(check_id).await {
                Ok(Some(c)) => specs.push((c.spec, event_id)),
                Ok(None) => {} // removed meanwhile: the engine has closed its events
                Err(e) => {
                    eprintln!("jetmon: verification: reading check {check_id} (will retry): {e:#}");
                    carry.push((check_id, event_id));
                }
            }
        }
        if specs.is_empty() {
            continue;
        }
        let (peers, states, verdicts, detection) = (
            peers.clone(),
            states.clone(),
            verdicts.clone(),
            detection.clone(),
        );
        // Rounds overlap: a hanging veriflier delays only the round it was asked in.
        tokio::spawn(async move {
            for v in round(&peers, &states, specs, &detection).await {
                let _ = verdicts.send(v);
            }
        });
    }
}

/// Asks every usable veriflier about `specs` and returns one verdict per check.
async fn round(
    peers: &Arc<Vec<Peer>>,
    states: &Arc<Mutex<Vec<PeerState>>>,
    specs: Vec<(jetmon_shared::check::CheckSpec, u64)>,
    detection: &jetmon_shared::config::DetectionConfig,
) -> Vec<Verdict> {
    let now = Instant::now();
    let (asked, names): (Vec<usize>, Vec<String>) = {
        let st = states.lock().unwrap_or_else(|e| e.into_inner());
        st.iter()
            .enumerate()
            .filter(|(_, p)| p.healthy || p.retry_at.is_none_or(|t| t <= now))
            .map(|(i, p)| (i, p.name.clone()))
            .unzip()
    };
    let all_names: Vec<String> = {
        let st = states.lock().unwrap_or_else(|e| e.into_inner());
        st.iter().map(|p| p.name.clone()).collect()
    };
    let deadline = specs
        .iter()
        .map(|(s, _)| Duration::from_millis(u64::from(s.timeout_ms)))
        .max()
        .unwrap_or_default()
        + DEADLINE_GRACE;
    let mut encoder = FrameEncoder::new();
    let items: Vec<pb::CheckItem> = specs
        .iter()
        .map(|(s, _)| pb::CheckItem {
            spec_frame: encoder
                .command(&Command::Upsert(Box::new(s.clone())))
                .to_vec(),
        })
        .collect();
    let mut calls = tokio::task::JoinSet::new();
    for &i in &asked {
        let peer_items = items.clone();
        let peers = peers.clone();
        calls.spawn(async move {
            let answer = tokio::time::timeout(deadline, ask(&peers[i], peer_items)).await;
            let answer = match answer {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {deadline:?}")),
            };
            (i, answer)
        });
    }
    // votes[check][peer]
    let mut answers: HashMap<usize, Result<HashMap<u64, pb::CheckResult>, String>> = HashMap::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok((i, answer)) = joined {
            answers.insert(i, answer);
        }
    }
    {
        let mut st = states.lock().unwrap_or_else(|e| e.into_inner());
        for (&i, answer) in &answers {
            let Some(p) = st.get_mut(i) else { continue };
            p.asked += 1;
            match answer {
                Ok(_) => {
                    if !p.healthy {
                        eprintln!("jetmon: veriflier {} answers again", p.name);
                    }
                    p.healthy = true;
                    p.backoff = Duration::ZERO;
                    p.retry_at = None;
                    p.last_error = None;
                }
                Err(e) => {
                    p.errors += 1;
                    p.backoff = (p.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    p.retry_at = Some(Instant::now() + p.backoff);
                    if p.healthy || p.last_error.as_deref() != Some(e.as_str()) {
                        eprintln!(
                            "jetmon: veriflier {} abstains and backs off {:?}: {e}",
                            p.name, p.backoff
                        );
                    }
                    p.healthy = false;
                    p.last_error = Some(e.clone());
                }
            }
        }
    }
    let configured = all_names.len();
    let quorum = quorum(detection, configured, asked.len());
    specs
        .iter()
        .map(|(spec, event_id)| {
            let mut votes = Vec::new();
            for (k, &i) in asked.iter().enumerate() {
                let vote = match answers.get(&i) {
                    Some(Ok(results)) => match results.get(&spec.check_id) {
                        Some(r) => vote_of(&names[k], r),
                        None => abstain(&names[k], "no result for this check".into()),
                    },
                    Some(Err(e)) => abstain(&names[k], e.clone()),
                    None => abstain(&names[k], "the call did not finish".into()),
                };
                votes.push(vote);
            }
            for name in all_names.iter().filter(|n| !names.contains(n)) {
                votes.push(abstain(name, "backing off after an error".into()));
            }
            let down: Vec<&str> = votes
                .iter()
                .filter(|v| v.kind == VoteKind::Down)
                .map(|v| v.veriflier.as_str())
                .collect();
            let source = if down.len() >= usize::from(quorum) && quorum > 0 {
                down.join(",")
            } else {
                let up: Vec<&str> = votes
                    .iter()
                    .filter(|v| v.kind == VoteKind::Up)
                    .map(|v| v.veriflier.as_str())
                    .collect();
                if up.is_empty() {
                    "no-quorum".to_owned()
                } else {
                    up.join(",")
                }
            };
            Verdict {
                check_id: spec.check_id,
                event_id: *event_id,
                down_votes: u8::try_from(down.len()).unwrap_or(u8::MAX),
                quorum,
                source,
                votes,
            }
        })
        .collect()
}

/// `min(veriflier_quorum, healthy)`, never below the floor (which is 1 with a single
/// configured veriflier).
pub fn quorum(d: &jetmon_shared::config::DetectionConfig, configured: usize, healthy: usize) -> u8 {
    let floor = if configured >= 2 {
        d.veriflier_quorum_floor
    } else {
        1
    };
    let healthy = u8::try_from(healthy).unwrap_or(u8::MAX);
    d.veriflier_quorum.min(healthy).max(floor)
}

async fn ask(
    peer: &Peer,
    items: Vec<pb::CheckItem>,
) -> Result<HashMap<u64, pb::CheckResult>, String> {
    let mut out = HashMap::new();
    for chunk in items.chunks(MAX_BATCH) {
        let mut req = tonic::Request::new(pb::CheckRequest {
            checks: chunk.to_vec(),
        });
        req.metadata_mut()
            .insert("authorization", peer.token.clone());
        let mut client = peer.client.clone();
        let mut stream = client
            .check(req)
            .await
            .map_err(|s| status_line(&s))?
            .into_inner();
        while let Some(r) = stream.message().await.map_err(|s| status_line(&s))? {
            out.insert(r.check_id, r);
        }
    }
    Ok(out)
}

/// A gRPC error on one line, with its transport cause (TLS, connection refused…).
fn status_line(s: &tonic::Status) -> String {
    let mut line = format!("{:?}: {}", s.code(), s.message());
    if let Some(cause) = std::error::Error::source(s) {
        line.push_str(": ");
        line.push_str(&jetmon_veriflier::error_chain(cause));
    }
    line
}

fn vote_of(name: &str, r: &pb::CheckResult) -> Vote {
    let outcome = u16::try_from(r.outcome).ok();
    let kind = match outcome.and_then(Outcome::from_code).map(Outcome::class) {
        Some(OutcomeClass::SiteFailure) => VoteKind::Down,
        Some(OutcomeClass::Up | OutcomeClass::Advisory) => VoteKind::Up,
        // Monitor-side (its probe safety, its resolver, its own limits) or unknown: no say.
        Some(OutcomeClass::MonitorSide) | None => VoteKind::Abstain,
    };
    Vote {
        veriflier: name.to_owned(),
        kind,
        outcome,
        http_status: u16::try_from(r.http_status).unwrap_or(0),
        total_us: r.total_us,
        error: None,
    }
}

fn abstain(name: &str, error: String) -> Vote {
    Vote {
        veriflier: name.to_owned(),
        kind: VoteKind::Abstain,
        outcome: None,
        http_status: 0,
        total_us: 0,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_follows_the_spec() {
        let d = jetmon_shared::config::DetectionConfig::default(); // quorum 2, floor 2
        assert_eq!(quorum(&d, 3, 3), 2);
        assert_eq!(quorum(&d, 3, 2), 2);
        assert_eq!(quorum(&d, 3, 1), 2, "never below the floor");
        assert_eq!(
            quorum(&d, 1, 1),
            1,
            "one veriflier configured: it alone decides"
        );
        assert_eq!(quorum(&d, 1, 0), 1);
        let d = jetmon_shared::config::DetectionConfig {
            veriflier_quorum: 3,
            veriflier_quorum_floor: 2,
            ..d
        };
        assert_eq!(quorum(&d, 5, 5), 3);
        assert_eq!(quorum(&d, 5, 2), 2);
    }
}
