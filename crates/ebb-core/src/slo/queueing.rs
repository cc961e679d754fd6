//! The capacity model: the share of requests that finish within a latency SLO when `n`
//! replicas of `slots` concurrent slots each serve a stream of requests.
//!
//! The model is M/G/c-style, with the dispatch Ebb's proxy, Knative's activator and the
//! simulator use: each request goes to the replica with the fewest outstanding requests and
//! waits in that replica's FIFO queue when all its slots are busy.
//!
//! - **Whether a request waits.** Under least-outstanding dispatch a request waits only when
//!   every slot of every replica is busy, as in one central queue with `c = n x slots`
//!   servers, so the probability of waiting is Erlang C: `C(c, a)` with offered load
//!   `a = lambda x E[S]` (Erlang 1917; computed through the stable Erlang B recursion
//!   `B(k) = a B(k-1) / (k + a B(k-1))`, `C = B / (1 - rho (1 - B))`, rho = a / c).
//! - **How long it waits.** A waiting request waits at one replica for its own slot. With no
//!   request ahead of it there, it waits for the first of that replica's `slots` busy slots
//!   to free up: the minimum of `slots` residual service times, each with the equilibrium
//!   (length-biased) distribution `P(R > t) = E[(S - t)+] / E[S]`, whose mean is
//!   `E[S] (1 + cs^2) / 2` — the service half of the Allen-Cunneen correction
//!   `(ca^2 + cs^2) / 2` (Allen 1990, *Probability, Statistics and Queueing Theory*, eq. 6.40;
//!   Kingman's G/G/1 formula has the same factor). Requests are ahead of it with probability
//!   `q = rho^(n x 2 / (1 + ca^2))`: given a wait, M/M/c's queue holds at least `j` with
//!   probability `rho^j`, the shortest of `n` replica queues holds `j` when the whole queue
//!   holds about `j n`, and burstier arrivals (`ca^2`, estimated by the index of dispersion
//!   of per-second counts) lengthen queues as in Kingman's formula. Then the wait is taken as
//!   exponential with mean `E[R] + (E[S] / slots) / (1 - q)`. With one replica and exponential
//!   service this is M/M/c's conditional wait.
//! - **Within the SLO.** Latency is wait plus service, so the attainment is
//!   `P(W + S <= T) = F_S(T) - C(c, a) E[P(W > T - S | W > 0); S < T]`, with the service time
//!   lognormal with the measured mean and variance (the common shape of model inference
//!   times), integrated by Simpson's rule in the normal variable. `F_S(T)`, the share that
//!   meets the SLO with no wait at all, is the ceiling no replica count can pass.
//! - **Dropped.** Past `rho >= 1` no count of requests is served within any SLO in the long
//!   run: attainment 0.
//!
//! The simulator is the referee: `crates/ebb-sim/tests/queueing.rs` holds the model's
//! prediction against simulated attainment at fixed replicas over a grid.

/// What the model needs to know about the traffic and the service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Arrivals per second.
    pub rate: f64,
    /// Squared coefficient of variation of inter-arrival times (1 for Poisson arrivals).
    pub arrival_scv: f64,
    /// Mean service time, seconds.
    pub service_mean: f64,
    /// Squared coefficient of variation of service times (0 for constant, 1 for exponential):
    /// the waits' variability.
    pub service_scv: f64,
    /// Squared coefficient of variation of the lognormal that gives the service times' share
    /// within the SLO and their spread below it: fitted to the counted share within the SLO
    /// where the driver counts it ([`scv_for_within`]), else `service_scv`. Two moments say
    /// little about a tail: Alibaba's image requests (mean 43 s, sd 43 s) have 0.5% of their
    /// service times over 120 s, where the lognormal of those moments puts 5%.
    pub shape_scv: f64,
}

impl Load {
    /// Offered load in slots (Erlangs): how many slots the traffic keeps busy on average.
    pub fn offered(&self) -> f64 {
        self.rate * self.service_mean
    }
}

