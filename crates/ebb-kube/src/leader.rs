//! Leader election with a `coordination.k8s.io/v1` Lease, so that two controller replicas can
//! run and only one acts. The holder renews every `retry`; a replica takes over a lease whose
//! holder has not renewed within `duration` (so within one lease duration of the holder
//! stopping). Updates carry the lease's resourceVersion, so two candidates cannot both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;

/// What a candidate does with the lease it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it, holding it.
    Create,
    /// It holds the lease: renew it.
    Renew,
    /// The holder let it expire (or released it): take it over.
    TakeOver,
    /// Someone else holds it.
    Follow,
}

/// The lease as the election reads it: holder, last renewal (ms since the epoch), duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Holder identity (empty when released).
    pub holder: String,
    /// Last renewal, ms since the Unix epoch.
    pub renewed_ms: i64,
    /// Lease duration, seconds.
    pub duration_s: i64,
}

/// The election's rule. Pure.
pub fn step(lease: Option<&LeaseView>, me: &str, now_ms: i64) -> Step {
    match lease {
        None => Step::Create,
        Some(l) if l.holder == me => Step::Renew,
        Some(l) if l.holder.is_empty() || now_ms > l.renewed_ms + l.duration_s * 1000 => {
            Step::TakeOver
        }
        Some(_) => Step::Follow,
    }
}

fn view(l: &Lease) -> LeaseView {
    let spec = l.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity.unwrap_or_default(),
        renewed_ms: spec.renew_time.map_or(0, |t| t.0.as_millisecond()),
        duration_s: i64::from(spec.lease_duration_seconds.unwrap_or(15)),
    }
}

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct Election {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This candidate (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews and others check.
    pub retry: Duration,
}

/// Runs the election forever, sending `true` while this candidate leads.
pub async fn run(client: kube::Client, e: Election, leading: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &e.namespace);
    let duration_s = e.duration.as_secs().max(1) as i32;
    loop {
        let now = Timestamp::now();
        let result: Result<bool, kube::Error> = async {
            let current = api.get_opt(&e.name).await?;
            let spec = |acquire: Option<MicroTime>, transitions: i32| LeaseSpec {
                holder_identity: Some(e.identity.clone()),
                lease_duration_seconds: Some(duration_s),
                acquire_time: acquire,
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..Default::default()
            };
            match (
                step(
                    current.as_ref().map(view).as_ref(),
                    &e.identity,
                    now.as_millisecond(),
                ),
                current,
            ) {
                (Step::Create, _) => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(e.name.clone()),
                            ..Default::default()
                        },
                        spec: Some(spec(Some(MicroTime(now)), 0)),
                    };
                    api.create(&PostParams::default(), &lease).await?;
                    Ok(true)
                }
                (Step::Renew, Some(mut l)) => {
                    let old = l.spec.clone().unwrap_or_default();
                    l.spec = Some(spec(old.acquire_time, old.lease_transitions.unwrap_or(0)));
                    api.replace(&e.name, &PostParams::default(), &l).await?;
                    Ok(true)
                }
                (Step::TakeOver, Some(mut l)) => {
                    let transitions = l
                        .spec
                        .as_ref()
                        .and_then(|s| s.lease_transitions)
                        .unwrap_or(0)
                        + 1;
                    l.spec = Some(spec(Some(MicroTime(now)), transitions));
                    // The resourceVersion in `l` makes this fail if someone else got there first.
                    api.replace(&e.name, &PostParams::default(), &l).await?;
                    tracing::info!(identity = %e.identity, lease = %e.name, "took over the lease");
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
        .await;
        let lead = match result {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "lease update failed");
                // A holder that cannot renew stops acting before its lease can expire.
                false
            }
        };
        if *leading.borrow() != lead {
            tracing::info!(identity = %e.identity, leading = lead, "leadership changed");
        }
        let _ = leading.send(lead);
        tokio::time::sleep(e.retry).await;
    }
}

/// Gives the lease up if `identity` holds it (on a graceful stop), so that another replica
/// takes over at its next poll instead of after the lease expires. A renewal still in flight
/// when the stop came can land between the read and the write: on that conflict (or another
/// retryable error) the lease is read again with the controller's usual backoff
/// (`actuate::with_backoff`) rather than left to expire.
pub async fn release(client: kube::Client, e: &Election) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, &e.namespace);
    crate::actuate::with_backoff(|| release_once(&api, e)).await
}

async fn release_once(api: &Api<Lease>, e: &Election) -> Result<bool, kube::Error> {
    let Some(mut l) = api.get_opt(&e.name).await? else {
        return Ok(false);
    };
    let holds =
        l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(e.identity.as_str());
    if !holds {
        return Ok(false);
    }
    if let Some(spec) = l.spec.as_mut() {
        spec.holder_identity = Some(String::new());
        spec.renew_time = Some(MicroTime(Timestamp::now()));
    }
    api.replace(&e.name, &PostParams::default(), &l).await?;
    tracing::info!(identity = %e.identity, lease = %e.name, "released the lease");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let held = LeaseView {
            holder: "a".into(),
            renewed_ms: 10_000,
            duration_s: 15,
        };
        assert_eq!(step(None, "a", 0), Step::Create);
        assert_eq!(step(Some(&held), "a", 20_000), Step::Renew);
        assert_eq!(
            step(Some(&held), "b", 25_000),
            Step::Follow,
            "exactly at expiry it still holds"
        );
        assert_eq!(step(Some(&held), "b", 25_001), Step::TakeOver);
        let released = LeaseView {
            holder: String::new(),
            ..held
        };
        assert_eq!(step(Some(&released), "b", 11_000), Step::TakeOver);
    }
}
