//! The REST API under test, shared by the route tests (api_routes.rs) and the tenant
//! isolation walk (tenants.rs): `jetmon up` on a throw-away database, raw requests over
//! loopback, and every response checked against the OpenAPI document the server serves,
//! recording which documented operations were exercised.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_jetmon");

pub struct Up(pub std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
    }
}

/// The server under test, its OpenAPI document and what was exercised.
pub struct Api {
    pub addr: String,
    pub doc: Value,
    pub seen: BTreeSet<(String, String)>,
    pub _up: Up,
    pub demo: String,
    pub cfg: std::path::PathBuf,
    pub _dir: tempfile::TempDir,
}

pub fn raw(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        // A server may answer (413) before reading all of a large body.
        let _ = c.write_all(b);
    }
    let mut bytes = Vec::new();
    let _ = c.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    // actix answers small bodies whole; chunked ones are not used by the API.
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    }
}

impl Api {
    /// `jetmon up --demo` (its demo fleet on a fixed port: one at a time per machine).
    pub fn start(database_url: &str, prefix: &str) -> Api {
        Api::launch(database_url, prefix, true, true)
    }

    /// `jetmon up` without the demo fleet.
    pub fn start_plain(database_url: &str, prefix: &str) -> Api {
        Api::launch(database_url, prefix, false, true)
    }

    /// `jetmon up --demo` with probe safety as shipped: no `prober.allow_cidrs` (only what
    /// the demo opens itself).
    pub fn start_demo_as_shipped(database_url: &str, prefix: &str) -> Api {
        Api::launch(database_url, prefix, true, false)
    }

    fn launch(database_url: &str, prefix: &str, with_demo: bool, allow_loopback: bool) -> Api {
        // Webhooks may reach 127.0.0.2 (nothing listens on the tests' port 9 there).
        Api::launch_with(
            database_url,
            prefix,
            with_demo,
            allow_loopback,
            "delivery_allow_cidrs = [\"127.0.0.2/32\"]",
            &[],
        )
    }