/// Erlang C: the probability that an arrival waits, with `servers` servers and `offered`
/// Erlangs of load. 1 when the system is unstable.
pub fn erlang_c(servers: u32, offered: f64) -> f64 {
    if offered <= 0.0 {
        return 0.0;
    }
    if servers == 0 || offered >= f64::from(servers) {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=servers {
        b = offered * b / (f64::from(k) + offered * b);
    }
    erlang_c_from_b(b, servers, offered)
}

fn erlang_c_from_b(b: f64, servers: u32, offered: f64) -> f64 {
    let rho = offered / f64::from(servers);
    (b / (1.0 - rho * (1.0 - b))).clamp(0.0, 1.0)
}

/// The lognormal with a given mean and squared coefficient of variation, as `(mu, sigma)` of
/// `ln S`.
pub(crate) fn lognormal_params(mean: f64, scv: f64) -> (f64, f64) {
    let sigma2 = (1.0 + scv.max(0.0)).ln();
    (mean.ln() - sigma2 / 2.0, sigma2.sqrt())
}

/// Standard normal density.
pub(crate) fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal CDF.
pub(crate) fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// The complementary error function, with fractional error below 1.2e-7 everywhere
/// (Chebyshev fit, Press et al., *Numerical Recipes*, 2nd ed., section 6.2, `erfcc`): one
/// exponential, several times faster than a full-precision `erfc`, and far more precise than
/// the model it serves.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The share of service times within `latency` (seconds): the attainment with no waiting.
pub fn service_within(latency: f64, mean: f64, scv: f64) -> f64 {
    if latency <= 0.0 {
        return 0.0;
    }
    let (mu, sigma) = lognormal_params(mean, scv);
    if sigma < 1e-9 {
        return if mean <= latency { 1.0 } else { 0.0 };
    }
    normal_cdf((latency.ln() - mu) / sigma)
}

/// The standard normal quantile (Acklam's rational approximation, relative error below
/// 1.2e-9; refined by one Halley step on [`normal_cdf`]).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// The squared coefficient of variation of the lognormal with mean `mean` whose share within
/// `latency` is `within`; of the two that exist when the latency is above the mean, the one
/// with the lighter tail. `None` when no lognormal with that mean has that share (then the
/// two-moment fit stands).
///
/// With `ln S ~ N(mu, sigma^2)` and `mu = ln mean - sigma^2 / 2`, the share is
/// `Phi(z)` for `z = (ln(latency / mean) + sigma^2 / 2) / sigma`, so `sigma` solves
/// `sigma^2 / 2 - z sigma + ln(latency / mean) = 0`.
pub fn scv_for_within(latency: f64, mean: f64, within: f64) -> Option<f64> {
    if !(latency > 0.0 && mean > 0.0 && within > 0.0 && within < 1.0) {
        return None;
    }
    let z = normal_quantile(within);
    let c = (latency / mean).ln();
    let disc = z * z - 2.0 * c;
    if !(disc >= 0.0 && z.is_finite()) {
        return None;
    }
    let sigma = if c > 0.0 {
        z - disc.sqrt()
    } else {
        z + disc.sqrt()
    };
    (sigma > 1e-6 && (c <= 0.0 || z > 0.0)).then(|| (sigma * sigma).exp() - 1.0)
}

/// `P(R > t)` for `R` the residual service of a busy slot (the equilibrium distribution,
/// `E[(S - t)+] / E[S]`), lognormal `S`: `Phi(d + sigma) - t / m Phi(d)`,
/// `d = (mu - ln t) / sigma`.
fn residual_survival(t: f64, mean: f64, mu: f64, sigma: f64) -> f64 {
    if t <= 0.0 {
        return 1.0;
    }
    let d = (mu - t.ln()) / sigma;
    (normal_cdf(d + sigma) - t / mean * normal_cdf(d)).clamp(0.0, 1.0)
}

/// How a waiting request's wait is distributed: see [`WaitShape::survival_with`].
#[derive(Debug, Clone, Copy)]
struct WaitShape {
    slots: u32,
    /// Probability that requests wait ahead of it at its replica.
    queue: f64,
    /// Mean wait when they do, seconds.
    queued_wait: f64,
    /// Erlang shape of that wait: `2 / (ca^2 + cs^2)`, rounded (1 = exponential; regular
    /// service and arrivals give a wait less spread than exponential).
    queued_shape: u32,
}

impl WaitShape {
    fn new(load: &Load, replicas: u32, slots: u32) -> WaitShape {
        let c = f64::from(replicas) * f64::from(slots);
        let rho = (load.offered() / c).min(0.999_999);
        // Requests ahead at the chosen replica: the central queue holds >= j n with
        // probability rho^(j n) given a wait; burstier arrivals lengthen it (Kingman).
        let burst = 2.0 / (1.0 + load.arrival_scv.max(0.0));
        let queue = rho
            .powf(f64::from(replicas.max(1)) * burst)
            .clamp(1e-9, 0.999);
        // The conditional mean wait: Allen-Cunneen's factor times `k + 1` slot turnovers of
        // `E[S] / slots`, with `k` ahead on average `rho / ((1 - rho) n)`; the queued part
        // carries what the first-free-slot part does not.
        let first = load.service_mean * (1.0 + load.service_scv) / (2.0 * f64::from(slots));
        let mean_wait = conditional_mean_wait(load, replicas, slots, rho);
        let queued_wait = ((mean_wait - (1.0 - queue) * first) / queue).max(first);
        WaitShape {
            slots,
            queue,
            queued_wait,
            queued_shape: (2.0 / (load.arrival_scv + load.service_scv).max(0.25))
                .round()
                .clamp(1.0, 8.0) as u32,
        }
    }

    /// `P(W > t | W > 0)`, given `residual = P(R > t)` for one residual service: with no one
    /// ahead, the first of the replica's `slots` busy slots to free up (independent residual
    /// services); with a queue ahead, Erlang with the queue's mean wait.
    fn survival_with(&self, t: f64, residual: f64) -> f64 {
        let first = residual.powi(self.slots as i32);
        (1.0 - self.queue) * first
            + self.queue * erlang_survival(t, self.queued_wait, self.queued_shape)
    }
}

/// The mean wait of a request that waits: Allen-Cunneen's factor times `k + 1` slot turnovers
/// of `E[S] / slots`, with `k` ahead on average `rho / ((1 - rho) n)`.
fn conditional_mean_wait(load: &Load, replicas: u32, slots: u32, rho: f64) -> f64 {
    let variability = ((load.arrival_scv + load.service_scv) / 2.0).max(0.05);
    let ahead = rho / ((1.0 - rho) * f64::from(replicas.max(1)));
    variability * load.service_mean / f64::from(slots) * (1.0 + ahead)
}

/// The model's mean number of requests waiting at `replicas` (Little's law on its mean wait,
/// `lambda C(c, a) E[W | W > 0]`); infinite when the load exceeds the slots.
pub fn mean_queue(load: &Load, replicas: u32, slots: u32) -> f64 {
    let slots = slots.max(1);
    if load.rate <= 0.0 {
        return 0.0;
    }
    let c = f64::from(replicas) * f64::from(slots);
    let wait = erlang_c(replicas.saturating_mul(slots), load.offered());
    if replicas == 0 || wait >= 1.0 {
        return f64::INFINITY;
    }
    let rho = (load.offered() / c).min(0.999_999);
    load.rate * wait * conditional_mean_wait(load, replicas, slots, rho)
}

/// `P(X > t)` for an Erlang distribution with mean `mean` and integer `shape`.
fn erlang_survival(t: f64, mean: f64, shape: u32) -> f64 {
    let x = t * f64::from(shape) / mean;
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..shape {
        term *= x / f64::from(i);
        sum += term;
    }
    ((-x).exp() * sum).clamp(0.0, 1.0)
}

/// `P(R > t)` for the residual service of a busy slot, with the service's variance.
pub(crate) fn residual_of(load: &Load) -> impl Fn(f64) -> f64 {
    let (mu, sigma) = lognormal_params(load.service_mean, load.service_scv);
    let mean = load.service_mean;
    move |t: f64| residual_survival(t, mean, mu, sigma.max(1e-6))
}

/// Simpson's rule's weight of point `i` of `0..=steps` (`steps` even): 1, 4, 2, ..., 4, 1.
pub(crate) fn simpson_weight(i: usize, steps: usize) -> f64 {
    match i {
        0 => 1.0,
        i if i == steps => 1.0,
        i if i % 2 == 1 => 4.0,
        _ => 2.0,
    }
}

/// Simpson's rule for `E[f(T - S); S < T]` over the normal variable of `ln S`, the service
/// times below the SLO spread as the load's shape says: `(slack T - s, weight)` per point,
/// `steps` (even) intervals from 6 standard deviations below the median to the SLO.
pub(crate) fn simpson_points(latency: f64, load: &Load, steps: usize) -> Vec<(f64, f64)> {
    let (mu, sigma) = lognormal_params(load.service_mean, load.shape_scv);
    if sigma < 1e-6 {
        return if load.service_mean < latency {
            vec![(latency - load.service_mean, 1.0)]
        } else {
            Vec::new()
        };
    }
    let z_hi = (latency.ln() - mu) / sigma;
    // Below -6 standard deviations lies a share of 1e-9 of the service times.
    let z_lo = -6.0f64;
    if z_hi <= z_lo {
        return Vec::new();
    }
    let h = (z_hi - z_lo) / steps as f64;
    (0..=steps)
        .map(|i| {
            let z = z_lo + h * i as f64;
            let simpson = simpson_weight(i, steps);
            let density = normal_pdf(z);
            let slack = (latency - (mu + sigma * z).exp()).max(0.0);
            (slack, simpson * density * h / 3.0)
        })
        .collect()
}

/// The integration grid for `P(W > T - S; S < T | W > 0)`: Simpson's rule over the normal
/// variable of `ln S`. What does not depend on the replica count (each point's slack `T - s`,
/// weight and residual-service survival) is computed once per search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PenaltyGrid {
    /// `(slack, weight, P(R > slack))` per point; shared, since the state that keeps the grid
    /// is copied every decision and the grid outlives many of them.
    points: std::sync::Arc<[(f64, f64, f64)]>,
    /// The latency, mean service, scv and shape scv it was built for.
    key: (f64, f64, f64, f64),
}

