//! Reconnect delays: exponential with jitter, capped, optionally limited in attempts.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// How reconnecting waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

/// The delays of one run of failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempts: u32,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            attempts: 0,
        }
    }

    /// A connection worked: start over.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Failed attempts in a row so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt, or `None` when attempts are used up. The delay is
    /// `initial * 2^n` capped at `max`, then jittered to between half and all of it.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        let exponent = self.attempts.min(20);
        self.attempts += 1;
        let full = self
            .config
            .initial
            .saturating_mul(1u32 << exponent)
            .min(self.config.max);
        let half = full / 2;
        Some(half + half.mul_f64(unit_random()))
    }
}

/// A number in [0, 1) from the standard library's per-process random keys.
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters() {
        let mut backoff = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            max_attempts: Some(6),
        });
        let delays: Vec<Duration> = std::iter::from_fn(|| backoff.next_delay()).collect();
        assert_eq!(delays.len(), 6);
        let ceilings = [100, 200, 400, 800, 1000, 1000];
        for (delay, ceiling) in delays.iter().zip(ceilings) {
            let ceiling = Duration::from_millis(ceiling);
            assert!(*delay >= ceiling / 2 && *delay <= ceiling, "{delay:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay().is_some());
    }
}
