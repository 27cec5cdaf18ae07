//! The outbox (docs/notifications.md), through `jetmon up --demo` on SQLite: a webhook of the
//! default tenant gets one row per transition of its sites, written with the transition,
//! with the delivery id and frozen payload the outbox decides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use jetmon_control::store::NewWebhook;
use jetmon_shared::config::ControlConfig;
use serde_json::Value;

#[test]
fn every_transition_of_a_subscribed_site_is_enqueued_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("o.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let control = ControlConfig {
        database_url: url.clone(),
        ..ControlConfig::default()
    };
    let store = rt
        .block_on(jetmon_control::secrets::open_store(&control, "test"))
        .unwrap();
    let only_down = rt
        .block_on(store.create_webhook(&NewWebhook {
            tenant_id: 1,
            url: "http://127.0.0.1:9/hook".into(),
            description: "only down".into(),
            event_types: vec![],
            site_ids: vec![],
            states: vec!["down".into()],
            secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=".into(),
            max_in_flight: 4,
            retry_ladder_s: vec![],
        }))
        .unwrap();
    let all = rt
        .block_on(store.create_webhook(&NewWebhook {
            tenant_id: 1,
            url: "http://127.0.0.1:9/all".into(),
            description: String::new(),
            event_types: vec![],
            site_ids: vec![],
            states: vec![],
            secret: "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlYw==".into(),
            max_in_flight: 4,
            retry_ladder_s: vec![],
        }))
        .unwrap();
    let api = Api::start(&url, "obox");
    // The broken demo site opens an event and is confirmed down.
    let broken = rt
        .block_on(store.sites())
        .unwrap()
        .into_iter()
        .find(|s| s.name.contains("broken"))
        .unwrap()
        .id;
    eventually("the broken site's notices", Duration::from_secs(90), || {
        let d = rt.block_on(store.deliveries_of(all)).unwrap();
        d.iter().any(|d| {
            d.site_id == broken
                && d.event_type == "site.state_changed"
                && d.payload.contains("\"state\":\"down\"")
        })
    });
    let deliveries = rt.block_on(store.deliveries_of(all)).unwrap();
    let transitions = rt.block_on(store.transitions_of_site(broken)).unwrap();
    let of_site: Vec<_> = deliveries
        .iter()
        .filter(|d| d.site_id == broken && d.event_type.starts_with("event."))
        .collect();
    assert_eq!(
        of_site.len(),
        transitions.len(),
        "one event notice per transition: {of_site:?} vs {transitions:?}"
    );
    let opened: Value = serde_json::from_str(&of_site[0].payload).unwrap();
    assert_eq!(opened["type"], "event.opened");
    assert_eq!(opened["site"]["id"], broken);
    assert_eq!(opened["event"]["check_type"], "http");
    assert_eq!(opened["event"]["state"], "seems_down");
    assert!(
        opened["site"]["url"].as_str().unwrap().ends_with("/down"),
        "{opened}"
    );
    let tid = opened["transition"]["id"].as_u64().unwrap();
    assert_eq!(opened["id"], format!("{tid}.w{all}"));
    assert_eq!(of_site[0].id, format!("{tid}.w{all}"));
    // The filter on states: only what is (or closed from) down reaches the other webhook.
    let down_only = rt.block_on(store.deliveries_of(only_down)).unwrap();
    assert!(!down_only.is_empty());
    for d in &down_only {
        let v: Value = serde_json::from_str(&d.payload).unwrap();
        let state = if d.event_type == "site.state_changed" {
            v["site"]["state"].clone()
        } else {
            v["event"]["state"].clone()
        };
        assert_eq!(state, "down", "{}", d.payload);
    }
    // The secrets are sealed: neither is in the database file.
    let bytes = std::fs::read(dir.path().join("o.db")).unwrap();
    for s in ["whsec_c2VjcmV0", "whsec_b3RoZXIt"] {
        assert!(
            !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
            "{s} in clear"
        );
    }
    drop(api);
}
