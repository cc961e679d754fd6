//! `ebb check FILE`: validate a policy, an `ebb up` configuration or an `Autoscaler` manifest,
//! each with the field paths its own driver uses, and print the normalized policy.

use anyhow::Context;
use ebb_core::Policy;
use std::path::Path;
use std::process::ExitCode;

/// What a file holds, told by its top-level keys.
enum Document {
    /// A bare policy (`maxReplicas`, `metrics`, `slo`, ...).
    Policy,
    /// A disaggregated server's two pools (`pools:` with `prefill`, `decode`, `ratio`).
    Pools,
    /// An `ebb up` configuration (`services:`).
    UpConfig,
    /// A Kubernetes `Autoscaler` (`kind: Autoscaler`).
    Autoscaler,
    /// Several Kubernetes objects (`---`-separated), Autoscalers among them.
    Manifests,
}

/// The `---`-separated documents of a file, as text.
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

fn kind(text: &str) -> Option<String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    value.get("kind")?.as_str().map(String::from)
}

fn document(text: &str) -> Document {
    if documents(text).len() > 1 {
        return Document::Manifests;
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).unwrap_or_default();
    if value.get("kind").and_then(|k| k.as_str()) == Some("Autoscaler") {
        Document::Autoscaler
    } else if value.get("services").is_some() {
        // An `ebb up` configuration may pair its services as pools too (`pools:` beside them).
        Document::UpConfig
    } else if value.get("pools").is_some() {
        Document::Pools
    } else {
        Document::Policy
    }
}

pub(crate) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.display();
    let checked = match document(&text) {
        Document::Policy => Policy::from_yaml(&text)
            .map(|p| vec![("policy".to_string(), p)])
            .map_err(|e| e.to_string()),
        Document::Pools => return pools(&text, &name.to_string()),
        Document::UpConfig => up_config(&text),
        Document::Autoscaler => autoscaler(&text),
        Document::Manifests => manifests(&text),
    };
    match checked {
        Ok(policies) => {
            for (what, policy) in policies {
                let normalized = serde_yaml::to_string(&policy.to_spec())
                    .context("cannot print the normalized policy")?;
                println!("# {name}: {what} valid; normalized with defaults filled in");
                print!("{normalized}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A `pools` document: both pools' policies and the guard, printed normalized.
fn pools(text: &str, name: &str) -> anyhow::Result<ExitCode> {
    match ebb_core::pools::PoolsPolicy::from_yaml(text) {
        Ok(p) => {
            let normalized = serde_yaml::to_string(&p.to_document())
                .context("cannot print the normalized policy")?;
            println!("# {name}: pools policy valid; normalized with defaults filled in");
            print!("{normalized}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Each service's policy (each model's, for a multi-model service), as `ebb up` reads them.
fn up_config(text: &str) -> Result<Vec<(String, Policy)>, String> {
    let config = ebb_local::config::Config::from_yaml(text)
        .map_err(|e| format!("invalid ebb up configuration: {e}"))?;
    let mut out = Vec::new();
    for s in &config.services {
        let pool = config.pool_of(&s.name).map(|g| {
            let role = if g.prefill == s.name {
                "prefill"
            } else {
                "decode"
            };
            format!(" ({role} pool of {} and {})", g.prefill, g.decode)
        });
        match &s.models {
            Some(m) => out.extend(m.models.iter().map(|model| {
                let what = format!("service {} model {}", s.name, model.name);
                (what, model.policy.clone())
            })),
            None => out.push((
                format!("service {}{}", s.name, pool.unwrap_or_default()),
                s.policy.clone(),
            )),
        }
    }
    Ok(out)
}

/// Every Autoscaler among several manifests (the other objects are the API server's to check).
fn manifests(text: &str) -> Result<Vec<(String, Policy)>, String> {
    let mut out = Vec::new();
    for (i, doc) in documents(text).iter().enumerate() {
        if kind(doc).as_deref() == Some("Autoscaler") {
            out.extend(autoscaler(doc).map_err(|e| format!("document {}: {e}", i + 1))?);
        }
    }
    if out.is_empty() {
        return Err("none of its documents is an Autoscaler".into());
    }
    Ok(out)
}

/// The Autoscaler's policy and sources, with the `spec.` paths its status would show.
fn autoscaler(text: &str) -> Result<Vec<(String, Policy)>, String> {
    let a: ebb_kube::crd::Autoscaler =
        serde_yaml::from_str(text).map_err(|e| format!("invalid Autoscaler: {e}"))?;
    let errors = |e: Vec<ebb_kube::crd::SpecError>| {
        let n = e.len();
        let listed: Vec<String> = e.iter().map(|e| format!("\n  - {e}")).collect();
        format!(
            "invalid Autoscaler ({n} problem{}){}",
            if n == 1 { "" } else { "s" },
            listed.concat()
        )
    };
    let policy = a.spec.policy().map_err(errors)?;
    a.spec.check_sources().map_err(errors)?;
    let name = a.metadata.name.unwrap_or_default();
    Ok(vec![(format!("Autoscaler {name}"), policy)])
}
