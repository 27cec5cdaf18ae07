//! `jetmon sites import FILE`: sites from CSV (`url[,interval_s[,keyword[,blog_id]]]`, a
//! keyword with commas in double quotes) or JSON lines (`{"url": …, "interval_s": …, "keyword":
//! …, "blog_id": …}`), one site with one HTTP check per row. A row states what its check should
//! be: a URL that is already one of the tenant's HTTP checks updates that check (or leaves it
//! as it is), so importing a file twice changes nothing the second time. Bad rows are reported
//! with their line number and skipped. Parsing and planning are pure (this file); the command
//! around it looks up what exists, shows the plan (`--dry-run`) or writes it in one
//! transaction.

use jetmon_api::target::{
    DEFAULT_INTERVAL_S, MAX_INTERVAL_S, MIN_INTERVAL_S, TargetProblem, check_target,
};
use std::collections::{HashMap, HashSet};

use jetmon_prober::proto::safety::ProbeSafety;
use jetmon_shared::check::{CheckSpec, CheckType};
use jetmon_store::{ImportUpdate, ImportedCheck};

/// Rows looked up per query.
pub const BATCH_ROWS: usize = 1_000;

/// One good row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: usize,
    pub url: String,
    pub spec: CheckSpec,
    /// The Jetmon v1 id (1 to 2^63-1).
    pub blog_id: Option<u64>,
    /// Request headers (JSON lines' `headers`; None: the check keeps what it has).
    pub headers: Option<Vec<(String, String)>>,
}

/// One bad row: its line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: usize,
    pub problem: String,
}

/// Parses a whole file; JSON lines when the first meaningful line starts with `{`.
pub fn parse(text: &str, safety: &ProbeSafety) -> (Vec<Row>, Vec<BadRow>) {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let json = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with('{'));
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if !json && line_is_header(l) {
            continue;
        }
        let parsed = if json { parse_json(l) } else { parse_csv(l) };
        match parsed.and_then(|f| {
            let (blog_id, headers) = (f.blog_id, f.headers.clone());
            build(f, safety).map(|spec| (spec, blog_id, headers))
        }) {
            Ok((spec, blog_id, headers)) => rows.push(Row {
                line,
                url: spec.target.clone(),
                spec,
                blog_id,
                headers,
            }),
            Err(problem) => bad.push(BadRow { line, problem }),
        }
    }
    (rows, bad)
}

fn line_is_header(l: &str) -> bool {
    l.split(',')
        .next()
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("url"))
}

/// What one line gives.
#[derive(Debug, Default)]
struct Fields {
    url: String,
    interval: Option<u32>,
    keyword: Option<String>,
    blog_id: Option<u64>,
    headers: Option<Vec<(String, String)>>,
}

/// A line's comma-separated fields; a field in double quotes may hold commas (`""` is a quote).
fn csv_fields(l: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = l.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("one field at least");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => field.push(c),
        }
    }
    fields.iter().map(|f| f.trim().to_owned()).collect()
}

fn blog_id_of(f: &str) -> Result<u64, String> {
    f.parse::<u64>()
        .ok()
        .filter(|b| (1..=i64::MAX as u64).contains(b))
        .ok_or_else(|| format!("blog_id {f:?} is not a whole number from 1 to {}", i64::MAX))
}

fn parse_csv(l: &str) -> Result<Fields, String> {
    let fields = csv_fields(l);
    if fields.len() > 4 {
        return Err(format!(
            "{} fields; expected url[,interval_s[,keyword[,blog_id]]] (quote a keyword with commas)",
            fields.len()
        ));
    }
    let field = |k: usize| fields.get(k).map(String::as_str).filter(|f| !f.is_empty());
    let url = field(0).unwrap_or_default().to_owned();
    let interval = match field(1) {
        Some(f) => Some(
            f.parse::<u32>()
                .map_err(|_| format!("interval_s {f:?} is not a whole number of seconds"))?,
        ),
        None => None,
    };
    let keyword = field(2).map(str::to_owned);
    let blog_id = field(3).map(blog_id_of).transpose()?;
    Ok(Fields {
        url,
        interval,
        keyword,
        blog_id,
        headers: None,
    })
}

