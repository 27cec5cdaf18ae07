//! What an answer means for a delivery (notifications.md): 2xx delivers; 410 disables the
//! webhook; 429, 5xx, timeouts and connection failures retry on the ladder 1 m, 5 m, 30 m,
//! 1 h, 6 h and then abandon; any other status abandons at once.

/// Seconds to wait before each retry; after the last, the delivery is abandoned.
pub const DEFAULT_LADDER_S: &[u32] = &[60, 300, 1800, 3600, 21_600];

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No answer in time, or no connection: retried.
    Failed,
    /// Refused before sending (probe safety, a bad URL): nothing will change it.
    Refused,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryIn(u32),
    Abandon,
    /// 410 Gone: abandon and disable the subscription.
    Disable,
}

/// The verdict after attempt number `attempts` (1 = the first) ended with `answer`.
pub fn next(answer: Answer, attempts: u32, ladder: &[u32]) -> Next {
    let retry = || {
        ladder
            .get(attempts.saturating_sub(1) as usize)
            .map_or(Next::Abandon, |s| Next::RetryIn(*s))
    };
    match answer {
        Answer::Status(s) if (200..300).contains(&s) => Next::Delivered,
        Answer::Status(410) => Next::Disable,
        Answer::Status(s) if s == 429 || s >= 500 => retry(),
        Answer::Status(_) | Answer::Refused => Next::Abandon,
        Answer::Failed => retry(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_climbs_then_abandons() {
        let l = DEFAULT_LADDER_S;
        assert_eq!(next(Answer::Status(204), 1, l), Next::Delivered);
        assert_eq!(next(Answer::Status(503), 1, l), Next::RetryIn(60));
        assert_eq!(next(Answer::Failed, 2, l), Next::RetryIn(300));
        assert_eq!(next(Answer::Status(429), 5, l), Next::RetryIn(21_600));
        assert_eq!(next(Answer::Status(500), 6, l), Next::Abandon);
        assert_eq!(next(Answer::Status(410), 1, l), Next::Disable);
        assert_eq!(next(Answer::Status(404), 1, l), Next::Abandon);
        assert_eq!(
            next(Answer::Status(301), 1, l),
            Next::Abandon,
            "no redirects followed"
        );
        assert_eq!(next(Answer::Refused, 1, l), Next::Abandon);
    }
}
