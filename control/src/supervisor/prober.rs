//! The prober service: the `jetmon-prober` child this control is responsible for. It is
//! restarted with exponential back-off when it exits or when its heartbeat in the ring header
//! goes stale (a hung process is killed first); a prober still running from a previous
//! control is adopted, not duplicated. After every start or adoption the whole check set is
//! sent again (upserts are idempotent). Checks due while no prober runs get a synthetic
//! `prober_restart` result: Unknown, never Down.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jetmon_control::engine::{Input, ResultIn};
use jetmon_shared::check::ProbeOrigin;
use jetmon_shared::config::Config;
use jetmon_shared::outcome::Outcome;

use super::checks::send_all_checks;
use super::rings::Rings;
use super::{Core, PROBER_STALE_AFTER};

const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a draining prober may take before it is killed.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The prober this control is responsible for.
enum State {
    None,
    /// Our child, started at the instant.
    Child(Child, Instant),
    /// A prober left running by a previous control.
    Adopted(u32, Instant),
}

pub(super) struct ProberService {
    state: State,
    binary: PathBuf,
    config_path: Option<PathBuf>,
    shards: u16,
    demo: bool,
    backoff: Duration,
    next_start: Instant,
    /// Times the prober was restarted (metrics).
    pub restarts: u64,
}

impl ProberService {
    pub fn new(
        config: &Config,
        config_path: Option<&Path>,
        shards: u16,
        demo: bool,
    ) -> Result<ProberService> {
        Ok(ProberService {
            state: State::None,
            binary: prober_binary(config)?,
            config_path: config_path.map(Path::to_path_buf),
            shards,
            demo,
            backoff: RESTART_BACKOFF_MIN,
            next_start: Instant::now(),
            restarts: 0,
        })
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Adopts a prober a killed control left running (and sends it the check set).
    pub fn adopt(&mut self, core: &Core, rings: &mut Rings) -> Result<()> {
        if let Some(pid) = rings.live_peer() {
            eprintln!("jetmon: adopting prober pid {pid} left running by a previous jetmon");
            send_all_checks(core, rings)?;
            self.state = State::Adopted(pid, Instant::now());
        }
        Ok(())
    }

    pub fn is_up(&self) -> bool {
        !matches!(self.state, State::None)
    }

    /// The prober's pid, 0 when none runs.
    pub fn pid(&self) -> u32 {
        match &self.state {
            State::Child(c, _) => c.id(),
            State::Adopted(pid, _) => *pid,
            State::None => 0,
        }
    }

    /// Notices a prober that died or hung (its checks become Unknown) and starts one when the
    /// back-off allows.
    pub fn watch(&mut self, core: &mut Core, rings: &mut Rings, now_us: u64) -> Result<()> {
        if let Some((why, since)) = self.gone(rings)? {
            // A long healthy run resets the back-off.
            if since.elapsed() > RESTART_BACKOFF_MAX {
                self.backoff = RESTART_BACKOFF_MIN;
            }
            eprintln!("jetmon: {why}; restarting in {:?}", self.backoff);
            self.restarts += 1;
            prober_restart_results(core, now_us);
            self.next_start = Instant::now() + self.backoff;
            self.backoff = (self.backoff * 2).min(RESTART_BACKOFF_MAX);
            self.state = State::None;
        }
        if matches!(self.state, State::None) && Instant::now() >= self.next_start {
            let c = self.spawn()?;
            eprintln!("jetmon: started prober pid {}", c.id());
            send_all_checks(core, rings)?;
            self.state = State::Child(c, Instant::now());
        }
        Ok(())
    }

    fn gone(&mut self, rings: &Rings) -> Result<Option<(String, Instant)>> {
        let stale = rings.stale();
        Ok(match &mut self.state {
            State::None => None,
            State::Child(c, since) => match c.try_wait()? {
                Some(status) => Some((format!("prober exited ({status})"), *since)),
                None if since.elapsed() > PROBER_STALE_AFTER && stale => {
                    let _ = c.kill();
                    let _ = c.wait();
                    Some(("prober heartbeat stale; killed it".to_owned(), *since))
                }
                None => None,
            },
            State::Adopted(pid, since) => {
                let dead = !jetmon_shared::ring::process_alive(*pid);
                (dead || stale).then(|| {
                    if !dead {
                        kill(*pid);
                    }
                    (format!("adopted prober pid {pid} is gone"), *since)
                })
            }
        })
    }

    /// Asks the prober to drain and waits (bounded) for it to exit, killing it after that.
    pub fn drain(self, rings: &mut Rings) -> Result<()> {
        if matches!(self.state, State::None) {
            return Ok(());
        }
        eprintln!("jetmon: stopping: draining the prober");
        rings.drain(DRAIN_DEADLINE)?;
        let asked = Instant::now();
        let exited = |state: &mut State| -> Result<bool> {
            Ok(match state {
                State::None => true,
                State::Child(c, _) => c
                    .try_wait()?
                    .inspect(|status| {
                        eprintln!("jetmon: prober stopped ({status})");
                    })
                    .is_some(),
                State::Adopted(pid, _) => {
                    let gone = !jetmon_shared::ring::process_alive(*pid);
                    if gone {
                        eprintln!("jetmon: prober stopped");
                    }
                    gone
                }
            })
        };
        let mut state = self.state;
        while asked.elapsed() < DRAIN_DEADLINE {
            if exited(&mut state)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("jetmon: prober did not drain within {DRAIN_DEADLINE:?}; killing it");
        match state {
            State::None => {}
            State::Child(mut c, _) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            State::Adopted(pid, _) => kill(pid),
        }
        Ok(())
    }

    fn spawn(&self) -> Result<Child> {
        let mut cmd = Process::new(&self.binary);
        cmd.args(["--shards", &self.shards.to_string()])
            .stdin(Stdio::null());
        if self.demo {
            // The demo's sites live on loopback, which probe safety refuses: open exactly the
            // demo fleet's address, not the rest of loopback.
            cmd.args(["--allow-target", jetmon_control::demo::DEMO_ADDR]);
        }
        if let Some(path) = &self.config_path {
            cmd.arg("--config").arg(path);
        }
        cmd.spawn()
            .with_context(|| format!("starting {}", self.binary.display()))
    }
}

/// Checks due while no prober runs cannot be judged: Unknown, never Down.
fn prober_restart_results(core: &mut Core, now_us: u64) {
    let ids: Vec<u64> = core.ingest.engine.check_ids().collect();
    for check_id in ids {
        core.ingest.apply(
            Input::Result(ResultIn {
                check_id,
                outcome: Outcome::ProberRestart,
                at_us: now_us,
                origin: ProbeOrigin::Scheduled,
                cert_not_after_s: 0,
                ttfb_us: 0,
                total_us: 0,
                flags: 0,
            }),
            now_us,
            &mut core.commands,
        );
    }
}

fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain kill(2) on a pid we were told is our prober.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// `control.prober_binary`, else `jetmon-prober` beside this executable.
fn prober_binary(config: &Config) -> Result<PathBuf> {
    if let Some(p) = &config.control.prober_binary {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("locating the jetmon executable")?;
    let sibling = me.with_file_name("jetmon-prober");
    if sibling.exists() {
        Ok(sibling)
    } else {
        anyhow::bail!(
            "{} not found; build the workspace (cargo build --release) or set control.prober_binary",
            sibling.display()
        )
    }
}
