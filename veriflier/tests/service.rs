//! The veriflier as its users meet it: the real binary, over gRPC, probing a real (in-test)
//! HTTP server on loopback with the prober's engine; token and TLS failures refused clearly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_shared::frames::{Command as Frame, FrameEncoder};
use jetmon_shared::outcome::Outcome;
use jetmon_veriflier::pb;
use jetmon_veriflier::pb::veriflier_client::VeriflierClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const BIN: &str = env!("CARGO_BIN_EXE_jetmon-veriflier");
const TOKEN: &str = "test-token-0123456789abcdef";

type Veriflier = jetmon_veriflier::launch::Launched;

/// Starts the binary with `extra` lines in `[veriflier]`; returns once it listens.
fn start(dir: &Path, name: &str, extra: &str, mode: &str) -> Veriflier {
    let token = dir.join(format!("{name}.token"));
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[prober]\nallow_cidrs = [\"127.0.0.0/8\"]\n[veriflier]\nname = {name:?}\n\
             listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ntoken_file = {token:?}\nmax_batch = 3\n{extra}"
        ),
    )
    .unwrap();
    jetmon_veriflier::launch::launch(
        Command::new(BIN).args(["--config", cfg.to_str().unwrap(), "--test-mode", mode]),
        true,
        Duration::from_secs(20),
    )
    .expect("the veriflier did not start")
}

/// A loopback HTTP server answering 200 "ok" to everything, for the test's lifetime.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    port
}

