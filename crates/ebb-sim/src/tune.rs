//! Recommending a policy from the user's own traffic: run each family's knob over a grid on
//! the first half of a trace, keep the cheapest setting that meets the SLO there by more than
//! chance, and check it on the second half. The grid's points are also the family's
//! cost/attainment frontier.
//!
//! Families: Ebb's SLO policy (knobs: the attainment it plans for, and how it lets replicas
//! go: its own rule, a scale-down window, scale to zero) and a plain HPA policy (knobs:
//! request-rate target per pod, scale-down window), the latter for users who stay on HPA.
//! HPA runs behind the observation pipeline its real deployment has (see
//! [`crate::compare`]).

use crate::autoscaler::Autoscaler;
use crate::compare::{
    default_ebb_policy, hpa_policy, kpa_policy, rps_policy, Deployment, EBB_DEPLOYMENT,
    HPA_DEPLOYMENT, KPA_DEPLOYMENT,
};
use crate::parallel::map_on_all_cores;
use crate::run::{run_policy, RunConfig};
use crate::workload::Workload;
use ebb_core::Policy;

/// A family of policies with a knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Ebb's SLO policy.
    EbbSlo,
    /// Kubernetes HPA on requests per pod.
    Hpa,
    /// Ebb's request-rate policy (its built-in policy before the SLO block).
    EbbRps,
    /// Knative's KPA.
    Kpa,
    /// Ebb's `engine` policy for LLM servers (token-level runs; knob: its KV-cache target).
    EbbEngine,
    /// HPA on the accelerator's duty cycle (token-level runs).
    HpaDutyCycle,
}

impl Family {
    /// How the family is deployed (see [`crate::compare`]).
    pub fn deployment(self) -> Deployment {
        match self {
            Family::EbbSlo | Family::EbbRps | Family::EbbEngine => EBB_DEPLOYMENT,
            Family::Kpa => KPA_DEPLOYMENT,
            Family::Hpa | Family::HpaDutyCycle => HPA_DEPLOYMENT,
        }
    }

    /// The family's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Family::EbbSlo => "ebb-slo",
            Family::Hpa => "hpa",
            Family::EbbRps => "ebb-rps",
            Family::Kpa => "kpa",
            Family::EbbEngine => "ebb-engine",
            Family::HpaDutyCycle => "hpa-duty-cycle",
        }
    }
}

/// One setting of a family's knob.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its family.
    pub family: Family,
    /// The knob, in words ("plans for 99.9%", "12.4 req/s per pod, scale-down window 300s").
    pub knob: String,
    /// The policy.
    pub policy: Policy,
}

/// A candidate's simulated outcome.
#[derive(Debug, Clone)]
pub struct Point {
    /// The candidate.
    pub candidate: Candidate,
    /// Share of requests within the SLO.
    pub attainment: f64,
    /// Replica-seconds.
    pub replica_seconds: f64,
    /// Requests the attainment was counted over.
    pub requests: u64,
    /// The run's [`STRETCHES`] equal stretches: what a setting that missed the target can
    /// promise (one run's average is a point, not a bound). `None` when a stretch held no
    /// request.
    pub stretches: Option<Stretches>,
    /// The most replicas the setting asked for (its first count or any change's): what a
    /// `maxReplicas` must allow for it to do what it did here.
    pub peak_replicas: u32,
}

/// One stretch of a run: the share of its requests within the SLO, and how many there were.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stretch {
    /// Share of the stretch's requests within the SLO.
    pub share: f64,
    /// Requests that arrived in it.
    pub requests: u64,
}

/// Standard errors a promise stays below the share it was measured at.
const PROMISE_STANDARD_ERRORS: f64 = 2.0;

impl Stretch {
    /// What the stretch lets a setting promise for traffic it has not seen: its share, less
    /// two binomial standard errors of a share counted over its requests. On a log of one
    /// request a minute a quarter's share is known to a few tenths of a point, and a promise
    /// finer than that is chance; on millions of requests the allowance vanishes.
    pub fn promise(&self) -> f64 {
        let n = self.requests.max(1) as f64;
        let error = (self.share * (1.0 - self.share) / n).sqrt();
        (self.share - PROMISE_STANDARD_ERRORS * error).max(0.0)
    }
}

impl Point {
    /// Whether the run met `target` by more than chance: its attainment, less two binomial
    /// standard errors of a share counted over its requests (the allowance a promise makes,
    /// [`Stretch::promise`]), still reaches it. A setting that met 99.9% by one request in
    /// 10,000 of 100,000 met it by less than the count's own noise, and unseen traffic
    /// misses it as often as not.
    pub fn meets_beyond_chance(&self, target: f64) -> bool {
        self.attainment_less_chance() >= target
    }

    /// Whether its quarters are steady enough for a half of the same traffic to reach
    /// `target`: their 97.5% prediction bound for a half ([`Stretches::prediction_bound`])
    /// reaches it, or cannot be drawn (a quarter with no request). Counting chance is not all
    /// that moves a share from one stretch of traffic to the next.
    pub fn steady_at(&self, target: f64) -> bool {
        self.prediction_bound().is_none_or(|bound| bound >= target)
    }

    /// Its quarters' 97.5% prediction bound for a half, where it can be drawn.
    pub fn prediction_bound(&self) -> Option<f64> {
        self.stretches
            .as_ref()
            .and_then(Stretches::prediction_bound)
    }

