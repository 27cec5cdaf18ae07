//! Notifications in control: the deliverer (`jetmon-deliver`) built from the configuration,
//! probe safety for receivers, the deployment's own subscriptions (the WPCOM notice) and the
//! demo's webhook. The supervisor only starts it, nudges it after each batch and renders its
//! metrics.

use std::time::Duration;

use anyhow::{Context, Result};
use jetmon_control::demo;
use jetmon_control::store::Store;
use jetmon_shared::config::Config;

use super::unix_us;

/// The deployment's own subscriptions: the WPCOM notice, when configured (every site with a
/// v1 id, its state changes).
pub(super) fn operator_subscriptions(config: &Config) -> Result<Vec<jetmon_outbox::Subscription>> {
    Ok(match wpcom(config)? {
        Some(_) => vec![jetmon_outbox::Subscription {
            kind: jetmon_outbox::Kind::Wpcom,
            id: 1,
            tenant_id: None,
            event_types: vec![jetmon_outbox::EventType::SiteStateChanged],
            site_ids: vec![],
            states: vec![],
            active: true,
        }],
        None => Vec::new(),
    })
}

/// The deliverer (`jetmon-deliver`): its own thread, runtime and pool. Receivers pass probe
/// safety with `control.delivery_allow_cidrs`; the demo adds its own receiver's socket.
pub(super) fn start_deliverer(
    config: &Config,
    host: &str,
    demo: bool,
) -> Result<jetmon_deliver::Deliverer> {
    let safety = delivery_safety(config, demo);
    jetmon_deliver::Deliverer::start(jetmon_deliver::Options {
        database_url: config.control.database_url.clone(),
        host: host.to_owned(),
        vault: jetmon_control::secrets::vault(&config.control),
        safety,
        lease: Duration::from_secs(u64::from(config.control.delivery_lease_s)),
        extra_ca: config.control.delivery_ca_file.clone(),
        user_agent: format!("Jetmon/{} (webhook)", env!("CARGO_PKG_VERSION")),
        wpcom: wpcom(config)?,
    })
}

/// The WPCOM notice's URL and token, when `control.wpcom_notice_url` is set.
fn wpcom(config: &Config) -> Result<Option<(String, String)>> {
    let Some(url) = config
        .control
        .wpcom_notice_url
        .clone()
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    let file = config
        .control
        .wpcom_token_file
        .as_ref()
        .context("control.wpcom_token_file is needed with control.wpcom_notice_url")?;
    let token = std::fs::read_to_string(file)
        .with_context(|| format!("control.wpcom_token_file {}", file.display()))?
        .trim()
        .to_owned();
    anyhow::ensure!(
        !token.is_empty() && !token.chars().any(char::is_control),
        "control.wpcom_token_file {}: no token in it",
        file.display()
    );
    Ok(Some((url, token)))
}

/// Probe safety for receivers: `control.delivery_allow_cidrs`, and the demo's own receiver.
pub(super) fn delivery_safety(config: &Config, demo: bool) -> jetmon_shared::safety::ProbeSafety {
    let safety = jetmon_shared::safety::ProbeSafety::new(config.control.delivery_allow_list());
    if demo {
        safety.allowing_sockets(demo::DEMO_ADDR.parse().into_iter().collect())
    } else {
        safety
    }
}

/// The demo's webhook to its own receiver: made with the demo sites (so one deleted stays
/// deleted); its secrets handed to the receiver. Whether there is one.
pub(super) async fn demo_webhook(store: &Store, added: bool) -> Result<bool> {
    let url = demo::hook_url();
    let find = || async {
        Ok::<_, anyhow::Error>(
            store
                .scoped(jetmon_control::store::Tenancy::All)
                .webhooks_page(0, 1000)
                .await?
                .into_iter()
                .find(|w| w.url == url),
        )
    };
    let mut hook = find().await?;
    if hook.is_none() && added {
        let secret = jetmon_outbox::sign::new_secret().context("no randomness for a secret")?;
        store
            .create_webhook(&jetmon_control::store::NewWebhook {
                tenant_id: jetmon_control::store::DEFAULT_TENANT,
                url: url.clone(),
                description: "the demo's own receiver (jetmon up --demo)".into(),
                event_types: vec![],
                site_ids: vec![],
                states: vec![],
                secret,
                max_in_flight: 4,
                retry_ladder_s: vec![],
            })
            .await?;
        hook = find().await?;
    }
    let Some(hook) = hook else {
        return Ok(false);
    };
    demo::set_hook_secrets(store.webhook_secrets(hook.id, unix_us()).await?);
    Ok(true)
}
