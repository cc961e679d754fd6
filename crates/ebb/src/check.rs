//! `ebb check POLICY`: validate and print the normalized policy.

use anyhow::Context;
use ebb_core::Policy;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy {}", path.display()))?;
    match Policy::from_yaml(&text) {
        Ok(policy) => {
            let normalized = serde_yaml::to_string(&policy.to_spec())
                .context("cannot print the normalized policy")?;
            println!(
                "# {}: valid; normalized with defaults filled in",
                path.display()
            );
            print!("{normalized}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            Ok(ExitCode::from(1))
        }
    }
}
