//! The API service: starts the REST API (`jetmon_api`, its own thread and pool, beside
//! `/metrics`, `/ready`, `/health` on `control.api_listen`) and runs, on the supervisor's
//! thread, what it asks of the engine's owner: manual closes into the engine, trigger-now as
//! `TriggerNow` commands whose results, matched by request id, go back to the waiting request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use jetmon_control::api::{self, LinkEnd, Probed};
use jetmon_control::engine::{Input, Source};
use jetmon_control::metrics::Shared;
use jetmon_prober::proto::safety::ProbeSafety;
use jetmon_shared::config::Config;
use jetmon_shared::frames::{Command, ResultFrame};

use super::Core;
use jetmon_control::demo;

/// A trigger-now caller who waited this long has given up.
const TRIGGER_FORGOTTEN_AFTER: Duration = Duration::from_secs(180);

pub(super) struct ApiService {
    link: LinkEnd,
    pub triggers: Triggers,
    pub addr: SocketAddr,
}

impl ApiService {
    pub fn start(
        config: &Config,
        host: &str,
        metrics: Shared,
        spool_dir: PathBuf,
        demo: bool,
    ) -> Result<ApiService> {
        let (link, end) = api::link();
        let mut safety = ProbeSafety::new(config.prober.allow_list());
        if demo {
            // The demo fleet's address (only it, not the rest of loopback), as the prober.
            safety = safety.allowing_sockets(demo::DEMO_ADDR.parse().into_iter().collect());
        }
        let addr = api::start(api::Options {
            listen: config.control.api_listen.clone(),
            database_url: config.control.database_url.clone(),
            host: host.to_owned(),
            metrics,
            safety,
            link,
            rate_per_minute: config.control.api_rate_per_minute,
            expensive_per_minute: config.control.api_expensive_per_minute,
            spool_dir: Some(spool_dir),
            vault: jetmon_control::secrets::vault(&config.control),
            delivery_safety: super::notify::delivery_safety(config, demo),
        })?;
        Ok(ApiService {
            link: end,
            triggers: Triggers::default(),
            addr,
        })
    }

    /// True once after the API changed what is monitored.
    pub fn nudged(&self) -> bool {
        self.link.take_nudge()
    }

    /// Runs what the API asked of the engine and the prober.
    pub fn run(&mut self, core: &mut Core, prober_up: bool, now_us: u64) {
        // Callers gave up long ago: forget them.
        self.triggers
            .waiting
            .retain(|_, t| t.since.elapsed() < TRIGGER_FORGOTTEN_AFTER && !t.reply.is_closed());
        while let Ok(c) = self.link.commands.try_recv() {
            match c {
                api::Command::Close {
                    check_id,
                    event_id,
                    source,
                    note,
                    ticket,
                    reply,
                } => {
                    // The API gave up waiting and told its caller nothing changed.
                    if !ticket.take() {
                        continue;
                    }
                    let before = core.ingest.pending_transitions();
                    core.ingest.apply(
                        Input::Close {
                            check_id,
                            event_id,
                            source: Source::Operator(source),
                            note: note.map(String::into_boxed_str),
                        },
                        now_us,
                        &mut core.commands,
                    );
                    let _ = reply.send(core.ingest.pending_transitions() > before);
                }
                api::Command::Trigger { check_ids, reply } => {
                    if !prober_up {
                        let _ = reply.send(None);
                        continue;
                    }
                    self.triggers.start(core, check_ids, reply);
                }
            }
        }
    }
}

/// Trigger-now requests from the API waiting for their results, by request id.
#[derive(Default)]
pub(super) struct Triggers {
    next: u64,
    waiting: HashMap<u64, Trigger>,
}

struct Trigger {
    left: Vec<u64>,
    got: Vec<Probed>,
    reply: tokio::sync::oneshot::Sender<Option<Vec<Probed>>>,
    since: Instant,
}

impl Triggers {
    fn start(
        &mut self,
        core: &mut Core,
        check_ids: Vec<u64>,
        reply: tokio::sync::oneshot::Sender<Option<Vec<Probed>>>,
    ) {
        self.next += 1;
        let request_id = self.next;
        let mut left = Vec::with_capacity(check_ids.len());
        for check_id in check_ids {
            if core.ingest.engine.tag(check_id).is_some() {
                core.commands.push(Command::TriggerNow {
                    check_id,
                    request_id,
                });
                left.push(check_id);
            }
        }
        if left.is_empty() {
            let _ = reply.send(Some(Vec::new()));
            return;
        }
        self.waiting.insert(
            request_id,
            Trigger {
                left,
                got: Vec::new(),
                reply,
                since: Instant::now(),
            },
        );
    }

    /// A result frame carrying a request id: one answer for its trigger.
    pub fn result(&mut self, frame: &ResultFrame<'_>) {
        let r = &frame.result;
        let Some(t) = self.waiting.get_mut(&r.request_id) else {
            return;
        };
        if let Some(k) = t.left.iter().position(|c| *c == r.check_id) {
            t.left.swap_remove(k);
            t.got.push(Probed::from_frame(frame));
        }
        if t.left.is_empty()
            && let Some(t) = self.waiting.remove(&r.request_id)
        {
            let _ = t.reply.send(Some(t.got));
        }
    }
}
