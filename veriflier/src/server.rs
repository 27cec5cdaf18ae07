//! The gRPC service: token check (constant time), request limits, checks through the embedded
//! engine, results streamed back as they finish.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jetmon_shared::frames::{Command, ProbeResult, decode_command};
#[cfg(feature = "test-mode")]
use jetmon_shared::outcome::Outcome;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use jetmon_shared::check::CheckSpec;

use crate::engine::Engine;
use crate::limits::Slot;
use crate::pb;

/// Largest request accepted (500 check frames fit many times over).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// How a veriflier answers: for real, or (built with the `test-mode` feature only, which a
/// release build never enables) one of the faulty modes the quorum tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Every check fails (`conn_refused`) at once: a veriflier that always says "down".
    #[cfg(feature = "test-mode")]
    AlwaysDown,
    /// Accepts the call and never answers.
    #[cfg(feature = "test-mode")]
    Hang,
}

impl Mode {
    pub fn from_name(s: &str) -> Option<Mode> {
        match s {
            "normal" => Some(Mode::Normal),
            #[cfg(feature = "test-mode")]
            "always-down" => Some(Mode::AlwaysDown),
            #[cfg(feature = "test-mode")]
            "hang" => Some(Mode::Hang),
            _ => None,
        }
    }
}

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub unauthenticated: AtomicU64,
    pub invalid: AtomicU64,
    pub exhausted: AtomicU64,
}

pub struct Service {
    pub counters: Arc<Counters>,
    pub name: String,
    pub engine: Engine,
    pub max_batch: u32,
    pub max_in_flight: u32,
    /// Checks reserved against `max_in_flight`.
    pub in_flight: crate::limits::InFlight,
    pub mode: Mode,
}

/// Equal in time whatever the inputs' contents (the length of `given` is the caller's).
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, g) in given.iter().enumerate() {
        diff |= g ^ expected.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// A tonic interceptor: `authorization: Bearer <token>` or `unauthenticated`.
pub fn authenticate(
    token: Arc<Vec<u8>>,
    counters: Arc<Counters>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(jetmon_shared::auth::bearer)
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), &token) {
            Ok(req)
        } else {
            counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
            Err(Status::unauthenticated(
                "missing or wrong veriflier token (authorization: Bearer <token>)",
            ))
        }
    }
}

pub fn to_pb(r: &ProbeResult) -> pb::CheckResult {
    pb::CheckResult {
        check_id: r.check_id,
        outcome: u32::from(r.outcome.code()),
        detail: u32::from(r.detail),
        http_status: u32::from(r.http_status),
        dns_us: r.phases.dns_us,
        connect_us: r.phases.connect_us,
        tls_us: r.phases.tls_us,
        ttfb_us: r.phases.ttfb_us,
        total_us: r.phases.total_us,
        started_at_us: r.started_at_us,
        cert_not_after_s: r.cert_not_after_s,
    }
}

type ResultStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::CheckResult, Status>> + Send + 'static>>;

impl Service {
    /// The batch's checks with a reserved slot each, or the status that refuses it.
    fn validate(&self, items: Vec<pb::CheckItem>) -> Result<Vec<(CheckSpec, Slot)>, Status> {
        if items.is_empty() || items.len() > self.max_batch as usize {
            return Err(Status::invalid_argument(format!(
                "a batch holds 1 to {} checks, not {}",
                self.max_batch,
                items.len()
            )));
        }
        let mut specs = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let spec = match decode_command(&item.spec_frame) {
                Ok(Command::Upsert(spec)) => spec,
                Ok(_) => {
                    return Err(Status::invalid_argument(format!(
                        "checks[{i}]: not an Upsert command frame"
                    )));
                }
                Err(e) => {
                    return Err(Status::invalid_argument(format!(
                        "checks[{i}]: the frame does not verify: {e}"
                    )));
                }
            };
            spec.validate()
                .map_err(|e| Status::invalid_argument(format!("checks[{i}]: {e}")))?;
            specs.push(*spec);
        }
        // Reserved whole, in one step: two batches racing cannot both pass the limit.
        let n = u32::try_from(specs.len()).unwrap_or(u32::MAX);
        let slots = self
            .in_flight
            .reserve(n, self.max_in_flight)
            .map_err(|now| {
                Status::resource_exhausted(format!(
                    "{now} checks in flight; this veriflier takes at most {}",
                    self.max_in_flight
                ))
            })?;
        Ok(specs.into_iter().zip(slots).collect())
    }
}

#[tonic::async_trait]
impl pb::veriflier_server::Veriflier for Service {
    type CheckStream = ResultStream;

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<Self::CheckStream>, Status> {
        let checked = self.validate(request.into_inner().checks);
        if let Err(status) = &checked {
            let counter = match status.code() {
                tonic::Code::ResourceExhausted => &self.counters.exhausted,
                _ => &self.counters.invalid,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let specs = checked?;
        let (tx, rx) = mpsc::channel(specs.len());
        match self.mode {
            #[cfg(feature = "test-mode")]
            Mode::Hang => {
                // Keep the sender alive forever: the stream never yields nor ends.
                std::mem::forget(tx);
            }
            #[cfg(feature = "test-mode")]
            Mode::AlwaysDown => {
                for (spec, _slot) in &specs {
                    let r = ProbeResult {
                        check_id: spec.check_id,
                        outcome: Outcome::ConnRefused,
                        started_at_us: unix_us(),
                        ..ProbeResult::default()
                    };
                    let _ = tx.send(Ok(to_pb(&r))).await;
                }
            }
            Mode::Normal => {
                for (spec, slot) in specs {
                    // The engine answers every check by its timeout + 5 s (engine.rs).
                    let result = self.engine.submit(spec);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let item = match result.await {
                            Ok(r) => Ok(to_pb(&r)),
                            Err(_) => Err(Status::unavailable("the probe engine stopped")),
                        };
                        let _ = tx.send(item).await;
                        drop(slot);
                    });
                }
            }
        }
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let load = &self.engine.load;
        Ok(Response::new(pb::StatusReply {
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            in_flight: load.in_flight.load(Ordering::Relaxed),
            checks_total: load.total.load(Ordering::Relaxed),
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight,
        }))
    }
}

#[cfg(feature = "test-mode")]
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret!", b"s3cret"));
        assert!(!constant_time_eq(b"", b"s3cret"));
        assert!(!constant_time_eq(b"S3cret", b"s3cret"));
    }
}
