//! Documented limits (README, "Limits"), enforced at the edge with clear errors.

/// Largest request body: room for a conversation created with many messages.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
pub use confab_wire::limits::{DEFAULT_TITLE, MAX_MESSAGE_BYTES, MAX_TITLE_CHARS};
/// Most messages one request may carry (create, or the template's replace).
pub const MAX_MESSAGES_PER_REQUEST: usize = 1000;
/// Page sizes: default and maximum.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;
pub const DEFAULT_CHANGES_PAGE: usize = 100;
pub const MAX_CHANGES_PAGE: usize = 500;
/// Message pages (`GET /api/conversations/{id}/messages`, `?limit=` on a
/// conversation): default and maximum count, and a content budget per page.
pub const DEFAULT_MESSAGE_PAGE: usize = 200;
pub const MAX_MESSAGE_PAGE: usize = 1000;
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Longest time a request (other than an event stream) may take before it is
/// answered 503.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Per-user request rate: a sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 200,
        }
    }
}

type Keyed = governor::RateLimiter<
    crate::ids::UserId,
    governor::state::keyed::DefaultKeyedStateStore<crate::ids::UserId>,
    governor::clock::DefaultClock,
>;

/// Per-user token buckets (governor). Only verified users are keyed, so an
/// attacker cannot grow it with made-up ids.
pub struct UserLimiter {
    limiter: Keyed,
    clock: governor::clock::DefaultClock,
}

impl std::fmt::Debug for UserLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserLimiter")
    }
}

impl UserLimiter {
    /// `None` when the limit is disabled (a zero rate).
    pub fn new(limit: RateLimit) -> Option<Self> {
        let rate = std::num::NonZeroU32::new(limit.per_second)?;
        let burst = std::num::NonZeroU32::new(limit.burst.max(limit.per_second))?;
        let quota = governor::Quota::per_second(rate).allow_burst(burst);
        Some(Self {
            limiter: governor::RateLimiter::keyed(quota),
            clock: governor::clock::DefaultClock::default(),
        })
    }

    /// `Err(seconds)` to wait when the user is over the limit.
    pub fn check(&self, user: &crate::ids::UserId) -> Result<(), u64> {
        use governor::clock::Clock;
        self.limiter.check_key(user).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Forgets users whose buckets are full again (call periodically).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_user_separately() {
        let limiter = UserLimiter::new(RateLimit {
            per_second: 1,
            burst: 3,
        })
        .unwrap();
        let ada = crate::ids::UserId::parse("user_ada").unwrap();
        let bob = crate::ids::UserId::parse("user_bob").unwrap();
        for _ in 0..3 {
            assert!(limiter.check(&ada).is_ok());
        }
        let wait = limiter.check(&ada).unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        assert!(limiter.check(&bob).is_ok());
    }

    #[test]
    fn zero_disables() {
        assert!(
            UserLimiter::new(RateLimit {
                per_second: 0,
                burst: 0
            })
            .is_none()
        );
    }
}