    /// Its attainment less two binomial standard errors of a share counted over its requests
    /// ([`Stretch::promise`] of the whole run).
    pub fn attainment_less_chance(&self) -> f64 {
        Stretch {
            share: self.attainment,
            requests: self.requests,
        }
        .promise()
    }
}

/// Equal stretches a run is split into for [`Point::stretches`].
pub const STRETCHES: usize = 4;

/// Student's t at 97.5% (one-sided) with `STRETCHES - 1` = 3 degrees of freedom.
const T_975_THREE_DEGREES: f64 = 3.182;
const _: () = assert!(STRETCHES == 4, "T_975_THREE_DEGREES is for four stretches");

/// A run's equal stretches, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Stretches(pub Vec<Stretch>);

impl Stretches {
    /// The stretch with the lowest share.
    pub fn worst(&self) -> Option<Stretch> {
        self.0
            .iter()
            .copied()
            .min_by(|a, b| a.share.total_cmp(&b.share))
    }

    /// A 97.5% prediction bound for the share of a run as long as this one, on traffic of the
    /// same kind, from its stretches' spread (Student's t, the stretches taken as independent
    /// draws: the run to come averages as many stretches as this one did, so its share varies
    /// by `s^2 (1/n + 1/n)` around theirs). The stretches' spread holds what counting chance
    /// misses: traffic that changes from one stretch to the next.
    pub fn prediction_bound(&self) -> Option<f64> {
        let n = self.0.len();
        if n != STRETCHES {
            return None;
        }
        let shares: Vec<f64> = self.0.iter().map(|s| s.share).collect();
        let mean = shares.iter().sum::<f64>() / n as f64;
        let variance = shares.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let spread = (variance * 2.0 / n as f64).sqrt();
        Some((mean - T_975_THREE_DEGREES * spread).max(0.0))
    }

    /// What a setting that missed the target promises for the run to come: the lower of its
    /// worst stretch less the chance in that stretch's count ([`Stretch::promise`]) and the
    /// stretches' prediction bound ([`Stretches::prediction_bound`]).
    pub fn promise(&self) -> Option<Promise> {
        let worst = self.worst()?;
        let worst_promise = worst.promise();
        let (share, basis) = match self.prediction_bound() {
            Some(bound) if bound < worst_promise => (bound, PromiseBasis::Spread),
            _ => (worst_promise, PromiseBasis::WorstStretch),
        };
        Some(Promise {
            share,
            basis,
            worst,
            worst_promise,
        })
    }
}

/// Which of [`Stretches::promise`]'s two rules set a promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromiseBasis {
    /// The worst stretch less the chance in its count.
    WorstStretch,
    /// The prediction bound from the stretches' spread, lower than the worst stretch's.
    Spread,
}

/// What a setting that missed the target promises, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Promise {
    /// The share promised.
    pub share: f64,
    /// The rule that set it.
    pub basis: PromiseBasis,
    /// The worst stretch.
    pub worst: Stretch,
    /// What the worst stretch alone promises ([`Stretch::promise`]).
    pub worst_promise: f64,
}

/// Ebb's SLO policy planning for a range of attainments around `target`, each with the policy's
/// own scale-down rule (keep a replica through a dip shorter than its cold start) and with a
/// 300 s scale-down window on top, as HPA is swept with its windows: a window holds the
/// fleet through a quiet spell whose end the model cannot yet foresee (bursts that have not
/// recurred often enough to be learnt), a price some traffic is worth paying. Where a cold
/// start fits within the SLO, also with scale to zero after a minute idle, as KPA's defaults
/// do: the first request back then waits a cold start and can still meet the SLO.
pub fn slo_candidates(cfg: &RunConfig, target: f64, max_replicas: u32) -> Vec<Candidate> {
    slo_sweep(cfg, target, max_replicas, &SLO_MISS_MULTIPLES)
}

/// [`slo_candidates`] reaching further down, for `ebb tune --frontier`: a frontier read at
/// a baseline's attainment far below the target (KPA's 89% on NASA, 91% on Azure code)
/// needs settings that cheap, where a setting that plans for half the requests is never the
/// one to recommend for a 99.9% target.
pub fn slo_frontier_candidates(cfg: &RunConfig, target: f64, max_replicas: u32) -> Vec<Candidate> {
    let multiples: Vec<f64> = SLO_FRONTIER_MISS_MULTIPLES
        .iter()
        .chain(&SLO_MISS_MULTIPLES)
        .copied()
        .collect();
    slo_sweep(cfg, target, max_replicas, &multiples)
}

/// The SLO family planning for `1 - (1 - target) k` for each multiple `k` that leaves an
/// attainment, each way of releasing replicas.
fn slo_sweep(cfg: &RunConfig, target: f64, max_replicas: u32, multiples: &[f64]) -> Vec<Candidate> {
    let miss = 1.0 - target;
    let planned: Vec<f64> = multiples
        .iter()
        .map(|k| 1.0 - miss * k)
        .filter(|a| *a > 0.0 && *a < 1.0)
        .collect();
    let mut variants = vec![SloVariant::OwnRule, SloVariant::ScaleDownWindow(300)];
    if cfg.cluster.cold_start.median() < cfg.slo {
        variants.push(SloVariant::ScaleToZeroAfter(SLO_IDLE_SECONDS));
    }
    let mut out = Vec::new();
    for variant in variants {
        for &attainment in &planned {
            let mut policy =
                default_ebb_policy(cfg.slo, attainment, cfg.cluster.slots, max_replicas);
            variant.apply(&mut policy);
            out.push(Candidate {
                family: Family::EbbSlo,
                knob: format!(
                    "plans for {}{}",
                    ebb_core::time::fmt_percent(attainment),
                    variant.words()
                ),
                policy,
            });
        }
    }
    out
}

