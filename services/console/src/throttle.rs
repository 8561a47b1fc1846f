//! What an unauthenticated sender can make the console spend on sign-ins. Every password check
//! is an argon2id run (19 MiB, tens of milliseconds of CPU), unknown names included, so before
//! any check a sign-in passes two token buckets: one per client address (the address of the
//! TCP peer the server sees, never a header a client could write; IPv6 by its /64, which one
//! host usually holds whole) and one for every sender together. A sign-in over either limit is
//! answered 429 with `Retry-After` and costs nothing more. Then at most
//! [`CONCURRENT_CHECKS`](crate::accounts::CONCURRENT_CHECKS) checks run at once, the rest are
//! answered 429 at once (`accounts`); and each name is locked after five failures
//! (`sessions`). The buckets are per replica.

use std::net::{IpAddr, SocketAddr};

use billing_runtime::limiter::RateLimiter;

/// One client address: 20 sign-ins at once, then one a second.
pub const PER_ADDRESS: Limit = Limit {
    per_sec: 1,
    burst: 20,
};
/// Every sender together: 20 at once, then five a second (a fifth of a core of argon2 at most).
pub const GLOBAL: Limit = Limit {
    per_sec: 5,
    burst: 20,
};
/// What a throttled sign-in is told to wait: a bucket gains a sign-in at least every second.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A token bucket's size: `per_sec` sustained, `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub per_sec: u32,
    pub burst: u32,
}

pub struct SignInLimits {
    per_address: RateLimiter,
    global: RateLimiter,
}

impl SignInLimits {
    pub fn new(per_address: Limit, global: Limit) -> Self {
        SignInLimits {
            per_address: RateLimiter::new(per_address.per_sec, per_address.burst),
            global: RateLimiter::new(global.per_sec, global.burst),
        }
    }

    /// Whether a sign-in from `client` may go on to a password check. A sign-in refused for
    /// its address spends nothing of the global bucket, so one flooding address does not lock
    /// everyone else out by itself.
    pub fn admit(&self, client: SocketAddr) -> bool {
        self.per_address.allow(&address_key(client.ip())) && self.global.allow("")
    }
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits::new(PER_ADDRESS, GLOBAL)
    }
}

/// The bucket an address counts against: an IPv4 address (also as an IPv4-mapped IPv6 one), or
/// an IPv6 address's /64.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_per_host_and_ipv6_per_64() {
        let key = |s: &str| address_key(s.parse().expect("an address"));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn an_address_over_its_limit_spends_nothing_of_the_global_one() {
        let one = Limit {
            per_sec: 1,
            burst: 1,
        };
        let two = Limit {
            per_sec: 1,
            burst: 2,
        };
        let limits = SignInLimits::new(one, two);
        let a: SocketAddr = "192.0.2.1:5000".parse().expect("an address");
        let b: SocketAddr = "192.0.2.2:5000".parse().expect("an address");
        assert!(limits.admit(a));
        // Another port of the same host is the same client, over its limit...
        let flood = (0..50)
            .map(|port| SocketAddr::new(a.ip(), 6000 + port))
            .filter(|x| limits.admit(*x))
            .count();
        assert!(flood < 50, "{flood}");
        // ...which left the global bucket's second sign-in for someone else.
        assert!(limits.admit(b));
    }
}
