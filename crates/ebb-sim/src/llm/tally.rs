//! What happened to the requests of a token-level run: time to first token (TTFT) and time per
//! output token (TPOT: a request's decode time over its tokens after the first, what a reader
//! of the stream feels as its speed) against their SLOs, and the gaps between tokens.

/// Decades of the gap histogram: 10 us to 10,000 s.
const LOG10_FROM: f64 = -5.0;
const DECADES: usize = 9;
/// Bins per decade: a percentile read from it is within 1.2% of the exact one.
const BINS_PER_DECADE: usize = 200;

/// A histogram with logarithmic bins, for the millions of token gaps of a run.
#[derive(Debug, Clone)]
pub struct LogHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for LogHistogram {
    fn default() -> LogHistogram {
        LogHistogram {
            counts: vec![0; DECADES * BINS_PER_DECADE],
            total: 0,
        }
    }
}

impl LogHistogram {
    /// Counts one value (seconds).
    pub fn observe(&mut self, v: f64) {
        let pos = ((v.max(1e-12).log10() - LOG10_FROM) * BINS_PER_DECADE as f64).floor();
        let i = (pos.max(0.0) as usize).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
    }

    /// The `q` quantile (0-1): the geometric middle of the bin it falls in; NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return 10f64.powf(LOG10_FROM + (i as f64 + 0.5) / BINS_PER_DECADE as f64);
            }
        }
        f64::NAN
    }
}

/// The `q` quantile of `values` (nearest rank); NaN when empty.
pub fn quantile(values: &mut [f32], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    f64::from(values[rank - 1])
}

/// Outcomes of the requests of one run.
#[derive(Debug, Clone)]
pub struct Tally {
    ttft_slo: f64,
    tpot_slo: f64,
    /// TTFT of each served request, seconds.
    pub ttfts: Vec<f32>,
    /// TPOT of each served request with two tokens or more, seconds.
    pub tpots: Vec<f32>,
    /// Every gap between two tokens of a request.
    pub gaps: LogHistogram,
    /// Requests that got every token.
    pub served: u64,
    /// Requests that got nothing: refused by the engine, or held past the timeout.
    pub failed: u64,
    /// Served requests whose TTFT met its SLO.
    pub ttft_met: u64,
    /// Served requests whose TPOT met its SLO.
    pub tpot_met: u64,
    /// Served requests that met both.
    pub both_met: u64,
    /// Per minute of arrival (of failure, for requests that got nothing): requests, and
    /// those that met both SLOs. What `ebb tune --llm` reads a setting's worst stretch from.
    pub by_minute: Vec<(u64, u64)>,
}

/// The by-minute slot of `at` seconds, grown as needed.
fn minute(by_minute: &mut Vec<(u64, u64)>, at: f64) -> &mut (u64, u64) {
    let i = (at.max(0.0) / 60.0) as usize;
    if by_minute.len() <= i {
        by_minute.resize(i + 1, (0, 0));
    }
    &mut by_minute[i]
}

impl Tally {
    /// An empty tally against a TTFT and a TPOT SLO (seconds).
    pub fn new(ttft_slo: f64, tpot_slo: f64) -> Tally {
        Tally {
            ttft_slo,
            tpot_slo,
            ttfts: Vec::new(),
            tpots: Vec::new(),
            gaps: LogHistogram::default(),
            served: 0,
            failed: 0,
            ttft_met: 0,
            tpot_met: 0,
            both_met: 0,
            by_minute: Vec::new(),
        }
    }

    /// A request that arrived at `arrived` got its `tokens` tokens: the first `ttft` after
    /// it arrived, the rest over `decode` seconds.
    pub fn served(&mut self, arrived: f64, ttft: f64, tokens: u32, decode: f64) {
        self.served += 1;
        self.ttfts.push(ttft as f32);
        let tpot = if tokens > 1 {
            let t = decode / f64::from(tokens - 1);
            self.tpots.push(t as f32);
            t
        } else {
            0.0
        };
        let (a, b) = (ttft <= self.ttft_slo, tpot <= self.tpot_slo);
        self.ttft_met += u64::from(a);
        self.tpot_met += u64::from(b);
        self.both_met += u64::from(a && b);
        let slot = minute(&mut self.by_minute, arrived);
        slot.0 += 1;
        slot.1 += u64::from(a && b);
    }

    /// A gap between two tokens of one request.
    pub fn gap(&mut self, seconds: f64) {
        self.gaps.observe(seconds);
    }

    /// A request that got nothing, given up at `at`.
    pub fn failed(&mut self, at: f64) {
        self.failed += 1;
        minute(&mut self.by_minute, at).0 += 1;
    }

    /// Requests counted.
    pub fn requests(&self) -> u64 {
        self.served + self.failed
    }

    /// Takes in the failures another tally counted (a prefill pool's: requests refused or
    /// held too long before any decode replica saw them).
    pub fn absorb_failures(&mut self, other: &Tally) {
        self.failed += other.failed;
        for (i, &(failed, _)) in other.by_minute.iter().enumerate() {
            if self.by_minute.len() <= i {
                self.by_minute.resize(i + 1, (0, 0));
            }
            self.by_minute[i].0 += failed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_histogram_reads_percentiles_within_its_bin_width() {
        let mut h = LogHistogram::default();
        for i in 1..=1000 {
            h.observe(f64::from(i) * 0.001);
        }
        for (q, exact) in [(0.5, 0.5), (0.95, 0.95), (0.99, 0.99)] {
            let got = h.quantile(q);
            assert!((got / exact - 1.0).abs() < 0.012, "q{q}: {got} vs {exact}");
        }
        assert!(LogHistogram::default().quantile(0.5).is_nan());
    }

    #[test]
    fn a_request_meets_each_slo_on_its_own() {
        let mut t = Tally::new(1.0, 0.05);
        t.served(0.0, 0.5, 11, 0.4); // TPOT 40 ms: both met
        t.served(10.0, 2.0, 11, 0.4); // TTFT missed
        t.served(70.0, 0.5, 3, 0.2); // TPOT 100 ms missed
        t.served(80.0, 0.5, 1, 0.0); // one token: no TPOT, met
        t.failed(130.0);
        assert_eq!((t.ttft_met, t.tpot_met, t.both_met), (3, 3, 2));
        assert_eq!((t.served, t.requests()), (4, 5));
        assert_eq!(t.tpots.len(), 3);
        // By minute of arrival (of failure): two, then two (one met both), then one failed.
        assert_eq!(t.by_minute, vec![(2, 1), (2, 1), (1, 0)]);
    }
}