/// The misses the SLO family plans for, as multiples of the target's (`1 - target`): from
/// a hundred times as many (90% for a 99.9% target) to a fifth.
const SLO_MISS_MULTIPLES: [f64; 9] = [100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.2];

/// Below [`SLO_MISS_MULTIPLES`] on the frontier: 500 and 200 times the target's misses (50%
/// and 80% for a 99.9% target).
const SLO_FRONTIER_MISS_MULTIPLES: [f64; 2] = [500.0, 200.0];

/// Idle seconds before the SLO family's scale-to-zero settings go to zero: Knative's stable
/// window, after which KPA's defaults do.
const SLO_IDLE_SECONDS: i64 = 60;

/// How an SLO setting releases replicas, beside the attainment it plans for.
#[derive(Debug, Clone, Copy)]
enum SloVariant {
    /// The policy's own rule: through dips shorter than a cold start, never to zero for
    /// idling alone.
    OwnRule,
    /// A scale-down stabilization window of this many seconds on top.
    ScaleDownWindow(u32),
    /// Scale to zero after this many idle seconds.
    ScaleToZeroAfter(i64),
}

impl SloVariant {
    fn apply(self, policy: &mut Policy) {
        match self {
            SloVariant::OwnRule => {}
            SloVariant::ScaleDownWindow(w) => {
                policy.behavior.scale_down.stabilization_window_seconds = w;
            }
            SloVariant::ScaleToZeroAfter(idle) => {
                if let Some(zero) = policy.scale_to_zero.as_mut() {
                    zero.idle_ms = Some(idle * 1000);
                }
            }
        }
    }

    fn words(self) -> String {
        match self {
            SloVariant::OwnRule => String::new(),
            SloVariant::ScaleDownWindow(w) => format!(", scale-down window {w}s"),
            SloVariant::ScaleToZeroAfter(idle) => format!(", to zero after {idle}s idle"),
        }
    }
}

/// HPA with a request-rate target per pod from 30% to 90% of a replica's capacity, each with
/// HPA's default 300 s scale-down window and a 60 s one.
pub fn hpa_candidates(cfg: &RunConfig, max_replicas: u32) -> Vec<Candidate> {
    let capacity = f64::from(cfg.cluster.slots) / cfg.service.mean();
    let mut out = Vec::new();
    for share in SHARES {
        for window in [300u32, 60] {
            let mut policy = hpa_policy(capacity * share, max_replicas);
            policy.behavior.scale_down.stabilization_window_seconds = window;
            out.push(Candidate {
                family: Family::Hpa,
                knob: format!(
                    "{:.2} req/s per pod ({:.0}% of capacity), scale-down window {window}s",
                    capacity * share,
                    share * 100.0
                ),
                policy,
            });
        }
    }
    out
}

/// Utilization targets swept for the target-based families.
const SHARES: [f64; 7] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Ebb's request-rate policy and Knative's KPA, each at utilization targets from 30% to 90%.
pub fn target_candidates(cfg: &RunConfig, max_replicas: u32) -> Vec<Candidate> {
    let slots = cfg.cluster.slots;
    let capacity = f64::from(slots) / cfg.service.mean();
    let mut out = Vec::new();
    for share in SHARES {
        out.push(Candidate {
            family: Family::EbbRps,
            knob: format!("rate target {:.0}% of capacity", share * 100.0),
            policy: rps_policy(capacity, share, max_replicas),
        });
        out.push(Candidate {
            family: Family::Kpa,
            knob: format!("target utilization {:.0}%", share * 100.0),
            policy: kpa_policy(slots, share, max_replicas),
        });
    }
    out
}

/// A family's non-dominated settings as (replica-seconds, attainment), cheapest first: each
/// reaches more than every cheaper one. With two knobs (a target and a window) the family's
/// settings are no single curve; this is its frontier.
pub fn envelope(points: &[Point], family: Family) -> Vec<(f64, f64)> {
    let mut line: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.candidate.family == family)
        .map(|p| (p.replica_seconds, p.attainment))
        .collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut envelope: Vec<(f64, f64)> = Vec::new();
    for p in line {
        if envelope.last().is_none_or(|l| p.1 > l.1) {
            envelope.push(p);
        }
    }
    envelope
}

/// A family's frontier read at one reference point (KPA's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The least replica-seconds it needs to reach the reference's attainment; `None` where
    /// no setting reaches it.
    pub cost: Option<f64>,
    /// Where even the family's cheapest setting is above the reference's attainment: that
    /// setting's attainment. `cost` is then that setting's cost, a bound, since the knob's
    /// range stops short of the reference.
    pub cheapest_above: Option<f64>,
    /// The best attainment it reaches within the reference's replica-seconds; `None` where
    /// every setting costs more.
    pub attainment: Option<f64>,
}

