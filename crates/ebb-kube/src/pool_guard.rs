//! Disaggregated serving in the controller: two Autoscalers, one per pool (`spec.pool` names
//! the role and the partner), each deciding its own pool with its own policy, status,
//! conditions and Events. After its own decision, each raises its own pool to the ratio that
//! its partner's *own* decision asks for (`ebb_core::pools::guard`), read from the partner's
//! `status.pool` in the watch cache: the own count, before the partner's guard, so that two
//! guards never feed each other's raises back. A partner not found, of the same role, or with
//! no published decision asks for nothing (the guard only raises, so a missing partner never
//! lowers a pool).

use crate::context::Pass;
use crate::crd::{PoolRole, PoolStatus};
use ebb_core::pools::{self, Wants};
use ebb_core::{Decision, Scaler};

/// Applies the guard to `d` (this pool's decision, carried by `scaler`) and returns what this
/// pool publishes for its partner; `None` when the Autoscaler is not a pool.
pub(crate) fn guard(pass: &Pass<'_>, scaler: &mut Scaler, d: &mut Decision) -> Option<PoolStatus> {
    let pool = pass.obj.spec.pool.as_ref()?;
    let ratio = pass.obj.spec.pool_ratio().ok().flatten()?;
    let own = Wants::of(scaler.policy(), d);
    if let Some(partner) = partner_decision(pass, &pool.partner, pool.role) {
        pools::guard(ratio, pool.role.into(), scaler, d, partner);
    }
    Some(PoolStatus {
        own_replicas: own.desired,
        min_replicas: own.min,
    })
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
