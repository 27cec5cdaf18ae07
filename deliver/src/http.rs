//! The delivery HTTP client: HTTP/1.1 on hyper, TLS by rustls with the web PKI roots (and an
//! optional extra CA). No ambient proxy (nothing reads `HTTP_PROXY`), no redirects followed.
//! Its connector resolves the target, judges every answer with probe safety and dials exactly
//! an address it judged, so a name that resolves to a private address is refused at dial time
//! whatever it resolved to when the webhook was made. 10 s to connect and shake hands, 30 s
//! for the whole attempt, at most 64 KiB of the answer read. Idle connections are kept per
//! (scheme, host, port) and reused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use jetmon_shared::safety::ProbeSafety;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of an answer read at most.
pub const MAX_READ: usize = 64 * 1024;
/// Bytes of an answer kept in the log.
pub const EXCERPT: usize = 1024;
/// Idle connections kept per (scheme, host, port).
const IDLE_PER_KEY: usize = 8;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub excerpt: String,
}

/// Why nothing came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Never sent, and sending again will not change it: a bad URL, probe safety.
    Refused(String),
    /// No connection, no answer in time, a broken answer: worth retrying.
    Failed(String),
}

/// Why a URL cannot be a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not an http(s) URL with a host and no credentials.
    Invalid(String),
    /// Refused by probe safety (a sentence naming the rule).
    Unsafe(String),
}

type Key = (bool, String, u16);

pub struct Client {
    safety: ProbeSafety,
    tls: TlsConnector,
    user_agent: String,
    idle: Mutex<HashMap<Key, Vec<SendRequest<Full<Bytes>>>>>,
}

impl Client {
    pub fn new(
        safety: ProbeSafety,
        extra_ca: Option<&Path>,
        user_agent: &str,
    ) -> anyhow::Result<Client> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let shown = path.display();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("control.delivery_ca_file {shown}: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("control.delivery_ca_file {shown}: {e}"))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "control.delivery_ca_file {shown}: no PEM certificate in it"
            );
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| anyhow::anyhow!("control.delivery_ca_file {shown}: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client {
            safety,
            tls: TlsConnector::from(Arc::new(config)),
            user_agent: user_agent.to_owned(),
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `url` could be delivered to as written (creation time): scheme, host, and probe
    /// safety on the host and, for a literal address, on it. Dial time judges again.
    pub fn check_url(safety: &ProbeSafety, url: &str) -> Result<(), UrlProblem> {
        let bad = |m: &str| UrlProblem::Invalid(m.to_owned());
        let u = url::Url::parse(url).map_err(|e| UrlProblem::Invalid(format!("not a URL: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad("the URL must be http:// or https://"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(bad("the URL must not carry credentials"));
        }
        if url.len() > 2048 {
            return Err(bad("the URL is longer than 2048 bytes"));
        }
        let port = u.port_or_known_default().unwrap_or(80);
        let unsafe_ = UrlProblem::Unsafe;
        match u.host() {
            Some(url::Host::Domain(d)) => {
                safety.check_host(d).map_err(|b| unsafe_(note(b, None, d)))
            }
            Some(url::Host::Ipv4(ip)) => safety
                .check_dial(SocketAddr::new(IpAddr::V4(ip), port))
                .map_err(|b| unsafe_(note(b, Some(IpAddr::V4(ip)), url))),
            Some(url::Host::Ipv6(ip)) => safety
                .check_dial(SocketAddr::new(IpAddr::V6(ip), port))
                .map_err(|b| unsafe_(note(b, Some(IpAddr::V6(ip)), url))),
            None => Err(bad("the URL has no host")),
        }
    }

    /// POSTs `body` to `url` with `headers`, within [`TOTAL_TIMEOUT`].
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<Answer, Failure> {
        match tokio::time::timeout(TOTAL_TIMEOUT, self.post_inner(url, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Failed(format!(
                "no answer within {} s",
                TOTAL_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn post_inner(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<Answer, Failure> {
        Client::check_url(&self.safety, url).map_err(|p| match p {
            UrlProblem::Invalid(m) | UrlProblem::Unsafe(m) => Failure::Refused(m),
        })?;
        let u = url::Url::parse(url).map_err(|e| Failure::Refused(e.to_string()))?;
        let tls = u.scheme() == "https";
        let host = u
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = u
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let key: Key = (tls, host.clone(), port);
        let mut sender = match self.take_idle(&key) {
            Some(s) => s,
            None => tokio::time::timeout(CONNECT_TIMEOUT, self.connect(&u, tls, &host, port))
                .await
                .map_err(|_| {
                    Failure::Failed(format!(
                        "no connection within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })??,
        };
        let mut path = u.path().to_owned();
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        let authority = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_owned(),
        };
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, self.user_agent.as_str());
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| Failure::Refused(format!("building the request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::Failed(format!("sending: {e}")))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut read = Vec::new();
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::Failed(format!("reading the answer: {e}")))?;
            if let Some(d) = frame.data_ref() {
                let room = MAX_READ.saturating_sub(read.len());
                read.extend_from_slice(&d[..d.len().min(room)]);
                if d.len() > room {
                    whole = false;
                    break;
                }
            }
        }
        if whole && !sender.is_closed() {
            self.put_idle(key, sender);
        }
        Ok(Answer {
            status,
            excerpt: excerpt(&read),
        })
    }

    async fn connect(
        &self,
        u: &url::Url,
        tls: bool,
        host: &str,
        port: u16,
    ) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let addrs: Vec<SocketAddr> = match u.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            _ => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| Failure::Failed(format!("resolving {host}: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Failure::Failed(format!("{host} has no address")));
        }
        // Every answer is judged: one private address among public ones refuses the lot, as
        // the prober does (an attacker controls which answer a client picks).
        let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        self.safety
            .check_answers(&ips, port)
            .map_err(|b| Failure::Refused(note(b, self.safety.first_refused(&ips, port), host)))?;
        let mut last = String::new();
        for a in &addrs {
            match TcpStream::connect(a).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return if tls {
                        let name = ServerName::try_from(host.to_owned())
                            .map_err(|e| Failure::Refused(format!("{host}: {e}")))?;
                        let stream = self
                            .tls
                            .connect(name, stream)
                            .await
                            .map_err(|e| Failure::Failed(format!("TLS with {host}: {e}")))?;
                        handshake(TokioIo::new(stream)).await
                    } else {
                        handshake(TokioIo::new(stream)).await
                    };
                }
                Err(e) => last = format!("connecting to {a}: {e}"),
            }
        }
        Err(Failure::Failed(last))
    }

    fn take_idle(&self, key: &Key) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        while let Some(s) = list.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, key: Key, s: SendRequest<Full<Bytes>>) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(key).or_default();
            if list.len() < IDLE_PER_KEY {
                list.push(s);
            }
        }
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::Failed(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Probe safety's sentence, pointing at the delivery allow-list instead of the prober's.
fn note(b: jetmon_shared::safety::Blocked, ip: Option<IpAddr>, what: &str) -> String {
    jetmon_shared::safety::note(b, ip, what).replace(
        "prober.allow_cidrs / --allow-cidr",
        "control.delivery_allow_cidrs",
    )
}

/// The first [`EXCERPT`] bytes as text, control characters dropped.
fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(EXCERPT)];
    String::from_utf8_lossy(cut)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect()
}
