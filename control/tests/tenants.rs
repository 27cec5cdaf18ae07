//! Tenant isolation (docs/tenants.md), on SQLite and PostgreSQL, through `jetmon up`: tenant A
//! (acme) builds sites, endpoints, checks, maintenance, events, statistics, a job and keys with
//! its own key; then tenant B's admin key walks **every operation of the OpenAPI document**
//! naming A's objects — 404 for each, absent from every list, filter, cursor, bulk and SLA — and
//! the test fails if any documented operation is left out of the walk. Gateway keys act only
//! with their headers; other keys' headers are refused; an operator key sees both tenants;
//! a deactivated tenant's keys are refused and its checks pause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use serde_json::{Value, json};

/// Everything A owns, by id.
struct World {
    site: u64,
    endpoint: u64,
    check: u64,
    window: u64,
    event: u64,
    job: u64,
    key: u64,
    webhook: u64,
    delivery: String,
    url: String,
}

fn ids(list: &Value) -> Vec<u64> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect()
}

fn site_ids(list: &Value, field: &str) -> Vec<u64> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_u64().unwrap())
        .collect()
}

/// A tenant's world, made through its own key: a site whose target refuses connections (so
/// it has events), a second endpoint with a check, a maintenance window, an async job.
fn build(api: &mut Api, key: &str, admin: &str, port: u16, name: &str) -> World {
    let url = format!("http://127.0.0.1:{port}/{name}");
    let r = api.call(
        "POST",
        "/api/v1/sites",
        key,
        Some(json!({"url": url, "name": name, "interval_s": 10, "blog_id": 7})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let site = id_of(&r.body["site"]);
    let r = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/endpoints"),
        key,
        Some(json!({"url": format!("{url}/second")})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let endpoint = id_of(&r.body);
    let r = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/checks"),
        key,
        Some(json!({"endpoint_id": endpoint, "interval_s": 10})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let check = id_of(&r.body);
    let r = api.call(
        "PUT",
        &format!("/api/v1/sites/{site}/maintenance"),
        key,
        Some(json!({"windows": [{"weekly": {"day": "sunday", "time": "23:00", "duration_minutes": 60}}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let window = r.body["data"][0]["id"].as_u64().unwrap();
    let r = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/trigger-now?async=true"),
        key,
        None,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job = id_of(&r.body);
    let mut event = 0;
    eventually(
        "an event on the failing site",
        Duration::from_secs(90),
        || {
            let r = api.call("GET", &format!("/api/v1/sites/{site}/events"), key, None);
            event = r.body["data"][0]["id"].as_u64().unwrap_or(0);
            event != 0
        },
    );
    let r = api.call(
        "POST",
        "/api/v1/keys",
        admin,
        Some(json!({"name": format!("{name}-reader"), "scope": "read"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["key"]["kind"], "tenant");
    let reader = id_of(&r.body["key"]);
    let r = api.call(
        "POST",
        "/api/v1/webhooks",
        key,
        Some(json!({"url": format!("http://127.0.0.2:9/{name}")})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let webhook = id_of(&r.body["webhook"]);
    let r = api.call(
        "POST",
        &format!("/api/v1/webhooks/{webhook}/test"),
        key,
        None,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let delivery = r.body["delivery_id"].as_str().unwrap().to_owned();
    World {
        site,
        endpoint,
        check,
        window,
        event,
        job,
        key: reader,
        webhook,
        delivery,
        url,
    }
}

/// B (its admin key) walks every operation naming A's objects.
fn walk(api: &mut Api, b: &str, a: &World, own: &World, a_cursor: &str) {
    let s = a.site;
    let not_found = |api: &mut Api, method: &str, path: &str, body: Option<Value>| {
        let r = api.call(method, path, b, body);
        assert_eq!(r.status, 404, "{method} {path} as tenant B: {}", r.body);
        assert!(
            !r.body.to_string().contains(&a.url),
            "{method} {path} leaks A's URL: {}",
            r.body
        );
    };
    // System routes: B's own identity, nothing of A's.
    for path in ["/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json"] {
        let r = api.call("GET", path, b, None);
        assert!(!r.body.to_string().contains(&a.url), "{path}");
    }
    let me = api.call("GET", "/api/v1/me", b, None);
    assert_eq!(me.body["tenant"]["name"], "globex", "{}", me.body);
    assert_eq!(me.body["key"]["kind"], "tenant");

    // Sites: lists, filters and A's own cursor show only B's.
    for q in [
        String::new(),
        format!("?tenant_id={}", 2),
        format!("?q={}", "acme"),
        "?blog_id__in=7".to_owned(),
        format!("?cursor={a_cursor}"),
        "?state__in=up,seems_down,down,unknown,paused".to_owned(),
    ] {
        let r = api.call("GET", &format!("/api/v1/sites{q}"), b, None);
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert!(!ids(&r.body).contains(&s), "GET /sites{q} shows A's site");
    }
    let r = api.call("GET", "/api/v1/sites?blog_id__in=7", b, None);
    assert_eq!(ids(&r.body), vec![own.site], "v1 ids are per tenant");
    not_found(
        api,
        "POST",
        "/api/v1/sites",
        Some(json!({"url": "http://127.0.0.1:9/x", "tenant_id": 2})),
    );
    let r = api.call(
        "POST",
        "/api/v1/sites/bulk",
        b,
        Some(json!({"sites": [
            {"id": s, "name": "stolen"},
            {"url": "http://127.0.0.1:9/y", "tenant_id": 2},
            {"url": "http://127.0.0.1:9/z"},
        ]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let statuses: Vec<u64> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![404, 404, 201], "{}", r.body);
    assert_eq!(
        (r.body["updated"].as_u64(), r.body["created"].as_u64()),
        (Some(0), Some(1))
    );
    not_found(api, "GET", &format!("/api/v1/sites/{s}"), None);
    not_found(
        api,
        "PATCH",
        &format!("/api/v1/sites/{s}"),
        Some(json!({"name": "stolen"})),
    );
    not_found(api, "DELETE", &format!("/api/v1/sites/{s}"), None);
    not_found(api, "POST", &format!("/api/v1/sites/{s}/pause"), None);
    not_found(api, "POST", &format!("/api/v1/sites/{s}/resume"), None);
    not_found(api, "POST", &format!("/api/v1/sites/{s}/trigger-now"), None);
    not_found(api, "GET", &format!("/api/v1/jobs/{}", a.job), None);

    // Endpoints and checks, under A's site and under B's own.
    not_found(api, "GET", &format!("/api/v1/sites/{s}/endpoints"), None);
    not_found(
        api,
        "POST",
        &format!("/api/v1/sites/{s}/endpoints"),
        Some(json!({"url": "http://127.0.0.1:9/e"})),
    );
    for site in [s, own.site] {
        let e = format!("/api/v1/sites/{site}/endpoints/{}", a.endpoint);
        not_found(api, "GET", &e, None);
        not_found(api, "PATCH", &e, Some(json!({"critical": false})));
        not_found(api, "DELETE", &e, None);
        let c = format!("/api/v1/sites/{site}/checks/{}", a.check);
        not_found(api, "GET", &c, None);
        not_found(api, "PATCH", &c, Some(json!({"interval_s": 60})));
        not_found(api, "DELETE", &c, None);
        not_found(api, "GET", &format!("{c}/results"), None);
    }
    not_found(api, "GET", &format!("/api/v1/sites/{s}/checks"), None);
    not_found(
        api,
        "POST",
        &format!("/api/v1/sites/{s}/checks"),
        Some(json!({"type": "tcp", "target": "127.0.0.1:9"})),
    );

    // Maintenance.
    not_found(api, "GET", &format!("/api/v1/sites/{s}/maintenance"), None);
    not_found(
        api,
        "PUT",
        &format!("/api/v1/sites/{s}/maintenance"),
        Some(json!({"windows": []})),
    );
    not_found(
        api,
        "DELETE",
        &format!("/api/v1/sites/{s}/maintenance"),
        None,
    );
    for q in ["", "?tenant_id=2"] {
        let r = api.call("GET", &format!("/api/v1/maintenance{q}"), b, None);
        assert_eq!(r.status, 200);
        assert!(!ids(&r.body).contains(&a.window), "{}", r.body);
        assert!(!site_ids(&r.body, "site_id").contains(&s));
    }

    // Events: fleet-wide lists (filters too), A's events and transitions, close.
    for q in [
        String::new(),
        format!("?site_id__in={s}"),
        "?tenant_id=2".to_owned(),
        "?active=true".to_owned(),
    ] {
        let r = api.call("GET", &format!("/api/v1/events{q}"), b, None);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!ids(&r.body).contains(&a.event), "GET /events{q}");
        assert!(!site_ids(&r.body, "site_id").contains(&s));
    }
    not_found(api, "GET", &format!("/api/v1/sites/{s}/events"), None);
    not_found(api, "GET", &format!("/api/v1/events/{}", a.event), None);
    not_found(
        api,
        "GET",
        &format!("/api/v1/events/{}/transitions", a.event),
        None,
    );
    not_found(
        api,
        "POST",
        &format!("/api/v1/events/{}/close", a.event),
        Some(json!({"note": "not yours"})),
    );

    // Statistics: single and many sites (B's own with A's is refused whole).
    not_found(
        api,
        "GET",
        &format!("/api/v1/sites/{s}/sla?window=24h"),
        None,
    );
    not_found(
        api,
        "GET",
        &format!("/api/v1/sla?site_id__in={},{s}&window=24h", own.site),
        None,
    );
    let r = api.call(
        "GET",
        &format!("/api/v1/sla?site_id__in={}&window=24h", own.site),
        b,
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(site_ids(&r.body, "site_id"), vec![own.site]);
    not_found(
        api,
        "GET",
        &format!("/api/v1/sites/{s}/response-time?window=24h"),
        None,
    );
    not_found(
        api,
        "GET",
        &format!("/api/v1/sites/{s}/response-time/series?window=24h&step=1h"),
        None,
    );

    // Keys: A's are not listed, not revocable, not rotatable.
    let r = api.call("GET", "/api/v1/keys", b, None);
    assert!(!ids(&r.body).contains(&a.key), "{}", r.body);
    assert!(
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["tenant_id"] == 3),
        "{}",
        r.body
    );
    not_found(api, "DELETE", &format!("/api/v1/keys/{}", a.key), None);
    not_found(
        api,
        "POST",
        &format!("/api/v1/keys/{}/rotate", a.key),
        Some(json!({})),
    );
    let r = api.call(
        "POST",
        "/api/v1/keys",
        b,
        Some(json!({"name": "sneaky", "scope": "read", "tenant_id": 2})),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/keys",
        b,
        Some(json!({"name": "op", "scope": "read", "kind": "operator"})),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // Webhooks: A's are not listed, not readable, changeable, testable or retryable, and
    // their deliveries are not shown.
    let r = api.call("GET", "/api/v1/webhooks", b, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&r.body), vec![own.webhook], "{}", r.body);
    let w = a.webhook;
    not_found(api, "GET", &format!("/api/v1/webhooks/{w}"), None);
    not_found(
        api,
        "PATCH",
        &format!("/api/v1/webhooks/{w}"),
        Some(json!({"active": false})),
    );
    not_found(
        api,
        "POST",
        &format!("/api/v1/webhooks/{w}/rotate-secret"),
        Some(json!({"grace_hours": 0})),
    );
    not_found(api, "POST", &format!("/api/v1/webhooks/{w}/test"), None);
    not_found(
        api,
        "GET",
        &format!("/api/v1/webhooks/{w}/deliveries"),
        None,
    );
    not_found(
        api,
        "POST",
        &format!("/api/v1/webhooks/{w}/deliveries/{}/retry", a.delivery),
        None,
    );
    // B's own webhook id with A's delivery id: still nothing.
    not_found(
        api,
        "POST",
        &format!(
            "/api/v1/webhooks/{}/deliveries/{}/retry",
            own.webhook, a.delivery
        ),
        None,
    );
    not_found(api, "DELETE", &format!("/api/v1/webhooks/{w}"), None);
    not_found(
        api,
        "POST",
        "/api/v1/webhooks",
        Some(json!({"url": "http://127.0.0.2:9/sneaky", "tenant_id": 2})),
    );

    // Tenants: operator-only routes.
    for (m, p, body) in [
        ("GET", "/api/v1/tenants".to_owned(), None),
        (
            "POST",
            "/api/v1/tenants".to_owned(),
            Some(json!({"name": "mine"})),
        ),
        ("GET", "/api/v1/tenants/2".to_owned(), None),
        (
            "PATCH",
            "/api/v1/tenants/2".to_owned(),
            Some(json!({"active": false})),
        ),
    ] {
        let r = api.call(m, &p, b, body);
        assert_eq!(r.status, 403, "{m} {p}: {}", r.body);
    }
}

fn isolation(database_url: &str, prefix: &str) {
    let mut api = Api::start_plain(database_url, prefix);
    // `jetmon tenants create acme` + `jetmon keys create --tenant acme --scope write`.
    assert_eq!(api.cli(&["tenants", "create", "acme"]), "2");
    assert_eq!(api.cli(&["tenants", "create", "globex"]), "3");
    let tenant_key = |api: &Api, t: &str, scope: &str| {
        api.cli(&[
            "keys", "create", "--tenant", t, "--scope", scope, "--name", t,
        ])
    };
    let a_admin = tenant_key(&api, "acme", "admin");
    let a_write = tenant_key(&api, "acme", "write");
    let b_admin = tenant_key(&api, "3", "admin");
    let operator = api.key("admin");
    let gateway = api.cli(&[
        "keys",
        "create",
        "--gateway",
        "--scope",
        "admin",
        "--name",
        "gw",
    ]);

    let a = build(&mut api, &a_write, &a_admin, 1, "acme");
    let b = build(&mut api, &b_admin, &b_admin, 2, "globex");
    assert_eq!(
        api.call("GET", "/api/v1/me", &a_admin, None).body["tenant"]["id"],
        2
    );
    let r = api.call("GET", "/api/v1/sites?limit=1", &a_write, None);
    assert_eq!(ids(&r.body), vec![a.site]);
    let a_cursor = r.body["page"]["next"].as_str().unwrap_or("").to_owned();
    // A second site for A, so A's cursor has something after it.
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &a_write,
        Some(json!({"url": "http://127.0.0.1:1/acme-two"})),
    );
    assert_eq!(r.status, 201);
    let a_cursor = if a_cursor.is_empty() {
        let r = api.call("GET", "/api/v1/sites?limit=1", &a_write, None);
        r.body["page"]["next"].as_str().unwrap().to_owned()
    } else {
        a_cursor
    };

    // The walk: only B's calls count towards "every operation".
    api.seen.clear();
    walk(&mut api, &b_admin, &a, &b, &a_cursor);
    let missed = api.unexercised();
    assert!(
        missed.is_empty(),
        "operations the isolation walk does not exercise: {missed:?}"
    );

    // A's objects are untouched by B's attempts.
    let r = api.call("GET", &format!("/api/v1/sites/{}", a.site), &a_write, None);
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("acme")));
    let r = api.call(
        "GET",
        &format!("/api/v1/events/{}", a.event),
        &a_write,
        None,
    );
    assert_eq!(r.status, 200);
    let r = api.call("GET", &format!("/api/v1/jobs/{}", a.job), &a_write, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{}/maintenance", a.site),
        &a_write,
        None,
    );
    assert_eq!(ids(&r.body), vec![a.window]);

    // Gateway keys: headers required; others' headers refused; scopes narrow.
    let r = api.call("GET", "/api/v1/sites", &gateway, None);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("gateway_context_required"))
    );
    for k in [&b_admin, &operator] {
        let r = api.call_with(
            "GET",
            "/api/v1/sites",
            k,
            None,
            &[("X-Jetmon-Tenant-ID", "2")],
        );
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (403, Some("forbidden_gateway_context"))
        );
    }
    let as_b = [("X-Jetmon-Tenant-ID", "globex")];
    let r = api.call_with("GET", "/api/v1/sites", &gateway, None, &as_b);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = ids(&r.body);
    assert!(
        seen.contains(&b.site) && !seen.contains(&a.site),
        "{seen:?}"
    );
    let r = api.call_with(
        "GET",
        &format!("/api/v1/sites/{}", a.site),
        &gateway,
        None,
        &as_b,
    );
    assert_eq!(r.status, 404);
    let narrow = [
        ("X-Jetmon-Tenant-ID", "3"),
        ("X-Jetmon-Public-Scopes", "read"),
    ];
    let r = api.call_with("GET", "/api/v1/me", &gateway, None, &narrow);
    assert_eq!(r.body["scopes"], json!(["read"]), "{}", r.body);
    let r = api.call_with(
        "POST",
        "/api/v1/sites",
        &gateway,
        Some(json!({"url": "http://127.0.0.1:9/gw"})),
        &narrow,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api.call_with(
        "GET",
        "/api/v1/sites",
        &gateway,
        None,
        &[("X-Jetmon-Tenant-ID", "nobody")],
    );
    assert_eq!(r.body["error"]["code"], "unknown_tenant");
    // Idempotency keys are per (tenant, key): one key acting for A and for B runs twice.
    let post = |api: &mut Api, t: &str| {
        api.call_with(
            "POST",
            "/api/v1/sites",
            &gateway,
            Some(json!({"url": "http://127.0.0.1:9/idem"})),
            &[("X-Jetmon-Tenant-ID", t), ("Idempotency-Key", "same")],
        )
    };
    let (ra, rb) = (post(&mut api, "acme"), post(&mut api, "globex"));
    assert_eq!((ra.status, rb.status), (201, 201));
    assert_eq!(rb.header("idempotency-replayed"), None);
    assert_eq!(
        (
            ra.body["site"]["tenant_id"].as_u64(),
            rb.body["site"]["tenant_id"].as_u64()
        ),
        (Some(2), Some(3))
    );

    // An operator key sees both tenants, and narrows with tenant_id.
    let r = api.call("GET", "/api/v1/sites?limit=200", &operator, None);
    let all = ids(&r.body);
    assert!(all.contains(&a.site) && all.contains(&b.site));
    let r = api.call(
        "GET",
        "/api/v1/sites?tenant_id=2&limit=200",
        &operator,
        None,
    );
    assert!(site_ids(&r.body, "tenant_id").iter().all(|t| *t == 2));
    assert!(!ids(&r.body).contains(&b.site));
    let r = api.call("GET", "/api/v1/events?tenant_id=3", &operator, None);
    assert!(site_ids(&r.body, "site_id").iter().all(|s| *s != a.site));

    // Operators create for a tenant (`tenant_id` in the body, also in bulk) and make any
    // kind of key over the API.
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &operator,
        Some(json!({"url": "http://127.0.0.1:9/for-b", "tenant_id": 3})),
    );
    assert_eq!(r.body["site"]["tenant_id"], 3, "{}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/sites/bulk",
        &operator,
        Some(json!({"sites": [{"url": "http://127.0.0.1:9/bulk-b", "tenant_id": 3}]})),
    );
    let made = r.body["results"][0]["id"].as_u64().unwrap();
    let r = api.call("GET", &format!("/api/v1/sites/{made}"), &b_admin, None);
    assert_eq!(r.status, 200, "the bulk-made site is B's: {}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/keys",
        &operator,
        Some(json!({"name": "gw2", "scope": "read", "kind": "gateway"})),
    );
    assert_eq!(r.body["key"]["kind"], "gateway", "{}", r.body);
    let gw2 = r.body["token"].as_str().unwrap().to_owned();
    let r = api.call_with(
        "GET",
        "/api/v1/sites",
        &gw2,
        None,
        &[("X-Jetmon-Tenant-ID", "3")],
    );
    assert!(ids(&r.body).contains(&made), "{}", r.body);

    // Deactivating A: its keys are refused, its checks pause (Paused, not downtime).
    let r = api.call(
        "PATCH",
        "/api/v1/tenants/2",
        &operator,
        Some(json!({"active": false})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.call("GET", "/api/v1/sites", &a_write, None);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("tenant_inactive"))
    );
    let r = api.call_with(
        "GET",
        "/api/v1/sites",
        &gateway,
        None,
        &[("X-Jetmon-Tenant-ID", "2")],
    );
    assert_eq!(r.body["error"]["code"], "tenant_inactive");
    eventually("A's site paused", Duration::from_secs(60), || {
        let r = api.call("GET", &format!("/api/v1/sites/{}", a.site), &operator, None);
        r.body["state"] == "paused"
    });
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{}/checks", a.site),
        &operator,
        None,
    );
    assert!(
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["paused"] == false),
        "the owner's own pause is untouched: {}",
        r.body
    );
    api.cli(&["tenants", "activate", "acme"]);
    // The CLI deactivates too (and renames).
    api.cli(&["tenants", "deactivate", "2"]);
    let r = api.call("GET", "/api/v1/sites", &a_write, None);
    assert_eq!(r.body["error"]["code"], "tenant_inactive");
    api.cli(&["tenants", "activate", "acme"]);
    api.cli(&["tenants", "rename", "acme", "acme-corp"]);
    let r = api.call("GET", "/api/v1/me", &a_write, None);
    assert_eq!(r.body["tenant"]["name"], "acme-corp", "{}", r.body);
    api.cli(&["tenants", "rename", "2", "acme"]);
    let r = api.call("GET", "/api/v1/sites", &a_write, None);
    assert_eq!(r.status, 200);
    eventually("A's site monitored again", Duration::from_secs(60), || {
        let r = api.call("GET", &format!("/api/v1/sites/{}", a.site), &operator, None);
        r.body["state"] != "paused"
    });

    // `jetmon tenants import`: bad rows named by line and nothing written; then idempotent.
    let csv = api._dir.path().join("owners.csv");
    std::fs::write(
        &csv,
        format!(
            "tenant_id,site_id\nglobex,{}\nnobody,{}\nglobex,999999\n",
            a.site, a.site
        ),
    )
    .unwrap();
    let (code, _, err) = api.cli_status(&["tenants", "import", csv.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(":3: no tenant \"nobody\"") && err.contains(":4: no site 999999"),
        "{err}"
    );
    let r = api.call("GET", &format!("/api/v1/sites/{}", a.site), &a_write, None);
    assert_eq!(r.status, 200, "nothing moved: {}", r.body);
    std::fs::write(&csv, format!("tenant,url\nnewco,{}\n", a.url)).unwrap();
    let out = api.cli(&["tenants", "import", "--create", csv.to_str().unwrap()]);
    assert!(
        out.contains("1 moved") && out.contains("1 tenant(s) created"),
        "{out}"
    );
    let out = api.cli(&["tenants", "import", csv.to_str().unwrap()]);
    assert!(out.contains("0 moved"), "{out}");
    let r = api.call("GET", &format!("/api/v1/sites/{}", a.site), &a_write, None);
    assert_eq!(r.status, 404, "the site is newco's now");
    // `jetmon sites import --tenant`: the sites are that tenant's.
    let sites = api._dir.path().join("sites.csv");
    std::fs::write(&sites, "url\nhttp://127.0.0.1:9/imported-for-b\n").unwrap();
    api.cli(&[
        "sites",
        "import",
        "--tenant",
        "globex",
        sites.to_str().unwrap(),
    ]);
    let r = api.call("GET", "/api/v1/sites?q=imported-for-b", &b_admin, None);
    assert_eq!(ids(&r.body).len(), 1, "{}", r.body);
    let r = api.call("GET", "/api/v1/sites?q=imported-for-b", &a_write, None);
    assert!(ids(&r.body).is_empty(), "{}", r.body);
    let list = api.cli(&["tenants", "list"]);
    assert!(list.contains("newco") && list.contains("acme"), "{list}");
}

#[test]
fn isolation_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    isolation(
        &format!("sqlite:{}", dir.path().join("t.db").display()),
        "tens",
    );
}

#[test]
fn isolation_on_postgres() {
    isolation(&common::pg_database("tenants"), "tenp");
}
