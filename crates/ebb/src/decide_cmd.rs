//! `ebb decide`: one decision from files, printed as JSON (for drivers' debugging and docs).

use anyhow::Context;
use ebb_core::{decide, Observation, Policy, State, Time};
use std::path::Path;
use std::process::ExitCode;

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub(crate) fn run(
    policy: &Path,
    observation: &Path,
    state: Option<&Path>,
    now_ms: i64,
) -> anyhow::Result<ExitCode> {
    let policy = Policy::from_yaml(&read(policy)?)
        .with_context(|| format!("policy {}", policy.display()))?;
    let observation: Observation = serde_yaml::from_str(&read(observation)?)
        .with_context(|| format!("observation {}", observation.display()))?;
    let state: State = match state {
        Some(p) => {
            serde_yaml::from_str(&read(p)?).with_context(|| format!("state {}", p.display()))?
        }
        None => State::default(),
    };
    let decision = decide(&policy, &observation, &state, Time::from_millis(now_ms));
    println!("{}", serde_json::to_string_pretty(&decision)?);
    Ok(ExitCode::SUCCESS)
}
