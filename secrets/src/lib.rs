//! `jetmon-secrets`: what Jetmon stores that must not be read from its database — webhook
//! secrets, credentials and custom headers of checks, later SMTP passwords and chat tokens —
//! sealed with AES-256-GCM (`ring`, already what rustls runs on) under a key from a key file
//! (`control.secret_key_file`) or `JETMON_SECRET_KEY`. Design: docs/notifications.md,
//! "Secrets at rest".
//!
//! A sealed value is text, `jms1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`: the key id
//! says which key opens it, so keys rotate (`jetmon secrets rotate-key`: a new key becomes the
//! current one, every value is sealed again under it in batches, old keys stay until nothing
//! uses them). The nonce is 96 random bits per value; the additional data is the value's
//! purpose (`webhook_secret`, `check_secrets`…), so a value copied into another column does
//! not open. This crate knows nothing of the database.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The environment variable that may hold the key file's text instead of a file.
pub const ENV: &str = "JETMON_SECRET_KEY";
const PREFIX: &str = "jms1";
const KEY_LEN: usize = 32;

/// What a sealed value is for (its additional data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    WebhookSecret,
    /// A check's custom request headers and credentials.
    CheckSecrets,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::WebhookSecret => b"webhook_secret",
            Purpose::CheckSecrets => b"check_secrets",
        }
    }
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// The keys that open sealed values; the last one seals new values.
pub struct Keyring {
    keys: Vec<Key>,
    /// Where they came from (a file, or the environment).
    pub source: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids())
            .field("source", &self.source)
            .finish()
    }
}

/// A key id: 1 to 32 letters, digits, `-` or `_` (it is written into every sealed value).
fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Keyring {
    /// Parses a key file: one key per line, `<id> <base64 of 32 random bytes>`; `#` comments
    /// and blank lines skipped; the last key is the current one.
    pub fn parse(text: &str, source: &str) -> Result<Keyring> {
        let mut keys: Vec<Key> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{source}: line {}", n + 1);
            let (id, b64) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("{}: expected `<id> <base64 key>`", at()))?;
            if !valid_id(id) {
                bail!("{}: key id {id:?}: 1 to 32 of A-Z a-z 0-9 - _", at());
            }
            if keys.iter().any(|k| k.id == id) {
                bail!("{}: key id {id:?} appears twice", at());
            }
            let raw = STANDARD
                .decode(b64.trim())
                .ok()
                .filter(|r| r.len() == KEY_LEN)
                .with_context(|| {
                    format!(
                        "{}: the key must be {KEY_LEN} bytes in base64 (`jetmon secrets new-key` makes one)",
                        at()
                    )
                })?;
            let key = UnboundKey::new(&AES_256_GCM, &raw)
                .map_err(|_| anyhow::anyhow!("{}: not an AES-256 key", at()))?;
            keys.push(Key {
                id: id.to_owned(),
                key: LessSafeKey::new(key),
            });
        }
        if keys.is_empty() {
            bail!("{source}: no key (`jetmon secrets new-key` makes one)");
        }
        Ok(Keyring {
            keys,
            source: source.to_owned(),
            rng: SystemRandom::new(),
        })
    }

    /// The keyring from `JETMON_SECRET_KEY` when set, else from `file`; None when neither is
    /// given. A key file readable by others is refused.
    pub fn load(file: Option<&Path>) -> Result<Option<Keyring>> {
        if let Ok(text) = std::env::var(ENV) {
            return Keyring::parse(&text, ENV).map(Some);
        }
        let Some(path) = file else {
            return Ok(None);
        };
        Keyring::read(path).map(Some)
    }

    /// Reads the key file at `path` (mode 0600 or stricter).
    pub fn read(path: &Path) -> Result<Keyring> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading the secret key file {}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{}: the secret key file is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret key file {}", path.display()))?;
        Keyring::parse(&text, &path.display().to_string())
    }

    /// The key ids, oldest first (the last one seals).
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The id of the key new values are sealed with.
    pub fn current(&self) -> &str {
        self.keys.last().map_or("", |k| k.id.as_str())
    }

    /// Seals `plain` for `purpose` under the current key.
    pub fn seal(&self, purpose: Purpose, plain: &str) -> Result<String> {
        let key = self.keys.last().context("no secret key")?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
        let mut buf = plain.as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.aad()),
                &mut buf,
            )
            .map_err(|_| anyhow::anyhow!("sealing a secret failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{PREFIX}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Opens a value sealed for `purpose` by any of this keyring's keys.
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<String> {
        let (id, body) = split(sealed).context("not a sealed value")?;
        let key = self.keys.iter().find(|k| k.id == id).with_context(|| {
            format!(
                "the secret was sealed with key {id:?}, which {} does not hold",
                self.source
            )
        })?;
        let mut raw = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .filter(|r| r.len() >= NONCE_LEN + AES_256_GCM.tag_len())
            .context("a sealed value that is not well formed")?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[..NONCE_LEN]);
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.aad()),
                &mut raw[NONCE_LEN..],
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "a sealed secret does not open (altered, or sealed for another use)"
                )
            })?;
        String::from_utf8(plain.to_vec()).context("a sealed secret that is not text")
    }

    /// Whether `sealed` is sealed with the current key (rotation skips those).
    pub fn is_current(&self, sealed: &str) -> bool {
        key_id(sealed) == Some(self.current())
    }
}

