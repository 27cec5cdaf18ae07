//! TLS for HTTPS probes: rustls driven by hand over a glommio `TcpStream` (no adapter crate,
//! so every byte and every millisecond of the handshake is ours to time), one `ClientConfig`
//! shared by every shard, and a certificate verifier that records the leaf it was shown and
//! then delegates to webpki — so a result carries the leaf's notAfter, issuer and SAN count
//! even when the certificate is refused.
//!
//! Roots: webpki-roots (Mozilla's list, built in), plus the OS bundle when one exists, plus an
//! optional extra CA file (`prober.tls_extra_ca_file`: private CAs, the test fleet's CA).
//! Session resumption is off: every check is a full handshake that verifies the chain.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::probe::remaining;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use jetmon_shared::outcome::Outcome;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    Error as TlsError, PeerIncompatible, RootCertStore, SignatureScheme,
};

/// Where Linux distributions keep their CA bundle; the first that exists is loaded.
pub const OS_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Arch, macOS-like layouts
];
/// Longest issuer text kept (it travels in every HTTPS result).
pub const MAX_ISSUER_BYTES: usize = 256;

/// Detail codes of TLS outcomes.
pub mod detail {
    /// The server speaks only TLS 1.0/1.1 (with `tls_deprecated`).
    pub const LEGACY_ONLY: u16 = 1;
    pub const PEER_INCOMPATIBLE: u16 = 2;
    pub const PEER_MISBEHAVED: u16 = 3;
    pub const INVALID_MESSAGE: u16 = 4;
    /// The server closed the connection in the middle of the handshake.
    pub const CLOSED_IN_HANDSHAKE: u16 = 5;
    pub const NO_CERTIFICATE: u16 = 6;
    pub const OTHER: u16 = 9;
    pub const CERT_UNKNOWN_ISSUER: u16 = 20;
    pub const CERT_BAD_SIGNATURE: u16 = 21;
    pub const CERT_BAD_ENCODING: u16 = 22;
    pub const CERT_REVOKED: u16 = 23;
    pub const CERT_WRONG_PURPOSE: u16 = 24;
    pub const CERT_OTHER: u16 = 29;
    /// A TLS alert from the server: this plus the alert's number (e.g. 1040 = handshake_failure).
    pub const ALERT_BASE: u16 = 1000;
}

/// What the handshake told us about the server's certificate and session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// Negotiated version as on the wire (0x0303 = TLS 1.2, 0x0304 = TLS 1.3); 0 = none.
    pub version: u16,
    pub cipher: u16,
    /// The leaf's notAfter (Unix seconds); 0 = no certificate seen.
    pub not_after_s: i64,
    pub san_count: u16,
}

/// The leaf as the verifier saw it (before deciding whether to trust it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaf {
    pub not_after_s: i64,
    pub san_count: u16,
    /// The issuer's common name, else its whole distinguished name (≤ 256 bytes).
    pub issuer: String,
}

impl Leaf {
    /// Reads the facts we report from a DER certificate; None when it does not parse.
    pub fn parse(der: &[u8]) -> Option<Leaf> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let issuer = cert
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok().map(str::to_owned))
            .unwrap_or_else(|| cert.issuer().to_string());
        let san_count = match cert.subject_alternative_name() {
            Ok(Some(san)) => san.value.general_names.len().min(usize::from(u16::MAX)) as u16,
            _ => 0,
        };
        Some(Leaf {
            not_after_s: cert.validity().not_after.timestamp(),
            san_count,
            issuer: truncate(issuer, MAX_ISSUER_BYTES),
        })
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

thread_local! {
    /// The leaf the verifier saw last on this thread. Verification runs synchronously inside
    /// `process_new_packets`, and a shard is one thread, so the probe that called it takes it
    /// right after: no other handshake can interleave.
    static SEEN: RefCell<Option<Leaf>> = const { RefCell::new(None) };
}

/// Takes (and clears) the leaf recorded by the last verification on this thread.
pub fn take_seen_leaf() -> Option<Leaf> {
    SEEN.with(|s| s.borrow_mut().take())
}

/// Records the presented chain, then lets webpki decide.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        SEEN.with(|s| *s.borrow_mut() = Leaf::parse(end_entity.as_ref()));
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Where the trust anchors came from (logged at start).
#[derive(Debug, Clone, Default)]
pub struct Roots {
    pub builtin: usize,
    pub os: usize,
    pub os_bundle: Option<&'static str>,
    pub extra: usize,
}