impl PenaltyGrid {
    /// Whether this grid serves `latency` and `load`: the same latency, and a service mean and
    /// shape within half a percent (they drift slowly; rebuilding costs more than the rest of
    /// a decision).
    fn fits(&self, latency: f64, load: &Load) -> bool {
        let (l, m, v, shape) = self.key;
        l == latency
            && (load.service_mean / m - 1.0).abs() < 0.005
            && (load.service_scv - v).abs() < 0.005 * v.max(0.01)
            && (load.shape_scv - shape).abs() < 0.005 * shape.max(0.01)
    }

    /// The grid in `cache` when it fits `latency` and `load`, else a new one kept there.
    fn cached<'c>(
        cache: &'c mut Option<PenaltyGrid>,
        latency: f64,
        load: &Load,
    ) -> &'c PenaltyGrid {
        if cache.as_ref().is_some_and(|g| !g.fits(latency, load)) {
            *cache = None;
        }
        cache.get_or_insert_with(|| PenaltyGrid::new(latency, load))
    }

    /// Simpson intervals per decision, each candidate count integrating over all of them. The
    /// referee's model (`dispatch.rs`) takes 48: with 12 it read 0.16 points high for
    /// near-deterministic service (sigma 0.25) at one replica of one slot and 85% load.
    const STEPS: usize = 12;

    fn new(latency: f64, load: &Load) -> PenaltyGrid {
        let key = (latency, load.service_mean, load.service_scv, load.shape_scv);
        let residual = residual_of(load);
        let points = simpson_points(latency, load, Self::STEPS)
            .into_iter()
            .map(|(slack, weight)| (slack, weight, residual(slack)))
            .collect();
        PenaltyGrid { points, key }
    }

    fn penalty(&self, shape: &WaitShape) -> f64 {
        self.points
            .iter()
            .map(|&(slack, weight, residual)| weight * shape.survival_with(slack, residual))
            .sum::<f64>()
            .clamp(0.0, 1.0)
    }
}

