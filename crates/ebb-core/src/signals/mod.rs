//! Ebb's own signals, beyond HPA's metrics. Each turns observations (and the traffic history
//! kept in [`crate::State`]) into a replica proposal, or says why it cannot.

pub mod concurrency;
pub mod external;
pub mod lag;
pub mod traffic;

/// A signal's proposal, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalOutcome {
    /// The signal proposes `replicas`.
    Proposal {
        /// Proposed replicas.
        replicas: u32,
        /// The measured value, for reports.
        value: f64,
        /// Formatted value.
        value_text: String,
        /// Formatted target.
        target_text: String,
    },
    /// The signal has no usable data.
    Missing(String),
}

/// `ceil(x)` as a replica count, saturating, with non-finite or negative values at 0.
pub(crate) fn ceil_count(x: f64) -> u32 {
    if !x.is_finite() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x.ceil() as u32
    }
}
