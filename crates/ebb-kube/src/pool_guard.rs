//! Disaggregated serving in the controller: two Autoscalers, one per pool (`spec.pool` names
//! the role and the partner), each deciding its own pool with its own policy, status,
//! conditions and Events. After its own decision, each raises its own pool to the ratio that
//! its partner's *own* decision asks for (`ebb_core::pools::balance`), read from the partner's
//! `status.pool` in the watch cache: the own count, before the partner's guard, so that two
//! guards never feed each other's raises back. A partner not found, of the same role, or with
//! no published decision asks for nothing (the guard only raises, so a missing partner never
//! lowers a pool).

use crate::context::Pass;
use crate::crd::{PoolRole, PoolStatus};
use ebb_core::pools::{balance, Pool, Wants};
use ebb_core::{Decision, Policy, Reason, Scaler};

/// Applies the guard to `d` (this pool's decision, carried by `scaler`) and returns what this
/// pool publishes for its partner; `None` when the Autoscaler is not a pool.
pub(crate) fn guard(pass: &Pass<'_>, scaler: &mut Scaler, d: &mut Decision) -> Option<PoolStatus> {
    let pool = pass.obj.spec.pool.as_ref()?;
    let ratio = pass.obj.spec.pool_ratio().ok().flatten()?;
    let policy: &Policy = scaler.policy();
    let own = Wants {
        desired: d.desired_replicas,
        min: policy.min_replicas,
        max: policy.max_replicas,
        held: policy.hold.is_some(),
    };
    let published = PoolStatus {
        own_replicas: own.desired,
        min_replicas: own.min,
    };
    let Some(partner) = partner_decision(pass, &pool.partner, pool.role) else {
        return Some(published);
    };
    let (to, other) = match pool.role {
        PoolRole::Prefill => (balance(ratio, own, partner).0, partner.desired),
        PoolRole::Decode => (balance(ratio, partner, own).1, partner.desired),
    };
    if to > own.desired {
        let reason = Reason::PoolRatio {
            pool: Pool::from(pool.role).as_str().into(),
            own: own.desired,
            to,
            other,
            min: ratio.min,
            max: ratio.max,
        };
        scaler.raise(d, to, reason);
    }
    Some(published)
}

/// The partner's own decision, as the guard reads it: held, so that only this pool moves.
fn partner_decision(pass: &Pass<'_>, name: &str, role: PoolRole) -> Option<Wants> {
    let partner = pass
        .ctx
        .caches
        .autoscalers(pass.ns)
        .into_iter()
        .find(|a| a.metadata.name.as_deref() == Some(name))?;
    let other_role = partner.spec.pool.as_ref()?.role;
    if other_role == role {
        return None;
    }
    let status = partner.status.as_ref()?.pool.as_ref()?;
    Some(Wants {
        desired: status.own_replicas,
        min: status.min_replicas,
        max: status.own_replicas,
        held: true,
    })
}