fn parse_json(l: &str) -> Result<Fields, String> {
    let v: serde_json::Value =
        serde_json::from_str(l).map_err(|e| format!("not a JSON object: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "url" | "interval_s" | "keyword" | "blog_id" | "headers"
        ) {
            return Err(format!(
                "unknown field {key:?} (url, interval_s, keyword, blog_id, headers)"
            ));
        }
    }
    let url = obj
        .get("url")
        .and_then(|u| u.as_str())
        .ok_or("\"url\" is missing or not a string")?
        .to_owned();
    let interval = match obj.get("interval_s") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("\"interval_s\" is not a whole number of seconds")?,
        ),
    };
    let keyword = match obj.get("keyword") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(v.as_str().ok_or("\"keyword\" is not a string")?.to_owned()),
    };
    let blog_id = match obj.get("blog_id") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(blog_id_of(&v.to_string())?),
    };
    let headers = match obj.get("headers") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(h)) => Some(
            h.iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|v| (k.clone(), v.to_owned()))
                        .ok_or_else(|| format!("headers.{k}: not a string"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("\"headers\" is not an object of name: value".to_owned()),
    };
    Ok(Fields {
        url,
        interval,
        keyword,
        blog_id,
        headers,
    })
}

fn build(f: Fields, safety: &ProbeSafety) -> Result<CheckSpec, String> {
    let Fields {
        url,
        interval,
        keyword,
        headers,
        ..
    } = f;
    check_target(safety, CheckType::Http, &url).map_err(|p| match p {
        TargetProblem::Invalid(why) => format!("url {url:?}: {why}"),
        TargetProblem::Unsafe(why) => format!(
            "url {url:?}: unsafe target: {}",
            jetmon_shared::outcome::blocked_note(why, None, "the URL")
        ),
    })?;
    let interval = interval.unwrap_or(DEFAULT_INTERVAL_S);
    if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&interval) {
        return Err(format!(
            "interval_s {interval} is outside {MIN_INTERVAL_S}..={MAX_INTERVAL_S}"
        ));
    }
    let mut spec = CheckSpec::new(1, 1, CheckType::Http, &url);
    spec.interval_ms = interval * 1000;
    if let Some(k) = keyword {
        if k.chars().any(char::is_control) {
            return Err("keyword: no control characters".to_owned());
        }
        spec.keywords = vec![k];
    }
    if let Some(h) = headers {
        if let Some((n, _)) = h
            .iter()
            .find(|(n, v)| !jetmon_prober::proto::http::header_allowed(n, v))
        {
            return Err(format!(
                "headers: {n:?} may not be set (a token name; no control characters; not Host, \
                 Content-Length, Transfer-Encoding, Connection or other hop-by-hop headers)"
            ));
        }
        spec.headers = h;
    }
    spec.validate().map_err(|e| e.to_string())?;
    Ok(spec)
}

/// What one good row does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A new site with its one HTTP check.
    Create,
    /// The URL's check changes: what changes, in words.
    Update(Box<ImportUpdate>, Vec<String>),
    /// The URL's check is already as the row says.
    Unchanged { site_id: u64 },
}

/// What the rows seen so far claimed: URLs and v1 ids (with the line that named them).
#[derive(Debug, Default)]
pub struct Claims {
    urls: HashMap<String, usize>,
    blog_ids: HashMap<u64, usize>,
}

fn interval_words(ms: u32) -> String {
    format!("{} s", ms / 1000)
}

fn keyword_words(k: &[String]) -> String {
    k.first().map_or("none".to_owned(), |k| format!("{k:?}"))
}