fn frame(check_id: u64, target: &str) -> pb::CheckItem {
    let mut spec = CheckSpec::new(check_id, 1, CheckType::Http, target);
    spec.timeout_ms = 3_000;
    let mut enc = FrameEncoder::new();
    pb::CheckItem {
        spec_frame: enc.command(&Frame::Upsert(Box::new(spec))).to_vec(),
    }
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn check_all(
    client: &mut VeriflierClient<Channel>,
    items: Vec<pb::CheckItem>,
) -> Result<Vec<pb::CheckResult>, tonic::Status> {
    let mut stream = client
        .check(authed(pb::CheckRequest { checks: items }, TOKEN))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await? {
        out.push(r);
    }
    out.sort_by_key(|r| r.check_id);
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_run_with_the_prober_engine_and_bad_callers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = start(dir.path(), "v1", "", "normal");
    let port = http_server();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut client = VeriflierClient::connect(format!("http://{}", v.addr))
        .await
        .unwrap();
    // The private rings are unlinked once mapped: nothing to leave behind in /dev/shm.
    let rings = format!("/dev/shm/jetmon-veriflier-{}", v.child.id());
    assert!(!Path::new(&rings).exists(), "{rings} left behind");
    // Status.
    let status = client
        .status(authed(pb::StatusRequest {}, TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((status.name.as_str(), status.max_batch), ("v1", 3));
    // A batch: up, refused, and a target probe safety refuses (never dialled).
    let results = check_all(
        &mut client,
        vec![
            frame(11, &format!("http://127.0.0.1:{port}/")),
            frame(12, &format!("http://127.0.0.1:{closed}/")),
            frame(13, "http://10.1.2.3/"),
        ],
    )
    .await
    .unwrap();
    let outcomes: Vec<(u64, Option<Outcome>)> = results
        .iter()
        .map(|r| (r.check_id, Outcome::from_code(r.outcome as u16)))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (11, Some(Outcome::Ok)),
            (12, Some(Outcome::ConnRefused)),
            (13, Some(Outcome::ProbeSafetyBlocked)),
        ]
    );
    assert_eq!(results[0].http_status, 200);
    assert!(results[0].total_us > 0 && results[0].connect_us > 0);
    // Wrong token, no token: refused, with a message that says why.
    for token in ["wrong-token-0123456789abcdef", ""] {
        let err = client
            .status(authed(pb::StatusRequest {}, token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("token"), "{}", err.message());
    }
    // Refusals are counted in /metrics (rendered each second).
    std::thread::sleep(Duration::from_millis(1500));
    let text = http_get(v.metrics.as_deref().unwrap(), "/metrics");
    assert!(
        text.contains(
            "jetmon_veriflier_requests_refused_total{veriflier=\"v1\",reason=\"unauthenticated\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("jetmon_veriflier_checks_total{veriflier=\"v1\"} 3"),
        "{text}"
    );
    // Too big a batch, an empty one, a frame that is not a check: InvalidArgument, named.
    let four = (0..4).map(|k| frame(k, "http://127.0.0.1/")).collect();
    let err = check_all(&mut client, four).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("1 to 3"), "{}", err.message());
    let err = check_all(&mut client, Vec::new()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let junk = vec![pb::CheckItem {
        spec_frame: b"not a frame".to_vec(),
    }];
    let err = check_all(&mut client, junk).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("checks[0]"), "{}", err.message());
    // SIGTERM: a graceful stop, exit code 0.
    let mut v = v;
    let pid = v.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let began = std::time::Instant::now();
    let status = loop {
        if let Some(status) = v.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "no graceful stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_and_a_client_that_does_not_trust_it_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let made = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf/fleet-certs"))
        .arg(&pki)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let v = start(
        dir.path(),
        "v-tls",
        &format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
            pki.join("valid.pem"),
            pki.join("leaf.key")
        ),
        "normal",
    );
    let ca = std::fs::read(pki.join("ca.pem")).unwrap();
    let channel = Endpoint::from_shared(format!("https://{}", v.addr))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .domain_name("veriflier.fleet.test"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = VeriflierClient::new(channel);
    let status = client
        .status(authed(pb::StatusRequest {}, TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.name, "v-tls");
    // Mutual TLS: a veriflier that requires client certificates from the fleet CA.
    let m = start(
        dir.path(),
        "v-mtls",
        &format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\nclient_ca_file = {:?}\n",
            pki.join("valid.pem"),
            pki.join("leaf.key"),
            pki.join("ca.pem")
        ),
        "normal",
    );
    let key = std::fs::read(pki.join("leaf.key")).unwrap();
    let mtls = |identity: Option<&str>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .domain_name("veriflier.fleet.test");
        if let Some(cert) = identity {
            let cert = std::fs::read(pki.join(cert)).unwrap();
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, &key));
        }
        Endpoint::from_shared(format!("https://{}", m.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
    };
    let ch = mtls(Some("client.pem")).connect().await.unwrap();
    let status = VeriflierClient::new(ch)
        .status(authed(pb::StatusRequest {}, TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.name, "v-mtls");
    for identity in [None, Some("other-client.pem")] {
        let refused = match mtls(identity).connect().await {
            Err(e) => jetmon_veriflier::error_chain(&e),
            Ok(ch) => VeriflierClient::new(ch)
                .status(authed(pb::StatusRequest {}, TOKEN))
                .await
                .map(|_| "answered".to_owned())
                .unwrap_or_else(|e| format!("{e}")),
        };
        assert_ne!(refused, "answered", "client certificate {identity:?}");
        eprintln!("client certificate {identity:?} refused: {refused}");
    }
    // Plain HTTP/2 to the TLS port: refused, not answered.
    let plain = VeriflierClient::connect(format!("http://{}", v.addr)).await;
    if let Ok(mut c) = plain {
        assert!(c.status(authed(pb::StatusRequest {}, TOKEN)).await.is_err());
    }
    // A client that does not trust the CA cannot connect.
    let untrusted = Endpoint::from_shared(format!("https://{}", v.addr))
        .unwrap()
        .tls_config(ClientTlsConfig::new().domain_name("veriflier.fleet.test"))
        .unwrap()
        .connect()
        .await;
    match untrusted {
        Err(e) => {
            let why = jetmon_veriflier::error_chain(&e);
            assert!(why.contains("certificate"), "{why}");
            eprintln!("untrusted client refused: {why}");
        }
        Ok(ch) => {
            let err = VeriflierClient::new(ch)
                .status(authed(pb::StatusRequest {}, TOKEN))
                .await
                .unwrap_err();
            eprintln!("untrusted client refused: {err}");
        }
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    s
}

/// A config listening on `listen`, for the address rules (nothing probed).
fn config_for(dir: &Path, listen: &str) -> std::path::PathBuf {
    let token = dir.join("plain.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let cfg = dir.join("plain.toml");
    std::fs::write(
        &cfg,
        format!("[veriflier]\nname = \"plain\"\nlisten = {listen:?}\ntoken_file = {token:?}\n"),
    )
    .unwrap();
    cfg
}

#[test]
fn plaintext_beyond_loopback_needs_the_insecure_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_for(dir.path(), "0.0.0.0:0");
    // Refused before anything is bound.
    let out = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing plaintext gRPC on 0.0.0.0:0")
            && err.contains("--insecure-plaintext"),
        "{err}"
    );
    // With the flag it serves, and says so. (In a network namespace of its own: the
    // wildcard address there reaches nothing but its own down loopback.)
    let mut child = Command::new("unshare")
        .args([
            "-rn",
            BIN,
            "--config",
            cfg.to_str().unwrap(),
            "--insecure-plaintext",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let began = std::time::Instant::now();
    while !seen.contains("listening on") && began.elapsed() < Duration::from_secs(20) {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.contains("without TLS (--insecure-plaintext)"),
        "{seen}"
    );
    assert!(seen.contains("listening on 0.0.0.0:"), "{seen}");
}

#[test]
fn the_release_build_has_no_fault_injection() {
    // What `cargo build --release` resolves for the veriflier (no dev-dependencies): no
    // `test-mode` feature, so no `--test-mode` flag and no faulty modes in the binary.
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "jetmon-veriflier",
            "-e",
            "normal,build,features",
            "--prefix",
            "none",
            "-f",
            "{p} [{f}]",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("jetmon-veriflier "))
        .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(line.ends_with("[]"), "{line}");
}
