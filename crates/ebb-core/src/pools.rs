//! Disaggregated LLM serving: one autoscaler for the two pools of a server that runs prefill
//! and decode on separate replicas (vLLM's and SGLang's P/D disaggregation, NVIDIA Dynamo,
//! llm-d). Each pool has a whole policy of its own, so each scales on its own signals
//! (prefill on waiting prompts and TTFT, decode on KV-cache use and the gaps between tokens);
//! a ratio guard then keeps the pools in proportion, because a pool that lags the other
//! starves it: decode replicas without prefill capacity sit idle while prompts queue, prefill
//! replicas without decode capacity fill the decode caches until transfers wait.
//!
//! The guard only raises: a pool below the ratio that the other pool's count asks for gets
//! the replicas it lacks (within its own `maxReplicas`), and no pool is ever lowered for the
//! ratio, so a missing metric still never causes a scale-down. An operator's hold on a pool
//! wins over the guard.

use crate::decide::Decision;
use crate::observation::Observation;
use crate::policy::spec::PolicySpec;
use crate::policy::{FieldError, Policy, PolicyError};
use crate::reason::Reason;
use crate::scaler::Scaler;
use crate::state::State;
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the two pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Pool {
    /// Replicas that compute prompts and hand their KV cache on.
    Prefill,
    /// Replicas that generate the tokens from a handed-on KV cache.
    Decode,
}

impl Pool {
    /// Both, prefill first.
    pub const BOTH: [Pool; 2] = [Pool::Prefill, Pool::Decode];

    /// Its name in documents and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Prefill => "prefill",
            Pool::Decode => "decode",
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of something per pool: what every driver keeps twice (observations, decisions,
/// scalers, fleets, pipelines), reached by [`Pool`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pair<T> {
    /// The prefill pool's.
    pub prefill: T,
    /// The decode pool's.
    pub decode: T,
}

impl<T> Pair<T> {
    /// The one of `pool`.
    pub fn get(&self, pool: Pool) -> &T {
        match pool {
            Pool::Prefill => &self.prefill,
            Pool::Decode => &self.decode,
        }
    }

    /// The one of `pool`, to change.
    pub fn get_mut(&mut self, pool: Pool) -> &mut T {
        match pool {
            Pool::Prefill => &mut self.prefill,
            Pool::Decode => &mut self.decode,
        }
    }
}

/// The `pools` document as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolsDocument {
    /// The two pools and their guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<PoolsSpec>,
}

/// The two pools' policies and the guard between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolsSpec {
    /// The prefill pool's policy (any policy: an `engine` block, an `slo` with `ttft`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<PolicySpec>,
    /// The decode pool's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<PolicySpec>,
    /// Decode replicas per prefill replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<RatioSpec>,
}

/// The guard as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RatioSpec {
    /// Fewest decode replicas per prefill replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Most decode replicas per prefill replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// Decode replicas per prefill replica that the guard keeps, between `min` and `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// Fewest decode replicas per prefill replica (0: no lower bound).
    pub min: f64,
    /// Most decode replicas per prefill replica (infinite: no upper bound).
    pub max: f64,
}

impl Ratio {
    /// No guard at all.
    pub const ANY: Ratio = Ratio {
        min: 0.0,
        max: f64::INFINITY,
    };
}

/// A validated pools policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolsPolicy {
    /// The prefill pool's policy.
    pub prefill: Policy,
    /// The decode pool's policy.
    pub decode: Policy,
    /// The guard.
    pub ratio: Ratio,
}

impl PoolsPolicy {
    /// Parses and validates a YAML (or JSON) `pools` document; errors carry the whole path
    /// (`pools.decode.engine.kvCacheUtilization`).
    pub fn from_yaml(text: &str) -> Result<PoolsPolicy, PolicyError> {
        let doc: PoolsDocument = crate::policy::validate::parse_document(text)?;
        PoolsPolicy::from_document(&doc)
    }

