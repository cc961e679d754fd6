//! # ebb-local: Ebb's embedded default
//!
//! Runs a model server as local replica processes behind Ebb's own proxy (`ebb_proxy`, the same
//! one `ebb gateway` runs in a cluster). The proxy's counters are the observations
//! `ebb_core::decide` reads; the supervisor applies its decisions, draining a replica before
//! it stops so that a scale-in loses no request.

pub mod config;
pub mod control;
pub mod demo_body;
pub mod demo_llm;
pub mod demo_model;
pub mod engine_scrape;
pub mod fault_replica;
pub mod grpc_health;
pub mod load;
pub mod multi_control;
pub mod pools_control;
pub mod runtime;
pub mod service;
pub mod signals;
