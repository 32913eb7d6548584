//! Per-token burst limit for posting notifications: a token bucket.
//!
//! A cron job or a runaway script should not be able to bury the user in
//! alerts. Each caller (the main token, each scoped token) gets a bucket of
//! [`BURST`] posts that refills at [`REFILL_PER_SEC`]; an empty bucket is a
//! 429 with the time until the next post is allowed.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const BURST: f64 = 60.0;
pub const REFILL_PER_SEC: f64 = 1.0;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(BURST, REFILL_PER_SEC)
    }
}

impl RateLimiter {
    pub fn new(burst: f64, per_sec: f64) -> Self {
        Self {
            burst,
            per_sec,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one post from `caller`'s bucket, or says how long to wait.
    pub fn check(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        // Callers are tokens, so few; full buckets carry no information and
        // are dropped once there are many.
        if buckets.len() > 1024 {
            let (burst, per_sec) = (self.burst, self.per_sec);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_sec < burst
            });
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_sec,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_caller() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(limiter.check("main", t0).is_ok());
        }
        let wait = limiter.check("main", t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(
            limiter.check("token:a", t0).is_ok(),
            "buckets are per caller"
        );
        let t1 = t0 + Duration::from_millis(1500);
        assert!(limiter.check("main", t1).is_ok(), "one refilled");
        assert!(limiter.check("main", t1).is_err());
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..60 {
            assert!(limiter.check("main", t2).is_ok());
        }
        assert!(limiter.check("main", t2).is_err(), "never above the burst");
    }
}