    /// Validates a parsed document.
    pub fn from_document(doc: &PoolsDocument) -> Result<PoolsPolicy, PolicyError> {
        let mut errors = Vec::new();
        let Some(spec) = &doc.pools else {
            return Err(PolicyError {
                errors: vec![field("pools", "is required: prefill, decode and ratio")],
            });
        };
        let mut pool = |name: &str, spec: &Option<PolicySpec>| match spec {
            None => {
                errors.push(field(&format!("pools.{name}"), "is required: a policy"));
                None
            }
            Some(s) => Policy::from_spec(s)
                .map_err(|e| {
                    errors.extend(e.errors.into_iter().map(|f| FieldError {
                        path: prefixed(&format!("pools.{name}"), &f.path),
                        reason: f.reason,
                    }))
                })
                .ok(),
        };
        let prefill = pool("prefill", &spec.prefill);
        let decode = pool("decode", &spec.decode);
        let ratio = Ratio::from_spec(spec.ratio.as_ref(), "pools.ratio").unwrap_or_else(|e| {
            errors.extend(e);
            Ratio::ANY
        });
        match (prefill, decode) {
            (Some(prefill), Some(decode)) if errors.is_empty() => Ok(PoolsPolicy {
                prefill,
                decode,
                ratio,
            }),
            _ => Err(PolicyError { errors }),
        }
    }

    /// The normalized document: every default written out.
    pub fn to_document(&self) -> PoolsDocument {
        let bound = |v: f64| v.is_finite().then_some(v);
        PoolsDocument {
            pools: Some(PoolsSpec {
                prefill: Some(self.prefill.to_spec()),
                decode: Some(self.decode.to_spec()),
                ratio: Some(RatioSpec {
                    min: Some(self.ratio.min),
                    max: bound(self.ratio.max),
                }),
            }),
        }
    }
}

fn field(path: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        reason: reason.into(),
    }
}

fn prefixed(prefix: &str, path: &str) -> String {
    match path {
        "" => prefix.to_string(),
        p if p.starts_with('[') => format!("{prefix}{p}"),
        p => format!("{prefix}.{p}"),
    }
}

impl Ratio {
    /// The guard as written at `path`, or errors for bounds that are not finite and
    /// positive, or crossed; no guard where none is written.
    pub fn from_spec(spec: Option<&RatioSpec>, path: &str) -> Result<Ratio, Vec<FieldError>> {
        let Some(spec) = spec else {
            return Ok(Ratio::ANY);
        };
        let mut errors = Vec::new();
        let mut bound = |name: &str, value: Option<f64>, default: f64| match value {
            None => default,
            Some(v) if v.is_finite() && v > 0.0 => v,
            Some(v) => {
                errors.push(field(
                    &format!("{path}.{name}"),
                    format!(
                        "must be a positive number of decode replicas per prefill replica, got {v}"
                    ),
                ));
                default
            }
        };
        let min = bound("min", spec.min, 0.0);
        let max = bound("max", spec.max, f64::INFINITY);
        if min > max {
            errors.push(field(path, format!("min ({min}) is above max ({max})")));
        }
        if errors.is_empty() {
            Ok(Ratio { min, max })
        } else {
            Err(errors)
        }
    }
}

/// What a pool's own policy wants and the most it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    /// Replicas its own policy decided.
    pub desired: u32,
    /// Its `minReplicas`: a pool held at its floor shows no demand, and asks nothing of the
    /// other pool (one decode replica kept by `minReplicas: 1` must not keep prefill
    /// replicas that one decode replica's ratio would ask for).
    pub min: u32,
    /// Its `maxReplicas`.
    pub max: u32,
    /// An operator holds its count: the guard leaves it.
    pub held: bool,
}

