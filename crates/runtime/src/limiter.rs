//! Rate limits: a token bucket per key (a tenant, a source), refilled continuously. Ingest
//! limits each sender after authentication, so forged requests cannot spend a tenant's budget;
//! the ledger limits each tenant's SimplyBook lookups, so a flood of genuine-looking callbacks
//! cannot make it hammer SimplyBook. Limits are per replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_sec` sustained, up to `burst` at once. `per_sec == 0` disables limiting.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        RateLimiter {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `false` when the bucket is empty.
    pub fn allow(&self, key: &str) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: &str, now: Instant) -> bool {
        if self.per_sec == 0.0 {
            return true;
        }
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The key is copied only the first time it is seen: this runs on every webhook.
        if !buckets.contains_key(key) {
            let full = Bucket {
                tokens: self.burst,
                at: now,
            };
            buckets.insert(key.to_owned(), full);
        }
        let Some(bucket) = buckets.get_mut(key) else {
            return false;
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_sustained_rate_per_key() {
        let limiter = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow_at("a", t0)));
        assert!(!limiter.allow_at("a", t0), "burst spent");
        assert!(
            limiter.allow_at("b", t0),
            "other keys have their own bucket"
        );
        assert!(!limiter.allow_at("a", t0 + Duration::from_millis(50)));
        assert!(
            limiter.allow_at("a", t0 + Duration::from_millis(100)),
            "refilled after 1/rate"
        );
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| limiter.allow_at("a", later)));
        assert!(!limiter.allow_at("a", later));
    }

    #[test]
    fn zero_rate_disables_limiting() {
        let limiter = RateLimiter::new(0, 1);
        assert!((0..1000).all(|_| limiter.allow("a")));
    }
}
