//! Formulas: named metrics combined by a CEL expression into one composite metric with its own
//! target (KEDA's `scalingModifiers`, in the expression language Kubernetes itself uses).
//!
//! The expression is compiled once, when the policy is validated, and tried with every input
//! at 1.0, so a syntax error (with its line and column), an unknown name, or a type mistake
//! is reported by `ebb check` rather than at 3 a.m. A missing input makes the composite
//! missing, never zero.

use cel_interpreter::{Context, Program, Value};
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// A validated formula.
#[derive(Clone)]
pub struct Formula {
    /// The composite metric's name, for reasons and status.
    pub name: String,
    /// The CEL expression as written.
    pub expression: String,
    /// The metrics it reads, by name, in sorted order: they feed it and no longer propose on
    /// their own.
    pub inputs: Vec<String>,
    program: Arc<Program>,
}

impl PartialEq for Formula {
    fn eq(&self, other: &Formula) -> bool {
        (&self.name, &self.expression) == (&other.name, &other.expression)
    }
}

impl fmt::Debug for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Formula")
            .field("name", &self.name)
            .field("expression", &self.expression)
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// Why an expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormulaError {
    /// The expression does not parse.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: isize,
        /// 1-based column.
        column: isize,
        /// The parser's message.
        message: String,
    },
    /// It names something that is not a metric of the policy.
    #[error("'{name}' is not a metric of this policy (metrics: {known})")]
    UnknownInput {
        /// The name.
        name: String,
        /// The policy's metric names.
        known: String,
    },
    /// It reads no metric at all.
    #[error("reads no metric: name at least one of the policy's metrics ({known})")]
    NoInput {
        /// The policy's metric names.
        known: String,
    },
    /// Evaluated with every input at 1.0, it fails or gives no number.
    #[error("{0}")]
    Evaluation(String),
}

impl Formula {
    /// Compiles `expression` over the policy's metric names (`known`) and tries it once.
    pub fn compile(name: &str, expression: &str, known: &[&str]) -> Result<Formula, FormulaError> {
        let program = Program::compile(expression).map_err(|e| {
            let first = e.errors.first();
            FormulaError::Syntax {
                line: first.map_or(1, |f| f.pos.0),
                column: first.map_or(1, |f| f.pos.1),
                message: first.map_or_else(|| e.to_string(), |f| f.msg.clone()),
            }
        })?;
        let listed = || known.join(", ");
        let mut inputs = program
            .references()
            .variables()
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        inputs.sort();
        inputs.dedup();
        if let Some(unknown) = inputs.iter().find(|i| !known.contains(&i.as_str())) {
            return Err(FormulaError::UnknownInput {
                name: unknown.clone(),
                known: listed(),
            });
        }
        if inputs.is_empty() {
            return Err(FormulaError::NoInput { known: listed() });
        }
        let formula = Formula {
            name: name.to_string(),
            expression: expression.to_string(),
            inputs,
            program: Arc::new(program),
        };
        let ones: Vec<(&str, f64)> = formula.inputs.iter().map(|i| (i.as_str(), 1.0)).collect();
        formula.evaluate(&ones).map_err(FormulaError::Evaluation)?;
        Ok(formula)
    }

    /// The composite for these input values. An error says why (an input not given, a type
    /// mistake, a result that is not a number).
    pub fn evaluate(&self, values: &[(&str, f64)]) -> Result<f64, String> {
        let mut ctx = Context::default();
        for input in &self.inputs {
            let value = values
                .iter()
                .find(|(n, _)| n == input)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("input {input} has no value"))?;
            ctx.add_variable_from_value(input.as_str(), Value::Float(value));
        }
        match self.program.execute(&ctx) {
            Ok(Value::Float(v)) => Ok(v),
            Ok(Value::Int(v)) => Ok(v as f64),
            Ok(Value::UInt(v)) => Ok(v as f64),
            Ok(other) => Err(format!("gives {} where a number is needed", kind(&other))),
            Err(e) => {
                let text = e.to_string();
                // CEL never mixes whole numbers and decimals; the inputs are decimals.
                let hint = if text.contains("Int(") && text.contains("Float(") {
                    " (CEL does not mix whole numbers and decimals, and the inputs are decimals: write 2.0, not 2)"
                } else {
                    ""
                };
                Err(format!("{text}{hint}"))
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "a true/false value",
        Value::String(_) => "a string",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Null => "null",
        _ => "a value of another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(expression: &str) -> Result<Formula, FormulaError> {
        Formula::compile("load", expression, &["rps", "waiting"])
    }

    #[test]
    fn combines_its_inputs() {
        let f = compile("max(waiting / 2.0, rps / 30.0)").unwrap();
        assert_eq!(f.inputs, ["rps", "waiting"]);
        assert_eq!(f.evaluate(&[("waiting", 6.4), ("rps", 45.0)]), Ok(3.2));
        let weighted = compile("0.5 * waiting + 0.5 * rps / 30.0").unwrap();
        assert_eq!(
            weighted.evaluate(&[("waiting", 4.0), ("rps", 60.0)]),
            Ok(3.0)
        );
        assert!(f
            .evaluate(&[("rps", 45.0)])
            .unwrap_err()
            .contains("waiting"));
    }

    #[test]
    fn mistakes_are_caught_before_the_first_decision() {
        assert_eq!(
            compile("max(waiting / 2.0, rps / 30.0")
                .unwrap_err()
                .to_string(),
            "syntax error at line 1, column 30: Syntax error: missing ')' at '<EOF>'"
        );
        assert_eq!(
            compile("waiting + queue").unwrap_err().to_string(),
            "'queue' is not a metric of this policy (metrics: rps, waiting)"
        );
        assert!(compile("waiting / 2")
            .unwrap_err()
            .to_string()
            .contains("write 2.0, not 2"));
        assert_eq!(
            compile("waiting > 2.0").unwrap_err().to_string(),
            "gives a true/false value where a number is needed"
        );
        assert!(matches!(
            compile("2.0 + 3.0"),
            Err(FormulaError::NoInput { .. })
        ));
    }
}
