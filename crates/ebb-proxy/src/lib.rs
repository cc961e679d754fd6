//! # ebb-proxy: the HTTP plumbing of Ebb's proxy
//!
//! What `ebb up`'s proxy needs from HTTP, kept apart from where its replicas come from so
//! that the gateway in the cluster can share it: listeners that survive bad clients
//! ([`server`]), keep-alive connections to the replicas driven by the request that uses them
//! ([`upstream`], over HTTP/1.1 or, for gRPC replicas, multiplexed HTTP/2), bodies that pass through as they come, with the time to the first byte
//! and the gaps between chunks measured ([`body`]), headers that must not cross a proxy
//! ([`headers`]), and counts that a drop guard brings back down ([`guard`], [`counters`]);
//! and the Prometheus text format that replicas, gateways and engines serve ([`exposition`]).
#![forbid(unsafe_code)]

pub mod body;
pub mod counters;
mod dial;
pub mod exposition;
pub mod guard;
pub mod headers;
pub mod histogram;
mod multiplexed;
pub mod server;
mod silence;
pub mod upstream;

/// The error a streamed body ends with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
