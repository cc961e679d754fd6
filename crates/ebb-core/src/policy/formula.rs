//! Turning a `formula` block into a [`FormulaMetric`]: the expression compiled against the
//! policy's metric names, and the composite's target.

use super::spec::FormulaSpec;
use super::validate::{target, Checker};
use super::{FormulaMetric, Metric};
use crate::formula::Formula;

/// The composite's name when the block gives none.
const DEFAULT_NAME: &str = "formula";

/// Validates the block against the policy's metrics.
pub(super) fn formula(
    c: &mut Checker,
    s: &FormulaSpec,
    metrics: &[Metric],
) -> Option<FormulaMetric> {
    let name = s.name.as_deref().unwrap_or(DEFAULT_NAME).trim().to_string();
    if name.is_empty() {
        c.err("formula.name", "must not be empty");
    } else if metrics.iter().any(|m| m.name == name) {
        c.err(
            "formula.name",
            format!("'{name}' is a metric's name already: the composite needs its own"),
        );
    }
    let composite_target = match &s.target {
        Some(t) => target(c, "formula.target", t, &["Value", "AverageValue"]),
        None => {
            c.err("formula.target", "is required");
            None
        }
    };
    let expression = c.required("formula.expression", &s.expression)?;
    let known: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    let formula = Formula::compile(&name, expression, &known)
        .map_err(|e| c.err("formula.expression", e.to_string()))
        .ok()?;
    Some(FormulaMetric {
        formula,
        target: composite_target?,
    })
}
