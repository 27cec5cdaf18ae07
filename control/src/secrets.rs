//! Where control's secrets are sealed (docs/notifications.md, "Secrets at rest"): the vault
//! every store of this process uses, from `control.secret_key_file`, `JETMON_SECRET_KEY`, or
//! (SQLite only) the file beside the database.

use std::sync::Arc;

use anyhow::Result;
use jetmon_secrets::Vault;
use jetmon_shared::config::ControlConfig;
use jetmon_store::Store;

/// The vault for this configuration. With SQLite a missing key file is created when a secret
/// is first stored; with PostgreSQL it must be given (every host must hold the same key).
pub fn vault(config: &ControlConfig) -> Arc<Vault> {
    let sqlite = config.database_url.starts_with("sqlite:");
    let configured = config
        .secret_key_file
        .clone()
        .filter(|f| !f.as_os_str().is_empty());
    let (file, create) = match configured {
        Some(f) => (Some(f), sqlite),
        None => (jetmon_secrets::default_file(&config.database_url), true),
    };
    let missing = match &file {
        Some(f) => format!(
            "no secret key: {} does not exist (make one with `jetmon secrets new-key`, the same \
             file on every host) or set JETMON_SECRET_KEY",
            f.display()
        ),
        None => "no secret key: with PostgreSQL, set control.secret_key_file to a key file \
                 every host shares (`jetmon secrets new-key` makes one) or JETMON_SECRET_KEY"
            .to_owned(),
    };
    Arc::new(Vault::new(file, create, missing))
}

/// Opens (and migrates) the store with this configuration's vault.
pub async fn open_store(config: &ControlConfig, host: &str) -> Result<Store> {
    Ok(Store::open(&config.database_url, host)
        .await?
        .with_vault(vault(config)))
}

/// `jetmon secrets …`: the keys that seal stored secrets (docs/notifications.md).
#[derive(clap::Subcommand, Debug)]
pub enum SecretsCmd {
    /// Append a new key to the key file (creating it, mode 0600): it seals from now on, in
    /// running processes too (they re-read the file); values sealed before still open.
    NewKey,
    /// Add a new key, then seal every stored secret again under it, 500 at a time, while
    /// everything keeps running. Afterwards `status` shows the old keys unused: they may be
    /// removed from the file.
    RotateKey,
    /// The key file, its keys, and how many stored secrets each seals.
    Status,
}

/// The key file `new-key` and `rotate-key` write: the configured one, else SQLite's default.
fn key_file(config: &ControlConfig) -> Result<std::path::PathBuf> {
    if std::env::var_os(jetmon_secrets::ENV).is_some() {
        anyhow::bail!(
            "the key comes from {} here; add the new key line (`<id> <base64 key>`) there yourself",
            jetmon_secrets::ENV
        );
    }
    config
        .secret_key_file
        .clone()
        .filter(|f| !f.as_os_str().is_empty())
        .or_else(|| jetmon_secrets::default_file(&config.database_url))
        .ok_or_else(|| {
            anyhow::anyhow!("set control.secret_key_file (PostgreSQL has no default key file)")
        })
}

pub async fn run(config: &ControlConfig, store: &Store, cmd: SecretsCmd) -> Result<()> {
    match cmd {
        SecretsCmd::NewKey => {
            let path = key_file(config)?;
            let id = jetmon_secrets::add_key(&path)?;
            println!(
                "added key {id} to {}; it seals new secrets from now on",
                path.display()
            );
            println!("(copy the file to every host of this deployment; back it up)");
        }
        SecretsCmd::RotateKey => {
            let path = key_file(config)?;
            let id = jetmon_secrets::add_key(&path)?;
            println!("added key {id} to {}", path.display());
            let counts = store.sealed_key_ids().await?;
            let todo: u64 = counts
                .iter()
                .filter(|(k, _)| k.as_str() != id)
                .map(|(_, n)| n)
                .sum();
            let bar = indicatif::ProgressBar::new(todo);
            bar.set_style(
                indicatif::ProgressStyle::with_template("sealing again {bar:40} {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let mut done = 0u64;
            loop {
                let n = store.reseal_batch(500).await?;
                if n == 0 {
                    break;
                }
                done += n as u64;
                bar.set_position(done);
            }
            bar.finish_and_clear();
            println!("sealed {done} secret(s) again under {id}");
            status(store).await?;
        }
        SecretsCmd::Status => {
            match store.vault().map(|v| v.current()) {
                Some(Ok(ring)) => println!(
                    "keys in {}: {} (the last seals)",
                    ring.source,
                    ring.ids().join(", ")
                ),
                Some(Err(e)) => println!("no keys yet: {e:#}"),
                None => println!("no vault"),
            }
            status(store).await?;
        }
    }
    Ok(())
}

async fn status(store: &Store) -> Result<()> {
    let counts = store.sealed_key_ids().await?;
    if counts.is_empty() {
        println!("no stored secrets");
    }
    for (id, n) in counts {
        println!("{n:>8} secret(s) sealed with {id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use jetmon_secrets::Purpose;

    fn config(url: &str, key: Option<std::path::PathBuf>) -> ControlConfig {
        ControlConfig {
            database_url: url.to_owned(),
            secret_key_file: key,
            ..ControlConfig::default()
        }
    }

    #[test]
    fn the_configured_file_seals_and_postgres_needs_one() {
        let dir = tempfile::tempdir().unwrap();
        // SQLite with a configured file: that file, created on first need.
        let custom = dir.path().join("custom.key");
        let db = format!("sqlite:{}", dir.path().join("j.db").display());
        let v = vault(&config(&db, Some(custom.clone())));
        v.seal(Purpose::CheckSecrets, "x").unwrap();
        assert!(custom.exists());
        assert!(
            !dir.path().join("j.key").exists(),
            "not the default beside the database"
        );
        // PostgreSQL without one: refused, saying what to set.
        let pg = vault(&config("postgres://db/jetmon", None));
        let e = pg.seal(Purpose::CheckSecrets, "x").unwrap_err().to_string();
        assert!(e.contains("control.secret_key_file"), "{e}");
        // PostgreSQL with a file that does not exist: not created (hosts must share it).
        let shared = dir.path().join("shared.key");
        let pg = vault(&config("postgres://db/jetmon", Some(shared.clone())));
        let e = pg.seal(Purpose::CheckSecrets, "x").unwrap_err().to_string();
        assert!(e.contains("jetmon secrets new-key"), "{e}");
        assert!(!shared.exists());
        // Once made, it seals.
        jetmon_secrets::add_key(&shared).unwrap();
        assert!(pg.seal(Purpose::CheckSecrets, "x").is_ok());
    }
}
