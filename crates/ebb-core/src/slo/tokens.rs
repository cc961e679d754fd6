//! The LLM SLO's token model: replicas from the engines' own response, so that time to first
//! token (TTFT) and the time between tokens (ITL) keep their goals.
//!
//! An engine's latencies depend on how much work each replica gets and on the work's shape:
//! long prompts make TTFT and, where their prefill shares a step with decoding, the gaps
//! between other requests' tokens; many running sequences stretch every step. A closed form
//! in one load figure misses one or the other (a step model fitted on Azure's code trace,
//! prompts of 2,048 tokens and outputs of 28, put the ITL tail on the batch and asked for
//! every replica). So the model learns the response instead, per deployment: for each level
//! of work per replica (prompt and generated tokens per second, on a log scale), the TTFT and
//! ITL quantiles the engines reported over windows at that level. Latencies only grow with
//! work, so the levels seen are made monotone (pool-adjacent-violators, weighted by how often
//! each was seen), and the work a replica may take is the highest level whose quantiles meet
//! the goals, plus one level above the highest seen (how the model learns it may take more).
//!
//! Replicas are the fleet's token rate, forecast over the cold start (Holt-Winters,
//! [`super::forecast`]), over that work per replica; the KV cache's use, which grows with the
//! work, must stay below [`KV_CEILING`]. A goal the engines miss at every level seen (a
//! prompt's own prefill can take longer than a TTFT goal) is out of reach: the plan aims just
//! above the best level rather than buy every replica, and says so. Where a window's quantile
//! is over its goal now, replicas grow in proportion at once (as an HPA `Value` target),
//! whatever the curve says; until the curve has seen enough, no fewer replicas than the
//! target has are proposed; and a replica is kept through a dip shorter than its cold start.

use super::estimate::{ColdStarts, RecentProposals};
use super::forecast::{Forecaster, Smoothing};
use super::plan::Plan;
use crate::observation::{is_fresh, is_usable, EngineSample, Observation};
use crate::policy::{LatencyGoal, TokenSlo};
use crate::reason::Reason;
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// Levels of work per replica: log-spaced from [`LOWEST_LEVEL`] tokens/s.
pub const LEVELS: usize = 96;
/// Work of the lowest level, tokens/s per replica.
pub const LOWEST_LEVEL: f64 = 1.0;
/// Each level's work over the one below: 10^(7/96), so the levels span 1 to 10^7 tokens/s.
pub const LEVEL_RATIO: f64 = 1.182_814_573_015_269_3;
/// Weight of a new window's quantile in its level's average.
pub const LEVEL_WEIGHT: f64 = 0.05;
/// Windows a level must have seen before it counts.
pub const MIN_LEVEL_WINDOWS: f64 = 5.0;
/// Windows seen in all before the model may propose fewer replicas than the target has.
pub const WARMUP_WINDOWS: f64 = 60.0;
/// The KV cache's use past which requests wait for blocks.
pub const KV_CEILING: f64 = 0.9;
/// Levels above the highest seen that the work per replica may reach in one plan.
pub const MAX_EXPLORED_LEVELS: usize = 4;
/// The two lightest levels' quantiles closer than this share show that less work per replica
/// no longer helps.
pub const FLAT_GAIN: f64 = 0.05;
/// Requests waiting for an engine per replica that ask for a replica more at once (what the
/// built-in engine policy's `waitingPerReplica` does): a queue is a TTFT miss in the making,
/// seen before the TTFT window shows it.
pub const WAITING_PER_REPLICA: f64 = 1.0;
/// How far above the best level's quantile a goal out of reach is planned for.
pub const OUT_OF_REACH_MARGIN: f64 = 1.1;
/// A replica is kept through a dip shorter than this many cold starts.
pub const KEEP_COLD_STARTS: f64 = 3.0;
/// Cold start assumed until one is measured, seconds.
pub const ASSUMED_COLD_START_SECONDS: f64 = 60.0;
/// Standard deviations of the measured cold start added to its mean for the horizon.
pub const COLD_START_SPREAD: f64 = 1.0;
/// Time constant of the token-rate forecast's level, seconds.
pub const LEVEL_SECONDS: f64 = 30.0;
/// Time constant of its trend, seconds.
pub const TREND_SECONDS: f64 = 300.0;
/// Weight of a newly closed bucket in the forecast's seasonal value.
pub const SEASON_WEIGHT: f64 = 0.3;

