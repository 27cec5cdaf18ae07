//! Jetmon's veriflier as a library: the gRPC protocol (`pb`, compiled from
//! `veriflier/proto/veriflier.proto` with protox), the embedded probe engine and the service.
//! Control uses `pb`'s client. Design: docs/veriflier.md.

pub mod engine;
pub mod launch;
pub mod limits;
pub mod server;

/// Generated from `proto/veriflier.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("jetmon.veriflier.v1");
}

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use jetmon_shared::config::Config;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use server::Mode;

/// An error and its causes on one line (tonic's own says only "transport error").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if parts.last() != Some(&s) {
            parts.push(s);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// Reads a secret file: its first line, trimmed; refuses an empty one.
pub fn read_token(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < 16 {
        bail!(
            "{}: the token must be at least 16 characters (e.g. `openssl rand -hex 32`)",
            path.display()
        );
    }
    Ok(token.as_bytes().to_vec())
}

/// Runs the veriflier until `stop` resolves: the embedded probe engine and the gRPC server.
/// `ready` gets the bound address once listening.
pub async fn serve(
    config: &Config,
    mode: Mode,
    extra_allow: &[jetmon_shared::cidr::Cidr],
    insecure_plaintext: bool,
    ready: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let v = &config.veriflier;
    let token_file = v
        .token_file
        .as_deref()
        .context("veriflier.token_file is required: the file holding the token control sends")?;
    let token = Arc::new(read_token(token_file)?);
    let addr: SocketAddr = v
        .listen
        .parse()
        .with_context(|| format!("veriflier.listen {:?} is not ip:port", v.listen))?;
    let engine = engine::Engine::start(&config.prober, extra_allow)?;
    let counters = Arc::new(server::Counters::default());
    if !v.metrics_listen.is_empty() {
        let (at, shared) =
            jetmon_shared::metrics::start(&v.metrics_listen, "veriflier.metrics_listen")?;
        eprintln!("jetmon-veriflier: metrics on http://{at}/metrics");
        let (load, counters, name) = (engine.load.clone(), counters.clone(), v.name.clone());
        tokio::spawn(async move {
            loop {
                let text = render(&name, &load, &counters);
                if let Ok(mut t) = shared.text.lock() {
                    *t = text;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let service = server::Service {
        counters: counters.clone(),
        name: v.name.clone(),
        engine,
        max_batch: v.max_batch,
        max_in_flight: v.max_in_flight,
        in_flight: limits::InFlight::default(),
        mode,
    };
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .timeout(limits::REQUEST_DEADLINE)
        .max_concurrent_streams(Some(limits::MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(limits::MAX_STREAMS_PER_CONNECTION as usize);
    if let (Some(cert), Some(key)) = (&v.tls_cert_file, &v.tls_key_file) {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &v.client_ca_file {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        builder = builder
            .tls_config(tls)
            .context("veriflier TLS (tls_cert_file / tls_key_file)")?;
    } else if !addr.ip().to_canonical().is_loopback() {
        if !insecure_plaintext {
            bail!(
                "refusing plaintext gRPC on {addr}: the token and the checks would cross the \
                 network in clear. Set veriflier.tls_cert_file and tls_key_file, listen on \
                 loopback, or pass --insecure-plaintext"
            );
        }
        eprintln!(
            "jetmon-veriflier: warning: listening on {addr} without TLS (--insecure-plaintext); \
             the token crosses the network in clear"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr()?;
    ready(bound);
    let svc = tonic::service::interceptor::InterceptedService::new(
        pb::veriflier_server::VeriflierServer::new(service)
            .max_decoding_message_size(server::MAX_REQUEST_BYTES),
        server::authenticate(token, counters),
    );
    builder
        .add_service(svc)
        .serve_with_incoming_shutdown(limits::incoming(listener, limits::MAX_CONNECTIONS), stop)
        .await
        .context("serving gRPC")?;
    Ok(())
}

fn render(name: &str, load: &engine::Load, c: &server::Counters) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut t = jetmon_shared::metrics::Text::default();
    let v = [("veriflier", name)];
    for (metric, kind, help, value) in [
        (
            "jetmon_veriflier_checks_total",
            "counter",
            "Checks run for callers.",
            load.total.load(Relaxed) as f64,
        ),
        (
            "jetmon_veriflier_checks_in_flight",
            "gauge",
            "Checks running now.",
            f64::from(load.in_flight.load(Relaxed)),
        ),
        (
            "jetmon_veriflier_requests_total",
            "counter",
            "gRPC requests received.",
            c.requests.load(Relaxed) as f64,
        ),
    ] {
        t.family(metric, kind, help);
        t.sample(metric, &v, value);
    }
    t.family(
        "jetmon_veriflier_requests_refused_total",
        "counter",
        "Requests refused, by reason.",
    );
    for (reason, n) in [
        ("unauthenticated", &c.unauthenticated),
        ("invalid", &c.invalid),
        ("exhausted", &c.exhausted),
    ] {
        t.sample(
            "jetmon_veriflier_requests_refused_total",
            &[("veriflier", name), ("reason", reason)],
            n.load(Relaxed) as f64,
        );
    }
    t.family(
        "jetmon_veriflier_resident_bytes",
        "gauge",
        "Resident memory of the veriflier.",
    );
    t.sample(
        "jetmon_veriflier_resident_bytes",
        &v,
        jetmon_shared::metrics::rss_bytes(std::process::id()) as f64,
    );
    t.finish()
}
