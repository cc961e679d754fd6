//! Runs the conformance cases shipped with the project (a missing copy fails) and, when
//! asked with `--include-ignored`, `../shared/conformance` through the core.

use ebb_core::conformance::run_case;
use std::path::{Path, PathBuf};

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn run_dir(dir: &Path) -> usize {
    let files = cases(dir);
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy();
        let o = run_case(&name, &std::fs::read_to_string(f).unwrap());
        if !o.passed {
            failures.push(format!(
                "{}: expected {}, got {} ({})",
                o.name,
                o.expected,
                o.got,
                o.reasons.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
}

#[test]
fn shipped_cases_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance");
    assert!(run_dir(&dir) >= 70);
}

#[test]
#[ignore = "needs ../shared/conformance beside the checkout; then cargo test -- --include-ignored"]
fn shared_cases_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    assert!(run_dir(&dir) > 0);
}

#[test]
fn a_malformed_case_fails_with_a_reason() {
    let o = run_case("broken", "kind: replicas\ncurrentReplicas: many\n");
    assert!(!o.passed);
    assert!(o.got.starts_with("unreadable case"), "{}", o.got);
}