fn split(sealed: &str) -> Option<(&str, &str)> {
    let rest = sealed.strip_prefix(PREFIX)?.strip_prefix('.')?;
    rest.split_once('.')
}

/// The key id a sealed value names.
pub fn key_id(sealed: &str) -> Option<&str> {
    split(sealed).map(|(id, _)| id)
}

/// A new key file line, `<id> <base64 of 32 random bytes>`.
pub fn new_key_line(id: &str) -> Result<String> {
    if !valid_id(id) {
        bail!("key id {id:?}: 1 to 32 of A-Z a-z 0-9 - _");
    }
    let mut raw = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(format!("{id} {}", STANDARD.encode(raw)))
}

/// Appends a new key (it becomes the current one) to the key file at `path`, creating the
/// file (mode 0600) when it does not exist; returns the new key's id (`k<N>`, N one more than
/// the number of keys already there).
pub fn add_key(path: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => Some(Keyring::parse(&t, &path.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let taken = existing.as_ref().map_or(Vec::new(), |k| {
        k.ids().into_iter().map(str::to_owned).collect()
    });
    let id = (taken.len() + 1..)
        .map(|n| format!("k{n}"))
        .find(|id| !taken.contains(id))
        .unwrap_or_else(|| "k1".to_owned());
    let line = new_key_line(&id)?;
    // A new file is created exclusively: two processes creating it at once cannot both
    // write a first key (the loser finds the winner's).
    let mut f = std::fs::OpenOptions::new()
        .create_new(existing.is_none())
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    if existing.is_none() {
        writeln!(
            f,
            "# Jetmon secret keys (docs/notifications.md): `<id> <base64 key>`, the last seals.\n\
             # Keep this file private and backed up: without it, stored secrets cannot be read."
        )?;
    }
    writeln!(f, "{line}")?;
    f.sync_all()?;
    Ok(id)
}

/// Where a process gets its keyring, read when first needed and again whenever the key file
/// changes (so a `jetmon secrets new-key` reaches running processes without a restart).
#[derive(Debug)]
pub struct Vault {
    file: Option<PathBuf>,
    /// Create the file (with one key) when it is missing (SQLite's default file).
    create: bool,
    /// What to say when there is no key at all.
    missing: String,
    cached: std::sync::Mutex<Option<(Option<std::time::SystemTime>, std::sync::Arc<Keyring>)>>,
}

impl Vault {
    /// `file`: the configured key file, or the default one with `create`; `missing`: the
    /// sentence for an operator when neither the environment nor a file gives a key.
    pub fn new(file: Option<PathBuf>, create: bool, missing: impl Into<String>) -> Vault {
        Vault {
            file,
            create,
            missing: missing.into(),
            cached: std::sync::Mutex::new(None),
        }
    }

    /// A vault that holds exactly this keyring (tests, tools).
    pub fn of(ring: Keyring) -> Vault {
        let v = Vault::new(None, false, "");
        if let Ok(mut c) = v.cached.lock() {
            *c = Some((None, std::sync::Arc::new(ring)));
        }
        v
    }

    /// The key file this vault reads, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The current keyring; creates the key file when allowed and missing, `seal` says so.
    fn keyring(&self, seal: bool) -> Result<std::sync::Arc<Keyring>> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if std::env::var_os(ENV).is_none()
            && let Some(path) = &self.file
        {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if mtime.is_none() && seal && self.create {
                if let Err(e) = add_key(path)
                    && std::fs::metadata(path).is_err()
                {
                    return Err(e);
                }
                *cached = None;
            }
            match cached.as_ref() {
                Some((seen, ring)) if *seen == mtime && seen.is_some() => return Ok(ring.clone()),
                _ => {}
            }
            if std::fs::metadata(path).is_ok() {
                let ring = std::sync::Arc::new(Keyring::read(path)?);
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                *cached = Some((mtime, ring.clone()));
                return Ok(ring);
            }
        }
        if let Some((_, ring)) = cached.as_ref() {
            return Ok(ring.clone());
        }
        match Keyring::load(None)? {
            Some(ring) => {
                let ring = std::sync::Arc::new(ring);
                *cached = Some((None, ring.clone()));
                Ok(ring)
            }
            None => bail!("{}", self.missing),
        }
    }

    pub fn seal(&self, purpose: Purpose, plain: &str) -> Result<String> {
        self.keyring(true)?.seal(purpose, plain)
    }

    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<String> {
        self.keyring(false)?.open(purpose, sealed)
    }

    /// The keyring as it is now (rotation, status).
    pub fn current(&self) -> Result<std::sync::Arc<Keyring>> {
        self.keyring(false)
    }
}

/// The last four characters of a secret, for showing which one is set.
pub fn preview(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// The default key file beside a SQLite database (`sqlite:/var/lib/jetmon/jetmon.db` →
/// `/var/lib/jetmon/jetmon.key`); None for other databases, whose processes on several hosts
/// must share one configured key.
pub fn default_file(database_url: &str) -> Option<PathBuf> {
    let path = database_url.strip_prefix("sqlite:")?;
    let path = path.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(Path::new(path).with_extension("key"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text, "test").unwrap()
    }

    #[test]
    fn values_open_with_their_key_and_purpose_only() {
        let one = ring(&new_key_line("k1").unwrap());
        let sealed = one.seal(Purpose::WebhookSecret, "whsec_abc").unwrap();
        assert!(sealed.starts_with("jms1.k1."), "{sealed}");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            one.open(Purpose::WebhookSecret, &sealed).unwrap(),
            "whsec_abc"
        );
        assert!(
            one.open(Purpose::CheckSecrets, &sealed).is_err(),
            "another purpose"
        );
        // Two seals of one value differ (random nonces).
        assert_ne!(
            sealed,
            one.seal(Purpose::WebhookSecret, "whsec_abc").unwrap()
        );
        // A changed byte does not open.
        let mut bad = sealed.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(
            one.open(Purpose::WebhookSecret, std::str::from_utf8(&bad).unwrap())
                .is_err()
        );
        // Another keyring with the same id but another key does not open it either.
        let other = ring(&new_key_line("k1").unwrap());
        assert!(other.open(Purpose::WebhookSecret, &sealed).is_err());
    }

    #[test]
    fn a_new_key_seals_and_old_values_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jetmon.key");
        assert_eq!(add_key(&path).unwrap(), "k1");
        let before = Keyring::read(&path).unwrap();
        let old = before
            .seal(Purpose::CheckSecrets, "Authorization: Bearer x")
            .unwrap();
        assert_eq!(add_key(&path).unwrap(), "k2");
        let after = Keyring::read(&path).unwrap();
        assert_eq!(after.ids(), vec!["k1", "k2"]);
        assert_eq!(after.current(), "k2");
        assert!(!after.is_current(&old));
        assert_eq!(
            after.open(Purpose::CheckSecrets, &old).unwrap(),
            "Authorization: Bearer x"
        );
        let new = after.seal(Purpose::CheckSecrets, "y").unwrap();
        assert_eq!(key_id(&new), Some("k2"));
        assert!(
            before.open(Purpose::CheckSecrets, &new).is_err(),
            "k1 alone cannot"
        );
    }

    #[test]
    fn bad_key_files_are_refused_clearly() {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            Keyring::parse("", "f")
                .unwrap_err()
                .to_string()
                .contains("no key")
        );
        let e = Keyring::parse("k1 c2hvcnQ=", "f").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("32 bytes"), "{e}");
        let line = new_key_line("k1").unwrap();
        let e = Keyring::parse(&format!("{line}\n{line}"), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("open.key");
        std::fs::write(&path, format!("{line}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keyring::read(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!format!("{:?}", ring(&line)).contains(line.split(' ').nth(1).unwrap()));
    }

    #[test]
    fn a_vault_creates_its_default_file_and_follows_new_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jetmon.key");
        let v = Vault::new(Some(path.clone()), true, "no key");
        let a = v.seal(Purpose::WebhookSecret, "s1").unwrap();
        assert_eq!(key_id(&a), Some("k1"));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Another process adds a key: the next seal uses it, old values still open.
        std::thread::sleep(std::time::Duration::from_millis(20));
        add_key(&path).unwrap();
        let b = v.seal(Purpose::WebhookSecret, "s2").unwrap();
        assert_eq!(key_id(&b), Some("k2"));
        assert_eq!(v.open(Purpose::WebhookSecret, &a).unwrap(), "s1");
        // Without a file and without permission to create one, the sentence given.
        let none = Vault::new(
            Some(dir.path().join("absent.key")),
            false,
            "set control.secret_key_file",
        );
        let e = none
            .seal(Purpose::WebhookSecret, "x")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "set control.secret_key_file");
    }

    #[test]
    fn previews_and_default_files() {
        assert_eq!(preview("whsec_abcdef"), "…cdef");
        assert_eq!(preview("ab"), "…ab");
        assert_eq!(
            default_file("sqlite:/var/lib/jetmon/jetmon.db"),
            Some(PathBuf::from("/var/lib/jetmon/jetmon.key"))
        );
        assert_eq!(
            default_file("sqlite:jetmon.db?mode=rwc"),
            Some(PathBuf::from("jetmon.key"))
        );
        assert_eq!(default_file("postgres://db/jetmon"), None);
    }
}