/// Predicted share of requests within `latency` seconds at `replicas` replicas.
pub fn attainment(load: &Load, replicas: u32, slots: u32, latency: f64) -> f64 {
    let [predicted] = attainments(load, [replicas], slots, latency, &mut None);
    predicted
}

/// [`attainment`] at several replica counts, with the integration grid kept in `cache` (as
/// [`replicas_for_cached`] keeps it: built once, reused while the service time holds).
pub fn attainments<const N: usize>(
    load: &Load,
    counts: [u32; N],
    slots: u32,
    latency: f64,
    cache: &mut Option<PenaltyGrid>,
) -> [f64; N] {
    let within = service_within(latency, load.service_mean, load.shape_scv);
    if load.rate <= 0.0 {
        return [within; N];
    }
    let grid = PenaltyGrid::cached(cache, latency, load);
    counts.map(|replicas| {
        let wait = erlang_c(replicas.saturating_mul(slots), load.offered());
        if wait >= 1.0 || replicas == 0 {
            return 0.0;
        }
        predict(within, wait, &WaitShape::new(load, replicas, slots), grid)
    })
}

/// `E[P(W > T - S | W > 0); S < T]`: the share of requests that miss `latency` once they
/// wait, at `replicas` replicas (the grid kept in `cache`).
pub(crate) fn miss_given_wait(
    load: &Load,
    replicas: u32,
    slots: u32,
    latency: f64,
    cache: &mut Option<PenaltyGrid>,
) -> f64 {
    let grid = PenaltyGrid::cached(cache, latency, load);
    grid.penalty(&WaitShape::new(load, replicas.max(1), slots.max(1)))
}