/// What the engines reported at one level of work: a quantile's running average and how many
/// windows it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Level {
    /// Windows seen at this level.
    pub windows: f64,
    /// Their quantile's average, seconds.
    pub seconds: f64,
}

/// One latency's response to work: a [`Level`] per level of tokens per second per replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// By level (empty until a window was seen).
    pub levels: Vec<Level>,
}

/// The level of `work` tokens/s per replica.
pub fn level_of(work: f64) -> usize {
    if work.is_nan() || work <= LOWEST_LEVEL {
        return 0;
    }
    ((work / LOWEST_LEVEL).ln() / LEVEL_RATIO.ln())
        .floor()
        .min((LEVELS - 1) as f64) as usize
}

/// The most work a level holds, tokens/s per replica.
pub fn level_top(level: usize) -> f64 {
    LOWEST_LEVEL * LEVEL_RATIO.powi(level as i32 + 1)
}

impl Response {
    /// Takes a window's quantile at `work` tokens/s per replica.
    pub fn observe(&mut self, work: f64, seconds: f64) {
        if self.levels.is_empty() {
            self.levels = vec![Level::default(); LEVELS];
        }
        let l = &mut self.levels[level_of(work)];
        l.seconds = if l.windows == 0.0 {
            seconds
        } else {
            l.seconds + LEVEL_WEIGHT * (seconds - l.seconds)
        };
        l.windows += 1.0;
    }

    /// The levels seen often enough, with their quantiles made monotone in the work
    /// (pool-adjacent-violators, weighted by windows): `(level, seconds)`, lowest first.
    pub fn monotone(&self) -> Vec<(usize, f64)> {
        // Blocks of pooled levels: (first level, last level, weight, mean).
        let mut blocks: Vec<(usize, usize, f64, f64)> = Vec::new();
        for (i, l) in self.levels.iter().enumerate() {
            if l.windows < MIN_LEVEL_WINDOWS {
                continue;
            }
            blocks.push((i, i, l.windows, l.seconds));
            while blocks.len() >= 2 {
                let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
                if a.3 <= b.3 {
                    break;
                }
                let w = a.2 + b.2;
                let merged = (a.0, b.1, w, (a.3 * a.2 + b.3 * b.2) / w);
                blocks.pop();
                *blocks.last_mut().expect("two blocks") = merged;
            }
        }
        let mut out = Vec::new();
        for (first, last, _, seconds) in blocks {
            for (i, l) in self.levels.iter().enumerate().take(last + 1).skip(first) {
                if l.windows >= MIN_LEVEL_WINDOWS {
                    out.push((i, seconds));
                }
            }
        }
        out
    }

