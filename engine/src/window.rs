//! Maintenance windows: one-off intervals and weekly recurring slots (UTC).

/// Seconds in a week.
const WEEK_S: u64 = 7 * 86_400;
/// 1970-01-01 was a Thursday: Unix time plus this is time since a Monday 00:00 UTC.
const EPOCH_TO_MONDAY_S: u64 = 3 * 86_400;

/// When failures are swallowed as Maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// `[from_us, to_us)`, Unix µs.
    OneOff { from_us: u64, to_us: u64 },
    /// Every week from `start_s` seconds after Monday 00:00 UTC, for `duration_s` (may wrap
    /// into the next week).
    Weekly { start_s: u32, duration_s: u32 },
}

impl Window {
    pub fn contains(&self, at_us: u64) -> bool {
        match *self {
            Window::OneOff { from_us, to_us } => (from_us..to_us).contains(&at_us),
            Window::Weekly {
                start_s,
                duration_s,
            } => {
                let in_week = (at_us / 1_000_000 + EPOCH_TO_MONDAY_S) % WEEK_S;
                let since_start = (in_week + WEEK_S - u64::from(start_s) % WEEK_S) % WEEK_S;
                since_start < u64::from(duration_s).min(WEEK_S)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn weekly_windows_recur_and_wrap() {
        // 2026-11-30 is a Monday; 00:00 UTC = 1795996800.
        let monday = 1_795_996_800 * S;
        let sunday_23h = Window::Weekly {
            start_s: 6 * 86_400 + 23 * 3600,
            duration_s: 2 * 3600,
        };
        assert!(sunday_23h.contains(monday - 30 * 60 * S), "Sunday 23:30");
        assert!(
            sunday_23h.contains(monday + 30 * 60 * S),
            "Monday 00:30 (wrapped)"
        );
        assert!(!sunday_23h.contains(monday + 61 * 60 * S), "Monday 01:01");
        assert!(
            sunday_23h.contains(monday + 7 * 86_400 * S - 10 * S),
            "a week later"
        );
        let one_off = Window::OneOff {
            from_us: monday,
            to_us: monday + S,
        };
        assert!(one_off.contains(monday) && !one_off.contains(monday + S));
    }
}
