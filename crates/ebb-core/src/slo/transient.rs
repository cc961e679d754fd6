//! Sizing over the next lead from the requests in flight now.
//!
//! The steady-state model (`queueing`) sizes for a stream whose past it does not know. Where
//! a request takes about as long as a replica takes to start (image generation: 35 s a
//! request, 20-40 s a cold start), the requests in flight now say most of what the next lead
//! holds: a replica started now is ready before those in flight have finished. So over the
//! lead `L` the busy slots at time `t` are those of the `k` in flight still running
//! (each with probability `e^(-t / E[S])`) plus the arrivals since that are still in service
//! (Poisson with mean `lambda E[S] (1 - e^(-t / E[S]))`, M/M/inf), and an arrival at `t`
//! waits when they fill every slot. Its chance of missing the SLO once it waits is the
//! steady-state model's. Long after one service time the busy count forgets `k` and the
//! steady-state model is the better one; the planner uses this one only while the lead is
//! within a few service times.

use super::queueing::{
    attainments, miss_given_wait, replicas_for_cached, service_within, simpson_weight, Load,
    PenaltyGrid,
};
use crate::policy::Tuning;
use crate::reason::OverLead;

/// Most slots the transient sum runs over; beyond, the traffic is dense enough that the
/// steady-state model serves.
pub const MAX_SLOTS: u32 = 256;

/// The share of arrivals over the next `horizon` seconds that find every one of `servers`
/// slots busy, with `in_flight` requests in service now (see [`Lead`]).
pub fn waiting_share(load: &Load, servers: u32, in_flight: f64, horizon: f64) -> f64 {
    Lead::new(load, in_flight, horizon).waiting_share(servers)
}

/// The lead's points for Simpson's rule over `[0, L]` (arrivals are Poisson, so they see the
/// time average), each with the distribution of the busy slots then. What does not depend on
/// the count tried (the terms' exponentials) is computed once per decision; a count costs a
/// sum of products.
pub struct Lead {
    busy: BusyAt,
}

impl Lead {
    /// Eight intervals serve a lead of up to `Tuning::transient_service_times` service times.
    const STEPS: usize = 8;

    /// The points of a lead of `horizon` seconds from `in_flight` requests in service.
    pub fn new(load: &Load, in_flight: f64, horizon: f64) -> Lead {
        let k = in_flight.max(0.0).round() as usize;
        let h = horizon.max(0.0) / Self::STEPS as f64;
        let m = load.service_mean.max(1e-9);
        // Each request in flight still running with probability `e^(-t / E[S])`, the arrivals
        // since still in service Poisson with mean `lambda E[S] (1 - e^(-t / E[S]))`.
        let points = std::array::from_fn(|i| {
            let still = (-(h * i as f64) / m).exp();
            (still, load.rate * m * (1.0 - still))
        });
        Lead {
            busy: BusyAt::new(k, points),
        }
    }

    /// The share of the lead's arrivals that find every one of `servers` slots busy.
    pub fn waiting_share(&mut self, servers: u32) -> f64 {
        let all_busy = self.busy.at_least(servers as usize);
        all_busy
            .iter()
            .enumerate()
            .map(|(i, share)| simpson_weight(i, Self::STEPS) * share)
            .sum::<f64>()
            / (3.0 * Self::STEPS as f64)
    }
}

/// Points of the lead's rule (`Lead::STEPS` intervals).
const POINTS: usize = Lead::STEPS + 1;

/// `Bin(k, p) + Poisson(mu)` at each of the lead's [`POINTS`]: the binomial's terms up to
/// [`MAX_SLOTS`] ([`binomial_terms`]), and the Poisson's cumulative sums, extended as far as a
/// count asks. Both are kept term after term with the points side by side, so a decision
/// allocates twice (not twice a point) and a count's sums run over every point at once.
struct BusyAt {
    /// `P(Bin(k, p_i) = j)` at `binomial[j][i]`, `j` up to `min(k, MAX_SLOTS)`.
    binomial: Vec<[f64; POINTS]>,
    /// `P(Poisson(mu_i) <= j)` at `poisson_cdf[j][i]`.
    poisson_cdf: Vec<[f64; POINTS]>,
    mu: [f64; POINTS],
    next_term: [f64; POINTS],
}