    /// The most work per replica that keeps `goal` (tokens/s), and the goal as planned for;
    /// `None` until a level was seen often enough. Where every level seen misses the goal,
    /// the work is one level below the lightest seen (less work per replica, to learn whether
    /// it helps), unless the two lightest levels show no gain ([`FLAT_GAIN`]): then the goal is
    /// out of reach, and is planned just above the best level.
    pub fn allowed(&self, goal: f64) -> Option<(f64, f64)> {
        let curve = self.monotone();
        let &(lightest, best) = curve.first()?;
        let highest = curve.last()?.0;
        let met = curve
            .iter()
            .take_while(|(_, s)| *s <= goal)
            .last()
            .map(|(l, _)| *l);
        if let Some(met) = met {
            // Above the highest level seen, as if the quantile grew in proportion to the work
            // (one level at least, [`MAX_EXPLORED_LEVELS`] at most): how the model learns the
            // engines take more.
            let level = if met == highest {
                let headroom = goal / curve.last()?.1;
                let levels = (headroom.ln() / LEVEL_RATIO.ln()).floor();
                met + levels.clamp(1.0, MAX_EXPLORED_LEVELS as f64) as usize
            } else {
                met
            };
            return Some((level_top(level.min(LEVELS - 1)), goal));
        }
        let flat = curve
            .get(1)
            .is_some_and(|&(_, next)| next - best <= FLAT_GAIN * next);
        if flat || lightest == 0 {
            let planned = best * OUT_OF_REACH_MARGIN;
            let level = curve
                .iter()
                .take_while(|(_, s)| *s <= planned)
                .last()
                .map_or(lightest, |(l, _)| *l);
            return Some((level_top(level), planned));
        }
        Some((level_top(lightest - 1), goal))
    }

    /// Windows seen in all.
    pub fn windows(&self) -> f64 {
        self.levels.iter().map(|l| l.windows).sum()
    }
}

/// The token model's state carried from one decision to the next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenSloState {
    /// TTFT's quantile against work per replica.
    #[serde(default)]
    pub ttft: Response,
    /// ITL's quantile against work per replica.
    #[serde(default)]
    pub itl: Response,
    /// Forecaster of the fleet's token rate, tokens/s.
    #[serde(default)]
    pub forecast: Forecaster,
    /// The last sample's time.
    pub last_at: Option<Time>,
    /// The last time requests were seen waiting for an engine.
    #[serde(default)]
    pub last_queue_at: Option<Time>,
    /// Cold starts measured.
    #[serde(flatten)]
    pub cold: ColdStarts,
    /// What the response sized recently, for the keep-through-a-dip rule.
    #[serde(default)]
    pub recent: RecentProposals,
}

/// What one goal allows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Allowance {
    /// Work per replica, tokens/s (`None` until learnt).
    work: Option<f64>,
    /// The goal planned for, seconds.
    planned: f64,
    /// Replicas the quantile measured now asks for (more than now only when it is over).
    now_asks: u32,
}

fn allowance(
    goal: &LatencyGoal,
    response: &Response,
    measured: Option<f64>,
    current: u32,
) -> Allowance {
    let (work, planned) = match response.allowed(goal.seconds) {
        Some((w, g)) => (Some(w), g),
        None => (None, goal.seconds),
    };
    let now_asks = match measured {
        Some(m) if m > planned => (f64::from(current) * m / planned).ceil() as u32,
        _ => 0,
    };
    Allowance {
        work,
        planned,
        now_asks,
    }
}

fn smoothing(slo: &TokenSlo) -> Smoothing {
    Smoothing {
        level_seconds: LEVEL_SECONDS,
        level_requests: 0.0,
        trend_seconds: TREND_SECONDS,
        season_seconds: slo.season_seconds,
        season_weight: SEASON_WEIGHT,
    }
}

/// A finite, positive reading.
fn usable(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v > 0.0)
}

