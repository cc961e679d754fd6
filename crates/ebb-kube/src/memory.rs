//! What the controller remembers of each Autoscaler between reconciles: each source's last
//! poll (values, errors, counters for rates), the decision state it reached, and the status it
//! last wrote. Plain data: the reconcile stages fill it, the context keeps it.

use crate::crd::{AutoscalerStatus, SourceSpec};
use crate::sources::SourceValue;
use ebb_core::{State, Time};
use std::collections::BTreeMap;

/// What this instance remembers of one Autoscaler between reconciles.
#[derive(Default)]
pub(crate) struct Memory {
    /// Each source's last poll.
    pub(crate) sources: Vec<SourceMemory>,
    /// The decision state after the last decision (newer than any status the cache shows).
    pub(crate) state: Option<State>,
    /// The status this instance last wrote, to skip writes that would change nothing.
    pub(crate) written: Option<AutoscalerStatus>,
    /// When it wrote it (writes of numbers alone wait for a refresh after it).
    pub(crate) written_at: Option<Time>,
    /// The count this instance last set on the target, and when (the watch cache may not
    /// show it yet).
    pub(crate) scaled: Option<(u32, Time)>,
    /// Dry-run mode: when the last pass counted replica-seconds.
    pub(crate) dry_run_at: Option<Time>,
    /// The engine block's histogram counts per pod, for its percentiles' window.
    pub(crate) engine: ebb_core::engine::EngineReader,
}

/// How many counters a traffic source keeps per pod: arrivals, completions, the service
/// time's count, sum, sum of squares and count within the SLO, and the answers that ended
/// and those within the SLO as their clients saw them.
pub(crate) const TRAFFIC_COUNTERS: usize = 8;

/// One source's memory between reconciles.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceMemory {
    pub(crate) spec: Option<SourceSpec>,
    /// When it was last polled, on the context's clock (so that tests move it).
    pub(crate) last_poll: Option<Time>,
    pub(crate) value: Option<SourceValue>,
    pub(crate) at: Option<Time>,
    pub(crate) error: Option<String>,
    pub(crate) reported_error: Option<String>,
    /// What is wrong with a value that is still used (a gateway counting service times with
    /// slots other than the policy's), and what was last said of it in an Event.
    pub(crate) warning: Option<String>,
    pub(crate) reported_warning: Option<String>,
    /// The last poll's warning, not yet confirmed: a gateway that has just started may be
    /// scraped before it has read its Autoscaler, so a warning stands once two polls in a
    /// row find it.
    pub(crate) unconfirmed_warning: Option<String>,
    /// Failed polls in a row (for the source's fallback).
    pub(crate) failures: u32,
    /// Counter values per pod at the last scrape, for rates.
    pub(crate) counters: BTreeMap<String, (f64, Time)>,
    /// Traffic counters per pod at the last scrape.
    pub(crate) traffic_counters: BTreeMap<String, [f64; TRAFFIC_COUNTERS]>,
}

impl SourceMemory {
    /// The value the core may use: none while the last poll failed (the core then sees the
    /// metric as missing, and never scales down on it).
    pub(crate) fn usable(&self) -> Option<&SourceValue> {
        if self.error.is_some() {
            None
        } else {
            self.value.as_ref()
        }
    }
}
