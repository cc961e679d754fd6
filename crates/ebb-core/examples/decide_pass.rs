//! Decisions for the `decide` benchmark's targets, a given number of passes, for counting
//! their instructions: criterion's times move by half on a shared machine from one hour to
//! the next, an instruction count not at all. `measured` is the only function callgrind
//! should collect in, so the targets' warm-up is left out:
//!
//! ```text
//! cargo build --release -p ebb-core --example decide_pass
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='decide_pass::measured' \
//!     target/release/examples/decide_pass over_lead 1000 5
//! ```
//!
//! Arguments: the group (`plain`, `slo`, `over_lead`, `short` or `llm_slo`), the targets and the
//! passes. Callgrind's "Collected" divided by targets times passes is the instructions a
//! decision takes; run alone, it prints the wall time a decision took (microseconds).

#![allow(missing_docs)]

#[path = "../benches/targets/mod.rs"]
mod targets;

use ebb_core::*;
use std::hint::black_box;
use targets::*;

/// The benchmark's groups of targets.
enum Group {
    Plain,
    Slo,
    OverLead,
    Short,
    LlmSlo,
}

impl std::str::FromStr for Group {
    type Err = String;

    fn from_str(name: &str) -> Result<Group, String> {
        match name {
            "plain" => Ok(Group::Plain),
            "slo" => Ok(Group::Slo),
            "over_lead" => Ok(Group::OverLead),
            "short" => Ok(Group::Short),
            "llm_slo" => Ok(Group::LlmSlo),
            other => Err(format!(
                "group {other:?}: expected plain, slo, over_lead, short or llm_slo"
            )),
        }
    }
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let group: Group = args.next().unwrap_or_else(|| "over_lead".into()).parse()?;
    let mut number = |what: &str, default: usize| -> Result<usize, String> {
        args.next().map_or(Ok(default), |s| {
            s.parse()
                .map_err(|_| format!("{what} {s:?}: expected a count"))
        })
    };
    // A tenth of the benchmark's targets: warming them up under callgrind takes a minute.
    let count = number("targets", TARGETS / 10)?;
    let passes = number("passes", 5)?;
    let now = Time::from_secs(10_000);
    let (policy, targets) = match group {
        Group::Plain => (
            Policy::from_yaml(POLICY).map_err(|e| e.to_string())?,
            (0..count).map(|i| target(i, now)).collect(),
        ),
        Group::Slo => slo_targets(now, &STEADY, count),
        Group::OverLead => slo_targets(now, &OVER_LEAD, count),
        Group::Short => short_slo_targets(now, count),
        Group::LlmSlo => llm_slo_targets(now, count),
    };
    let started = std::time::Instant::now();
    println!("{}", measured(passes, &policy, &targets, now));
    // The wall time too (not under callgrind): whether a decision's time grows with the
    // targets' count, which the states' memory would do and the instructions cannot.
    let decisions = (count * passes).max(1) as f64;
    eprintln!(
        "{:.2} us a decision ({count} targets, {passes} passes)",
        started.elapsed().as_secs_f64() * 1e6 / decisions
    );
    Ok(())
}

/// The passes over every target: what callgrind collects in.
#[inline(never)]
fn measured(passes: usize, policy: &Policy, targets: &[(Observation, State)], now: Time) -> u32 {
    let mut scaled = 0u32;
    for _ in 0..passes {
        for (obs, state) in targets {
            scaled += decide(policy, black_box(obs), black_box(state), now).desired_replicas;
        }
    }
    black_box(scaled)
}
