//! The state vocabulary of states-and-events.md: states, severities, transition reasons and
//! the legacy `site_status`. Numbers are stored: never renumber, only append.

/// Severity 0..=4 (room above). Separate from state: an event can escalate severity without
/// a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Severity(pub u8);

impl Severity {
    pub const UP: Severity = Severity(0);
    pub const WARNING: Severity = Severity(1);
    pub const DEGRADED: Severity = Severity(2);
    pub const SEEMS_DOWN: Severity = Severity(3);
    pub const DOWN: Severity = Severity(4);
}

macro_rules! stored_enum {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident = $code:literal, $name:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $ty {
            $($variant = $code,)*
        }

        impl $ty {
            /// Every value, in code order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];

            /// The stored code.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The value for a stored code; `None` for a code this build does not know.
            pub const fn from_code(code: u8) -> Option<$ty> {
                match code {
                    $($code => Some($ty::$variant),)*
                    _ => None,
                }
            }

            /// The stable snake_case name used in the API.
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }

            /// The value with this name.
            pub fn from_name(name: &str) -> Option<$ty> {
                match name {
                    $($name => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

stored_enum! {
    /// What we believe about a site, endpoint or check.
    State {
        Up = 0, "up";
        Warning = 1, "warning";
        Degraded = 2, "degraded";
        SeemsDown = 3, "seems_down";
        Down = 4, "down";
        Paused = 5, "paused";
        Maintenance = 6, "maintenance";
        Unknown = 7, "unknown";
    }
}

impl State {
    /// The severity of the graded states; `None` for Paused, Maintenance and Unknown, which
    /// are outside the severity scale (and never downtime).
    pub const fn severity(self) -> Option<Severity> {
        match self {
            State::Up => Some(Severity::UP),
            State::Warning => Some(Severity::WARNING),
            State::Degraded => Some(Severity::DEGRADED),
            State::SeemsDown => Some(Severity::SEEMS_DOWN),
            State::Down => Some(Severity::DOWN),
            State::Paused | State::Maintenance | State::Unknown => None,
        }
    }

    /// The legacy Jetmon v1 `site_status`: 2 confirmed down, 0 seems down, 1 running.
    pub const fn legacy_site_status(self) -> u8 {
        match self {
            State::Down => 2,
            State::SeemsDown => 0,
            _ => 1,
        }
    }
}

stored_enum! {
    /// Why a transition happened. Close reasons are copied to the event's resolution reason.
    Reason {
        Opened = 0, "opened";
        SeverityEscalation = 1, "severity_escalation";
        SeverityDeescalation = 2, "severity_deescalation";
        StateChange = 3, "state_change";
        VerifierConfirmed = 4, "verifier_confirmed";
        VerifierCleared = 5, "verifier_cleared";
        ProbeCleared = 6, "probe_cleared";
        FalseAlarm = 7, "false_alarm";
        ManualOverride = 8, "manual_override";
        MaintenanceSwallowed = 9, "maintenance_swallowed";
        Superseded = 10, "superseded";
        AutoTimeout = 11, "auto_timeout";
        CauseLinked = 12, "cause_linked";
        CauseUnlinked = 13, "cause_unlinked";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_severities_match_the_spec() {
        let spec: &[(u8, &str, Option<u8>)] = &[
            (0, "up", Some(0)),
            (1, "warning", Some(1)),
            (2, "degraded", Some(2)),
            (3, "seems_down", Some(3)),
            (4, "down", Some(4)),
            (5, "paused", None),
            (6, "maintenance", None),
            (7, "unknown", None),
        ];
        assert_eq!(State::ALL.len(), spec.len());
        for (state, (code, name, sev)) in State::ALL.iter().zip(spec) {
            assert_eq!(state.code(), *code);
            assert_eq!(state.name(), *name);
            assert_eq!(state.severity().map(|s| s.0), *sev);
            assert_eq!(State::from_code(*code), Some(*state));
            assert_eq!(State::from_name(name), Some(*state));
        }
        assert_eq!(State::from_code(8), None);
    }

    #[test]
    fn legacy_site_status() {
        assert_eq!(State::Down.legacy_site_status(), 2);
        assert_eq!(State::SeemsDown.legacy_site_status(), 0);
        for s in [
            State::Up,
            State::Warning,
            State::Degraded,
            State::Paused,
            State::Unknown,
        ] {
            assert_eq!(s.legacy_site_status(), 1, "{s}");
        }
    }

    #[test]
    fn reasons_match_the_spec() {
        let names = [
            "opened",
            "severity_escalation",
            "severity_deescalation",
            "state_change",
            "verifier_confirmed",
            "verifier_cleared",
            "probe_cleared",
            "false_alarm",
            "manual_override",
            "maintenance_swallowed",
            "superseded",
            "auto_timeout",
            "cause_linked",
            "cause_unlinked",
        ];
        assert_eq!(Reason::ALL.len(), names.len());
        for (i, (reason, name)) in Reason::ALL.iter().zip(names).enumerate() {
            assert_eq!(reason.code() as usize, i);
            assert_eq!(reason.name(), name);
            assert_eq!(Reason::from_name(name), Some(*reason));
        }
    }
}
