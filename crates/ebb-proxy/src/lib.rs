//! # ebb-proxy: Ebb's proxy, shared by `ebb up` and `ebb gateway`
//!
//! One proxy, whichever driver finds its replicas: `ebb up` starts them as local processes,
//! the gateway learns them from a Pod watch; both hand them to [`state::ServiceState`], and
//! [`proxy::Proxy`] routes to the routable replica with the fewest requests in flight, holds
//! requests while none is ready (the activator queue), retries where that is safe, and ejects
//! replicas that keep failing ([`health`]), with its limits and timeouts from [`settings`].
//! Under it is the HTTP plumbing: listeners that survive bad clients ([`server`]), keep-alive
//! connections to the replicas driven by the request that uses them ([`upstream`], over
//! HTTP/1.1 or, for gRPC replicas, multiplexed HTTP/2), bodies that pass through as they come,
//! with the time to the first byte and the gaps between chunks measured ([`body`]), headers
//! that must not cross a proxy ([`headers`]), counts that a drop guard brings back down
//! ([`guard`], [`counters`]); the admin endpoints apart from the service port ([`admin`]); and
//! the Prometheus text format that replicas, gateways and engines serve ([`exposition`]).
#![forbid(unsafe_code)]

pub mod admin;
pub mod answers;
pub mod body;
pub mod counters;
mod dial;
pub mod exposition;
pub mod guard;
pub mod headers;
pub mod health;
pub mod histogram;
mod multiplexed;
pub mod proxy;
pub mod server;
pub mod settings;
mod silence;
pub mod state;
pub mod upstream;

/// The error a streamed body ends with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