/// Plans one row: `existing` is the tenant's HTTP check with the row's URL, `holder` the site
/// that holds the row's v1 id. Err is the row's problem.
pub fn plan(
    row: &Row,
    existing: Option<&ImportedCheck>,
    holder: Option<u64>,
    claims: &mut Claims,
) -> Result<Action, String> {
    if let Some(first) = claims.urls.get(&row.url) {
        return Err(format!(
            "url {:?} is named by an earlier row (line {first})",
            row.url
        ));
    }
    if let Some(b) = row.blog_id {
        if let Some(first) = claims.blog_ids.get(&b) {
            return Err(format!(
                "blog_id {b} is named by an earlier row (line {first})"
            ));
        }
        if let Some(site) = holder
            && existing.is_none_or(|e| e.site_id != site)
        {
            return Err(format!("blog_id {b} already belongs to site {site}"));
        }
    }
    claims.urls.insert(row.url.clone(), row.line);
    if let Some(b) = row.blog_id {
        claims.blog_ids.insert(b, row.line);
    }
    let Some(e) = existing else {
        return Ok(Action::Create);
    };
    let mut spec = e.spec.clone();
    let mut what = Vec::new();
    if spec.interval_ms != row.spec.interval_ms {
        what.push(format!(
            "interval {} → {}",
            interval_words(spec.interval_ms),
            interval_words(row.spec.interval_ms)
        ));
        spec.interval_ms = row.spec.interval_ms;
    }
    if spec.keywords != row.spec.keywords {
        what.push(format!(
            "keyword {} → {}",
            keyword_words(&spec.keywords),
            keyword_words(&row.spec.keywords)
        ));
        spec.keywords.clone_from(&row.spec.keywords);
    }
    // Their values are secrets: the plan says that they change, never what they are.
    if let Some(h) = &row.headers
        && *h != spec.headers
    {
        what.push(format!(
            "request headers ({} → {})",
            spec.headers.len(),
            h.len()
        ));
        spec.headers.clone_from(h);
    }
    let blog_id = row.blog_id.filter(|b| e.blog_id != Some(*b));
    if let Some(b) = blog_id {
        let was = e.blog_id.map_or("none".to_owned(), |b| b.to_string());
        what.push(format!("blog_id {was} → {b}"));
    }
    Ok(if what.is_empty() {
        Action::Unchanged { site_id: e.site_id }
    } else {
        Action::Update(
            Box::new(ImportUpdate {
                site_id: e.site_id,
                blog_id,
                spec,
            }),
            what,
        )
    })
}

