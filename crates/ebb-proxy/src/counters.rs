//! The proxy's own counters (what it refused, retried, ejected) and its retry budget.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What the proxy did besides forwarding, for `/metrics` and `/ebb/status`.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Replica answers with a 5xx status.
    pub upstream_errors: AtomicU64,
    /// Requests a replica did not answer (refused, reset, closed).
    pub gateway_failures: AtomicU64,
    /// Requests a replica did not answer in time (504).
    pub upstream_timeouts: AtomicU64,
    /// Requests whose client went away before the answer.
    pub cancelled: AtomicU64,
    /// Bodies over the limit (413).
    pub too_large: AtomicU64,
    /// Request bodies the client stopped sending (408).
    pub body_timeouts: AtomicU64,
    /// Answers that broke off after their head: the replica failed or fell silent mid-stream.
    pub answers_broken: AtomicU64,
    /// Requests to denied paths (403).
    pub denied: AtomicU64,
    /// Requests that are not origin-form (400), or `OPTIONS *` answered by Ebb.
    pub not_forwarded: AtomicU64,
    /// Requests sent again to another replica.
    pub retries: AtomicU64,
    /// Retries the budget refused.
    pub retries_refused: AtomicU64,
    /// Replicas ejected by outlier detection.
    pub ejections: AtomicU64,
    /// Replicas back in rotation after an ejection or failing probes.
    pub returns: AtomicU64,
    /// Replicas out of rotation for failing readiness probes.
    pub probe_failures: AtomicU64,
    /// Replicas restarted for staying unhealthy.
    pub unhealthy_restarts: AtomicU64,
    /// Client connections open now.
    pub connections_open: AtomicU64,
    /// Client connections accepted.
    pub connections_total: AtomicU64,
    /// Client connections closed for idling.
    pub idle_closed: AtomicU64,
    /// Client connections closed for sending headers too slowly.
    pub header_timeouts: AtomicU64,
    /// Failed accepts (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
}

impl ProxyCounters {
    /// One more.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (metric name, kind, help, value) for each counter.
    pub fn exposition(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            (
                "ebb_upstream_errors_total",
                "counter",
                "Replica answers with a 5xx status.",
                v(&self.upstream_errors),
            ),
            (
                "ebb_gateway_failures_total",
                "counter",
                "Requests a replica did not answer (refused, reset, closed).",
                v(&self.gateway_failures),
            ),
            (
                "ebb_upstream_timeouts_total",
                "counter",
                "Requests a replica did not answer in time (504).",
                v(&self.upstream_timeouts),
            ),
            (
                "ebb_request_body_timeouts_total",
                "counter",
                "Request bodies the client stopped sending (408).",
                v(&self.body_timeouts),
            ),
            (
                "ebb_answers_broken_total",
                "counter",
                "Answers that broke off after their head (the replica failed or fell silent mid-stream).",
                v(&self.answers_broken),
            ),
            (
                "ebb_cancelled_total",
                "counter",
                "Requests whose client went away before the answer.",
                v(&self.cancelled),
            ),
            (
                "ebb_body_too_large_total",
                "counter",
                "Requests refused with 413.",
                v(&self.too_large),
            ),
            (
                "ebb_denied_total",
                "counter",
                "Requests to paths the service port does not forward (403).",
                v(&self.denied),
            ),
            (
                "ebb_not_forwarded_total",
                "counter",
                "Requests that are not origin-form, answered by Ebb.",
                v(&self.not_forwarded),
            ),
            (
                "ebb_retries_total",
                "counter",
                "Requests sent again to another replica.",
                v(&self.retries),
            ),
            (
                "ebb_retries_refused_total",
                "counter",
                "Retries the retry budget refused.",
                v(&self.retries_refused),
            ),
            (
                "ebb_ejections_total",
                "counter",
                "Replicas ejected after consecutive failures.",
                v(&self.ejections),
            ),
            (
                "ebb_returns_total",
                "counter",
                "Replicas back in rotation.",
                v(&self.returns),
            ),
            (
                "ebb_probe_failures_total",
                "counter",
                "Replicas out of rotation for failing readiness probes.",
                v(&self.probe_failures),
            ),
            (
                "ebb_unhealthy_restarts_total",
                "counter",
                "Replicas restarted for staying unhealthy.",
                v(&self.unhealthy_restarts),
            ),
            (
                "ebb_connections_open",
                "gauge",
                "Client connections open.",
                v(&self.connections_open),
            ),
            (
                "ebb_connections_total",
                "counter",
                "Client connections accepted.",
                v(&self.connections_total),
            ),
            (
                "ebb_idle_closed_total",
                "counter",
                "Client connections closed after the idle timeout.",
                v(&self.idle_closed),
            ),
            (
                "ebb_header_timeouts_total",
                "counter",
                "Client connections closed for sending request headers too slowly.",
                v(&self.header_timeouts),
            ),
            (
                "ebb_accept_errors_total",
                "counter",
                "Failed accepts (e.g. out of file descriptors).",
                v(&self.accept_errors),
            ),
        ]
    }
}

/// Retries as a share of requests (Finagle's and gRPC's retry budget): each request deposits
/// `share` of a retry, each retry spends one, and a small steady allowance keeps retries
/// possible at low traffic. Amounts are in thousandths, so the hot path is one atomic add.
#[derive(Debug)]
pub struct RetryBudget {
    milli: AtomicI64,
    deposit: i64,
}

/// Most retries saved up.
const CAP_MILLI: i64 = 100_000;

impl RetryBudget {
    /// A budget allowing `share` (0-1) of requests to be retried, starting with ten retries.
    pub fn new(share: f64) -> RetryBudget {
        RetryBudget {
            milli: AtomicI64::new(10_000),
            deposit: (share * 1000.0).round() as i64,
        }
    }

    /// A request arrived.
    pub fn deposit(&self) {
        self.add(self.deposit);
    }

    /// The steady allowance: `per_second` retries a second, called every `seconds`.
    pub fn refill(&self, per_second: f64, seconds: f64) {
        self.add((per_second * seconds * 1000.0) as i64);
    }

    fn add(&self, milli: i64) {
        if milli > 0 && self.milli.load(Ordering::Relaxed) < CAP_MILLI {
            self.milli.fetch_add(milli, Ordering::Relaxed);
        }
    }

    /// Takes one retry if the budget has it.
    pub fn try_spend(&self) -> bool {
        self.milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                (m >= 1000).then_some(m - 1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_retries_to_a_share_of_requests() {
        let b = RetryBudget::new(0.2);
        let mut spent = 0;
        for _ in 0..1000 {
            b.deposit();
            if b.try_spend() {
                spent += 1;
            }
        }
        // Ten saved up at the start, then one in five.
        assert!((200..=211).contains(&spent), "{spent}");
        // With no share, the ten saved up are all there is.
        let none = RetryBudget::new(0.0);
        for _ in 0..10 {
            none.try_spend();
        }
        assert!(!(0..20).any(|_| none.try_spend()));
    }
}