/// `F_S(T) - C(c, a) E[P(W > T - S | W > 0); S < T]` from its parts (`wait < 1`).
fn predict(within: f64, wait: f64, shape: &WaitShape, grid: &PenaltyGrid) -> f64 {
    if wait <= 0.0 {
        return within;
    }
    (within - wait * grid.penalty(shape)).max(0.0)
}

/// The fewest replicas (up to `max`) whose predicted attainment reaches `target`, with that
/// prediction; `max` with its prediction when none does.
pub fn replicas_for(load: &Load, slots: u32, latency: f64, target: f64, max: u32) -> (u32, f64) {
    replicas_for_cached(load, slots, latency, target, max, &mut None)
}

/// [`replicas_for`] with the integration grid kept between searches in `cache` (the SLO
/// state carries one, so a steady target rebuilds it only when its service time moves).
pub fn replicas_for_cached(
    load: &Load,
    slots: u32,
    latency: f64,
    target: f64,
    max: u32,
    cache: &mut Option<PenaltyGrid>,
) -> (u32, f64) {
    let slots = slots.max(1);
    let max = max.max(1);
    let offered = load.offered();
    if !offered.is_finite() || offered >= f64::from(max) * f64::from(slots) {
        // More load than the most replicas can carry (or none that makes sense): all of them.
        return (max, 0.0);
    }
    if load.rate <= 0.0 {
        return (1, attainment(load, 1, slots, latency));
    }
    // The smallest stable count, then upwards; the Erlang B recursion is carried along, so
    // the whole search costs O(servers) plus one integral per candidate.
    let mut n =
        ((offered / f64::from(slots)).floor() as u64 + 1).clamp(1, u64::from(max.max(1))) as u32;
    let mut b = 1.0;
    let mut k = 0u32;
    let bounds = Bounds::new(load, latency);
    loop {
        let servers = n.saturating_mul(slots);
        while k < servers {
            k += 1;
            b = offered * b / (f64::from(k) + offered * b);
        }
        let wait = if offered >= f64::from(servers) {
            1.0
        } else {
            erlang_c_from_b(b, servers, offered)
        };
        let predicted = if wait >= 1.0 {
            0.0
        } else {
            let shape = WaitShape::new(load, n, slots);
            if n < max && !bounds.could_meet(&shape, latency, wait, target) {
                n += 1;
                continue;
            }
            let grid = PenaltyGrid::cached(cache, latency, load);
            let predicted = predict(bounds.within, wait, &shape, grid);
            if bounds.surely_meets(&shape, latency, wait, target) {
                // Met for sure; the integral (cheap with the grid kept) gives the prediction.
                return (n, predicted);
            }
            predicted
        };
        if predicted >= target || n >= max {
            return (n, predicted);
        }
        n += 1;
    }
}