/// Takes the sample into the state (the responses, the forecast); returns the fleet's token
/// rate, or why the sample says nothing usable.
fn observe(
    slo: &TokenSlo,
    state: &mut TokenSloState,
    sample: &EngineSample,
    window_ms: i64,
) -> Result<f64, String> {
    if sample.replicas == 0 {
        return Err("no serving replica to read".into());
    }
    let Some(rate) = sample.tokens_per_second.filter(|v| is_usable(*v)) else {
        return Err("no token counts over the window yet".into());
    };
    if state.last_at.is_some_and(|t| sample.at <= t) {
        return Err("no new engine sample since the last decision".into());
    }
    let dt = state
        .last_at
        .map_or(1.0, |t| sample.at.seconds_since(t))
        .max(1e-3);
    state.last_at = Some(sample.at);
    let work = rate / f64::from(sample.replicas);
    // A request or so waiting between steps is how continuous batching admits; more than
    // one per replica is a queue.
    if sample.waiting.is_finite()
        && sample.waiting > WAITING_PER_REPLICA * f64::from(sample.replicas)
    {
        state.last_queue_at = Some(sample.at);
    }
    // The engines' own response, not a backlog's: a window that holds replicas starting, or
    // requests that waited in a queue (built while there were too few replicas, and drained
    // by more), says how the past was sized, not what this level of work does.
    let settled = state
        .last_queue_at
        .is_none_or(|q| sample.at.millis_since(q) > window_ms);
    if !sample.starting && settled {
        for (goal, response, quantile) in [
            (slo.ttft, &mut state.ttft, sample.ttft_quantile),
            (slo.itl, &mut state.itl, sample.itl_quantile),
        ] {
            if let (Some(_), Some(q)) = (goal, usable(quantile)) {
                response.observe(work, q);
            }
        }
    }
    state.forecast.observe(rate, sample.at, dt, &smoothing(slo));
    Ok(rate)
}

/// Plans replicas for the LLM SLO from the observation, advancing `state`.
/// `window_ms`: the engine block's window, over which the sample's quantiles were read.
pub fn plan(
    slo: &TokenSlo,
    state: &mut TokenSloState,
    obs: &Observation,
    (max_replicas, window_ms): (u32, i64),
    now: Time,
    stale_after_ms: i64,
) -> Plan {
    state.cold.observe_pods(&obs.pods, now);
    let Some(sample) = obs
        .engine
        .as_ref()
        .filter(|s| is_fresh(s.at, now, stale_after_ms) && s.at <= now)
    else {
        return Plan::Missing("no fresh engine sample for the LLM SLO".into());
    };
    let measured_rate = match observe(slo, state, sample, window_ms) {
        Ok(v) => v,
        Err(why) => return Plan::Missing(why),
    };
    let (cold, cold_starts_measured, _) = state.cold.horizon(
        slo.cold_start_seconds,
        ASSUMED_COLD_START_SECONDS,
        COLD_START_SPREAD,
    );
    let level = state.forecast.at_horizon(0.0, &smoothing(slo));
    let ahead = state.forecast.peak_within(cold, &smoothing(slo));
    let planned_rate = measured_rate.max(ahead);
    let current = obs.current_replicas.max(sample.replicas);
    let s = size(slo, state, sample, (measured_rate, planned_rate), current);
    let mut replicas = s.sized.max(s.at_once).clamp(1, max_replicas.max(1));
    if s.learning {
        replicas = replicas.max(current.min(max_replicas));
    }
    let needed = replicas;
    let keep_ms = (cold * KEEP_COLD_STARTS * 1000.0) as i64;
    let replicas = keep_through_dips(state, (now, keep_ms), s.sized.min(needed), needed, current);
    let goal = |g: Option<LatencyGoal>, a: &Option<Allowance>| {
        g.zip(*a).map(|(g, a)| crate::reason::TokenGoal {
            seconds: g.seconds,
            attainment: g.attainment,
            planned_seconds: a.planned,
            work: a.work,
        })
    };
    let reasons = vec![Reason::TokenSloPlan {
        ttft: goal(slo.ttft, &s.goals[0]),
        itl: goal(slo.itl, &s.goals[1]),
        replicas: needed,
        proposed: replicas,
        tokens_per_second: planned_rate,
        forecast_percent: super::percent_over(ahead, level),
        level_percent: super::percent_over(level, measured_rate),
        level_seconds: LEVEL_SECONDS,
        kv_work: s.kv_work,
        over_now: s.at_once > s.sized,
        learning: s.learning,
        cold_start_seconds: cold,
        cold_starts_measured,
        cold_start_widened: super::estimate::widened_while_few(cold_starts_measured),
    }];
    Plan::Proposal {
        replicas,
        rate: planned_rate,
        reasons,
    }
}