    /// `jetmon up` (with the demo fleet when asked) with `extra` appended to `[control]` and
    /// `env` set for it.
    pub fn launch_with(
        database_url: &str,
        prefix: &str,
        with_demo: bool,
        allow_loopback: bool,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cfg = d.join("jetmon.toml");
        // PostgreSQL has no default key for stored secrets (every host must share one).
        let mut extra = extra.to_owned();
        if database_url.starts_with("postgres") && !extra.contains("secret_key_file") {
            use std::os::unix::fs::PermissionsExt;
            let key = d.join("secrets.key");
            std::fs::write(&key, "k1 MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            extra.push_str(&format!("\nsecret_key_file = {key:?}"));
        }
        std::fs::write(
            &cfg,
            format!(
                "[prober]\nshards = 1\nring_dir = {:?}\nring_prefix = {prefix:?}\nresult_ring_bytes = 1048576\n\
                 command_ring_bytes = 262144\n{}[control]\n\
                 api_listen = \"127.0.0.1:0\"\nprober_binary = {:?}\ndatabase_url = {database_url:?}\n\
                 stats_spool_dir = {:?}\napi_expensive_per_minute = 4\n{extra}\n",
                d,
                if allow_loopback {
                    "allow_cidrs = [\"127.0.0.0/8\"]\n"
                } else {
                    ""
                },
                Path::new(BIN).with_file_name("jetmon-prober"),
                d.join("spool"),
            ),
        )
        .unwrap();
        let log = d.join("up.log");
        let mut args = vec!["--config", cfg.to_str().unwrap(), "up", "--duration", "300"];
        if with_demo {
            args.push("--demo");
        }
        let up = Up(Command::new(BIN)
            .args(&args)
            .envs(env.iter().copied())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap());
        let began = Instant::now();
        let (addr, demo) = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let demo = text.split("demo fleet on http://").nth(1);
            if let Some(a) = text.split("metrics on http://").nth(1)
                && (demo.is_some() || !with_demo)
            {
                break (
                    a.split('/').next().unwrap().to_owned(),
                    demo.map_or(String::new(), |d| d.split('/').next().unwrap().to_owned()),
                );
            }
            assert!(began.elapsed() < Duration::from_secs(60), "{text}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let doc = raw(&addr, "GET", "/api/v1/openapi.json", None, None, &[]);
        assert_eq!(doc.status, 200);
        assert_eq!(doc.body["openapi"].as_str().unwrap().get(..3), Some("3.1"));
        Api {
            addr,
            doc: doc.body,
            seen: BTreeSet::new(),
            _up: up,
            demo,
            cfg,
            _dir: dir,
        }
    }

    /// `kill -9` of control, then `jetmon up` again on the same configuration and database
    /// (the API on a new port; the prober the killed control left running is adopted).
    pub fn kill_and_restart(&mut self) {
        let _ = self._up.0.kill();
        let _ = self._up.0.wait();
        let log = self._dir.path().join("up-restarted.log");
        let cfg = self.cfg.to_str().unwrap().to_owned();
        self._up = Up(Command::new(BIN)
            .args(["--config", &cfg, "up", "--duration", "300"])
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap());
        let began = Instant::now();
        self.addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(a) = text.split("metrics on http://").nth(1) {
                break a.split('/').next().unwrap().to_owned();
            }
            assert!(began.elapsed() < Duration::from_secs(60), "{text}");
            std::thread::sleep(Duration::from_millis(100));
        };
    }

    /// `jetmon --config … ARGS`: its standard output, trimmed (panics unless it succeeds).
    pub fn cli(&self, args: &[&str]) -> String {
        let (code, out, err) = self.cli_status(args);
        assert_eq!(code, Some(0), "jetmon {args:?}: {err}");
        out.trim().to_owned()
    }

    /// The documented operations (method, path template) no call so far exercised.
    pub fn unexercised(&self) -> Vec<(String, String)> {
        let documented: BTreeSet<(String, String)> = self.doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(t, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), t.clone()))
            })
            .collect();
        documented.difference(&self.seen).cloned().collect()
    }

    /// `jetmon --config … ARGS` as (exit code, stdout, stderr).
    pub fn cli_status(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn key(&self, scope: &str) -> String {
        let out = Command::new(BIN)
            .args([
                "--config",
                self.cfg.to_str().unwrap(),
                "keys",
                "create",
                "--name",
                scope,
                "--scope",
                scope,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A request whose response must match the document.
    pub fn call(&mut self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, token, body, &[])
    }

    pub fn call_with(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let r = raw(
            &self.addr,
            method,
            path,
            Some(token),
            bytes.as_deref(),
            headers,
        );
        self.conform(method, path, &r);
        r
    }

    /// Checks a response against the document: the operation exists, the status is
    /// documented, the body matches its schema (no undocumented fields either).
    pub fn conform(&mut self, method: &str, path: &str, r: &Reply) {
        let bare = path.split('?').next().unwrap();
        let (template, op) = self.doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(t, _)| matches_template(t, bare))
            // The most literal template wins (/sites/bulk over /sites/{id}).
            .max_by_key(|(t, _)| t.matches('{').count() == 0)
            .map(|(t, ops)| (t.clone(), ops[method.to_ascii_lowercase()].clone()))
            .unwrap_or_else(|| panic!("{method} {bare} is not in the OpenAPI document"));
        assert!(
            op.is_object(),
            "{method} {template} is not in the OpenAPI document"
        );
        self.seen
            .insert((method.to_ascii_lowercase(), template.clone()));
        let responses = &op["responses"];
        let status = r.status.to_string();
        let range = format!("{}XX", &status[..1]);
        let resp = [status.as_str(), range.as_str(), "default"]
            .iter()
            .find_map(|s| responses.get(*s))
            .unwrap_or_else(|| {
                panic!(
                    "{method} {template}: status {status} is not documented: {}",
                    r.body
                )
            });
        if let Some(schema) = resp
            .get("content")
            .and_then(|c| c.get("application/json"))
            .and_then(|c| c.get("schema"))
        {
            let mut errors = Vec::new();
            validate(&self.doc, schema, &r.body, "$", &mut errors);
            assert!(
                errors.is_empty(),
                "{method} {path} → {status} does not match the document:\n{}\n{}",
                errors.join("\n"),
                r.body
            );
        }
    }
}

pub fn matches_template(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
}

/// Enough of JSON Schema for what utoipa emits: $ref, type (one or several), properties,
/// required, items, oneOf/anyOf/allOf, enum. Undocumented object fields are errors.
pub fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let s = &doc["components"]["schemas"][name];
        assert!(!s.is_null(), "dangling $ref {r}");
        return validate(doc, s, v, at, errors);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let ok = alts.iter().any(|a| {
                let mut e = Vec::new();
                validate(doc, a, v, at, &mut e);
                e.is_empty()
            });
            if !ok {
                errors.push(format!("{at}: matches none of {key} {}", schema[key]));
            }
            return;
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        // Flattened structs: the union of the parts' properties.
        let mut merged = json!({"type": "object", "properties": {}, "required": []});
        for a in all {
            let a = match a.get("$ref").and_then(Value::as_str) {
                Some(r) => doc["components"]["schemas"]
                    [r.trim_start_matches("#/components/schemas/")]
                .clone(),
                None => a.clone(),
            };
            if let Some(p) = a.get("properties").and_then(Value::as_object) {
                for (k, s) in p {
                    merged["properties"][k] = s.clone();
                }
            }
            if let Some(r) = a.get("required").and_then(Value::as_array) {
                merged["required"]
                    .as_array_mut()
                    .unwrap()
                    .extend(r.iter().cloned());
            }
        }
        return validate(doc, &merged, v, at, errors);
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {e:?}"));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return, // any value
    };
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types
        .iter()
        .any(|t| *t == kind || (*t == "number" && kind == "integer"))
    {
        errors.push(format!("{at}: {kind} where the document says {types:?}"));
        return;
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errors.push(format!("{at}: {n} is below {min}"));
    }
    match v {
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let req = req.as_str().unwrap();
                if !o.contains_key(req) {
                    errors.push(format!("{at}.{req}: required, missing"));
                }
            }
            if let Some(props) = props {
                for (k, val) in o {
                    match props.get(k) {
                        Some(s) => validate(doc, s, val, &format!("{at}.{k}"), errors),
                        None => errors.push(format!("{at}.{k}: not in the document")),
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(doc, s, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

pub fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let began = Instant::now();
    while !f() {
        assert!(began.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn id_of(v: &Value) -> u64 {
    v["id"].as_u64().unwrap_or_else(|| panic!("no id in {v}"))
}