/// What each pool's partner asks of it under the ratio (prefill, decode), before any maximum
/// or hold: decode `ceil(min x prefill)`, prefill `ceil(decode / max)`. A pool at its floor
/// asks nothing.
pub fn asked(ratio: Ratio, prefill: Wants, decode: Wants) -> (u32, u32) {
    let demand = |w: Wants| if w.desired > w.min { w.desired } else { 0 };
    (
        clamp_count((f64::from(demand(decode)) / ratio.max).ceil()),
        clamp_count((ratio.min * f64::from(demand(prefill))).ceil()),
    )
}

/// Each pool's count after the guard: a pool below what the other pool's own count asks for
/// ([`asked`]) is raised to it, within its maximum; never below what its own policy wants.
/// Only one pool can be short (decode below `min` x prefill and above `max` x prefill at once
/// would need `min > max`), so one pass settles it; a raise is not fed back, which with a
/// ratio no whole counts meet (min = max = 1.3) would walk both pools up to their maxima.
pub fn balance(ratio: Ratio, prefill: Wants, decode: Wants) -> (u32, u32) {
    let room = |w: Wants| {
        if w.held {
            w.desired
        } else {
            w.max.max(w.desired)
        }
    };
    let (p_asked, d_asked) = asked(ratio, prefill, decode);
    (
        prefill.desired.max(p_asked.min(room(prefill))),
        decode.desired.max(d_asked.min(room(decode))),
    )
}

impl Wants {
    /// What `policy` decided in `d`, with its bounds and hold.
    pub fn of(policy: &Policy, d: &Decision) -> Wants {
        Wants {
            desired: d.desired_replicas,
            min: policy.min_replicas,
            max: policy.max_replicas,
            held: policy.hold.is_some(),
        }
    }
}

/// The guard on one pool: `d`, the decision `scaler` just made for `pool`, is raised to what
/// `partner` (the other pool's own decision) asks ([`Reason::PoolRatio`]); where its
/// maximum or a hold keeps it below that, it says so ([`Reason::PoolRatioShort`]). Every
/// driver's guard is this one: [`PoolScaler`] runs it on both pools at once, the controller on
/// its own pool with its partner's published decision.
pub fn guard(ratio: Ratio, pool: Pool, scaler: &mut Scaler, d: &mut Decision, partner: Wants) {
    let own = Wants::of(scaler.policy(), d);
    let (asked, to) = match pool {
        Pool::Prefill => (asked(ratio, own, partner).0, balance(ratio, own, partner).0),
        Pool::Decode => (asked(ratio, partner, own).1, balance(ratio, partner, own).1),
    };
    let (min, max) = (ratio.min, ratio.max);
    if to > own.desired {
        let reason = Reason::PoolRatio {
            pool: pool.as_str().into(),
            own: own.desired,
            to,
            other: partner.desired,
            min,
            max,
        };
        scaler.raise(d, to, reason);
    }
    if asked > d.desired_replicas {
        d.reasons.push(Reason::PoolRatioShort {
            pool: pool.as_str().into(),
            count: d.desired_replicas,
            other: partner.desired,
            min,
            max,
        });
    }
}