impl BusyAt {
    /// The busy slots at each point `(p, mu)`: `k` requests in flight, each still running
    /// with probability `p`, and `Poisson(mu)` arrivals since still in service.
    fn new(k: usize, at: [(f64, f64); POINTS]) -> BusyAt {
        let last = (MAX_SLOTS as usize).min(k);
        let mut binomial = vec![[0.0; POINTS]; last + 1];
        for (i, (p, _)) in at.iter().enumerate() {
            binomial_terms(k, *p, last, |j, term| binomial[j][i] = term);
        }
        let mu = at.map(|(_, mu)| mu);
        BusyAt {
            binomial,
            poisson_cdf: Vec::with_capacity(last + 8),
            mu,
            next_term: mu.map(|mu| (-mu).exp()),
        }
    }

    /// The Poisson sums through `c - 1` at every point.
    fn extend_to(&mut self, c: usize) {
        while self.poisson_cdf.len() < c {
            let j = self.poisson_cdf.len();
            let before = self.poisson_cdf.last().copied().unwrap_or([0.0; POINTS]);
            let mut sums = [0.0; POINTS];
            for i in 0..POINTS {
                sums[i] = before[i] + self.next_term[i];
                self.next_term[i] *= self.mu[i] / (j + 1) as f64;
            }
            self.poisson_cdf.push(sums);
        }
    }

    /// `P(Bin(k, p) + Poisson(mu) >= c)` at each point, `O(c)` a point.
    fn at_least(&mut self, c: usize) -> [f64; POINTS] {
        if c == 0 {
            return [1.0; POINTS];
        }
        self.extend_to(c);
        let mut below = [0.0; POINTS];
        let terms = self.binomial.len().min(c);
        let poisson = self.poisson_cdf[c - terms..c].iter().rev();
        for (binomial, poisson) in self.binomial[..terms].iter().zip(poisson) {
            for i in 0..POINTS {
                below[i] += binomial[i] * poisson[i];
            }
        }
        below.map(|below| (1.0 - below).clamp(0.0, 1.0))
    }
}

/// `P(Bin(k, p) = j)` for `j` in `0..=last`, each given to `term`: by the ratio of
/// neighbouring terms from `(1 - p)^k` (one exponential), or by each term's logarithm where
/// that start underflows (`p` near 1 with many in flight). With `p` at 0 or 1 (the lead's
/// first point: every request still running) the count is certain.
fn binomial_terms(k: usize, p: f64, last: usize, mut term: impl FnMut(usize, f64)) {
    if p <= 0.0 || p >= 1.0 {
        let certain = if p <= 0.0 { 0 } else { k };
        (0..last + 1).for_each(|j| term(j, if j == certain { 1.0 } else { 0.0 }));
        return;
    }
    let ln_q = (1.0 - p).ln();
    let start = k as f64 * ln_q;
    if start > -700.0 {
        let odds = p / (1.0 - p);
        let mut next = start.exp();
        for j in 0..last + 1 {
            term(j, next);
            next *= (k - j) as f64 / (j + 1) as f64 * odds;
        }
        return;
    }
    let ln_p = p.ln();
    let mut ln_choose = 0.0;
    for j in 0..last + 1 {
        if j > 0 {
            ln_choose += ((k - (j - 1)) as f64 / j as f64).ln();
        }
        let hits = if j == 0 { 0.0 } else { j as f64 * ln_p };
        let misses = if j == k { 0.0 } else { (k - j) as f64 * ln_q };
        term(j, (ln_choose + hits + misses).exp());
    }
}

/// Which model sizes a decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// The steady state (`queueing`): the lead spans many service times, so the requests in
    /// flight now have finished long before a replica started now is ready.
    Steady,
    /// Over the next `lead` seconds from the `in_flight` requests now.
    OverLead {
        /// Requests in flight now.
        in_flight: f64,
        /// Seconds until a replica started now is ready.
        lead: f64,
    },
}

impl Model {
    /// Over the lead where it spans at most `Tuning::transient_service_times` mean service
    /// times (after five, under 1% of the requests in flight now are still running), else
    /// the steady state.
    pub fn for_lead(in_flight: f64, lead: f64, service_mean: f64, tuning: &Tuning) -> Model {
        if lead <= tuning.transient_service_times * service_mean && in_flight.is_finite() {
            Model::OverLead {
                in_flight: in_flight.max(0.0),
                lead,
            }
        } else {
            Model::Steady
        }
    }

    /// What a reason says the count was sized from (`None`: the steady state).
    pub fn over_lead(self) -> Option<OverLead> {
        match self {
            Model::Steady => None,
            Model::OverLead { in_flight, lead } => Some(OverLead {
                in_flight,
                lead_seconds: lead,
            }),
        }
    }

