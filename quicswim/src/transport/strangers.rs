//! What a handshake from someone not yet known may cost: the decision taken on each new
//! incoming connection before any state is kept for it, the per-IP rate behind it, and the
//! gate that keeps refusal logs from flooding.
//!
//! ```text
//!   Initial from addr ──> closed? ─────────────────────────────> refuse (closing)
//!                     ──> address not validated and
//!                         (in progress ≥ retry_above or addr's source over its limits)
//!                                                      ──────────> Retry (stateless)
//!                     ──> source's bucket empty or handshakes_per_ip_open_max open (validated)
//!                                                      ──────────> ignore (client retransmits)
//!                     ──> in progress ≥ handshakes_in_max ─────> refuse
//!                     ──> accept, bounded by handshake_timeout
//! ```
//!
//! A Retry costs one small packet and no state; a sender with a forged address never sees
//! it, so it cannot come back validated. What is left to a stranger with a real address is
//! its IP's rate and at most `handshakes_per_ip_open_max` handshakes open at once, and each
//! accepted handshake lasts at most `handshake_timeout`. An IPv6 sender is counted by its /64
//! prefix, the smallest block one host is commonly given, so walking its own addresses buys it
//! nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// Distinct IP addresses whose buckets are remembered; when full, buckets that refilled are
/// forgotten first, and a new address finds no token until room is made.
const TRACKED_IPS_MAX: usize = 4096;

/// What to do with a new incoming connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start the handshake (one slot of `handshakes_in_max` is now held).
    Accept,
    /// Ask the client to prove its address first (QUIC Retry).
    Retry,
    /// Send nothing; a real client retransmits its Initial later.
    Ignore,
    /// Refuse: too many handshakes in progress.
    Refuse,
    /// Refuse: the endpoint is closing.
    Closing,
}

/// Everything the verdict depends on, read under the engine's lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arrival {
    pub closed: bool,
    pub validated: bool,
    pub may_retry: bool,
    pub in_progress: usize,
}

/// Limits from the transport's settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub retry_above: usize,
    pub handshakes_in_max: usize,
    /// Handshakes one source may hold open at once, so a single stranger with a real
    /// address cannot fill the budget however long its handshakes stall.
    pub open_per_source_max: usize,
}

/// The unit the per-source limits count: an IPv4 address, or an IPv6 /64 prefix (an IPv4
/// address mapped into IPv6 counts as itself).
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// Decides, and takes a token from `ip`'s bucket when the handshake is accepted (counted
/// open until [`IpRates::finished`]).
pub(crate) fn verdict(
    arrival: Arrival,
    limits: Limits,
    rates: &mut IpRates,
    ip: IpAddr,
    now_ms: u64,
) -> Verdict {
    if arrival.closed {
        return Verdict::Closing;
    }
    let ip = source(ip);
    let has_token = rates.has_token(ip, now_ms) && rates.open(ip) < limits.open_per_source_max;
    if !arrival.validated
        && arrival.may_retry
        && (arrival.in_progress >= limits.retry_above || !has_token)
    {
        return Verdict::Retry;
    }
    if !has_token {
        return Verdict::Ignore;
    }
    if arrival.in_progress >= limits.handshakes_in_max {
        return Verdict::Refuse;
    }
    rates.take(ip);
    Verdict::Accept
}

/// A token bucket, in thousandths of a token so refills are exact integers.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli_tokens: u64,
    at_ms: u64,
    /// Handshakes accepted from this source and not yet over.
    open: usize,
}

/// Per-IP token buckets for new handshakes, bounded in size.
#[derive(Debug)]
pub(crate) struct IpRates {
    /// Tokens per second, which is also thousandths of a token per millisecond.
    per_second: u64,
    capacity_milli: u64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl IpRates {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        IpRates {
            per_second: u64::from(per_second),
            capacity_milli: u64::from(burst).saturating_mul(1000),
            buckets: HashMap::new(),
        }
    }

