//! Timestamps (RFC 3339 UTC with milliseconds) and windows (`1h`, `24h`, `7d`, `30d`, `90d`).

use super::ApiError;

/// RFC 3339 UTC with milliseconds, from Unix µs.
pub fn rfc3339(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let ms = (us / 1000) % 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` → Unix µs; None when it is not that (or before
/// 1970).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, se) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = s.get(start..i)?;
        if frac.is_empty() {
            return None;
        }
        let mut digits: String = frac.chars().take(6).collect();
        while digits.len() < 6 {
            digits.push('0');
        }
        micros = digits.parse().ok()?;
    }
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let oh = num(i + 1, 2)?;
            let om = num(i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if tz.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se.min(59) - offset_s;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(micros as u64)
}

/// A `window=` value in µs.
pub fn window_us(w: &str) -> Option<u64> {
    // By characters, not bytes: `w` is whatever a client sent (schemathesis found a panic
    // on a multi-byte last character).
    let unit = w.chars().last()?;
    let n: u64 = w[..w.len() - unit.len_utf8()]
        .parse()
        .ok()
        .filter(|n| *n > 0)?;
    let s = match unit {
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        _ => return None,
    };
    (s <= 400 * 86_400).then_some(s * 1_000_000)
}

/// `[from, to)` from `window=` or `from=`/`to=` (RFC 3339), ending at `now_us` by default.
pub fn span(
    window: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    default_window: &str,
    now_us: u64,
) -> Result<(u64, u64), ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_query", m);
    let ts = |name: &str, v: &str| {
        parse_rfc3339(v).ok_or_else(|| {
            bad(format!(
                "{name}: {v:?} is not an RFC 3339 time (2026-11-01T00:00:00Z)"
            ))
        })
    };
    if window.is_some() && (from.is_some() || to.is_some()) {
        return Err(bad("give window= or from=/to=, not both".into()));
    }
    let (from, to) = match (from, to) {
        (None, None) => {
            let w = window.unwrap_or(default_window);
            let len = window_us(w).ok_or_else(|| {
                bad(format!(
                    "window: {w:?} is not a window (1h, 24h, 7d, 30d, 90d; at most 400d)"
                ))
            })?;
            (now_us.saturating_sub(len), now_us)
        }
        (Some(f), t) => {
            let f = ts("from", f)?;
            let t = t.map(|t| ts("to", t)).transpose()?.unwrap_or(now_us);
            (f, t)
        }
        (None, Some(_)) => return Err(bad("to= needs from=".into())),
    };
    if to <= from {
        return Err(bad("the window is empty: from must be before to".into()));
    }
    if to - from > 400 * 86_400 * 1_000_000 {
        return Err(bad("the window is longer than 400 days".into()));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_996_800_123_456), "2026-11-30T00:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn rfc3339_parses_back_and_refuses_junk() {
        for us in [
            0,
            1_795_996_800_123_000,
            951_782_400_000_000,
            1_234_567_890_999_000,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(us)), Some(us));
        }
        assert_eq!(
            parse_rfc3339("2026-11-30T01:00:00+01:00"),
            Some(1_795_996_800_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-30T00:00:00.5Z"),
            Some(1_795_996_800_500_000)
        );
        for junk in [
            "",
            "2026-11-30",
            "2026-13-01T00:00:00Z",
            "2026-11-30T25:00:00Z",
            "2026-11-30T00:00:00",
            "2026-11-30T00:00:00.Z",
            "1969-12-31T23:59:59Z",
            "2026-11-30T00:00:00+1:00",
            "２０２６-11-30T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(junk), None, "{junk}");
        }
    }

    #[test]
    fn windows() {
        assert_eq!(window_us("1h"), Some(3_600_000_000));
        assert_eq!(window_us("30d"), Some(30 * 86_400_000_000));
        for junk in [
            "",
            "h",
            "0d",
            "-1d",
            "5m",
            "401d",
            "99999999999999999999d",
            "1\u{80}",
            "\u{e9}",
        ] {
            assert_eq!(window_us(junk), None, "{junk}");
        }
        let now = 100 * 86_400_000_000;
        assert_eq!(
            span(Some("1d"), None, None, "30d", now).ok(),
            Some((99 * 86_400_000_000, now))
        );
        assert!(span(Some("1d"), Some("2026-01-01T00:00:00Z"), None, "30d", now).is_err());
        assert!(span(None, None, Some("2026-01-01T00:00:00Z"), "30d", now).is_err());
    }
}