    /// Predicted attainment at each of `counts` replicas.
    pub fn attainments<const N: usize>(
        self,
        load: &Load,
        counts: [u32; N],
        slots: u32,
        latency: f64,
        cache: &mut Option<PenaltyGrid>,
    ) -> [f64; N] {
        match self {
            Model::Steady => attainments(load, counts, slots, latency, cache),
            Model::OverLead { in_flight, lead } => {
                let mut lead = Lead::new(load, in_flight, lead);
                let within = service_within(latency, load.service_mean, load.shape_scv);
                counts.map(|n| {
                    let servers = n.saturating_mul(slots.max(1));
                    if servers > MAX_SLOTS {
                        return attainments(load, [n], slots, latency, cache)[0];
                    }
                    let wait = lead.waiting_share(servers);
                    over_lead(load, n, slots, latency, (within, wait), cache)
                })
            }
        }
    }

    /// The fewest replicas (up to `max`) whose predicted attainment reaches `target`, with
    /// that prediction; `max` with its prediction when none does. Over the lead, never fewer
    /// than the requests in flight fill: one fewer would be a busy replica, drained rather
    /// than removed, and a request queued at a replica is not helped by another.
    pub fn replicas_for(
        self,
        load: &Load,
        slots: u32,
        latency: f64,
        target: f64,
        max: u32,
        cache: &mut Option<PenaltyGrid>,
    ) -> (u32, f64) {
        let steady = |cache: &mut Option<PenaltyGrid>| {
            replicas_for_cached(load, slots, latency, target, max, cache)
        };
        let Model::OverLead { in_flight, lead } = self else {
            return steady(cache);
        };
        let max = max.max(1);
        let mut lead = Lead::new(load, in_flight, lead);
        let filled = (in_flight / f64::from(slots.max(1))).ceil() as u32;
        // A waiting request misses least with the most replicas (its queue shortest), so a
        // count whose waits miss the target even at that rate is passed over unintegrated.
        let within = service_within(latency, load.service_mean, load.shape_scv);
        let least_miss = miss_given_wait(load, max, slots, latency, cache);
        let mut last = (max, 0.0);
        for n in filled.clamp(1, max)..=max {
            let servers = n.saturating_mul(slots.max(1));
            if servers > MAX_SLOTS {
                // Too many slots for the sum: traffic this dense has the steady state's shape.
                return steady(cache);
            }
            let wait = lead.waiting_share(servers);
            if n < max && within - wait * least_miss < target {
                continue;
            }
            let predicted = over_lead(load, n, slots, latency, (within, wait), cache);
            last = (n, predicted);
            if predicted >= target {
                break;
            }
        }
        last
    }
}