impl Reading {
    /// Says that the cost is a bound, where it is one.
    pub fn bound_note(&self) -> Option<String> {
        self.cheapest_above
            .map(|a| format!("at most: its cheapest setting reaches {:.3}%", a * 100.0))
    }
}

/// Where a family's frontier stands against one reference point: both readings interpolated
/// linearly between the family's non-dominated points ([`Reading`]).
pub fn against(points: &[Point], family: Family, reference: &Point) -> Reading {
    let envelope = envelope(points, family);
    let interpolate = |x0: f64, y0: f64, x1: f64, y1: f64, y: f64| {
        if (y1 - y0).abs() < 1e-12 {
            x0
        } else {
            x0 + (x1 - x0) * (y - y0) / (y1 - y0)
        }
    };
    let cost = envelope.iter().enumerate().find_map(|(i, p)| {
        (p.1 >= reference.attainment).then(|| match i {
            0 => p.0,
            _ => {
                let q = envelope[i - 1];
                interpolate(q.0, q.1, p.0, p.1, reference.attainment)
            }
        })
    });
    let cheapest_above = envelope
        .first()
        .map(|p| p.1)
        .filter(|a| *a > reference.attainment);
    let within: Vec<&(f64, f64)> = envelope
        .iter()
        .filter(|p| p.0 <= reference.replica_seconds)
        .collect();
    let attainment =
        within.last().map(
            |last| match envelope.iter().find(|p| p.0 > reference.replica_seconds) {
                Some(next) => {
                    let t = (reference.replica_seconds - last.0) / (next.0 - last.0);
                    last.1 + t * (next.1 - last.1)
                }
                None => last.1,
            },
        );
    Reading {
        cost,
        cheapest_above,
        attainment,
    }
}

/// The candidate as an autoscaler behind its family's observation pipeline.
pub(crate) fn scaler(c: &Candidate, initial: u32) -> Box<dyn Autoscaler> {
    // Named as `ebb simulate` names the policy: every setting sees the same cold-start draws
    // as the comparison does.
    let name = match c.family {
        Family::EbbSlo | Family::EbbEngine => "ebb",
        other => other.name(),
    };
    c.family
        .deployment()
        .scaler(name, c.policy.clone(), starting_replicas(c, initial))
}

/// The replicas the candidate starts with: `initial` within its bounds.
fn starting_replicas(c: &Candidate, initial: u32) -> u32 {
    initial.clamp(c.policy.min_replicas.max(1), c.policy.max_replicas)
}

/// Runs every candidate over `workload` on all cores; `progress` gets the share of runs done.
pub fn evaluate(
    workload: &Workload,
    cfg: &RunConfig,
    candidates: &[Candidate],
    initial: u32,
    progress: &(dyn Fn(f64) + Sync),
) -> Vec<Point> {
    map_on_all_cores(
        candidates.iter().collect(),
        &|_, c: &Candidate| {
            let mut s = scaler(c, initial);
            let r = run_policy(workload, cfg, s.as_mut(), &mut |_| {});
            let outcomes = r.buckets.iter().map(|b| {
                let missed = b.slo_violations.min(b.arrivals);
                (b.t, b.arrivals, b.arrivals - missed)
            });
            Point {
                candidate: c.clone(),
                attainment: r.slo_attainment,
                replica_seconds: r.replica_seconds,
                requests: r.requests,
                stretches: stretches_of(outcomes, r.duration, STRETCHES),
                peak_replicas: r
                    .scale_log
                    .iter()
                    .map(|e| e.2)
                    .fold(starting_replicas(c, initial), u32::max),
            }
        },
        &|done, total| progress(done as f64 / total.max(1) as f64),
    )
}

/// `parts` equal stretches of `duration` seconds, each with its share of requests that met
/// the SLO, from `(start, requests, met)` per time slot.
pub fn stretches_of(
    outcomes: impl IntoIterator<Item = (f64, u64, u64)>,
    duration: f64,
    parts: usize,
) -> Option<Stretches> {
    if parts == 0 || duration <= 0.0 {
        return None;
    }
    let mut counts = vec![(0u64, 0u64); parts];
    for (t, requests, met) in outcomes {
        let i = ((t / duration * parts as f64) as usize).min(parts - 1);
        counts[i].0 += requests;
        counts[i].1 += met.min(requests);
    }
    let stretches = counts.iter().map(|&(requests, met)| {
        (requests > 0).then(|| Stretch {
            share: met as f64 / requests as f64,
            requests,
        })
    });
    stretches.collect::<Option<Vec<_>>>().map(Stretches)
}

/// How a chosen setting stood against the target on the first half, and so what it promises
/// for traffic it has not seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Standing {
    /// It met the target by more than chance, and its quarters are steady enough that a half
    /// of the same traffic meets it too ([`Point::steady_at`]): it promises the target.
    Meets,
    /// It met the target by more than chance over the half, but its quarters vary so much
    /// that a half of the same traffic may not: it promises their prediction bound for a half
    /// (this share, below the target). No setting met the target with quarters that steady.
    MetUnsteadily(f64),
    /// No setting met the target by more than chance; this one came closest.
    Closest,
}