    /// Refills `ip`'s bucket to `now_ms` and says whether it holds a whole token. An address
    /// seen for the first time starts full, if there is room to track it.
    fn has_token(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        if !self.buckets.contains_key(&ip) && !self.make_room(now_ms) {
            return false;
        }
        let capacity = self.capacity_milli;
        let per_second = self.per_second;
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            milli_tokens: capacity,
            at_ms: now_ms,
            open: 0,
        });
        refill(bucket, per_second, capacity, now_ms);
        bucket.milli_tokens >= 1000
    }

    /// Takes a token checked by [`has_token`](Self::has_token), and counts a handshake open.
    fn take(&mut self, ip: IpAddr) {
        if let Some(bucket) = self.buckets.get_mut(&ip) {
            bucket.milli_tokens = bucket.milli_tokens.saturating_sub(1000);
            bucket.open = bucket.open.saturating_add(1);
        }
    }

    /// Handshakes from `ip`'s source accepted and not yet over.
    fn open(&self, ip: IpAddr) -> usize {
        self.buckets.get(&source(ip)).map_or(0, |b| b.open)
    }

    /// A handshake accepted from `ip` is over (admitted, failed or timed out).
    pub(crate) fn finished(&mut self, ip: IpAddr) {
        if let Some(bucket) = self.buckets.get_mut(&source(ip)) {
            bucket.open = bucket.open.saturating_sub(1);
        }
    }

    /// Forgets buckets that have refilled and hold no open handshake (they hold no
    /// information) when the table is full;
    /// `true` if a new address fits.
    fn make_room(&mut self, now_ms: u64) -> bool {
        if self.buckets.len() < TRACKED_IPS_MAX {
            return true;
        }
        let (per_second, capacity) = (self.per_second, self.capacity_milli);
        self.buckets.retain(|_, bucket| {
            refill(bucket, per_second, capacity, now_ms);
            bucket.milli_tokens < capacity || bucket.open > 0
        });
        self.buckets.len() < TRACKED_IPS_MAX
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

fn refill(bucket: &mut Bucket, per_second: u64, capacity: u64, now_ms: u64) {
    let elapsed = now_ms.saturating_sub(bucket.at_ms);
    bucket.milli_tokens = bucket
        .milli_tokens
        .saturating_add(elapsed.saturating_mul(per_second))
        .min(capacity);
    bucket.at_ms = bucket.at_ms.max(now_ms);
}

/// Lets one log line through per period and counts the ones held back, so a flood of
/// refusals costs a line per period, which says how many were suppressed since the last.
#[derive(Debug)]
pub(crate) struct LogGate {
    period_ms: u64,
    next_ms: u64,
    suppressed: u64,
}

impl LogGate {
    pub(crate) fn new(period_ms: u64) -> Self {
        LogGate {
            period_ms,
            next_ms: 0,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last line)` when a line may be written now; `None` when
    /// this one is suppressed (and counted).
    pub(crate) fn admit(&mut self, now_ms: u64) -> Option<u64> {
        if now_ms >= self.next_ms {
            self.next_ms = now_ms.saturating_add(self.period_ms);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        retry_above: 2,
        handshakes_in_max: 4,
        open_per_source_max: 1,
    };

    fn arrival(validated: bool, in_progress: usize) -> Arrival {
        Arrival {
            closed: false,
            validated,
            may_retry: !validated,
            in_progress,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn unvalidated_arrivals_are_retried_past_the_threshold() {
        let mut rates = IpRates::new(10, 10);
        assert_eq!(
            verdict(arrival(false, 1), LIMITS, &mut rates, ip(1), 0),
            Verdict::Accept
        );
        rates.finished(ip(1));
        assert_eq!(
            verdict(arrival(false, 2), LIMITS, &mut rates, ip(1), 0),
            Verdict::Retry
        );
        assert_eq!(
            verdict(arrival(true, 2), LIMITS, &mut rates, ip(1), 0),
            Verdict::Accept
        );
        rates.finished(ip(1));
        assert_eq!(
            verdict(arrival(true, 4), LIMITS, &mut rates, ip(1), 0),
            Verdict::Refuse
        );
    }

    #[test]
    fn one_address_over_its_rate_is_retried_or_ignored_and_others_are_not() {
        let mut rates = IpRates::new(1, 3);
        for _ in 0..3 {
            assert_eq!(
                verdict(arrival(true, 0), LIMITS, &mut rates, ip(66), 0),
                Verdict::Accept
            );
            rates.finished(ip(66));
        }
        assert_eq!(
            verdict(arrival(false, 0), LIMITS, &mut rates, ip(66), 0),
            Verdict::Retry
        );
        assert_eq!(
            verdict(arrival(true, 0), LIMITS, &mut rates, ip(66), 0),
            Verdict::Ignore
        );
        assert_eq!(
            verdict(arrival(true, 0), LIMITS, &mut rates, ip(1), 0),
            Verdict::Accept
        );
        // One token back after a second.
        assert_eq!(
            verdict(arrival(true, 0), LIMITS, &mut rates, ip(66), 1000),
            Verdict::Accept
        );
    }

    #[test]
    fn the_table_of_addresses_stays_bounded() {
        let mut rates = IpRates::new(1, 1);
        for i in 0..(TRACKED_IPS_MAX as u32 + 10) {
            let addr = IpAddr::from(i.to_be_bytes());
            if rates.has_token(addr, 0) {
                rates.take(addr);
                rates.finished(addr);
            }
        }
        assert_eq!(rates.tracked(), TRACKED_IPS_MAX);
        // Once they refill, they are forgotten to make room.
        assert!(rates.has_token(ip(1), 10_000));
        assert!(rates.tracked() <= TRACKED_IPS_MAX);
    }

    #[test]
    fn a_closing_endpoint_refuses_as_closing_not_as_full() {
        let mut rates = IpRates::new(10, 10);
        let closing = Arrival {
            closed: true,
            ..arrival(true, 0)
        };
        assert_eq!(
            verdict(closing, LIMITS, &mut rates, ip(1), 0),
            Verdict::Closing
        );
    }

    #[test]
    fn one_source_holds_at_most_an_eighth_of_the_budget_open_at_once() {
        let limits = Limits {
            retry_above: 64,
            handshakes_in_max: 64,
            open_per_source_max: 8,
        };
        let mut rates = IpRates::new(1000, 1000);
        for _ in 0..8 {
            assert_eq!(
                verdict(arrival(true, 0), limits, &mut rates, ip(66), 0),
                Verdict::Accept
            );
        }
        // Tokens left, but eight already open: validated, ignored; not validated, retried.
        assert_eq!(
            verdict(arrival(true, 0), limits, &mut rates, ip(66), 0),
            Verdict::Ignore
        );
        assert_eq!(
            verdict(arrival(false, 0), limits, &mut rates, ip(66), 0),
            Verdict::Retry
        );
        assert_eq!(
            verdict(arrival(true, 0), limits, &mut rates, ip(1), 0),
            Verdict::Accept
        );
        // One ends; one more fits.
        rates.finished(ip(66));
        assert_eq!(
            verdict(arrival(true, 0), limits, &mut rates, ip(66), 0),
            Verdict::Accept
        );
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let mut rates = IpRates::new(1, 2);
        let host = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        for last in 1..=2 {
            assert_eq!(
                verdict(arrival(true, 0), LIMITS, &mut rates, host(last), 0),
                Verdict::Accept
            );
            rates.finished(host(last));
        }
        // Another address in the same /64 shares the empty bucket...
        assert_eq!(
            verdict(arrival(true, 0), LIMITS, &mut rates, host(0xbeef), 0),
            Verdict::Ignore
        );
        // ...while the next /64 has its own.
        let other = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(
            verdict(arrival(true, 0), LIMITS, &mut rates, other, 0),
            Verdict::Accept
        );
        // An IPv4-mapped address counts as the IPv4 address.
        assert_eq!(source("::ffff:127.0.0.66".parse().unwrap()), ip(66));
    }

    #[test]
    fn the_log_gate_counts_what_it_holds_back() {
        let mut gate = LogGate::new(1000);
        assert_eq!(gate.admit(0), Some(0));
        assert_eq!(gate.admit(10), None);
        assert_eq!(gate.admit(20), None);
        assert_eq!(gate.admit(1000), Some(2));
    }
}