/// Predicted attainment of the arrivals over the lead at `replicas` replicas, from the share
/// of service times `within` the SLO and the share of the lead's arrivals that `wait`
/// (`Lead::waiting_share`): `within - wait x (miss given a wait)`, with no integral where none
/// waits.
fn over_lead(
    load: &Load,
    replicas: u32,
    slots: u32,
    latency: f64,
    (within, wait): (f64, f64),
    cache: &mut Option<PenaltyGrid>,
) -> f64 {
    if replicas == 0 {
        return 0.0;
    }
    if wait <= 0.0 {
        return within;
    }
    let miss = miss_given_wait(load, replicas, slots, latency, cache);
    (within - wait * miss).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_least(c: usize, k: usize, p: f64, mu: f64) -> f64 {
        BusyAt::new(k, [(p, mu); POINTS]).at_least(c)[0]
    }

    fn all_busy_at(l: &Load, servers: u32, in_flight: f64, t: f64) -> f64 {
        let still = (-t / l.service_mean).exp();
        let mu = l.rate * l.service_mean * (1.0 - still);
        at_least(servers as usize, in_flight as usize, still, mu)
    }

    fn load(rate: f64, service_mean: f64) -> Load {
        Load {
            rate,
            arrival_scv: 1.0,
            service_mean,
            service_scv: 1.0,
            shape_scv: 1.0,
        }
    }

    /// `P(Bin(k, p) + Poisson(mu) >= c)` by the plain convolution.
    fn at_least_by_convolution(c: usize, k: usize, p: f64, mu: f64) -> f64 {
        let choose =
            |n: usize, j: usize| (0..j).fold(1.0, |a, i| a * (n - i) as f64 / (i + 1) as f64);
        let poisson = |j: usize| (0..j).fold((-mu).exp(), |a, i| a * mu / (i + 1) as f64);
        let below: f64 = (0..c)
            .map(|total| {
                (0..=total.min(k))
                    .map(|j| {
                        choose(k, j)
                            * p.powi(j as i32)
                            * (1.0 - p).powi((k - j) as i32)
                            * poisson(total - j)
                    })
                    .sum::<f64>()
            })
            .sum();
        1.0 - below
    }

    #[test]
    fn the_sum_is_the_convolution() {
        for c in [1, 2, 4, 9] {
            for k in [0, 1, 3, 8, 12] {
                for p in [0.0, 0.2, 0.7, 1.0] {
                    for mu in [0.0, 0.4, 2.5, 7.0] {
                        let (fast, plain) =
                            (at_least(c, k, p, mu), at_least_by_convolution(c, k, p, mu));
                        assert!(
                            (fast - plain).abs() < 1e-9,
                            "c {c} k {k} p {p} mu {mu}: {fast} vs {plain}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_binomial_terms_sum_to_one_by_either_path() {
        // (1 - p)^k from 0.5^200 (ratios) to 0.001^300 (underflows: logarithms).
        for (k, p) in [
            (200, 0.5),
            (200, 0.99),
            (300, 0.999),
            (40, 0.3),
            (1, 1.0),
            (12, 1.0),
            (5, 0.0),
            (0, 1.0),
        ] {
            let mut terms = vec![0.0; k + 1];
            binomial_terms(k, p, k, |j, term| terms[j] = term);
            let total: f64 = terms.iter().sum();
            assert!((total - 1.0).abs() < 1e-9, "k {k} p {p}: {total}");
            let mean: f64 = terms.iter().enumerate().map(|(j, t)| j as f64 * t).sum();
            assert!(
                (mean - k as f64 * p).abs() < 1e-6,
                "k {k} p {p}: mean {mean}"
            );
        }
    }

    #[test]
    fn the_requests_in_flight_are_forgotten_after_a_few_service_times() {
        let l = load(0.05, 40.0); // 2 Erlangs
                                  // Ten service times on, the busy count is Poisson(2) whatever was in flight.
        let stationary = at_least(3, 0, 0.0, 2.0);
        for k in [0.0, 3.0, 6.0] {
            let later = all_busy_at(&l, 3, k, 400.0);
            assert!(
                (later - stationary).abs() < 1e-3,
                "{k}: {later} vs {stationary}"
            );
        }
        // With no lead, an arrival waits exactly when those in flight fill the slots.
        assert_eq!(waiting_share(&l, 3, 3.0, 0.0), 1.0);
        assert_eq!(waiting_share(&l, 3, 2.0, 0.0), 0.0);
        // More in flight, more arrivals wait; more slots, fewer.
        let (two, three) = (
            waiting_share(&l, 3, 2.0, 30.0),
            waiting_share(&l, 3, 3.0, 30.0),
        );
        assert!(two < three, "{two} {three}");
        assert!(waiting_share(&l, 4, 3.0, 30.0) < three);
    }

    /// A c-server FIFO queue with exponential service, `k` requests in it at time 0 and Poisson
    /// arrivals: the share of the arrivals within `lead` that wait, over `runs` replications.
    fn simulated_waiting_share(c: u32, k: u32, rate: f64, mean: f64, lead: f64, runs: u32) -> f64 {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut uniform = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (mut arrivals, mut waited) = (0u64, 0u64);
        for _ in 0..runs {
            let (mut t, mut in_system) = (0.0, k);
            loop {
                let departures = f64::from(in_system.min(c)) / mean;
                let total = rate + departures;
                t += -uniform().ln() / total;
                if t > lead {
                    break;
                }
                if uniform() * total < rate {
                    arrivals += 1;
                    waited += u64::from(in_system >= c);
                    in_system += 1;
                } else {
                    in_system -= 1;
                }
            }
        }
        waited as f64 / arrivals as f64
    }

    #[test]
    fn the_share_that_waits_matches_a_simulated_queue() {
        // (slots, in flight, offered Erlangs, lead in service times)
        for (c, k, offered, leads) in [
            (1, 0, 0.5, 1.0),
            (1, 1, 0.5, 1.0),
            (2, 1, 1.0, 1.5),
            (3, 3, 1.0, 0.5),
            (4, 3, 2.0, 1.0),
            (4, 0, 2.0, 2.0),
            (8, 6, 5.0, 1.0),
        ] {
            let (mean, lead) = (40.0, 40.0 * leads);
            let l = load(offered / mean, mean);
            let predicted = waiting_share(&l, c, f64::from(k), lead);
            let simulated = simulated_waiting_share(c, k, l.rate, mean, lead, 200_000);
            eprintln!("c {c} k {k} a {offered} lead {leads}: predicted {predicted:.4} simulated {simulated:.4}");
            assert!(
                (predicted - simulated).abs() < 0.01,
                "c {c} k {k}: {predicted} vs {simulated}"
            );
        }
    }
}