/// What the goals and the engines' state ask for.
struct Sizing {
    /// What each goal allows (TTFT, ITL).
    goals: [Option<Allowance>; 2],
    /// Work per replica the KV cache allows, tokens/s.
    kv_work: Option<f64>,
    /// Replicas for the planned rate at the least allowed work.
    sized: u32,
    /// Replicas a queue or a quantile over its goal asks for at once.
    at_once: u32,
    /// Whether a response is still being learnt (no scale-down then).
    learning: bool,
}

/// Sizes `planned` tokens/s by the responses learnt, the KV cache, the queue and the
/// quantiles now (`measured`: the token rate now).
fn size(
    slo: &TokenSlo,
    state: &TokenSloState,
    sample: &EngineSample,
    (measured, planned): (f64, f64),
    current: u32,
) -> Sizing {
    let steady = !sample.starting;
    let now_asks = |g: &LatencyGoal, r: &Response, q: Option<f64>| {
        allowance(g, r, usable(q).filter(|_| steady), current)
    };
    let goals = [
        slo.ttft
            .map(|g| now_asks(&g, &state.ttft, sample.ttft_quantile)),
        slo.itl
            .map(|g| now_asks(&g, &state.itl, sample.itl_quantile)),
    ];
    let work_now = measured / f64::from(sample.replicas.max(1));
    let kv_work = sample
        .kv_cache
        .filter(|kv| kv.is_finite() && *kv > 0.0 && work_now > 0.0)
        .map(|kv| work_now * KV_CEILING / kv);
    let allowed = goals
        .iter()
        .flatten()
        .filter_map(|a| a.work)
        .chain(kv_work)
        .fold(f64::INFINITY, f64::min);
    let sized = if allowed.is_finite() && allowed > 0.0 {
        ((planned / allowed).ceil() as u32).max(1)
    } else {
        current
    };
    let queued = if sample.waiting.is_finite() && sample.waiting > 0.0 {
        (sample.waiting / WAITING_PER_REPLICA).ceil() as u32
    } else {
        0
    };
    let at_once = goals
        .iter()
        .flatten()
        .map(|a| a.now_asks)
        .chain([queued])
        .max()
        .unwrap_or(0);
    let learnt = goals.iter().flatten().all(|a| a.work.is_some());
    let warm = [
        (&state.ttft, slo.ttft.is_some()),
        (&state.itl, slo.itl.is_some()),
    ]
    .iter()
    .all(|(r, wanted)| !wanted || r.windows() >= WARMUP_WINDOWS);
    Sizing {
        goals,
        kv_work,
        sized,
        at_once,
        learning: !(learnt && warm),
    }
}

