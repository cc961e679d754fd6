//! The `ebb` command line: each subcommand parses its arguments and calls the crates.

#![forbid(unsafe_code)]

mod check;
mod conformance;
mod controller;
mod ctl;
mod decide_cmd;
mod engine_args;
mod gateway;
mod simulate;
mod tune;
mod up;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Ebb: an autoscaler for machine-learning inference serving.
#[derive(Parser)]
#[command(name = "ebb", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a policy, an `ebb up` configuration or an Autoscaler manifest, and print the
    /// normalized policy (every default filled in).
    Check {
        /// The file (YAML or JSON): a policy, a configuration with `services:`, or a document
        /// of `kind: Autoscaler`.
        policy: PathBuf,
    },
    /// Run every conformance case under DIR; prints failures and "N passed, N failed".
    Conformance {
        /// A directory of case files (searched recursively), or one case file.
        dir: PathBuf,
    },
    /// Replay a trace or a synthetic pattern against a simulated cluster; compare Ebb with HPA,
    /// Knative's KPA, fixed peak provisioning and an offline oracle.
    Simulate(Box<simulate::SimulateArgs>),
    /// Recommend an Ebb SLO policy and a plain HPA policy from a trace: fit on its first half,
    /// check on the second, print both, the cost/attainment frontier, and a plot.
    ///
    /// Each recommendation promises the SLO where it met it on the first half by more than
    /// two standard errors of a share counted over the first half's requests, else the lower
    /// of what it held in the worst quarter of the first half less two standard errors of a
    /// share counted over that quarter's requests, and a 97.5% prediction bound for a half
    /// from the four quarters' spread (Student's t); the exit code is 3 when the second half
    /// breaks a promise, 0 otherwise.
    Tune(Box<tune::TuneArgs>),
    /// Run the Kubernetes controller: scale the targets of Autoscaler resources.
    Controller(Box<controller::ControllerArgs>),
    /// Run Ebb's proxy in the cluster in front of a Service's pods: routes to the ready ones,
    /// holds requests while none is (scale from zero), reports load to the controller.
    Gateway(Box<gateway::GatewayArgs>),
    /// Print the Autoscaler CustomResourceDefinition (YAML) for `kubectl apply -f -`.
    Crd,
    /// Run services as local replicas behind Ebb's proxy, autoscaled live (the embedded default).
    Up(up::UpArgs),
    /// Pause, resume or look at a running `ebb up`'s services (through its control socket).
    Ctl(ctl::CtlArgs),
    /// Serve a small real model (iris MLP) over the Open Inference Protocol V2.
    DemoModel(up::DemoModelArgs),
    /// Serve a model of an LLM engine (continuous batching, a KV cache, vLLM's metrics) over
    /// the OpenAI API, streamed or whole: not a language model, and no accelerator needed.
    DemoLlm(up::DemoLlmArgs),
    /// Send open-loop load (Poisson arrivals) to a loopback URL and report latency.
    Load(up::LoadArgs),
    /// A replica that misbehaves on demand (500s, resets, hangs), for the proxy's fault tests.
    #[command(hide = true)]
    FaultReplica(up::FaultReplicaArgs),
    /// Make one decision from a policy, an observation and (optionally) a state, and print it
    /// as JSON.
    Decide {
        /// The policy (YAML or JSON).
        #[arg(long)]
        policy: PathBuf,
        /// The observation (YAML or JSON, the `Observation` type).
        #[arg(long)]
        observation: PathBuf,
        /// The state carried from the previous decision.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Now, in milliseconds since the epoch of the observation's timestamps (schedules
        /// read the calendar at the observation's `epochUnixMs` plus this: pass Unix time and
        /// leave `epochUnixMs` out).
        #[arg(long)]
        now_ms: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Check { .. }
            | Command::Conformance { .. }
            | Command::Decide { .. }
            | Command::Crd
            | Command::Simulate(_)
            | Command::Tune(_)
    ) {
        ebb_local::signals::die_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Check { policy } => check::run(&policy),
        Command::Conformance { dir } => conformance::run(&dir),
        Command::Simulate(args) => simulate::run(*args),
        Command::Tune(args) => tune::run(*args),
        Command::Controller(args) => controller::run(*args),
        Command::Gateway(args) => gateway::run(*args),
        Command::Crd => controller::crd(),
        Command::Up(args) => up::up(args),
        Command::Ctl(args) => ctl::ctl(args),
        Command::DemoModel(args) => up::demo_model(args),
        Command::DemoLlm(args) => up::demo_llm(args),
        Command::Load(args) => up::load(args),
        Command::FaultReplica(args) => up::fault_replica(args),
        Command::Decide {
            policy,
            observation,
            state,
            now_ms,
        } => decide_cmd::run(&policy, &observation, state.as_deref(), now_ms),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