/// Builds the shared client configuration. A bad extra CA file is a configuration error
/// (one line naming the file); a missing OS bundle is not (webpki-roots remain).
pub fn client_config(extra_ca_file: Option<&Path>) -> Result<(Arc<ClientConfig>, Roots), String> {
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut roots = Roots {
        builtin: store.len(),
        ..Roots::default()
    };
    let bundle = OS_BUNDLES.iter().find(|p| Path::new(p).exists());
    if let Some((bundle, iter)) =
        bundle.and_then(|b| Some((b, CertificateDer::pem_file_iter(b).ok()?)))
    {
        let (added, _) = store.add_parsable_certificates(iter.flatten());
        roots.os = added;
        roots.os_bundle = Some(bundle);
    }
    if let Some(path) = extra_ca_file {
        let shown = path.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{shown}: no PEM certificate in it"));
        }
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| format!("{shown}: not a usable CA certificate: {e}"))?;
            roots.extra += 1;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| format!("building the certificate verifier: {e}"))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordingVerifier { inner: webpki }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Ok((Arc::new(config), roots))
}

/// The outcome and detail of a failed handshake.
pub fn classify(e: &TlsError) -> (Outcome, u16) {
    match e {
        TlsError::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                (Outcome::TlsCertExpired, 0)
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                (Outcome::TlsCertNotYetValid, 0)
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (Outcome::TlsCertHostname, 0)
            }
            CertificateError::UnknownIssuer => {
                (Outcome::TlsCertUntrusted, detail::CERT_UNKNOWN_ISSUER)
            }
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                (Outcome::TlsCertUntrusted, detail::CERT_BAD_SIGNATURE)
            }
            CertificateError::BadEncoding => (Outcome::TlsCertUntrusted, detail::CERT_BAD_ENCODING),
            CertificateError::Revoked => (Outcome::TlsCertUntrusted, detail::CERT_REVOKED),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                (Outcome::TlsCertUntrusted, detail::CERT_WRONG_PURPOSE)
            }
            _ => (Outcome::TlsCertUntrusted, detail::CERT_OTHER),
        },
        TlsError::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13)
        | TlsError::AlertReceived(AlertDescription::ProtocolVersion) => {
            (Outcome::TlsDeprecated, detail::LEGACY_ONLY)
        }
        TlsError::AlertReceived(alert) => (
            Outcome::TlsHandshake,
            detail::ALERT_BASE + u16::from(u8::from(*alert)),
        ),
        TlsError::PeerIncompatible(_) => (Outcome::TlsHandshake, detail::PEER_INCOMPATIBLE),
        TlsError::PeerMisbehaved(_) => (Outcome::TlsHandshake, detail::PEER_MISBEHAVED),
        TlsError::InvalidMessage(_)
        | TlsError::InappropriateMessage { .. }
        | TlsError::InappropriateHandshakeMessage { .. }
        | TlsError::PeerSentOversizedRecord => (Outcome::TlsHandshake, detail::INVALID_MESSAGE),
        TlsError::NoCertificatesPresented => (Outcome::TlsHandshake, detail::NO_CERTIFICATE),
        _ => (Outcome::TlsHandshake, detail::OTHER),
    }
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    Tls(TlsError),
    Io(io::Error),
    /// The server closed the connection mid-handshake.
    Closed,
}

/// A TLS session over a glommio stream, driven by hand. `cipher` is the socket read buffer
/// (ciphertext, possibly holding bytes not yet given to rustls); plaintext comes out into
/// the caller's buffer.
pub struct TlsConn<'b> {
    pub tcp: TcpStream,
    tls: ClientConnection,
    cipher: &'b mut Vec<u8>,
    pos: usize,
    filled: usize,
    out: Vec<u8>,
    /// A close_notify or the socket's end was seen.
    eof: bool,
}