/// `replicas`, or more where a dip below what was sized in the last `keep_ms` is shorter
/// than that (never more than `current`): the ski-rental rule over a few cold starts. Only
/// what the response sized (`sized`) is remembered; what a queue or a quantile over its goal
/// asked for on top is not (a burst answered is no level to keep).
fn keep_through_dips(
    state: &mut TokenSloState,
    (now, keep_ms): (Time, i64),
    sized: u32,
    replicas: u32,
    current: u32,
) -> u32 {
    // `sized` is at most `replicas`, so remembering it first leaves the comparison as it was.
    let kept = state.recent.remember(sized, now, keep_ms);
    if kept > replicas && replicas < current {
        kept.min(current)
    } else {
        replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_log_spaced_and_bounded() {
        assert_eq!(level_of(0.0), 0);
        assert_eq!(level_of(f64::NAN), 0);
        assert_eq!(level_of(1e12), LEVELS - 1);
        let l = level_of(1000.0);
        assert!(level_top(l) > 1000.0 && level_top(l) / LEVEL_RATIO <= 1000.0 * (1.0 + 1e-9));
        assert!((level_top(LEVELS - 1) / 1e7 - 1.0).abs() < 1e-6);
    }

    fn same(a: f64, b: f64) -> bool {
        (a / b - 1.0).abs() < 1e-9
    }

    /// A response whose quantile is `f(work)` at the levels of `works`, each seen ten times.
    fn response(works: &[f64], f: impl Fn(f64) -> f64) -> Response {
        let mut r = Response::default();
        for &w in works {
            for _ in 0..10 {
                r.observe(w, f(w));
            }
        }
        r
    }

    #[test]
    fn the_allowed_work_is_the_highest_level_that_meets_the_goal() {
        // 0.1 s plus 1 ms per 10 tokens/s: a 1 s goal holds up to 9,000 tokens/s.
        let works: Vec<f64> = (1..=40).map(|i| f64::from(i) * 500.0).collect();
        let r = response(&works, |w| 0.1 + w / 10_000.0);
        let (allowed, goal) = r.allowed(1.0).expect("learnt");
        assert_eq!(goal, 1.0);
        assert!((8_000.0..=10_700.0).contains(&allowed), "{allowed}");
    }

    #[test]
    fn levels_above_the_highest_seen_are_allowed_by_the_headroom() {
        let seen = level_of(1_000.0);
        // At 0.9 s of a 1 s goal: one level (the least).
        let allowed = |q: f64| response(&[1_000.0], |_| q).allowed(1.0).expect("learnt").0;
        assert!(same(allowed(0.9), level_top(seen + 1)));
        // At 0.6 s: 1/0.6 = 1.67, three levels of 1.18 (1.65).
        assert!(same(allowed(0.6), level_top(seen + 3)));
        // At 0.1 s: at most four.
        assert!(same(allowed(0.1), level_top(seen + MAX_EXPLORED_LEVELS)));
    }

    #[test]
    fn noise_against_the_work_is_pooled_into_a_monotone_curve() {
        // A slow window at light work (one long prompt) and fast ones above it.
        let mut r = response(&[2_000.0, 4_000.0], |_| 0.3);
        for _ in 0..10 {
            r.observe(500.0, 2.0);
        }
        let curve = r.monotone();
        assert_eq!(curve.len(), 3);
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "{curve:?}");
        // Pooled: (2 x 10 + 0.3 x 10 + 0.3 x 10) / 30 = 0.87.
        assert!((curve[0].1 - 0.8667).abs() < 1e-3, "{curve:?}");
    }

    #[test]
    fn a_goal_missed_where_less_work_no_longer_helps_is_planned_just_above_the_best() {
        // 3 s at any work: a prompt's own prefill.
        let works: Vec<f64> = (1..=20).map(|i| f64::from(i) * 100.0).collect();
        let r = response(&works, |w| 3.0 + w / 100_000.0);
        let (allowed, goal) = r.allowed(1.0).expect("learnt");
        assert!((goal - 3.001 * OUT_OF_REACH_MARGIN).abs() < 0.01, "{goal}");
        assert!(allowed > 1_000.0, "{allowed}");
    }

    #[test]
    fn a_goal_missed_where_less_work_still_helps_asks_for_less_work() {
        let works: Vec<f64> = (10..=20).map(|i| f64::from(i) * 100.0).collect();
        let r = response(&works, |w| w / 1000.0);
        let (allowed, goal) = r.allowed(0.5).expect("learnt");
        assert_eq!(goal, 0.5);
        assert!(same(allowed, level_top(level_of(1000.0) - 1)), "{allowed}");
    }

    #[test]
    fn nothing_is_allowed_before_a_level_was_seen_enough() {
        let mut r = Response::default();
        r.observe(100.0, 0.1);
        assert_eq!(r.allowed(1.0), None);
    }
}
