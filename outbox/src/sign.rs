//! Both signatures every delivery carries (notifications.md): Jetmon 2's
//! `X-Jetmon-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` and Standard
//! Webhooks 1.0's `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<t>.<body>")>`, where
//! the secret is shown once as `whsec_<base64 key>`: Jetmon 2's scheme signs with the whole
//! `whsec_…` text as its secret, Standard Webhooks with the key bytes inside it. During a
//! rotation's grace both the new and the previous secret sign (space-separated).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "whsec_";
/// Bytes of a new webhook key.
pub const KEY_BYTES: usize = 24;

/// A new webhook secret, `whsec_<base64 of 24 random bytes>`.
pub fn new_secret() -> Option<String> {
    let mut raw = [0u8; KEY_BYTES];
    SystemRandom::new().fill(&mut raw).ok()?;
    Some(format!("{PREFIX}{}", STANDARD.encode(raw)))
}

/// The key bytes a `whsec_` secret holds (Standard Webhooks signs with these).
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(PREFIX)?)
        .ok()
        .filter(|k| !k.is_empty())
}

fn mac(key: &[u8], parts: &[&[u8]]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `X-Jetmon-Signature` for `body` at unix time `t`, signed by each of `secrets`.
pub fn jetmon(secrets: &[&str], t: u64, body: &[u8]) -> String {
    let t_text = t.to_string();
    let sigs: Vec<String> = secrets
        .iter()
        .map(|s| {
            let tag = mac(s.as_bytes(), &[t_text.as_bytes(), b".", body]);
            format!("v1={}", hex(tag.as_ref()))
        })
        .collect();
    format!("t={t},{}", sigs.join(","))
}

/// `webhook-signature` for delivery `id` at unix time `t`, signed by each of `secrets`
/// (space-separated); a secret that is not `whsec_…` signs nothing.
pub fn standard(secrets: &[&str], id: &str, t: u64, body: &[u8]) -> String {
    let t_text = t.to_string();
    let sigs: Vec<String> = secrets
        .iter()
        .filter_map(|s| key_of(s))
        .map(|k| {
            let tag = mac(&k, &[id.as_bytes(), b".", t_text.as_bytes(), b".", body]);
            format!("v1,{}", STANDARD.encode(tag.as_ref()))
        })
        .collect();
    sigs.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_verifies() {
        // The example of the Standard Webhooks specification (standard-webhooks.md).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = standard(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn jetmon_signatures_are_hex_hmacs_of_time_dot_body() {
        let s = jetmon(&["k"], 1700000000, b"{}");
        assert!(s.starts_with("t=1700000000,v1="), "{s}");
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        // During a grace: both secrets sign.
        let both = jetmon(&["new", "old"], 1, b"x");
        assert_eq!(both.matches("v1=").count(), 2);
        let both = standard(
            &[&new_secret().unwrap(), &new_secret().unwrap()],
            "1.w1",
            1,
            b"x",
        );
        assert_eq!(both.split(' ').count(), 2);
        assert!(key_of("not-a-secret").is_none());
        assert_eq!(key_of(&new_secret().unwrap()).unwrap().len(), KEY_BYTES);
    }
}
