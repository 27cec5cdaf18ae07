//! The delivery body, frozen when the delivery is enqueued (api.md): `{id, type, occurred_at,
//! site{id, url, state, severity}, event{id, check_type, state, severity, started_at,
//! ended_at, resolution_reason}, transition{id, reason, source, state_before, state_after}}`.

use jetmon_shared::state::State;
use serde_json::json;

use super::EventType;

/// What a delivery says, as the store knows it inside the batch's transaction.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub transition_id: u64,
    pub at_us: u64,
    pub site_id: u64,
    pub site_url: &'a str,
    /// The site's Jetmon v1 id (the WPCOM notice goes only for sites that have one).
    pub blog_id: Option<u64>,
    /// The site's rolled-up state after this batch.
    pub site_state: State,
    pub site_severity: u8,
    pub event_id: u64,
    /// http, tcp or dns.
    pub check_type: &'a str,
    pub started_at_us: u64,
    /// Set when this transition closed the event.
    pub ended_at_us: Option<u64>,
    pub resolution_reason: Option<&'a str>,
    pub reason: &'a str,
    pub source: &'a str,
    pub state_before: Option<(State, u8)>,
    pub state_after: Option<(State, u8)>,
}

/// RFC 3339 UTC with milliseconds, as the API writes times.
pub fn rfc3339(us: u64) -> String {
    let secs = us / 1_000_000;
    let ms = (us / 1000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The body of delivery `id` of type `ty`.
pub fn body(id: &str, ty: EventType, f: &Facts<'_>) -> String {
    // The event as it stands after this transition (its last state when it closed).
    let (state, severity) = f.state_after.or(f.state_before).unzip();
    json!({
        "id": id,
        "type": ty.name(),
        "occurred_at": rfc3339(f.at_us),
        "site": {
            "id": f.site_id,
            "url": f.site_url,
            "state": f.site_state.name(),
            "severity": f.site_severity,
        },
        "event": {
            "id": f.event_id,
            "check_type": f.check_type,
            "state": state.map(State::name),
            "severity": severity,
            "started_at": rfc3339(f.started_at_us),
            "ended_at": f.ended_at_us.map(rfc3339),
            "resolution_reason": f.resolution_reason,
        },
        "transition": {
            "id": f.transition_id,
            "reason": f.reason,
            "source": f.source,
            "state_before": f.state_before.map(|(s, _)| s.name()),
            "state_after": f.state_after.map(|(s, _)| s.name()),
        },
    })
    .to_string()
}

/// The WPCOM v1 status-change notice (api.md, back-compat) for a site's new state:
/// `{blog_id, monitor_url, status_id (0 seems down, 1 running, 2 confirmed down),
/// last_check, last_status_change, checks: [{type, host, status, rtt, code}]}`. None when the
/// site has no v1 id or its state is not one v1 knows (unknown, maintenance, paused).
/// Times are RFC 3339; `rtt` and `code` are null (a transition carries no single result).
pub fn wpcom_body(f: &Facts<'_>) -> Option<String> {
    let blog_id = f.blog_id?;
    let status_id = match f.site_state {
        State::SeemsDown => 0,
        State::Up | State::Degraded => 1,
        State::Down => 2,
        _ => return None,
    };
    let host = f
        .site_url
        .split("://")
        .nth(1)
        .unwrap_or(f.site_url)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    let at = rfc3339(f.at_us);
    Some(
        json!({
            "blog_id": blog_id,
            "monitor_url": f.site_url,
            "status_id": status_id,
            "last_check": at,
            "last_status_change": at,
            "checks": [{
                "type": f.check_type,
                "host": host,
                "status": status_id,
                "rtt": null,
                "code": null,
            }],
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330_123_456), "2021-02-25T15:02:10.123Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_close_says_the_state_it_closed_from() {
        let f = Facts {
            transition_id: 9,
            at_us: 2_000_000,
            site_id: 3,
            site_url: "https://a.example/",
            blog_id: Some(7),
            site_state: State::Up,
            site_severity: 0,
            event_id: 5,
            check_type: "http",
            started_at_us: 1_000_000,
            ended_at_us: Some(2_000_000),
            resolution_reason: Some("probe_cleared"),
            reason: "probe_cleared",
            source: "local:h",
            state_before: Some((State::Down, 4)),
            state_after: None,
        };
        let v: serde_json::Value =
            serde_json::from_str(&body("9.w1", EventType::EventClosed, &f)).unwrap_or_default();
        assert_eq!(v["type"], "event.closed");
        assert_eq!(v["event"]["state"], "down");
        assert_eq!(v["event"]["ended_at"], "1970-01-01T00:00:02.000Z");
        assert_eq!(v["transition"]["state_after"], serde_json::Value::Null);
        assert_eq!(v["site"]["state"], "up");
        assert_eq!(v["id"], "9.w1");
    }

    #[test]
    fn the_wpcom_notice_has_v1_shape_and_only_v1_states() {
        let mut f = Facts {
            transition_id: 9,
            at_us: 2_000_000,
            site_id: 3,
            site_url: "https://a.example/x",
            blog_id: Some(7),
            site_state: State::Down,
            site_severity: 4,
            event_id: 5,
            check_type: "http",
            started_at_us: 1_000_000,
            ended_at_us: None,
            resolution_reason: None,
            reason: "verifier_confirmed",
            source: "local:h",
            state_before: Some((State::SeemsDown, 3)),
            state_after: Some((State::Down, 4)),
        };
        let v: serde_json::Value =
            serde_json::from_str(&wpcom_body(&f).unwrap_or_default()).unwrap_or_default();
        assert_eq!(v["blog_id"], 7);
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["monitor_url"], "https://a.example/x");
        assert_eq!(v["checks"][0]["host"], "a.example");
        f.site_state = State::Paused;
        assert!(wpcom_body(&f).is_none());
        f.site_state = State::Up;
        f.blog_id = None;
        assert!(wpcom_body(&f).is_none());
    }
}
