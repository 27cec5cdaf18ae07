//! API keys (api.md, "Auth"): tokens `jm_<43 characters>` (32 random bytes, base64url), shown
//! once; only their SHA-256 is stored, with a short visible prefix for listings. Scopes are
//! ordered: admin ⊇ write ⊇ read. Design: docs/api.md.

use anyhow::{Context, Result};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn from_name(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a key with this scope may do what `needed` allows.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// A new token and what is stored of it.
pub struct NewToken {
    /// Shown once, never stored.
    pub token: String,
    pub hash: [u8; 32],
    /// `jm_` and the first 6 characters: enough to recognise a key in a listing.
    pub prefix: String,
}

/// 32 bytes from the kernel's CSPRNG.
fn random_bytes() -> Result<[u8; 32]> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for a new token")?;
    Ok(b)
}

pub fn new_token() -> Result<NewToken> {
    let token = format!(
        "jm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes()?)
    );
    Ok(NewToken {
        hash: hash(&token),
        prefix: token.chars().take(9).collect(),
        token,
    })
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal in time whatever the contents (both are hashes of the same length).
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert!(
            a.token.starts_with("jm_") && a.token.len() == 46,
            "{}",
            a.token
        );
        assert_ne!(a.token, b.token);
        assert_eq!(a.hash, hash(&a.token));
        assert!(hashes_equal(&a.hash, &hash(&a.token)));
        assert!(!hashes_equal(&a.hash, &b.hash));
        assert_eq!(a.prefix.len(), 9);
        assert!(a.token.starts_with(&a.prefix));
    }

    #[test]
    fn scopes_nest() {
        assert!(Scope::Admin.allows(Scope::Write) && Scope::Write.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Write) && !Scope::Write.allows(Scope::Admin));
        for s in [Scope::Read, Scope::Write, Scope::Admin] {
            assert_eq!(Scope::from_name(s.name()), Some(s));
        }
    }
}