fn clamp_count(v: f64) -> u32 {
    if v.is_finite() {
        v.clamp(0.0, f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// What each pool was observed to have.
pub type PoolObservations = Pair<Observation>;

/// Both pools' decisions.
pub type PoolDecision = Pair<Decision>;

/// The pools' policy with the state their decisions carry: one [`Scaler`] per pool, and the
/// guard between them.
#[derive(Debug, Clone)]
pub struct PoolScaler {
    scalers: Pair<Scaler>,
    ratio: Ratio,
}

impl PoolScaler {
    /// Scalers with no history.
    pub fn new(policy: PoolsPolicy) -> PoolScaler {
        PoolScaler::with_states(policy, State::default(), State::default())
    }

    /// Scalers resuming from each pool's state.
    pub fn with_states(policy: PoolsPolicy, prefill: State, decode: State) -> PoolScaler {
        PoolScaler {
            scalers: Pair {
                prefill: Scaler::with_state(policy.prefill, prefill),
                decode: Scaler::with_state(policy.decode, decode),
            },
            ratio: policy.ratio,
        }
    }

    /// One pool's scaler (its policy, its state).
    pub fn pool(&self, pool: Pool) -> &Scaler {
        self.scalers.get(pool)
    }

    /// Decides both pools from their observations, then applies the [`guard`] to each, with
    /// the other pool's own decision. Each pool's decision waits for
    /// [`applied`](Self::applied) as a [`Scaler`]'s does.
    pub fn decide(&mut self, obs: &PoolObservations, now: Time) -> PoolDecision {
        let mut d = Pair {
            prefill: self.scalers.prefill.decide(&obs.prefill, now),
            decode: self.scalers.decode.decide(&obs.decode, now),
        };
        let wants = |pool: Pool| Wants::of(self.scalers.get(pool).policy(), d.get(pool));
        let (prefill, decode) = (wants(Pool::Prefill), wants(Pool::Decode));
        for (pool, partner) in [(Pool::Prefill, decode), (Pool::Decode, prefill)] {
            guard(
                self.ratio,
                pool,
                self.scalers.get_mut(pool),
                d.get_mut(pool),
                partner,
            );
        }
        d
    }

    /// An operator's hold on one pool's count (pause), or `None` to let it scale again; the
    /// guard leaves a held pool as it is.
    pub fn hold(&mut self, pool: Pool, hold: Option<crate::policy::Hold>) {
        self.scalers.get_mut(pool).hold(hold);
    }

    /// The driver reached `reached` replicas of `pool` at `at`.
    pub fn applied(&mut self, pool: Pool, reached: u32, at: Time) {
        self.scalers.get_mut(pool).applied(reached, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wants(desired: u32, max: u32) -> Wants {
        Wants {
            desired,
            min: 0,
            max,
            held: false,
        }
    }

    #[test]
    fn the_guard_raises_the_lagging_pool_and_never_lowers_one() {
        let r = Ratio { min: 1.0, max: 3.0 };
        // Decode at 2 for 4 prefill replicas: raised to 4.
        assert_eq!(balance(r, wants(4, 10), wants(2, 10)), (4, 4));
        // Decode at 9 for 1 prefill replica: prefill raised to 3.
        assert_eq!(balance(r, wants(1, 10), wants(9, 10)), (3, 9));
        // Within the ratio: both as they are.
        assert_eq!(balance(r, wants(2, 10), wants(5, 10)), (2, 5));
        // No guard: as they are.
        assert_eq!(balance(Ratio::ANY, wants(7, 10), wants(1, 10)), (7, 1));
    }

    #[test]
    fn the_guard_stops_at_a_maximum_and_at_a_hold() {
        let r = Ratio { min: 2.0, max: 4.0 };
        assert_eq!(balance(r, wants(5, 10), wants(1, 6)), (5, 6));
        let held = Wants {
            desired: 1,
            min: 0,
            max: 10,
            held: true,
        };
        assert_eq!(balance(r, wants(5, 10), held), (5, 1));
        // A maximum below the current count never lowers it.
        assert_eq!(balance(r, wants(3, 10), wants(8, 4)), (3, 8));
    }

    #[test]
    fn a_pool_at_its_floor_asks_nothing_of_the_other() {
        // At most 0.2 decode per prefill: one decode replica would ask for 5 prefill, but it
        // is only there because minReplicas is 1.
        let r = Ratio {
            min: 0.05,
            max: 0.2,
        };
        let floor = Wants {
            desired: 1,
            min: 1,
            max: 10,
            held: false,
        };
        assert_eq!(balance(r, wants(1, 10), floor), (1, 1));
        let busy = Wants {
            desired: 2,
            ..floor
        };
        assert_eq!(balance(r, wants(1, 10), busy), (10, 2));
    }

    /// Two pools on external desired counts, prefill with a floor of 3, 1-4 decode replicas
    /// per prefill replica; each pool's count asks for `wanted`.
    fn floor_of_three(prefill: f64, decode: f64) -> PoolDecision {
        let pool = |min: u32| {
            format!(
                "{{minReplicas: {min}, maxReplicas: 10, externalCount: {{mode: desiredReplicas}}}}"
            )
        };
        let text = format!(
            "pools:\n  prefill: {}\n  decode: {}\n  ratio: {{min: 1, max: 4}}\n",
            pool(3),
            pool(1)
        );
        let mut s = PoolScaler::new(PoolsPolicy::from_yaml(&text).unwrap());
        let now = Time::from_secs(100);
        let at = |current: u32, wanted: f64| Observation {
            current_replicas: current,
            external_count: Some(crate::Sample {
                value: wanted,
                at: now,
            }),
            ..Observation::default()
        };
        s.decide(
            &Pair {
                prefill: at(3, prefill),
                decode: at(1, decode),
            },
            now,
        )
    }

    #[test]
    fn a_pool_at_its_floor_is_neither_followed_nor_reported_short() {
        // Prefill at its floor of 3: no demand, so decode stays at 1 and nothing is short.
        let d = floor_of_three(1.0, 1.0);
        assert_eq!(
            (d.prefill.desired_replicas, d.decode.desired_replicas),
            (3, 1)
        );
        for r in d.prefill.reasons.iter().chain(&d.decode.reasons) {
            assert!(
                !matches!(r, Reason::PoolRatio { .. } | Reason::PoolRatioShort { .. }),
                "{r}"
            );
        }
        // Prefill asking for 5 is demand: decode follows to 5.
        let d = floor_of_three(5.0, 1.0);
        assert_eq!(d.decode.desired_replicas, 5, "{}", d.decode.summary());
        assert!(d.decode.has_reason("PoolRatio"));
        assert!(!d.decode.has_reason("PoolRatioShort"));
    }

    #[test]
    fn a_raise_is_rounded_up_and_not_chased() {
        // min = max = 1.3: one prefill replica needs 2 decode (1.3 rounded up); that 2 is
        // not 1.3 either, but feeding it back would walk both pools to their maxima.
        let r = Ratio { min: 1.3, max: 1.3 };
        assert_eq!(balance(r, wants(1, 50), wants(1, 50)), (1, 2));
        assert_eq!(balance(r, wants(1, 50), wants(13, 50)), (10, 13));
    }

    #[test]
    fn errors_name_the_pool_and_the_field() {
        let e = PoolsPolicy::from_yaml(
            "pools:\n  prefill: {maxReplicas: 0}\n  decode: {minReplicas: 1}\n  ratio: {min: 3, max: 1}\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("pools.prefill.maxReplicas"), "{text}");
        assert!(text.contains("pools.decode.maxReplicas"), "{text}");
        assert!(
            text.contains("pools.ratio: min (3) is above max (1)"),
            "{text}"
        );
        let e = PoolsPolicy::from_yaml("pools:\n  prefill: {maxReplicas: 2, bogus: 1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pools.prefill"), "{e}");
        assert!(e.contains("bogus"), "{e}");
        let e = PoolsPolicy::from_yaml("pools:\n  ratio: {min: -1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pools.prefill: is required"), "{e}");
        assert!(
            e.contains("pools.ratio.min: must be a positive number"),
            "{e}"
        );
    }

    #[test]
    fn the_normalized_document_reads_back_the_same() {
        let p = PoolsPolicy::from_yaml(
            "pools:\n  prefill: {maxReplicas: 4, engine: {kind: vllm, waitingPerReplica: 2}}\n  decode: {maxReplicas: 8, engine: {kind: vllm, kvCacheUtilization: 0.8}}\n  ratio: {min: 1}\n",
        )
        .unwrap();
        assert_eq!(p.ratio.max, f64::INFINITY);
        let text = serde_yaml::to_string(&p.to_document()).unwrap();
        assert_eq!(PoolsPolicy::from_yaml(&text).unwrap(), p, "{text}");
    }
}