/// The cheapest point of `family` that meets `target` by more than chance
/// ([`Point::meets_beyond_chance`]) with quarters steady enough to promise it
/// ([`Standing::Meets`]); where none is that steady, the cheapest that meets it at all, which
/// promises less ([`Standing::MetUnsteadily`]): cost is weighed first, and the promise says
/// what the quarters allow. Where none meets it, the one with the highest attainment (of
/// equal attainment, the cheapest). Settings that cost the same to the replica-second (a
/// floor every one of them keeps) are told apart by how little they depart from what the
/// user stated (`departure`): planning for 90% is no advice to give for a 99.9% SLO when
/// planning for 99.9% costs nothing more.
pub fn choose(points: &[Point], family: Family, target: f64) -> Option<(&Point, Standing)> {
    let of_family = || points.iter().filter(move |p| p.candidate.family == family);
    let meeting = || of_family().filter(|p| p.meets_beyond_chance(target));
    let cheapest = |a: &&Point, b: &&Point| cheaper(a, b).then(departs_less(a, b, target));
    if let Some(p) = meeting().filter(|p| p.steady_at(target)).min_by(cheapest) {
        return Some((p, Standing::Meets));
    }
    if let Some(p) = meeting().min_by(cheapest) {
        let bound = p.prediction_bound().unwrap_or(target);
        return Some((p, Standing::MetUnsteadily(bound)));
    }
    of_family()
        .min_by(|a, b| {
            (b.attainment.total_cmp(&a.attainment))
                .then(cheaper(a, b))
                .then(departs_less(a, b, target))
        })
        .map(|p| (p, Standing::Closest))
}

/// Orders two points by their replica-seconds, the least first; to the replica-second, since
/// settings that keep the same floor differ only by float rounding.
fn cheaper(a: &Point, b: &Point) -> std::cmp::Ordering {
    (a.replica_seconds.round()).total_cmp(&b.replica_seconds.round())
}

/// Orders two points by [`departure`], the least first.
fn departs_less(a: &Point, b: &Point, target: f64) -> std::cmp::Ordering {
    let (da, db) = (
        departure(&a.candidate, target),
        departure(&b.candidate, target),
    );
    da.0.cmp(&db.0).then(da.1.total_cmp(&db.1))
}

/// How far an SLO setting departs from the policy the user stated: whether it adds a
/// scale-down window or scale to zero, then how many times more or fewer misses it plans for
/// than `target` allows (on a log scale). Other families' settings do not depart.
fn departure(c: &Candidate, target: f64) -> (bool, f64) {
    match &c.policy.slo {
        Some(slo) => (
            c.policy.behavior.scale_down.stabilization_window_seconds > 0
                || c.policy
                    .scale_to_zero
                    .as_ref()
                    .is_some_and(|z| z.idle_ms.is_some()),
            ((1.0 - slo.attainment) / (1.0 - target)).ln().abs(),
        ),
        None => (false, 0.0),
    }
}

/// Where no setting of `family` met the target and `closest` came closest: the cheapest
/// setting whose attainment is as close within chance (at least `closest`'s less two binomial
/// standard errors of a share counted over its requests, the allowance
/// [`Point::meets_beyond_chance`] makes), if one costs less. When the target is out of reach
/// the closest setting may buy its last hundredth of a point at twice the replicas; this says
/// what the same attainment, as far as the count can tell, costs.
pub fn cheapest_as_close<'a>(
    points: &'a [Point],
    family: Family,
    closest: &Point,
) -> Option<&'a Point> {
    let floor = closest.attainment_less_chance();
    points
        .iter()
        .filter(|p| p.candidate.family == family)
        .filter(|p| p.attainment >= floor && p.replica_seconds < closest.replica_seconds)
        .min_by(|a, b| a.replica_seconds.total_cmp(&b.replica_seconds))
}