/// The distinct URLs and v1 ids of `rows`, to look up.
pub fn keys_of(rows: &[Row]) -> (Vec<String>, Vec<u64>) {
    let mut seen = HashSet::new();
    let urls = rows
        .iter()
        .filter(|r| seen.insert(r.url.as_str()))
        .map(|r| r.url.clone())
        .collect();
    let blog_ids = rows
        .iter()
        .filter_map(|r| r.blog_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    (urls, blog_ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        line: usize,
        url: &str,
        interval_s: u32,
        keyword: Option<&str>,
        blog: Option<u64>,
    ) -> Row {
        let mut spec = CheckSpec::new(1, 1, CheckType::Http, url);
        spec.interval_ms = interval_s * 1000;
        spec.keywords = keyword.map(|k| vec![k.to_owned()]).unwrap_or_default();
        Row {
            line,
            url: url.to_owned(),
            spec,
            blog_id: blog,
            headers: None,
        }
    }

    fn existing(
        site: u64,
        check: u64,
        url: &str,
        interval_s: u32,
        blog: Option<u64>,
    ) -> ImportedCheck {
        let mut spec = CheckSpec::new(check, site, CheckType::Http, url);
        spec.interval_ms = interval_s * 1000;
        spec.timeout_ms = 7_000;
        ImportedCheck {
            site_id: site,
            blog_id: blog,
            spec,
        }
    }

    #[test]
    fn a_known_url_is_updated_or_left_alone_never_duplicated() {
        let mut c = Claims::default();
        let e = existing(4, 40, "https://a.example/", 60, Some(9));
        // The same row again: nothing to do.
        let same = row(1, "https://a.example/", 60, None, Some(9));
        assert_eq!(
            plan(&same, Some(&e), Some(4), &mut c),
            Ok(Action::Unchanged { site_id: 4 })
        );
        // Another interval and keyword: the check's other settings stay.
        let mut c = Claims::default();
        let changed = row(1, "https://a.example/", 30, Some("ok"), None);
        let Ok(Action::Update(up, what)) = plan(&changed, Some(&e), None, &mut c) else {
            panic!("an update");
        };
        assert_eq!(what, vec!["interval 60 s → 30 s", "keyword none → \"ok\""]);
        assert_eq!((up.site_id, up.spec.check_id, up.blog_id), (4, 40, None));
        assert_eq!(up.spec.timeout_ms, 7_000);
        assert_eq!(up.spec.keywords, vec!["ok".to_owned()]);
        // A new URL is a new site.
        let new = row(2, "https://b.example/", 60, None, Some(10));
        assert_eq!(plan(&new, None, None, &mut c), Ok(Action::Create));
    }

    #[test]
    fn a_url_or_v1_id_named_twice_or_held_elsewhere_is_refused() {
        let mut c = Claims::default();
        assert_eq!(
            plan(
                &row(1, "https://a.example/", 60, None, Some(5)),
                None,
                None,
                &mut c
            ),
            Ok(Action::Create)
        );
        let again = plan(
            &row(2, "https://a.example/", 90, None, None),
            None,
            None,
            &mut c,
        );
        assert!(again.unwrap_err().contains("earlier row (line 1)"));
        let twice = plan(
            &row(3, "https://c.example/", 60, None, Some(5)),
            None,
            None,
            &mut c,
        );
        assert!(
            twice
                .unwrap_err()
                .contains("blog_id 5 is named by an earlier row")
        );
        let held = plan(
            &row(4, "https://d.example/", 60, None, Some(8)),
            None,
            Some(3),
            &mut c,
        );
        assert_eq!(held.unwrap_err(), "blog_id 8 already belongs to site 3");
    }

    fn safety() -> ProbeSafety {
        ProbeSafety::new(vec!["127.0.0.0/8".parse().expect("cidr")])
    }

    #[test]
    fn csv_rows_good_and_bad_with_line_numbers() {
        let text = "url,interval_s,keyword\n\
                    https://example.com/\n\
                    \n\
                    # a comment\n\
                    http://127.0.0.1:8080/health,30,ok\n\
                    ftp://example.com/,60\n\
                    https://example.org/,abc\n\
                    https://example.net/,5\n\
                    http://10.1.2.3/\n\
                    https://example.com/shop,120,\"Add to cart\"\n";
        let (rows, bad) = parse(text, &safety());
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 5, 10]
        );
        assert_eq!(rows[1].spec.interval_ms, 30_000);
        assert_eq!(rows[1].spec.keywords, vec!["ok".to_owned()]);
        assert_eq!(rows[2].spec.keywords, vec!["Add to cart".to_owned()]);
        assert_eq!(rows[0].spec.interval_ms, 60_000, "default interval");
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![6, 7, 8, 9]);
        assert!(bad[0].problem.contains("scheme"), "{bad:?}");
        assert!(bad[1].problem.contains("whole number"), "{bad:?}");
        assert!(bad[2].problem.contains("outside"), "{bad:?}");
        assert!(bad[3].problem.contains("unsafe target"), "{bad:?}");
    }

    #[test]
    fn v1_ids_in_csv_and_json_lines() {
        let text = "https://a.example/,60,,1001\n\
                    https://b.example/,60,\"a, b and \"\"c\"\"\",1002\n\
                    https://c.example/,60,x,0\n\
                    https://d.example/,60,x,12ab\n\
                    https://e.example/,60,x,1,extra\n";
        let (rows, bad) = parse(text, &safety());
        assert_eq!(
            rows.iter().map(|r| r.blog_id).collect::<Vec<_>>(),
            vec![Some(1001), Some(1002)]
        );
        assert_eq!(rows[1].spec.keywords, vec!["a, b and \"c\"".to_owned()]);
        assert_eq!(
            bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(bad[0].problem.contains("blog_id \"0\""), "{bad:?}");
        assert!(bad[2].problem.contains("5 fields"), "{bad:?}");
        let (rows, bad) = parse(
            "{\"url\": \"https://a.example/\", \"blog_id\": 77}\n\
             {\"url\": \"https://b.example/\", \"blog_id\": \"x\"}\n",
            &safety(),
        );
        assert_eq!(rows[0].blog_id, Some(77));
        assert!(bad[0].problem.contains("blog_id"), "{bad:?}");
    }

    #[test]
    fn json_lines_with_unknown_fields_named() {
        let text = "{\"url\": \"https://example.com/\", \"interval_s\": 300}\n\
                    {\"url\": \"https://example.com/\", \"intervl\": 300}\n\
                    {\"interval_s\": 300}\n\
                    not json\n";
        let (rows, bad) = parse(text, &safety());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].spec.interval_ms, 300_000);
        assert_eq!(bad.len(), 3);
        assert!(bad[0].problem.contains("\"intervl\""), "{bad:?}");
        assert!(bad[1].problem.contains("url"), "{bad:?}");
        assert!(bad[2].problem.contains("not a JSON object"), "{bad:?}");
    }
}
