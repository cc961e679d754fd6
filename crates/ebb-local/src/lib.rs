//! # ebb-local: Ebb's embedded default
//!
//! Runs a model server as local replica processes behind Ebb's own proxy. The proxy's counters
//! are the observations `ebb_core::decide` reads; the supervisor applies its decisions,
//! draining a replica before it stops so that a scale-in loses no request.

pub mod config;
pub mod demo_model;
pub mod load;
pub mod models;
pub mod multi_control;
pub mod proxy;
pub mod runtime;
pub mod service;
pub mod state;
