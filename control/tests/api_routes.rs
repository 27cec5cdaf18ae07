//! Every route of the REST API through `jetmon up --demo`, on SQLite and on PostgreSQL: real
//! requests over loopback, bad input of each kind, and every response checked against the
//! OpenAPI document the server serves (and every documented operation exercised).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "harness/mod.rs"]
mod harness;

use harness::*;

fn every_route(database_url: &str, prefix: &str) {
    let mut api = Api::start(database_url, prefix);
    let (read, write, admin) = (api.key("read"), api.key("write"), api.key("admin"));

    // Keys over the API (admin only): create (token once), rotate (grace), revoke (at once).
    assert_eq!(api.call("GET", "/api/v1/keys", &write, None).status, 403);
    let r = api.call(
        "POST",
        "/api/v1/keys",
        &admin,
        Some(json!({"name": "ci", "scope": "read", "expires_in_days": 30})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (made, made_id) = (
        r.body["token"].as_str().unwrap().to_owned(),
        id_of(&r.body["key"]),
    );
    assert_eq!(
        api.call("GET", "/api/v1/me", &made, None).body["key"]["id"],
        made_id
    );
    let r = api.call("GET", "/api/v1/keys", &admin, None);
    assert!(
        !r.body.to_string().contains(&made),
        "a listing shows a token"
    );
    let r = api.call(
        "POST",
        &format!("/api/v1/keys/{made_id}/rotate"),
        &admin,
        Some(json!({"grace_hours": 1})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let rotated = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(api.call("GET", "/api/v1/me", &rotated, None).status, 200);
    assert_eq!(
        api.call("GET", "/api/v1/me", &made, None).status,
        200,
        "the old token's grace"
    );
    let r = api.call("DELETE", &format!("/api/v1/keys/{made_id}"), &admin, None);
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (200, Some("revoked")),
        "{}",
        r.body
    );
    assert_eq!(api.call("GET", "/api/v1/me", &made, None).status, 401);
    assert_eq!(
        api.call("DELETE", &format!("/api/v1/keys/{made_id}"), &admin, None)
            .status,
        409
    );
    assert_eq!(
        api.call(
            "POST",
            &format!("/api/v1/keys/{made_id}/rotate"),
            &admin,
            Some(json!({}))
        )
        .status,
        409
    );
    for body in [
        json!({"name": "x", "scope": "root"}),
        json!({"name": "", "scope": "read"}),
        json!({"name": "x", "scope": "read", "expires_in_days": 0}),
    ] {
        assert_eq!(
            api.call("POST", "/api/v1/keys", &admin, Some(body.clone()))
                .status,
            400,
            "{body}"
        );
    }
    assert_eq!(
        api.call("DELETE", "/api/v1/keys/999999", &admin, None)
            .status,
        404
    );
    let demo = api.demo.clone();
    let up_url = format!("http://{demo}/up");
    let down_url = format!("http://{demo}/down");

    // System routes.
    for p in [
        "/api/v1/health",
        "/api/v1/ready",
        "/api/v1/me",
        "/api/v1/openapi.json",
    ] {
        let r = api.call("GET", p, &read, None);
        assert!(
            r.status == 200 || (p.ends_with("ready") && r.status == 503),
            "{p}: {r:?}"
        );
    }

    // Sites: create (201), read, list with every filter, patch.
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": up_url, "name": "shop", "tags": ["prod", "eu_1"], "interval_s": 10})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let site = id_of(&r.body["site"]);
    let check = id_of(&r.body["checks"][0]);
    assert_eq!(r.body["checks"][0]["interval_s"], 10);
    assert_eq!(
        api.call("GET", &format!("/api/v1/sites/{site}"), &read, None)
            .body["name"],
        "shop"
    );
    for (query, expect) in [
        ("tag=prod", true),
        ("tag=eu_1", true),
        ("tag=eu%1", false),
        ("q=%2Fup", true),
        ("q=nomatch", false),
        ("active=true", true),
        ("active=false", false),
        ("state__in=up,unknown,seems_down,down", true),
        ("severity__gte=4", false),
    ] {
        let r = api.call(
            "GET",
            &format!("/api/v1/sites?{query}&limit=200"),
            &read,
            None,
        );
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let found = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == site);
        assert_eq!(found, expect, "{query}: {}", r.body);
    }
    let r = api.call(
        "PATCH",
        &format!("/api/v1/sites/{site}"),
        &write,
        Some(json!({"name": "shop eu", "tags": ["prod"]})),
    );
    assert_eq!(
        (r.status, r.body["name"].as_str()),
        (200, Some("shop eu")),
        "{}",
        r.body
    );

    // Bad input of each kind (reliability.md): named fields, limits, unsafe targets, scope.
    let big = format!(
        "{{\"url\": \"http://{demo}/up\", \"name\": \"{}\"}}",
        "x".repeat(1 << 20)
    );
    let r = raw(
        &api.addr,
        "POST",
        "/api/v1/sites",
        Some(&write),
        Some(big.as_bytes()),
        &[],
    );
    api.conform("POST", "/api/v1/sites", &r);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{:?}",
        r
    );
    for (method, path, body, status, code, names) in [
        (
            "POST",
            "/api/v1/sites",
            json!({"url": up_url, "colour": "red"}),
            400,
            "invalid_body",
            "colour",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"name": "no url"}),
            400,
            "invalid_body",
            "url",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": 42}),
            400,
            "invalid_body",
            "string",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": up_url, "interval_s": 5}),
            400,
            "invalid_body",
            "interval_s",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": up_url, "tags": ["a b"]}),
            400,
            "invalid_body",
            "tags",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": "http://10.1.2.3/"}),
            422,
            "unsafe_target",
            "10.1.2.3",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": "http://169.254.169.254/latest"}),
            422,
            "unsafe_target",
            "169.254",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": "http://printer.local/"}),
            422,
            "unsafe_target",
            "printer.local",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": "http://0x7f.1/"}),
            422,
            "unsafe_target",
            "0x7f",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": "ftp://example.com/"}),
            422,
            "invalid_target",
            "scheme",
        ),
        (
            "POST",
            "/api/v1/sites",
            json!({"url": "http://user@example.com/"}),
            422,
            "invalid_target",
            "user",
        ),
        (
            "PATCH",
            "/api/v1/sites/999999",
            json!({"name": "x"}),
            404,
            "not_found",
            "999999",
        ),
        (
            "GET",
            "/api/v1/sites?severity__gte=x",
            Value::Null,
            400,
            "invalid_query",
            "severity__gte",
        ),
        (
            "GET",
            "/api/v1/sites?state__in=up,sideways",
            Value::Null,
            400,
            "invalid_query",
            "sideways",
        ),
        (
            "GET",
            "/api/v1/sites/abc",
            Value::Null,
            400,
            "invalid_path",
            "path",
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let r = api.call(method, path, &write, body);
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {}",
            r.body
        );
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(names), "{path}: {msg:?} should name {names:?}");
    }
    let r = raw(
        &api.addr,
        "POST",
        "/api/v1/sites",
        Some(&write),
        Some(b"{\"url\": "),
        &[],
    );
    api.conform("POST", "/api/v1/sites", &r);
    assert_eq!(r.status, 400, "{:?}", r);
    let r = raw(
        &api.addr,
        "POST",
        "/api/v1/sites",
        Some(&write),
        Some(b"url=x"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(r.status, 400, "{:?}", r);
    let r = api.call("POST", "/api/v1/sites", &read, Some(json!({"url": up_url})));
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Endpoints.
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/endpoints"),
        &read,
        None,
    );
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.body);
    let r = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/endpoints"),
        &write,
        Some(json!({"url": format!("http://{demo}/slow"), "critical": false})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ep = id_of(&r.body);
    let r = api.call(
        "PATCH",
        &format!("/api/v1/sites/{site}/endpoints/{ep}"),
        &write,
        Some(json!({"critical": true})),
    );
    assert_eq!(r.body["critical"], true);
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/sites/{site}/endpoints/{ep}"),
            &read,
            None
        )
        .status,
        200
    );

    // Checks: tcp and keyword http on the endpoint; patch; bad settings; delete.
    let r = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/checks"),
        &write,
        Some(json!({"type": "tcp", "target": demo, "name": "port"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let tcp = id_of(&r.body);
    let r = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/checks"),
        &write,
        Some(
            json!({"endpoint_id": ep, "keywords": ["slow"], "retries": 1,
            "accepted_statuses": [[200, 299], [304, 304]], "ttfb_warn_ms": 500,
            "total_degrade_ms": 3000, "ip_preference": "v4_only", "max_redirects": 3,
            "keyword_case_sensitive": true, "body_budget_bytes": 65536}),
        ),
    );
    assert_eq!(
        (r.status, r.body["target"].as_str()),
        (201, Some(format!("http://{demo}/slow").as_str())),
        "{}",
        r.body
    );
    let kw = id_of(&r.body);
    // Type-specific settings are stored and read back whole.
    let stored = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/checks/{kw}"),
        &read,
        None,
    );
    for (k, v) in [
        ("accepted_statuses", json!([[200, 299], [304, 304]])),
        ("ttfb_warn_ms", json!(500)),
        ("total_degrade_ms", json!(3000)),
        ("ip_preference", json!("v4_only")),
        ("max_redirects", json!(3)),
        ("keyword_case_sensitive", json!(true)),
        ("body_budget_bytes", json!(65536)),
        ("keywords", json!(["slow"])),
    ] {
        assert_eq!(stored.body[k], v, "{k}: {}", stored.body);
    }
    let r = api.call(
        "PATCH",
        &format!("/api/v1/sites/{site}/checks/{kw}"),
        &write,
        Some(json!({"interval_s": 30, "method": "HEAD"})),
    );
    assert_eq!(
        (
            r.body["interval_s"].as_u64(),
            r.body["method"].as_str(),
            r.body["generation"].as_u64()
        ),
        (Some(30), Some("HEAD"), Some(2)),
        "{}",
        r.body
    );
    for (body, code) in [
        (json!({"type": "ftp"}), "invalid_body"),
        (json!({"method": "DELETE"}), "invalid_body"),
        (json!({"retries": 9}), "invalid_body"),
        (json!({"accepted_statuses": [[500, 200]]}), "invalid_body"),
        (json!({"max_redirects": 11}), "invalid_body"),
        (json!({"body_budget_bytes": 99999999}), "invalid_body"),
        (json!({"ip_preference": "v5"}), "invalid_body"),
        (json!({"target": "http://192.168.1.1/"}), "unsafe_target"),
        (json!({"endpoint_id": ep}), "invalid_body"),
    ] {
        let r = api.call(
            "PATCH",
            &format!("/api/v1/sites/{site}/checks/{kw}"),
            &write,
            Some(body.clone()),
        );
        assert_eq!(
            r.body["error"]["code"].as_str(),
            Some(code),
            "{body}: {}",
            r.body
        );
    }
    assert_eq!(
        api.call("GET", &format!("/api/v1/sites/{site}/checks"), &read, None)
            .body["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/sites/{site}/checks/{tcp}"),
            &read,
            None
        )
        .body["type"],
        "tcp"
    );
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/checks/{check}/results"),
        &read,
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/sites/{site}/checks/{tcp}"),
            &write,
            None
        )
        .status,
        200
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/sites/{site}/checks/{tcp}"),
            &read,
            None
        )
        .status,
        404
    );
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/sites/{site}/endpoints/{ep}"),
            &write,
            None
        )
        .status,
        200
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/sites/{site}/checks/{kw}"),
            &read,
            None
        )
        .status,
        404,
        "an endpoint's checks go with it"
    );

    // Trigger-now through the prober, synchronous: phase timings of a real probe.
    let mut r = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/trigger-now"),
        &write,
        None,
    );
    for _ in 0..20 {
        // The check reaches the prober with the supervisor's next reload (nudged).
        if r.body["results"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        r = api.call(
            "POST",
            &format!("/api/v1/sites/{site}/trigger-now"),
            &write,
            None,
        );
    }
    assert_eq!(r.status, 200, "{}", r.body);
    let res = &r.body["results"][0];
    assert_eq!(
        (
            res["check_id"].as_u64(),
            res["outcome"].as_str(),
            res["http_status"].as_u64()
        ),
        (Some(check), Some("ok"), Some(200)),
        "{}",
        r.body
    );
    assert!(res["total_ms"].as_f64().unwrap() > 0.0 && res["connect_ms"].as_f64().is_some());
    // Asynchronous: 202, a Location, a job that finishes.
    let r = api.call(
        "POST",
        &format!("/api/v1/sites/{site}/trigger-now?async=true"),
        &write,
        None,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let poll = r.header("location").unwrap();
    eventually("the async job", Duration::from_secs(20), || {
        let j = api.call("GET", &poll, &read, None);
        j.body["status"] == "done" && j.body["result"]["results"][0]["outcome"] == "ok"
    });
    assert_eq!(
        api.call("GET", "/api/v1/jobs/999999", &read, None).status,
        404
    );

    // Rate limits: the expensive bucket holds 4 a minute (config) — 2 used above, at most
    // a few retries: the next ones run out, with Retry-After and the X-RateLimit headers.
    let mut limited = None;
    for _ in 0..6 {
        let r = api.call(
            "POST",
            &format!("/api/v1/sites/{site}/trigger-now?async=true"),
            &write,
            None,
        );
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("no 429 from the expensive bucket");
    assert_eq!(r.body["error"]["code"], "rate_limited");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("4"));
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
    let ok = api.call("GET", "/api/v1/me", &write, None);
    assert_eq!(
        ok.header("x-ratelimit-limit").as_deref(),
        Some("600"),
        "{}",
        ok.head
    );

    // Idempotency: a replay returns the stored response; another body → 409.
    let body = json!({"url": format!("http://{demo}/flap"), "name": "flappy"});
    let a = api.call_with(
        "POST",
        "/api/v1/sites",
        &write,
        Some(body.clone()),
        &[("Idempotency-Key", "k-1")],
    );
    let b = api.call_with(
        "POST",
        "/api/v1/sites",
        &write,
        Some(body),
        &[("Idempotency-Key", "k-1")],
    );
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(a.body["site"]["id"], b.body["site"]["id"]);
    assert_eq!(b.header("idempotency-replayed").as_deref(), Some("true"));
    assert!(a.header("idempotency-replayed").is_none());
    let c = api.call_with(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": up_url})),
        &[("Idempotency-Key", "k-1")],
    );
    assert_eq!(
        (c.status, c.body["error"]["code"].as_str()),
        (409, Some("idempotency_mismatch"))
    );
    let flappy = id_of(&a.body["site"]);

    // Bulk: per-item results.
    let r = api.call(
        "POST",
        "/api/v1/sites/bulk",
        &write,
        Some(json!({"sites": [
            {"url": format!("http://{demo}/up?bulk=1")},
            {"url": "http://10.0.0.1/"},
            {"id": flappy, "tags": ["bulk"]},
            {"id": 999999, "name": "ghost"},
            {"name": "no url"},
        ]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let statuses: Vec<u64> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 422, 200, 404, 400], "{}", r.body);
    assert_eq!(
        (r.body["created"].as_u64(), r.body["failed"].as_u64()),
        (Some(1), Some(3))
    );
    // Legacy ids (Jetmon v1 blog_id): set on create, bulk (create and update) and patch,
    // returned, filtered on, unique.
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": format!("http://{demo}/up?v1=1"), "blog_id": 4_100_001u64})),
    );
    assert_eq!(
        (r.status, &r.body["site"]["blog_id"]),
        (201, &json!(4_100_001u64)),
        "{}",
        r.body
    );
    let v1 = id_of(&r.body["site"]);
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": format!("http://{demo}/up?v1=2"), "blog_id": 4_100_001u64})),
    );
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("blog_id_taken")),
        "{}",
        r.body
    );
    for bad in [
        json!(0),
        json!(-3),
        json!("7"),
        json!(9_223_372_036_854_775_808u64),
    ] {
        let r = api.call(
            "POST",
            "/api/v1/sites",
            &write,
            Some(json!({"url": format!("http://{demo}/up?v1=3"), "blog_id": bad})),
        );
        assert_eq!(r.status, 400, "blog_id {bad}: {}", r.body);
    }
    let r = api.call(
        "POST",
        "/api/v1/sites/bulk",
        &write,
        Some(json!({"sites": [
            {"url": format!("http://{demo}/up?v1=4"), "blog_id": 4_100_002u64},
            {"url": format!("http://{demo}/up?v1=5"), "blog_id": 4_100_002u64},
            {"url": format!("http://{demo}/up?v1=6"), "blog_id": 4_100_001u64},
            {"id": flappy, "blog_id": 4_100_003u64},
        ]})),
    );
    let statuses: Vec<u64> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 409, 409, 200], "{}", r.body);
    let r = api.call(
        "PATCH",
        &format!("/api/v1/sites/{v1}"),
        &write,
        Some(json!({"blog_id": 4_100_003u64})),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let r = api.call(
        "PATCH",
        &format!("/api/v1/sites/{v1}"),
        &write,
        Some(json!({"blog_id": 4_100_004u64})),
    );
    assert_eq!(
        (r.status, &r.body["blog_id"]),
        (200, &json!(4_100_004u64)),
        "{}",
        r.body
    );
    let r = api.call(
        "GET",
        "/api/v1/sites?blog_id__in=4100004,4100003,4100999&limit=200",
        &read,
        None,
    );
    api.conform("GET", "/api/v1/sites", &r);
    let mut found: Vec<u64> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["blog_id"].as_u64().unwrap())
        .collect();
    found.sort_unstable();
    assert_eq!(found, vec![4_100_003, 4_100_004], "{}", r.body);
    assert_eq!(
        api.call("GET", "/api/v1/sites?blog_id__in=x", &read, None)
            .status,
        400
    );
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"url": format!("http://{demo}/up?n={i}")}))
        .collect();
    assert_eq!(
        api.call(
            "POST",
            "/api/v1/sites/bulk",
            &write,
            Some(json!({"sites": many}))
        )
        .status,
        400
    );

    // Maintenance: one-off and weekly; bad windows named.
    let r = api.call("PUT", &format!("/api/v1/sites/{site}/maintenance"), &write, Some(json!({"windows": [
        {"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T02:00:00Z"},
        {"weekly": {"day": "sunday", "time": "23:00", "duration_minutes": 120}, "check_id": check},
    ]})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"][1]["weekly"]["day"], "sunday");
    for (w, names) in [
        (
            json!({"from": "2030-01-01T02:00:00Z", "to": "2030-01-01T00:00:00Z"}),
            "to",
        ),
        (
            json!({"from": "tomorrow", "to": "2030-01-01T00:00:00Z"}),
            "from",
        ),
        (
            json!({"weekly": {"day": "caturday", "time": "23:00", "duration_minutes": 1}}),
            "weekly.day",
        ),
        (
            json!({"weekly": {"day": "monday", "time": "25:00", "duration_minutes": 1}}),
            "weekly.time",
        ),
        (
            json!({"check_id": 999999, "from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"}),
            "check_id",
        ),
    ] {
        let r = api.call(
            "PUT",
            &format!("/api/v1/sites/{site}/maintenance"),
            &write,
            Some(json!({"windows": [w]})),
        );
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(names),
            "{}",
            r.body
        );
    }
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/sites/{site}/maintenance"),
            &read,
            None
        )
        .body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(
        api.call("GET", "/api/v1/maintenance?limit=1", &read, None)
            .body["page"]["next"]
            .is_string()
    );
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/sites/{site}/maintenance"),
            &write,
            None
        )
        .status,
        200
    );

    // A failing site: a real incident, seen through events and transitions, closed by hand.
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": down_url, "name": "broken", "interval_s": 10})),
    );
    let broken = id_of(&r.body["site"]);
    let broken_check = id_of(&r.body["checks"][0]);
    let r = api.call(
        "PATCH",
        &format!("/api/v1/sites/{broken}/checks/{broken_check}"),
        &write,
        Some(json!({"retries": 0})),
    );
    assert_eq!(r.status, 200);
    let mut event = 0;
    eventually(
        "an open availability event",
        Duration::from_secs(60),
        || {
            let r = api.call(
                "GET",
                &format!("/api/v1/sites/{broken}/events?active=true&kind=availability"),
                &read,
                None,
            );
            if let Some(e) = r.body["data"].as_array().and_then(|a| a.first()) {
                event = id_of(e);
                return e["state"] == "down";
            }
            false
        },
    );
    let r = api.call(
        "GET",
        &format!(
            "/api/v1/events?site_id__in={broken},{site}&active=true&state__in=down&check_type=http"
        ),
        &read,
        None,
    );
    assert!(
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == event),
        "{}",
        r.body
    );
    let r = api.call(
        "GET",
        "/api/v1/events?started_at__gte=2999-01-01T00:00:00Z",
        &read,
        None,
    );
    assert!(r.body["data"].as_array().unwrap().is_empty());
    assert_eq!(
        api.call(
            "GET",
            "/api/v1/events?started_at__gte=yesterday",
            &read,
            None
        )
        .status,
        400
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/sites/{broken}/events?site_id__in=1"),
            &read,
            None
        )
        .status,
        400
    );
    let r = api.call("GET", &format!("/api/v1/events/{event}"), &read, None);
    assert!(
        r.body["transitions"].as_array().unwrap().len() >= 2,
        "{}",
        r.body
    );
    let r = api.call(
        "GET",
        &format!("/api/v1/events/{event}/transitions"),
        &read,
        None,
    );
    assert_eq!(r.body["data"][0]["reason"], "opened");
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{broken}/checks/{broken_check}/results"),
        &read,
        None,
    );
    assert_eq!(r.body["data"][0]["outcome"], "http_status", "{}", r.body);
    assert_eq!(r.body["data"][0]["http_status"], 500);
    let r = api.call(
        "POST",
        &format!("/api/v1/events/{event}/close"),
        &write,
        Some(json!({"reason": "false_alarm"})),
    );
    assert_eq!(r.status, 400);
    let r = api.call(
        "POST",
        &format!("/api/v1/events/{event}/close"),
        &write,
        Some(json!({"note": "known: deploy"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resolution_reason"], "manual_override");
    let last = r.body["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["metadata"]["note"], "known: deploy", "{last}");
    assert!(
        last["source"]
            .as_str()
            .unwrap()
            .starts_with("operator:write#"),
        "{last}"
    );
    // A retry of the same key's close (its answer lost) is answered again; another key's
    // close of a closed event is a conflict.
    let again = api.call(
        "POST",
        &format!("/api/v1/events/{event}/close"),
        &write,
        Some(json!({})),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["transitions"], r.body["transitions"]);
    let r = api.call(
        "POST",
        &format!("/api/v1/events/{event}/close"),
        &admin,
        Some(json!({})),
    );
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("event_closed"))
    );
    assert_eq!(
        api.call("GET", "/api/v1/events/999999", &read, None).status,
        404
    );

    // SLA over a window and from/to; response times; series; many sites.
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{broken}/sla?window=1h"),
        &read,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body["downtime_seconds"].as_f64().unwrap() > 0.0,
        "{}",
        r.body
    );
    assert_eq!(r.body["incidents"], 1);
    assert!(r.body["uptime_percent"].as_f64().unwrap() < 100.0);
    let r = api.call(
        "GET",
        &format!(
            "/api/v1/sites/{site}/sla?from={}",
            jetmon_control::api::rfc3339(
                (std::time::SystemTime::now() - Duration::from_secs(2 * 86_400))
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_micros() as u64
            )
        ),
        &read,
        None,
    );
    assert_eq!(
        (r.status, r.body["downtime_seconds"].as_f64()),
        (200, Some(0.0)),
        "{}",
        r.body
    );
    for q in [
        "window=5m",
        "window=1h&from=2020-01-01T00:00:00Z",
        "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
        "to=2020-01-01T00:00:00Z",
        "window=1000d",
    ] {
        let r = api.call("GET", &format!("/api/v1/sites/{site}/sla?{q}"), &read, None);
        assert_eq!(r.status, 400, "{q}: {}", r.body);
    }
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/response-time?window=24h&phase=ttfb"),
        &read,
        None,
    );
    assert_eq!(
        (r.status, r.body["phase"].as_str()),
        (200, Some("ttfb")),
        "{}",
        r.body
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/sites/{site}/response-time?phase=dnss"),
            &read,
            None
        )
        .status,
        400
    );
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/response-time/series?window=24h&step=1h"),
        &read,
        None,
    );
    let points = r.body["points"].as_array().unwrap().len();
    assert!((24..=25).contains(&points), "{points}");
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/sites/{site}/response-time/series?window=90d&step=1h"),
            &read,
            None
        )
        .status,
        400
    );
    let r = api.call(
        "GET",
        &format!("/api/v1/sla?site_id__in={site},{broken}&window=24h"),
        &read,
        None,
    );
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2, "{}", r.body);
    assert_eq!(
        api.call("GET", "/api/v1/sla?site_id__in=999999", &read, None)
            .status,
        404
    );

    // Pause and resume: a Paused event opens and closes.
    let r = api.call("POST", &format!("/api/v1/sites/{site}/pause"), &write, None);
    assert_eq!(
        (r.status, r.body["changed"].as_u64()),
        (200, Some(1)),
        "{}",
        r.body
    );
    eventually("a paused event", Duration::from_secs(30), || {
        let r = api.call(
            "GET",
            &format!("/api/v1/sites/{site}/events?kind=paused&active=true"),
            &read,
            None,
        );
        let open = r.body["data"].as_array().unwrap();
        if let Some(e) = open.first() {
            let c = api.call(
                "POST",
                &format!("/api/v1/events/{}/close", id_of(e)),
                &write,
                Some(json!({})),
            );
            assert_eq!(c.status, 409, "paused periods end by resuming");
            return true;
        }
        false
    });
    assert_eq!(
        api.call(
            "POST",
            &format!("/api/v1/sites/{site}/resume"),
            &write,
            None
        )
        .body["paused"],
        false
    );
    eventually("the paused event closing", Duration::from_secs(30), || {
        let r = api.call(
            "GET",
            &format!("/api/v1/sites/{site}/events?kind=paused&active=false"),
            &read,
            None,
        );
        !r.body["data"].as_array().unwrap().is_empty()
    });

    // Delete: the site stays readable, inactive; its open events close (manual_override).
    // The check still fails, so an incident is open again (the manual close above does not
    // stop it recurring): that one must be closed by the delete.
    let mut reopened = 0;
    eventually("the incident recurring", Duration::from_secs(60), || {
        let r = api.call(
            "GET",
            &format!("/api/v1/sites/{broken}/events?active=true&kind=availability"),
            &read,
            None,
        );
        match r.body["data"].as_array().and_then(|a| a.first()) {
            Some(e) => {
                reopened = id_of(e);
                true
            }
            None => false,
        }
    });
    assert_ne!(reopened, event);
    let r = api.call("DELETE", &format!("/api/v1/sites/{broken}"), &write, None);
    assert_eq!((r.status, r.body["active"].as_bool()), (200, Some(false)));
    eventually(
        "the deleted site's incident closing",
        Duration::from_secs(30),
        || {
            let r = api.call("GET", &format!("/api/v1/events/{reopened}"), &read, None);
            r.body["active"] == false
        },
    );
    let r = api.call("GET", &format!("/api/v1/events/{reopened}"), &read, None);
    assert_eq!(r.body["resolution_reason"], "manual_override", "{}", r.body);
    let last = r.body["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["source"], "system:config", "{last}");
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{broken}/events?active=true"),
        &read,
        None,
    );
    assert!(r.body["data"].as_array().unwrap().is_empty(), "{}", r.body);
    // (Another key: this one's trigger-now bucket is empty.)
    assert_eq!(
        api.call(
            "POST",
            &format!("/api/v1/sites/{broken}/trigger-now"),
            &admin,
            None
        )
        .status,
        409
    );

    // A maintenance window set over the API reaches the engine: a failing site inside one
    // opens a Maintenance event (maintenance_swallowed), never Seems Down or Down.
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": format!("http://{demo}/up?maint=1"), "name": "in maintenance", "interval_s": 10})),
    );
    let maint = id_of(&r.body["site"]);
    let maint_check = id_of(&r.body["checks"][0]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let r = api.call(
        "PUT",
        &format!("/api/v1/sites/{maint}/maintenance"),
        &write,
        Some(json!({"windows": [{
            "from": jetmon_control::api::rfc3339(now - 60_000_000),
            "to": jetmon_control::api::rfc3339(now + 3_600_000_000),
        }]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Only now does it start failing (healthy until the window is stored: no race).
    let r = api.call(
        "PATCH",
        &format!("/api/v1/sites/{maint}/checks/{maint_check}"),
        &write,
        Some(json!({"target": format!("http://{demo}/down?maint=1")})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("a Maintenance event", Duration::from_secs(60), || {
        let r = api.call("GET", &format!("/api/v1/sites/{maint}/events"), &read, None);
        let events = r.body["data"].as_array().unwrap().clone();
        assert!(
            events.iter().all(|e| e["state"] == "maintenance"),
            "a failure in a window is not an incident: {events:?}"
        );
        !events.is_empty()
    });
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{maint}/sla?window=1h"),
        &read,
        None,
    );
    assert_eq!(r.body["downtime_seconds"].as_f64(), Some(0.0), "{}", r.body);
    assert!(
        r.body["maintenance_seconds"].as_f64().unwrap() > 0.0,
        "{}",
        r.body
    );

    // SQL-ish strings are data; path traversal and huge limits are client errors.
    let sqlish = "x'); DROP TABLE sites; --";
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": format!("http://{demo}/up?sql=1"), "name": sqlish})),
    );
    assert_eq!(
        (r.status, r.body["site"]["name"].as_str()),
        (201, Some(sqlish))
    );
    for q in ["q=%27%20OR%201%3D1%20--", "tag=%27", "q=%25", "q=_"] {
        let r = api.call("GET", &format!("/api/v1/sites?{q}"), &read, None);
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert!(
            r.body["data"].as_array().unwrap().is_empty(),
            "{q}: {}",
            r.body
        );
    }
    for path in [
        "/api/v1/sites/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/../../etc/passwd",
        "/api/v1/sites/%00",
        "/api/v1/sites?limit=99999999999999999999",
        "/api/v1/events?limit=-1",
    ] {
        let r = raw(&api.addr, "GET", path, Some(&read), None, &[]);
        assert!(matches!(r.status, 400 | 404), "{path}: {r:?}");
        assert!(r.body["error"]["code"].is_string(), "{path}: {r:?}");
    }
    // Concurrent conflicting updates: every one applies whole, in some order.
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/checks/{check}"),
        &read,
        None,
    );
    let generation = r.body["generation"].as_u64().unwrap();
    let threads: Vec<_> = (0..8u32)
        .map(|k| {
            let (addr, token) = (api.addr.clone(), write.clone());
            std::thread::spawn(move || {
                let body = json!({"interval_s": 20 + k, "timeout_ms": 1000 + k}).to_string();
                let path = format!("/api/v1/sites/{site}/checks/{check}");
                raw(
                    &addr,
                    "PATCH",
                    &path,
                    Some(&token),
                    Some(body.as_bytes()),
                    &[],
                )
                .status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/checks/{check}"),
        &read,
        None,
    );
    assert_eq!(
        r.body["generation"].as_u64(),
        Some(generation + 8),
        "{}",
        r.body
    );
    let k = r.body["interval_s"].as_u64().unwrap() - 20;
    assert_eq!(
        r.body["timeout_ms"].as_u64(),
        Some(1000 + k),
        "one update, whole: {}",
        r.body
    );
    // An Idempotency-Key still running: a concurrent duplicate gets 409 in flight. The slow
    // demo page answers in 0.8 s, so a trigger-now on it is in flight that long.
    // (Fresh keys: the trigger-now bucket holds 4 a minute.)
    let (warm, idem) = (api.key("write"), api.key("write"));
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": format!("http://{demo}/slow"), "name": "slow"})),
    );
    let slow = id_of(&r.body["site"]);
    eventually(
        "the slow site's check in the prober",
        Duration::from_secs(20),
        || {
            let r = api.call(
                "POST",
                &format!("/api/v1/sites/{slow}/trigger-now"),
                &warm,
                None,
            );
            r.status == 200 && r.body["missing"].as_array().unwrap().is_empty()
        },
    );
    let (addr, token) = (api.addr.clone(), idem.clone());
    let first = std::thread::spawn(move || {
        let path = format!("/api/v1/sites/{slow}/trigger-now");
        raw(
            &addr,
            "POST",
            &path,
            Some(&token),
            None,
            &[("Idempotency-Key", "slow-1")],
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let dup = api.call_with(
        "POST",
        &format!("/api/v1/sites/{slow}/trigger-now"),
        &idem,
        None,
        &[("Idempotency-Key", "slow-1")],
    );
    assert_eq!(
        (dup.status, dup.body["error"]["code"].as_str()),
        (409, Some("idempotency_in_flight")),
        "{}",
        dup.body
    );
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{:?}", first);
    let replay = api.call_with(
        "POST",
        &format!("/api/v1/sites/{slow}/trigger-now"),
        &idem,
        None,
        &[("Idempotency-Key", "slow-1")],
    );
    assert_eq!(
        replay.header("idempotency-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.body, first.body);

    // Tenants (operator keys; the isolation walk in tests/tenants.rs proves the walls).
    let r = api.call(
        "POST",
        "/api/v1/tenants",
        &admin,
        Some(json!({"name": "routes-co"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let tid = id_of(&r.body);
    let r = api.call(
        "POST",
        "/api/v1/tenants",
        &admin,
        Some(json!({"name": "routes-co"})),
    );
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("tenant_exists"))
    );
    let r = api.call(
        "POST",
        "/api/v1/tenants",
        &admin,
        Some(json!({"name": "42"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call("GET", "/api/v1/tenants?limit=1", &read, None);
    assert_eq!(
        (r.status, r.body["data"][0]["name"].as_str()),
        (200, Some("default"))
    );
    assert!(r.body["page"]["next"].is_string(), "{}", r.body);
    let r = api.call(
        "PATCH",
        &format!("/api/v1/tenants/{tid}"),
        &admin,
        Some(json!({"name": "routes-inc", "active": false})),
    );
    assert_eq!(
        (
            r.status,
            r.body["name"].as_str(),
            r.body["active"].as_bool()
        ),
        (200, Some("routes-inc"), Some(false)),
        "{}",
        r.body
    );
    assert!(r.body["deactivated_at"].is_string());
    let r = api.call("GET", &format!("/api/v1/tenants/{tid}"), &read, None);
    assert_eq!(r.body["active"], false);
    assert_eq!(
        api.call("GET", "/api/v1/tenants/999999", &read, None)
            .status,
        404
    );
    let r = api.call("GET", "/api/v1/me", &read, None);
    assert_eq!(
        (r.body["tenant"].is_null(), r.body["key"]["kind"].as_str()),
        (true, Some("operator")),
        "{}",
        r.body
    );

    // Webhooks: only a URL subscribes to everything; the secret is shown once.
    webhook_routes(&mut api, &read, &write);

    // Every documented operation was exercised (and every response above conformed).
    let missed = api.unexercised();
    assert!(
        missed.is_empty(),
        "documented but not exercised: {missed:?}"
    );

    // The audit log is written off the request path, within a few seconds.
    let url = database_url.to_owned();
    eventually("audit records", Duration::from_secs(15), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = jetmon_control::store::Store::open(&url, "test")
                .await
                .unwrap();
            let tail = store.audit_tail(500).await.unwrap();
            store.close().await;
            tail.iter()
                .any(|a| a.route == "/api/v1/sites/{id}/trigger-now" && a.status == 429)
                && tail.iter().any(|a| a.method == "DELETE" && a.status == 200)
        })
    });
}

/// Every webhook route once (delivery itself: tests/webhooks.rs). 127.0.0.2:9 is allowed to
/// deliveries by the harness; nothing listens there, so the ping stays pending.
fn webhook_routes(api: &mut Api, read: &str, write: &str) {
    let r = api.call(
        "POST",
        "/api/v1/webhooks",
        read,
        Some(json!({"url": "http://127.0.0.2:9/hook"})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/webhooks",
        write,
        Some(json!({"url": "http://127.0.0.2:9/hook"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let w = &r.body["webhook"];
    let id = id_of(w);
    assert_eq!(
        (
            w["event_types"].clone(),
            w["site_ids"].clone(),
            w["max_in_flight"].clone()
        ),
        (json!([]), json!([]), json!(4))
    );
    assert_eq!(
        w["secret_preview"].as_str().unwrap(),
        format!("…{}", &secret[secret.len() - 4..])
    );
    for (body, code) in [
        (json!({"url": "http://10.1.2.3/hook"}), "unsafe_url"),
        (json!({"url": "gopher://127.0.0.2/"}), "invalid_url"),
    ] {
        let r = api.call("POST", "/api/v1/webhooks", write, Some(body));
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (422, Some(code))
        );
    }
    let r = api.call(
        "POST",
        "/api/v1/webhooks",
        write,
        Some(json!({"url": "http://127.0.0.2:9/hook", "event_types": ["event.nope"]})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call("GET", "/api/v1/webhooks?limit=1", read, None);
    assert_eq!(r.status, 200);
    assert!(!r.body.to_string().contains(&secret), "{}", r.body);
    let r = api.call("GET", &format!("/api/v1/webhooks/{id}"), read, None);
    assert_eq!(r.status, 200);
    let r = api.call(
        "PATCH",
        &format!("/api/v1/webhooks/{id}"),
        write,
        Some(
            json!({"event_types": ["event.opened", "event.closed"], "states": ["down"],
                    "retry_ladder_s": [5, 10]}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["states"], json!(["down"]));
    assert_eq!(r.body["retry_ladder_s"], json!([5, 10]));
    let r = api.call(
        "POST",
        &format!("/api/v1/webhooks/{id}/rotate-secret"),
        write,
        Some(json!({"grace_hours": 2})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.body["secret"].as_str().unwrap(), secret);
    assert!(r.body["webhook"]["previous_secret_valid_until"].is_string());
    let r = api.call("POST", &format!("/api/v1/webhooks/{id}/test"), write, None);
    assert_eq!(r.status, 202, "{}", r.body);
    let ping = r.body["delivery_id"].as_str().unwrap().to_owned();
    let r = api.call(
        "GET",
        &format!("/api/v1/webhooks/{id}/deliveries"),
        read,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"][0]["id"], ping.as_str());
    assert_eq!(r.body["data"][0]["payload"]["type"], "ping");
    let r = api.call(
        "POST",
        &format!("/api/v1/webhooks/{id}/deliveries/{ping}/retry"),
        write,
        None,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let r = api.call(
        "POST",
        &format!("/api/v1/webhooks/{id}/deliveries/nope/retry"),
        write,
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api.call("DELETE", &format!("/api/v1/webhooks/{id}"), write, None);
    assert_eq!(r.status, 204);
    let r = api.call("GET", &format!("/api/v1/webhooks/{id}"), read, None);
    assert_eq!(r.status, 404);
}

/// `jetmon up --demo` serves its demo fleet on a fixed port: one server at a time.
static DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_route_on_sqlite() {
    let _one = DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    every_route(
        &format!("sqlite:{}", dir.path().join("api.db").display()),
        "apis",
    );
}

#[test]
fn every_route_on_postgres() {
    let _one = DEMO.lock().unwrap_or_else(|p| p.into_inner());
    every_route(&common::pg_database("api"), "apip");
}

/// The latest event of `kind` on a site (open or not), as the API lists it.
fn latest_event(api: &mut Api, token: &str, site: u64, kind: &str) -> Option<Value> {
    let r = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/events?kind={kind}"),
        token,
        None,
    );
    r.body["data"]
        .as_array()?
        .iter()
        .max_by_key(|e| e["id"].as_u64())
        .cloned()
}

/// Response-time thresholds act (states-and-events.md, "Performance and advisory events"):
/// a check on the demo's slow site (0.8 s to first byte) opens a `performance` Warning once
/// `ttfb_warn_ms` is under that, escalates to Degraded with `ttfb_degrade_ms`, closes when the
/// thresholds are raised, and none of it is downtime.
#[test]
fn response_time_thresholds_open_performance_events_through_jetmon_up() {
    let _one = DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start(
        &format!("sqlite:{}", dir.path().join("perf.db").display()),
        "apiperf",
    );
    let write = api.key("write");
    let slow = format!("http://{}/slow?thresholds", api.demo);
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": slow, "interval_s": 10})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let site = id_of(&r.body["site"]);
    let check = id_of(&r.body["checks"][0]);
    let patch = |api: &mut Api, body: Value| {
        let r = api.call(
            "PATCH",
            &format!("/api/v1/sites/{site}/checks/{check}"),
            &write,
            Some(body),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let site_state = |api: &mut Api| {
        api.call("GET", &format!("/api/v1/sites/{site}"), &write, None)
            .body["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // No thresholds: slow is fine.
    std::thread::sleep(Duration::from_secs(12));
    assert!(latest_event(&mut api, &write, site, "performance").is_none());
    assert_eq!(site_state(&mut api), "up");

    patch(&mut api, json!({"ttfb_warn_ms": 300}));
    let limit = Duration::from_secs(90);
    let mut first = 0;
    eventually("a performance Warning", limit, || {
        latest_event(&mut api, &write, site, "performance").is_some_and(|e| {
            first = e["id"].as_u64().unwrap_or(0);
            e["state"] == "warning" && e["active"] == true
        })
    });
    assert_eq!(site_state(&mut api), "warning");
    // The live hour: percentiles of results not yet flushed (the hour is still open).
    let rt = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/response-time?window=1h"),
        &write,
        None,
    );
    assert_eq!(rt.status, 200, "{}", rt.body);
    assert!(rt.body["count"].as_u64().unwrap_or(0) >= 3, "{}", rt.body);
    let p99 = rt.body["p99_ms"].as_f64().unwrap_or(0.0);
    assert!((790.0..3000.0).contains(&p99), "p99 {p99}: {}", rt.body);
    let sla = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/sla?window=24h"),
        &write,
        None,
    );
    assert!(
        sla.body["response_time"]["total"]["count"]
            .as_u64()
            .unwrap_or(0)
            >= 3,
        "{}",
        sla.body
    );
    let series = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/response-time/series?window=24h&step=1h"),
        &write,
        None,
    );
    assert_eq!(series.status, 200, "{}", series.body);
    let counted: u64 = series.body["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["count"].as_u64())
        .sum();
    assert!(counted >= 3, "{}", series.body);

    patch(&mut api, json!({"ttfb_degrade_ms": 500}));
    eventually("the same event escalated to Degraded", limit, || {
        latest_event(&mut api, &write, site, "performance")
            .is_some_and(|e| e["id"] == first && e["state"] == "degraded")
    });
    assert_eq!(site_state(&mut api), "degraded");

    patch(
        &mut api,
        json!({"ttfb_warn_ms": 5000, "ttfb_degrade_ms": 9000}),
    );
    eventually("the performance event closed", limit, || {
        latest_event(&mut api, &write, site, "performance").is_some_and(|e| {
            e["id"] == first && e["active"] == false && e["resolution_reason"] == "probe_cleared"
        })
    });
    eventually("the site back up", Duration::from_secs(5), || {
        site_state(&mut api) == "up"
    });
    let r = api.call(
        "GET",
        &format!("/api/v1/events/{first}/transitions"),
        &write,
        None,
    );
    let reasons: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        ["opened", "severity_escalation", "probe_cleared"],
        "{}",
        r.body
    );
    let sla = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/sla?window=1h"),
        &write,
        None,
    );
    assert_eq!(sla.status, 200, "{}", sla.body);
    assert_eq!(sla.body["downtime_seconds"], 0.0, "{}", sla.body);
    assert_eq!(sla.body["incidents"], 0, "{}", sla.body);
    assert!(
        sla.body["warning_seconds"].as_f64().unwrap() > 0.0,
        "{}",
        sla.body
    );
    assert!(
        sla.body["degraded_seconds"].as_f64().unwrap() > 0.0,
        "{}",
        sla.body
    );
}

/// states-and-events.md: redirect policy `alert` on a chain that ends on another host opens
/// an `advisory` Warning (not Up, never downtime); the chain (each hop's status and URL) is
/// kept with the result and shown by trigger-now and the results route; policy `follow`
/// closes it.
#[test]
fn a_redirect_alert_is_an_advisory_warning_with_its_chain() {
    let _one = DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start(
        &format!("sqlite:{}", dir.path().join("advisory.db").display()),
        "apiadv",
    );
    let write = api.key("write");
    // A site on 127.0.0.2 that moved to the demo site on 127.0.0.1: another host.
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let moved = format!(
        "http://127.0.0.2:{}/",
        listener.local_addr().unwrap().port()
    );
    let to = format!("http://{}/up", api.demo);
    let location = to.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let started = Instant::now();
        listener.set_nonblocking(true).unwrap();
        while started.elapsed() < Duration::from_secs(240) {
            let Ok((mut c, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = c.set_nonblocking(false);
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                )
                .as_bytes(),
            );
        }
    });
    let r = api.call(
        "POST",
        "/api/v1/sites",
        &write,
        Some(json!({"url": moved, "interval_s": 10})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let site = id_of(&r.body["site"]);
    let check = id_of(&r.body["checks"][0]);
    let policy = |api: &mut Api, p: &str| {
        let r = api.call(
            "PATCH",
            &format!("/api/v1/sites/{site}/checks/{check}"),
            &write,
            Some(json!({"redirect_policy": p})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    policy(&mut api, "alert");
    let limit = Duration::from_secs(90);
    eventually("an advisory Warning", limit, || {
        latest_event(&mut api, &write, site, "advisory")
            .is_some_and(|e| e["state"] == "warning" && e["active"] == true)
    });
    let s = api.call("GET", &format!("/api/v1/sites/{site}"), &write, None);
    assert_eq!(s.body["state"], "warning", "{}", s.body);
    // The results route keeps the advisory result with its chain.
    let path = format!("/api/v1/sites/{site}/checks/{check}/results");
    let r = api.call("GET", &path, &write, None);
    api.conform("GET", &path, &r);
    let kept = &r.body["data"][0];
    assert_eq!(
        (kept["outcome"].as_str(), kept["advisory"].as_str()),
        (Some("ok"), Some("redirect_alert")),
        "{}",
        r.body
    );
    assert_eq!(
        kept["redirect_chain"],
        json!([{"status": 302, "url": to}]),
        "{}",
        r.body
    );
    // Trigger-now shows the chain of the probe it ran.
    let path = format!("/api/v1/sites/{site}/trigger-now");
    let r = api.call("POST", &path, &write, None);
    api.conform("POST", &path, &r);
    let res = &r.body["results"][0];
    assert_eq!(
        res["redirect_chain"],
        json!([{"status": 302, "url": to}]),
        "{}",
        r.body
    );
    assert_eq!(res["final_url"], json!(to), "{}", r.body);
    // SLA: an advisory is warning time, never downtime, never an incident.
    let sla = api.call(
        "GET",
        &format!("/api/v1/sites/{site}/sla?window=24h"),
        &write,
        None,
    );
    assert_eq!(
        sla.body["downtime_seconds"].as_f64(),
        Some(0.0),
        "{}",
        sla.body
    );
    assert_eq!(sla.body["incidents"], 0, "{}", sla.body);
    // Policy follow: the next result carries no advisory and closes it.
    policy(&mut api, "follow");
    eventually("the advisory closed", limit, || {
        latest_event(&mut api, &write, site, "advisory").is_some_and(|e| {
            e["active"] == false && e["resolution_reason"].as_str() == Some("probe_cleared")
        })
    });
}
