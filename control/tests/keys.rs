//! `jetmon keys`: the token is printed once and is nowhere in the database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_jetmon");

fn jetmon(cfg: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keys_are_shown_once_stored_hashed_revoked_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jetmon.db");
    let cfg = dir.path().join("jetmon.toml");
    std::fs::write(
        &cfg,
        format!("[control]\ndatabase_url = \"sqlite:{}\"\n", db.display()),
    )
    .unwrap();
    let (ok, token, err) = jetmon(
        &cfg,
        &["keys", "create", "--name", "ci", "--scope", "write"],
    );
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("jm_") && token.len() == 46, "{token}");
    assert!(err.contains("shown once"), "{err}");
    let (ok, list, _) = jetmon(&cfg, &["keys", "list"]);
    assert!(ok);
    assert!(
        list.contains(&token[..9]) && list.contains("write") && list.contains("ci"),
        "{list}"
    );
    assert!(
        !list.contains(&token),
        "the listing shows the token: {list}"
    );
    let (ok, _, err) = jetmon(&cfg, &["keys", "rotate", "1", "--grace-hours", "1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = jetmon(&cfg, &["keys", "revoke", "2"]);
    assert!(ok, "{err}");
    let (ok, list, _) = jetmon(&cfg, &["keys", "list"]);
    assert!(
        ok && list.contains("revoked") && list.contains("expires in"),
        "{list}"
    );
    // Bad input: a clear line, a failure exit.
    let (ok, _, err) = jetmon(&cfg, &["keys", "create", "--name", "x", "--scope", "root"]);
    assert!(!ok && err.contains("--scope"), "{err}");
    let (ok, _, err) = jetmon(&cfg, &["keys", "revoke", "99"]);
    assert!(!ok && err.contains("no active API key 99"), "{err}");
    // The token is nowhere on disk (database and WAL).
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is stored in clear"
        );
    }
}