/// The frontier as an SVG: replica-seconds against the share of requests missing the SLO,
/// one line per family, the target as a horizontal line, and a ring around each setting in
/// `recommended`.
pub fn frontier_svg(points: &[Point], target: f64, title: &str, recommended: &[Point]) -> String {
    use plotters::prelude::*;
    let mut svg = String::new();
    (|| {
        let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let floor = 0.001;
        let miss = |attainment: f64| ((1.0 - attainment) * 100.0).max(floor);
        let xmax = points.iter().map(|p| p.replica_seconds).fold(1.0, f64::max) * 1.1;
        let xmin = points
            .iter()
            .map(|p| p.replica_seconds)
            .fold(f64::INFINITY, f64::min)
            .min(xmax)
            * 0.9;
        let ymax = points
            .iter()
            .map(|p| miss(p.attainment))
            .fold((1.0 - target) * 100.0, f64::max)
            * 3.0;
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(xmin..xmax, (floor..ymax).log_scale());
        let Ok(mut chart) = chart else { return };
        let _ = chart
            .configure_mesh()
            .x_desc("replica-seconds")
            .y_desc("requests missing the SLO (%)")
            .x_label_formatter(&|v| crate::report::axis_number(*v))
            .y_label_formatter(&|v| crate::report::axis_number(*v))
            .draw();
        let target_miss = miss(target);
        let _ = chart
            .draw_series(LineSeries::new(
                [(xmin, target_miss), (xmax, target_miss)],
                BLACK.stroke_width(2),
            ))
            .map(|s| {
                s.label("target")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK))
            });
        let families = [
            (Family::EbbSlo, BLUE),
            (Family::Hpa, RED),
            (Family::EbbRps, CYAN),
            (Family::Kpa, GREEN),
            (Family::EbbEngine, BLUE),
            (Family::HpaDutyCycle, MAGENTA),
        ];
        for (family, color) in families {
            let settings: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.candidate.family == family)
                .map(|p| (p.replica_seconds, miss(p.attainment)))
                .collect();
            if settings.is_empty() {
                continue;
            }
            // The frontier as a line; settings it passes over as open circles.
            let frontier: Vec<(f64, f64)> = envelope(points, family)
                .into_iter()
                .map(|(cost, attainment)| (cost, miss(attainment)))
                .collect();
            let _ = chart
                .draw_series(LineSeries::new(frontier.clone(), color.stroke_width(2)))
                .map(|s| {
                    s.label(family.name())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color))
                });
            let _ = chart.draw_series(settings.iter().map(|p| Circle::new(*p, 4, color)));
            let _ = chart.draw_series(frontier.iter().map(|p| Circle::new(*p, 4, color.filled())));
        }
        // The settings recommended: a ring around each.
        let rings: Vec<(f64, f64)> = recommended
            .iter()
            .map(|p| (p.replica_seconds, miss(p.attainment)))
            .collect();
        if !rings.is_empty() {
            let _ = chart
                .draw_series(
                    rings
                        .iter()
                        .map(|p| Circle::new(*p, 9, BLACK.stroke_width(2))),
                )
                .map(|s| {
                    s.label("recommended")
                        .legend(|(x, y)| Circle::new((x + 8, y), 5, BLACK.stroke_width(2)))
                });
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw();
        let _ = root.present();
    })();
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Bucket;

    fn run_config() -> RunConfig {
        RunConfig {
            cluster: crate::ClusterConfig::default(),
            service: crate::ServiceTime::Constant(0.1),
            slo: 0.5,
            bucket: 10.0,
            seed: 1,
            gpus_per_replica: 1.0,
        }
    }

    fn bucket(t: f64, arrivals: u64, slo_violations: u64) -> Bucket {
        Bucket {
            t,
            arrivals,
            slo_violations,
            ..Bucket::default()
        }
    }

    #[test]
    fn the_slo_family_plans_from_a_hundred_times_the_misses_to_a_fifth_each_way_of_releasing() {
        let cfg = run_config();
        let candidates = slo_candidates(&cfg, 0.999, 50);
        let setting = |c: &Candidate| {
            let slo = c.policy.slo.as_ref().expect("an SLO block");
            let window = c.policy.behavior.scale_down.stabilization_window_seconds;
            ((slo.attainment * 1e4).round() as u32, window)
        };
        let got: Vec<(u32, u32)> = candidates.iter().map(setting).collect();
        let planned = [9000, 9500, 9800, 9900, 9950, 9980, 9990, 9995, 9998];
        let want: Vec<(u32, u32)> = [0, 300]
            .iter()
            .flat_map(|w| planned.iter().map(move |a| (*a, *w)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(candidates[0].knob, "plans for 90%");
        assert_eq!(
            candidates[17].knob,
            "plans for 99.98%, scale-down window 300s"
        );
        // A target so loose that a hundred times its misses is no attainment is left out.
        assert_eq!(slo_candidates(&cfg, 0.99, 50).len(), 2 * 8);
        // Where a cold start fits within the SLO, scale to zero after a minute idle is tried.
        let slow = RunConfig { slo: 120.0, ..cfg };
        let candidates = slo_candidates(&slow, 0.999, 50);
        assert_eq!(candidates.len(), 3 * 9);
        let zero = &candidates[18];
        assert_eq!(zero.knob, "plans for 90%, to zero after 60s idle");
        let idle = zero.policy.scale_to_zero.as_ref().and_then(|z| z.idle_ms);
        assert_eq!(idle, Some(60_000));
        assert_eq!(
            zero.policy.behavior.scale_down.stabilization_window_seconds,
            0
        );
    }

    #[test]
    fn the_frontier_sweeps_the_slo_family_down_to_half_the_requests() {
        let cfg = run_config();
        let tune = slo_candidates(&cfg, 0.999, 50);
        let frontier = slo_frontier_candidates(&cfg, 0.999, 50);
        let knobs: Vec<&str> = frontier.iter().map(|c| c.knob.as_str()).collect();
        assert_eq!(
            &knobs[..3],
            ["plans for 50%", "plans for 80%", "plans for 90%"]
        );
        assert_eq!(frontier.len(), 2 * 11);
        // Every setting `ebb tune` recommends from is on the frontier too.
        for c in &tune {
            assert!(knobs.contains(&c.knob.as_str()), "{} is missing", c.knob);
        }
        // At a 99% target, 200 and 500 times the misses are no attainment: left out.
        assert_eq!(slo_frontier_candidates(&cfg, 0.99, 50).len(), 2 * 8);
    }

    #[test]
    fn the_worst_stretch_is_the_lowest_share_of_its_parts() {
        let buckets = [
            bucket(0.0, 100, 0),
            bucket(60.0, 100, 1),
            bucket(120.0, 100, 10),
            bucket(180.0, 100, 2),
        ];
        let of = |b: &[Bucket]| {
            b.iter()
                .map(|b| (b.t, b.arrivals, b.arrivals - b.slo_violations))
                .collect::<Vec<_>>()
        };
        let worst = stretches_of(of(&buckets), 240.0, 2)
            .and_then(|s| s.worst())
            .unwrap();
        assert!((worst.share - 0.94).abs() < 1e-12, "{worst:?}");
        assert_eq!(worst.requests, 200);
        let whole = stretches_of(of(&buckets), 240.0, 1)
            .and_then(|s| s.worst())
            .unwrap();
        assert!((whole.share - 0.9675).abs() < 1e-12);
        // A stretch with no request says nothing: no promise.
        assert_eq!(stretches_of(of(&buckets[..2]), 240.0, 2), None);
        assert_eq!(stretches_of(of(&buckets), 240.0, 0), None);
    }

    /// Quarters of 99.9, 99.8, 99.7 and 99.6% (a million requests each): mean 99.75%, sample
    /// standard deviation 0.129 points, so the bound is 99.75 - 3.182 x 0.129 x sqrt(1/2) =
    /// 99.46%, below the worst quarter's 99.6%: traffic that drifts from quarter to quarter
    /// promises less than its worst quarter. Four equal quarters promise their share less the
    /// chance in the count.
    #[test]
    fn a_promise_allows_for_traffic_that_changes_between_stretches() {
        let quarters = |shares: [f64; 4]| {
            Stretches(
                shares
                    .iter()
                    .map(|&share| Stretch {
                        share,
                        requests: 1_000_000,
                    })
                    .collect(),
            )
        };
        let drifting = quarters([0.999, 0.998, 0.997, 0.996]);
        let bound = drifting.prediction_bound().unwrap();
        assert!((bound - 0.99459).abs() < 2e-5, "{bound}");
        let promise = drifting.promise().unwrap();
        assert_eq!(promise.share, bound);
        assert_eq!(promise.basis, PromiseBasis::Spread);
        let steady = quarters([0.998; 4]);
        let worst = steady.worst().unwrap().promise();
        let promise = steady.promise().unwrap();
        assert_eq!(promise.share, worst);
        assert_eq!(promise.basis, PromiseBasis::WorstStretch);
        assert!(worst < 0.998 && worst > 0.9979, "{worst}");
    }

    fn point(family: Family, attainment: f64, replica_seconds: f64) -> Point {
        let policy = Policy::from_yaml(
            "maxReplicas: 4\nmetrics:\n- type: External\n  external: {metric: {name: q}, target: {type: AverageValue, averageValue: '1'}}\n",
        )
        .expect("a valid policy");
        Point {
            candidate: Candidate {
                family,
                knob: String::new(),
                policy,
            },
            attainment,
            replica_seconds,
            requests: 1_000_000_000,
            stretches: None,
            peak_replicas: 4,
        }
    }

    /// The plot draws each family's settings, and rings only where a setting was
    /// recommended.
    #[test]
    fn the_plot_rings_the_recommended_settings() {
        let points = [
            point(Family::EbbSlo, 0.9995, 100.0),
            point(Family::Hpa, 0.998, 80.0),
        ];
        let plain = frontier_svg(&points, 0.999, "t", &[]);
        let marked = frontier_svg(&points, 0.999, "t", &points[..1]);
        assert!(
            plain.contains("ebb-slo") && plain.contains("hpa"),
            "{plain}"
        );
        assert!(!plain.contains("recommended"), "{plain}");
        assert!(marked.contains("recommended"), "{marked}");
    }

    /// Of two settings that met 99.9% on 100,000 requests, the cheaper met it by one request
    /// in 10,000: less than the count's two standard errors (0.02 points), so not chosen.
    #[test]
    fn a_setting_that_met_the_target_by_chance_is_not_chosen() {
        let counted = |attainment, replica_seconds| Point {
            requests: 100_000,
            ..point(Family::EbbSlo, attainment, replica_seconds)
        };
        let points = [counted(0.99901, 100.0), counted(0.99930, 120.0)];
        let (chosen, standing) = choose(&points, Family::EbbSlo, 0.999).expect("a choice");
        assert_eq!(standing, Standing::Meets);
        assert_eq!(chosen.replica_seconds, 120.0);
        assert!(!points[0].meets_beyond_chance(0.999));
        // On millions of requests the allowance vanishes and the cheaper one is chosen.
        let many = |p: &Point| Point {
            requests: 100_000_000,
            ..p.clone()
        };
        let points = [many(&points[0]), many(&points[1])];
        let (chosen, _) = choose(&points, Family::EbbSlo, 0.999).expect("a choice");
        assert_eq!(chosen.replica_seconds, 100.0);
    }

    /// Quarters of the same traffic at 99.99, 99.95, 99.90 and 99.86% average 99.925% over a
    /// billion requests, beyond chance; their prediction bound for a half (99.925 - 3.182 x
    /// 0.0568 x sqrt(1/2) = 99.797%) is not. A dearer setting whose quarters are steady is
    /// chosen to promise the SLO; without one, the cheap unsteady setting is, promising its
    /// bound, not the SLO, and not the costliest setting that came closest.
    #[test]
    fn a_setting_whose_quarters_vary_promises_their_bound_unless_a_steady_one_meets() {
        let quarters = |shares: [f64; 4]| {
            Some(Stretches(
                shares
                    .iter()
                    .map(|&share| Stretch {
                        share,
                        requests: 250_000_000,
                    })
                    .collect(),
            ))
        };
        let unsteady = Point {
            stretches: quarters([0.9999, 0.9995, 0.999, 0.9986]),
            ..point(Family::EbbSlo, 0.99925, 100.0)
        };
        let steady = Point {
            stretches: quarters([0.9995; 4]),
            ..point(Family::EbbSlo, 0.9995, 130.0)
        };
        let costly = Point {
            stretches: quarters([0.9999, 0.9995, 0.999, 0.9986]),
            ..point(Family::EbbSlo, 0.99925, 500.0)
        };
        assert!(unsteady.meets_beyond_chance(0.999) && !unsteady.steady_at(0.999));
        let all = [unsteady.clone(), steady, costly.clone()];
        let (chosen, standing) = choose(&all, Family::EbbSlo, 0.999).expect("a choice");
        assert_eq!((chosen.replica_seconds, standing), (130.0, Standing::Meets));
        let without_steady = [costly, unsteady];
        let (chosen, standing) = choose(&without_steady, Family::EbbSlo, 0.999).expect("a choice");
        assert_eq!(chosen.replica_seconds, 100.0);
        let Standing::MetUnsteadily(bound) = standing else {
            panic!("{standing:?}");
        };
        assert!((bound - 0.99797).abs() < 2e-5, "{bound}");
    }

    /// Where every setting keeps the same floor of replicas, the one planning for the user's
    /// own target with the policy's own scale-down rule is chosen, not the first swept.
    #[test]
    fn of_settings_that_cost_the_same_the_least_departure_is_chosen() {
        let cfg = run_config();
        let points: Vec<Point> = slo_candidates(&cfg, 0.999, 50)
            .into_iter()
            .map(|candidate| Point {
                candidate,
                ..point(Family::EbbSlo, 0.9995, 1022.0)
            })
            .collect();
        let (chosen, standing) = choose(&points, Family::EbbSlo, 0.999).expect("a choice");
        assert_eq!(standing, Standing::Meets);
        assert_eq!(chosen.candidate.knob, "plans for 99.9%");
        // A cheaper setting still wins, whatever it plans for.
        let mut points = points;
        points[17].replica_seconds = 1000.0;
        let (chosen, _) = choose(&points, Family::EbbSlo, 0.999).expect("a choice");
        assert_eq!(
            chosen.candidate.knob,
            "plans for 99.98%, scale-down window 300s"
        );
    }

    /// Where none meets the target, the cheapest setting within the closest one's two
    /// standard errors (0.012 points over 10,000,000 requests at 96.5%) is named; one further
    /// off, or dearer, is not.
    #[test]
    fn the_cheapest_setting_as_close_within_chance_is_named() {
        let counted = |attainment, replica_seconds| Point {
            requests: 10_000_000,
            ..point(Family::Hpa, attainment, replica_seconds)
        };
        let points = [
            counted(0.96534, 570.0),
            counted(0.96525, 350.0),
            counted(0.96528, 440.0),
            counted(0.96500, 260.0),
            point(Family::EbbSlo, 0.96534, 100.0),
        ];
        let (closest, standing) = choose(&points, Family::Hpa, 0.999).expect("a choice");
        assert_eq!(standing, Standing::Closest);
        assert_eq!(closest.replica_seconds, 570.0);
        let cheaper = cheapest_as_close(&points, Family::Hpa, closest).expect("one as close");
        assert_eq!(cheaper.replica_seconds, 350.0);
        assert!(cheapest_as_close(&points[..1], Family::Hpa, closest).is_none());
    }

    /// Between two settings the cost is interpolated; where the cheapest setting already
    /// overshoots the reference's attainment, its cost is what is reported, marked a bound.
    #[test]
    fn a_frontier_is_read_between_settings_or_bounded_by_its_cheapest() {
        let reference = point(Family::Kpa, 0.95, 1000.0);
        let points = [
            point(Family::Kpa, 0.95, 1000.0),
            point(Family::Hpa, 0.90, 400.0),
            point(Family::Hpa, 1.00, 800.0),
            point(Family::EbbSlo, 0.97, 700.0),
            point(Family::EbbSlo, 0.99, 900.0),
        ];
        let hpa = against(&points, Family::Hpa, &reference);
        assert!((hpa.cost.unwrap() - 600.0).abs() < 1e-9, "{hpa:?}");
        assert!((hpa.attainment.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(hpa.cheapest_above, None);
        assert_eq!(hpa.bound_note(), None);
        let ebb = against(&points, Family::EbbSlo, &reference);
        assert_eq!(ebb.cost, Some(700.0));
        assert_eq!(ebb.cheapest_above, Some(0.97));
        assert_eq!(
            ebb.bound_note().as_deref(),
            Some("at most: its cheapest setting reaches 97.000%")
        );
        let none = against(&points, Family::HpaDutyCycle, &reference);
        assert_eq!((none.cost, none.cheapest_above), (None, None));
    }

    /// 94 of 100 within: the standard error is sqrt(0.94 x 0.06 / 100) = 2.375 points, so
    /// the promise is 94 - 4.75 = 89.25%; a million requests leave the share almost whole.
    #[test]
    fn a_promise_allows_for_the_chance_in_a_counted_share() {
        let few = Stretch {
            share: 0.94,
            requests: 100,
        };
        assert!((few.promise() - 0.8925).abs() < 1e-4, "{}", few.promise());
        let many = Stretch {
            share: 0.94,
            requests: 1_000_000,
        };
        assert!((many.promise() - 0.94).abs() < 5e-4);
        let all = Stretch {
            share: 1.0,
            requests: 5,
        };
        assert_eq!(all.promise(), 1.0);
    }
}