impl<'b> TlsConn<'b> {
    /// Starts a client session for `host` (a DNS name or an IP literal).
    pub fn new(
        tcp: TcpStream,
        config: &Arc<ClientConfig>,
        host: &str,
        cipher: &'b mut Vec<u8>,
    ) -> Result<TlsConn<'b>, HandshakeError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| HandshakeError::Tls(TlsError::UnsupportedNameType))?;
        let tls = ClientConnection::new(config.clone(), name).map_err(HandshakeError::Tls)?;
        Ok(TlsConn {
            tcp,
            tls,
            cipher,
            pos: 0,
            filled: 0,
            out: Vec::new(),
            eof: false,
        })
    }

    /// Sends whatever rustls has queued (handshake messages, alerts, encrypted data).
    async fn flush(&mut self, deadline: Instant) -> io::Result<()> {
        while self.tls.wants_write() {
            self.out.clear();
            self.tls.write_tls(&mut self.out)?;
            let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
            self.tcp.set_write_timeout(Some(left))?;
            self.tcp.write_all(&self.out).await?;
        }
        Ok(())
    }

    /// Gives rustls buffered ciphertext, or reads more from the socket. Ok(false) = the
    /// socket ended.
    async fn pump(&mut self, deadline: Instant) -> Result<bool, HandshakeError> {
        if self.pos >= self.filled {
            let left =
                remaining(deadline).ok_or(HandshakeError::Io(io::ErrorKind::TimedOut.into()))?;
            self.tcp
                .set_read_timeout(Some(left))
                .map_err(|e| HandshakeError::Io(e.into()))?;
            let n = self
                .tcp
                .read(self.cipher)
                .await
                .map_err(HandshakeError::Io)?;
            if n == 0 {
                return Ok(false);
            }
            (self.pos, self.filled) = (0, n);
        }
        let mut slice = &self.cipher[self.pos..self.filled];
        let used = self.tls.read_tls(&mut slice).map_err(HandshakeError::Io)?;
        self.pos += used;
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the server why (the alert rustls queued), then report.
            let _ = self.flush(deadline).await;
            return Err(HandshakeError::Tls(e));
        }
        Ok(true)
    }

    /// Completes the handshake by `deadline`.
    pub async fn handshake(&mut self, deadline: Instant) -> Result<TlsFacts, HandshakeError> {
        while self.tls.is_handshaking() {
            self.flush(deadline).await.map_err(HandshakeError::Io)?;
            if !self.tls.is_handshaking() {
                break;
            }
            if !self.pump(deadline).await? {
                return Err(HandshakeError::Closed);
            }
        }
        self.flush(deadline).await.map_err(HandshakeError::Io)?;
        Ok(TlsFacts {
            version: self.tls.protocol_version().map_or(0, u16::from),
            cipher: self
                .tls
                .negotiated_cipher_suite()
                .map_or(0, |s| u16::from(s.suite())),
            not_after_s: 0,
            san_count: 0,
        })
    }

    /// Encrypts and sends `data`.
    pub async fn write_all(&mut self, data: &[u8], deadline: Instant) -> io::Result<()> {
        self.tls.writer().write_all(data)?;
        self.flush(deadline).await
    }

    /// Reads plaintext into `buf`; Ok(0) = the server is done (close_notify or end of socket:
    /// a server that just closes is common, and the HTTP framing judges truncation).
    pub async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.pump(deadline).await {
                Ok(true) => {}
                Ok(false) => self.eof = true,
                Err(HandshakeError::Io(e)) => return Err(e),
                Err(HandshakeError::Tls(e)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                Err(HandshakeError::Closed) => self.eof = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_map_to_their_codes() {
        let cert = |c| classify(&TlsError::InvalidCertificate(c)).0;
        assert_eq!(cert(CertificateError::Expired), Outcome::TlsCertExpired);
        assert_eq!(
            cert(CertificateError::NotValidYet),
            Outcome::TlsCertNotYetValid
        );
        assert_eq!(
            cert(CertificateError::NotValidForName),
            Outcome::TlsCertHostname
        );
        assert_eq!(
            cert(CertificateError::UnknownIssuer),
            Outcome::TlsCertUntrusted
        );
        assert_eq!(
            cert(CertificateError::BadSignature),
            Outcome::TlsCertUntrusted
        );
        assert_eq!(
            classify(&TlsError::PeerIncompatible(
                PeerIncompatible::ServerDoesNotSupportTls12Or13
            )),
            (Outcome::TlsDeprecated, detail::LEGACY_ONLY)
        );
        assert_eq!(
            classify(&TlsError::AlertReceived(AlertDescription::HandshakeFailure)),
            (Outcome::TlsHandshake, detail::ALERT_BASE + 40)
        );
    }

    #[test]
    fn config_builds_with_builtin_roots_and_rejects_a_bad_extra_file() {
        let (config, roots) = client_config(None).expect("config");
        assert!(roots.builtin > 100, "{roots:?}");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let dir = tempfile::tempdir().expect("dir");
        let bad = dir.path().join("ca.pem");
        std::fs::write(&bad, "not a certificate\n").expect("write");
        let err = client_config(Some(&bad)).expect_err("no cert in it");
        assert!(err.contains("no PEM certificate"), "{err}");
        let missing = client_config(Some(&dir.path().join("missing.pem"))).expect_err("missing");
        assert!(missing.contains("missing.pem"), "{missing}");
    }

    #[test]
    fn leaf_parsing_never_panics_on_garbage() {
        assert_eq!(Leaf::parse(b""), None);
        assert_eq!(Leaf::parse(&[0x30, 0x82, 0xff, 0xff, 1, 2, 3]), None);
        assert_eq!(truncate("é".repeat(200), 255).len(), 254);
    }
}
