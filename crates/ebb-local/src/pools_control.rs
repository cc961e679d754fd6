//! `ebb up`'s control loop for a disaggregated server: two services, the prefill and decode
//! pools, observed each on its own (its proxy's counters, its engines' metrics), decided at
//! once by one `ebb_core::pools::PoolScaler` (each by its own policy, then the ratio guard),
//! and each decision carried out on its own service. Routing a request from one pool to the
//! other is the disaggregated server's router's job (vLLM's disaggregation proxy, llm-d's or
//! Dynamo's router), pointed at the two services' addresses.

use crate::config::PoolGroup;
use crate::service::Service;
use ebb_core::engine::EngineReader;
use ebb_core::pools::{Pool, PoolObservations, PoolScaler, PoolsPolicy};
use std::sync::Arc;

/// Decides both pools every sync period (the shorter of the two services'), until either
/// stops.
pub async fn control(prefill: Arc<Service>, decode: Arc<Service>, group: PoolGroup) {
    prefill.start_initial();
    decode.start_initial();
    let mut scaler = PoolScaler::new(PoolsPolicy {
        prefill: prefill.cfg.policy.clone(),
        decode: decode.cfg.policy.clone(),
        ratio: group.ratio,
    });
    let mut readers = (EngineReader::default(), EngineReader::default());
    let period = prefill.cfg.sync_period.min(decode.cfg.sync_period);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if prefill.is_stopping() || decode.is_stopping() {
            break;
        }
        let now = prefill.state.core_now();
        let obs = PoolObservations {
            prefill: prefill.observe_all(&mut readers.0, now).await,
            decode: decode.observe_all(&mut readers.1, now).await,
        };
        scaler.hold(Pool::Prefill, prefill.state.hold());
        scaler.hold(Pool::Decode, decode.state.hold());
        let d = scaler.decide(&obs, now);
        for (pool, service) in [(Pool::Prefill, &prefill), (Pool::Decode, &decode)] {
            if let Some(reached) = service.apply_decision(d.get(pool)) {
                scaler.applied(pool, reached, now);
            }
        }
    }
}