/// What a search over replica counts computes once: the service shape's share within the
/// SLO and within half of it, and a residual service's survival at both.
struct Bounds {
    within: f64,
    within_half: f64,
    residual: f64,
    residual_half: f64,
}

impl Bounds {
    fn new(load: &Load, latency: f64) -> Bounds {
        let residual = residual_of(load);
        Bounds {
            within: service_within(latency, load.service_mean, load.shape_scv),
            within_half: service_within(latency / 2.0, load.service_mean, load.shape_scv),
            residual: residual(latency),
            residual_half: residual(latency / 2.0),
        }
    }

    /// A cheap necessary condition for meeting `target` (no integral): the requests that
    /// wait miss at least as often as a wait longer than the whole SLO, `P(W > T) F_S(T)`.
    fn could_meet(&self, shape: &WaitShape, latency: f64, wait: f64, target: f64) -> bool {
        let miss = shape.survival_with(latency, self.residual) * self.within;
        self.within - wait * miss >= target
    }

    /// A cheap sufficient condition (no integral): the share that waits too long is at most
    /// the services longer than half the SLO plus the waits longer than half of it,
    /// `F_S(T) - F_S(T/2) + P(W > T/2) F_S(T/2)`; whether that lower bound on the attainment
    /// already meets `target`.
    fn surely_meets(&self, shape: &WaitShape, latency: f64, wait: f64, target: f64) -> bool {
        if wait <= 0.0 {
            return self.within >= target;
        }
        let late = shape.survival_with(latency / 2.0, self.residual_half);
        let penalty = (self.within - self.within_half) + late * self.within_half;
        self.within - wait * penalty.min(self.within) >= target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poisson(rate: f64, mean: f64, scv: f64) -> Load {
        Load {
            rate,
            arrival_scv: 1.0,
            service_mean: mean,
            service_scv: scv,
            shape_scv: scv,
        }
    }

    #[test]
    fn erfc_matches_known_values() {
        // erfc(0) = 1, erfc(1) = 0.157299207, erfc(3) = 2.20904970e-5, erfc(-1) = 1.842700793.
        for (x, want) in [
            (0.0, 1.0),
            (1.0, 0.157_299_207),
            (3.0, 2.209_049_70e-5),
            (-1.0, 1.842_700_793),
        ] {
            assert!(
                ((erfc(x) - want) / want).abs() < 2e-7,
                "erfc({x}) = {}",
                erfc(x)
            );
        }
    }

    #[test]
    fn erlang_c_matches_textbook_values() {
        // Two servers, one Erlang: C = 1/3. One server: C = rho.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        assert!((erlang_c(1, 0.6) - 0.6).abs() < 1e-12);
        // 10 servers at 8 Erlangs: 0.409 (standard tables).
        assert!((erlang_c(10, 8.0) - 0.4092).abs() < 1e-3);
        assert_eq!(erlang_c(4, 4.0), 1.0);
        assert_eq!(erlang_c(4, 0.0), 0.0);
    }

    #[test]
    fn mean_queue_is_m_m_c_with_one_replica_and_exponential_service() {
        // M/M/c with c = 10, a = 8 Erlangs, E[S] = 0.1 s: Lq = C a / (c - a) = 0.4092 x 4.
        let load = poisson(80.0, 0.1, 1.0);
        let lq = mean_queue(&load, 1, 10);
        assert!((lq - erlang_c(10, 8.0) * 8.0 / 2.0).abs() < 1e-9, "{lq}");
        // More replicas, shorter queues; none without traffic; unbounded past the slots.
        assert!(mean_queue(&load, 3, 10) < lq / 100.0);
        assert_eq!(mean_queue(&poisson(0.0, 0.1, 1.0), 1, 10), 0.0);
        assert!(mean_queue(&load, 1, 8).is_infinite());
        assert!(mean_queue(&load, 0, 10).is_infinite());
    }

    #[test]
    fn residual_of_exponential_service_is_exponential() {
        // Memoryless: the residual of an exponential service is the same exponential.
        let (mu, sigma) = lognormal_params(1.0, 1.0);
        assert!((residual_survival(0.0, 1.0, mu, sigma) - 1.0).abs() < 1e-12);
        // (A lognormal with scv 1 is not exponential; only its mean residual matches.)
        let mean_residual: f64 = (0..20_000)
            .map(|i| residual_survival(i as f64 * 0.001 + 0.0005, 1.0, mu, sigma) * 0.001)
            .sum();
        assert!((mean_residual - 1.0).abs() < 0.05, "{mean_residual}");
    }

    #[test]
    fn attainment_grows_with_replicas_up_to_the_service_ceiling() {
        let load = poisson(100.0, 0.113, 0.284);
        let ceiling = service_within(0.5, 0.113, 0.284);
        let mut last = 0.0;
        for n in 1..20 {
            let a = attainment(&load, n, 4, 0.5);
            assert!(a >= last - 1e-12, "n={n}: {a} < {last}");
            assert!(a <= ceiling + 1e-12);
            last = a;
        }
        assert!(ceiling - last < 1e-6);
        // Lognormal median 100 ms, sigma 0.5: P(S > 500 ms) = P(Z > ln 5 / 0.5) = 0.00064.
        assert!((ceiling - (1.0 - 0.000_64)).abs() < 2e-5, "{ceiling}");
    }

    #[test]
    fn search_returns_the_fewest_that_meet_the_target() {
        let load = poisson(150.0, 0.113, 0.284);
        let (n, predicted) = replicas_for(&load, 4, 0.5, 0.999, 1000);
        assert!(predicted >= 0.999);
        assert!(attainment(&load, n - 1, 4, 0.5) < 0.999);
        assert_eq!(replicas_for(&load, 4, 0.5, 0.999, 3).0, 3);
    }

    #[test]
    fn normal_quantile_inverts_the_cdf() {
        for p in [1e-9, 1e-4, 0.01, 0.024, 0.3, 0.5, 0.9, 0.999, 0.999_99] {
            let z = normal_quantile(p);
            assert!(((normal_cdf(z) - p) / p).abs() < 1e-6, "p {p}: z {z}");
        }
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
    }

    #[test]
    fn the_shape_fitted_to_a_counted_share_gives_that_share() {
        // A lognormal's own share within the SLO gives back its own shape (the lighter-tailed
        // root, which is every shape whose median lies below the SLO here).
        for (mean, scv, latency) in [(0.113, 0.284, 0.5), (43.0, 0.2, 120.0), (1.0, 1.0, 0.5)] {
            let within = service_within(latency, mean, scv);
            let fitted = scv_for_within(latency, mean, within).expect("a shape");
            assert!(
                (fitted - scv).abs() < 1e-6 * scv.max(1.0),
                "{mean} {scv}: {fitted}"
            );
        }
        // Alibaba's image requests: mean 43 s, 99.5% within 120 s. The two moments' lognormal
        // (scv 1) puts 4.6% beyond; the fitted one is lighter-tailed.
        let fitted = scv_for_within(120.0, 43.0, 0.995).expect("a shape");
        assert!(fitted < 0.3, "{fitted}");
        assert!((service_within(120.0, 43.0, fitted) - 0.995).abs() < 1e-9);
        // No lognormal with a 100 ms mean has only 40% of its mass below 500 ms.
        assert_eq!(scv_for_within(0.5, 0.1, 0.4), None);
        assert_eq!(scv_for_within(0.5, 0.1, 1.0), None);
        assert_eq!(scv_for_within(0.5, 0.1, f64::NAN), None);
    }
}
