//! The retry policy of seed §6.2: 3 attempts, 1 s initial delay, ×2, at most 10 s.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub multiplier: u32,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial: Duration::from_secs(1),
            multiplier: 2,
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (1-based; the first attempt has no wait), or
    /// `None` when no attempt that many is allowed.
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        if attempt == 0 || attempt > self.max_attempts {
            return None;
        }
        if attempt == 1 {
            return Some(Duration::ZERO);
        }
        let factor = self.multiplier.saturating_pow(attempt - 2);
        Some(self.initial.saturating_mul(factor).min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_policy_waits_one_then_two_seconds() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_before(1), Some(Duration::ZERO));
        assert_eq!(p.delay_before(2), Some(Duration::from_secs(1)));
        assert_eq!(p.delay_before(3), Some(Duration::from_secs(2)));
        assert_eq!(p.delay_before(4), None);
        let long = RetryPolicy {
            max_attempts: 10,
            ..p
        };
        assert_eq!(long.delay_before(9), Some(Duration::from_secs(10)));
    }
}
