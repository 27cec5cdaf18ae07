//! `jetmon-outbox`: what the notification path decides, with no IO and no clock (design:
//! docs/notifications.md). Which event types a transition is, which subscriptions want it,
//! the delivery id, how a delivery is signed (Jetmon 2's `X-Jetmon-Signature` and Standard
//! Webhooks 1.0), and what an answer means for the next attempt (the retry ladder). The
//! store writes what this decides in the batch's transaction; the delivery workers
//! (`jetmon-deliver`) carry it out.

pub mod ladder;
pub mod payload;
pub mod sign;

use jetmon_shared::state::State;

/// What a delivery is about (api.md's event types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    EventOpened,
    EventSeverityChanged,
    EventStateChanged,
    EventClosed,
    EventCauseLinked,
    SiteStateChanged,
    /// A test send (`POST /webhooks/{id}/test`), never matched by filters.
    Ping,
}

impl EventType {
    /// The types a subscription may filter on.
    pub const ALL: &'static [EventType] = &[
        EventType::EventOpened,
        EventType::EventSeverityChanged,
        EventType::EventStateChanged,
        EventType::EventClosed,
        EventType::EventCauseLinked,
        EventType::SiteStateChanged,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            EventType::EventOpened => "event.opened",
            EventType::EventSeverityChanged => "event.severity_changed",
            EventType::EventStateChanged => "event.state_changed",
            EventType::EventClosed => "event.closed",
            EventType::EventCauseLinked => "event.cause_linked",
            EventType::SiteStateChanged => "site.state_changed",
            EventType::Ping => "ping",
        }
    }

    pub fn from_name(s: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.name() == s)
    }
}

/// What kind of subscriber a delivery goes to (its id's letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Webhook,
    Wpcom,
}

impl Kind {
    pub const fn letter(self) -> char {
        match self {
            Kind::Webhook => 'w',
            Kind::Wpcom => 'p',
        }
    }

    pub const fn code(self) -> u8 {
        match self {
            Kind::Webhook => 1,
            Kind::Wpcom => 2,
        }
    }
}

/// A delivery's id: the same for every re-send of one (subscription, transition, type), so a
/// receiver de-duplicates on it (`webhook-id`, `X-Jetmon-Delivery`). A site's state change
/// rides on the transition that made it, with its own suffix.
pub fn delivery_id(transition_id: u64, kind: Kind, subscription_id: u64, ty: EventType) -> String {
    let suffix = if ty == EventType::SiteStateChanged {
        ".site"
    } else {
        ""
    };
    format!("{transition_id}.{}{subscription_id}{suffix}", kind.letter())
}

/// One transition as the outbox sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub site_id: u64,
    pub tenant_id: u64,
    /// None when the transition opens its event.
    pub before: Option<State>,
    /// None when it closes its event.
    pub after: Option<State>,
    pub severity_changed: bool,
    /// Whether it linked the event to a cause.
    pub cause_linked: bool,
}

impl Change {
    /// The event type of this transition.
    pub fn event_type(&self) -> EventType {
        match (self.before, self.after) {
            (None, _) => EventType::EventOpened,
            (_, None) => EventType::EventClosed,
            _ if self.cause_linked => EventType::EventCauseLinked,
            (Some(b), Some(a)) if b != a => EventType::EventStateChanged,
            _ if self.severity_changed => EventType::EventSeverityChanged,
            _ => EventType::EventStateChanged,
        }
    }

    /// The state a filter on states judges: the state after, or for a close the state it
    /// closed from.
    pub fn filter_state(&self) -> Option<State> {
        self.after.or(self.before)
    }
}

/// What a subscriber wants (empty lists: everything of its tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub kind: Kind,
    pub id: u64,
    /// None: every tenant (the WPCOM notice, operator webhooks).
    pub tenant_id: Option<u64>,
    pub event_types: Vec<EventType>,
    pub site_ids: Vec<u64>,
    pub states: Vec<State>,
    pub active: bool,
}

impl Subscription {
    /// Whether a delivery of `ty` about this change goes to this subscriber.
    pub fn wants(&self, ty: EventType, c: &Change) -> bool {
        self.active
            && self.tenant_id.is_none_or(|t| t == c.tenant_id)
            && (self.event_types.is_empty() || self.event_types.contains(&ty))
            && (self.site_ids.is_empty() || self.site_ids.contains(&c.site_id))
            && (self.states.is_empty()
                || c.filter_state().is_some_and(|s| self.states.contains(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(before: Option<State>, after: Option<State>) -> Change {
        Change {
            site_id: 7,
            tenant_id: 2,
            before,
            after,
            severity_changed: false,
            cause_linked: false,
        }
    }

    #[test]
    fn a_transition_is_one_event_type() {
        use State::*;
        assert_eq!(
            change(None, Some(SeemsDown)).event_type(),
            EventType::EventOpened
        );
        assert_eq!(
            change(Some(Down), None).event_type(),
            EventType::EventClosed
        );
        assert_eq!(
            change(Some(SeemsDown), Some(Down)).event_type(),
            EventType::EventStateChanged
        );
        let mut sev = change(Some(Degraded), Some(Degraded));
        sev.severity_changed = true;
        assert_eq!(sev.event_type(), EventType::EventSeverityChanged);
        assert_eq!(
            change(Some(Down), None).filter_state(),
            Some(Down),
            "a close: its last state"
        );
        for t in EventType::ALL {
            assert_eq!(EventType::from_name(t.name()), Some(*t));
        }
        assert_eq!(EventType::from_name("ping"), None, "not a filter");
    }

    #[test]
    fn filters_narrow_and_tenants_separate() {
        let all = Subscription {
            kind: Kind::Webhook,
            id: 1,
            tenant_id: Some(2),
            event_types: vec![],
            site_ids: vec![],
            states: vec![],
            active: true,
        };
        let down = change(Some(State::SeemsDown), Some(State::Down));
        assert!(all.wants(EventType::EventStateChanged, &down));
        let other_tenant = Subscription {
            tenant_id: Some(3),
            ..all.clone()
        };
        assert!(!other_tenant.wants(EventType::EventStateChanged, &down));
        let only_down = Subscription {
            states: vec![State::Down],
            ..all.clone()
        };
        assert!(only_down.wants(EventType::EventStateChanged, &down));
        assert!(!only_down.wants(
            EventType::EventOpened,
            &change(None, Some(State::SeemsDown))
        ));
        let other_site = Subscription {
            site_ids: vec![8],
            ..all.clone()
        };
        assert!(!other_site.wants(EventType::EventStateChanged, &down));
        let closed_only = Subscription {
            event_types: vec![EventType::EventClosed],
            ..all.clone()
        };
        assert!(!closed_only.wants(EventType::EventStateChanged, &down));
        let off = Subscription {
            active: false,
            ..all
        };
        assert!(!off.wants(EventType::EventStateChanged, &down));
        assert_eq!(
            delivery_id(41, Kind::Webhook, 3, EventType::EventOpened),
            "41.w3"
        );
        assert_eq!(
            delivery_id(41, Kind::Webhook, 3, EventType::SiteStateChanged),
            "41.w3.site"
        );
    }
}
