//! `ebb ctl`: pause, resume and look at a running `ebb up` through its control socket.

use anyhow::Context;
use clap::{Args, Subcommand};
use ebb_local::config::Config;
use ebb_local::control::{self, Command};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub(crate) struct CtlArgs {
    /// The control socket `ebb up` printed at start.
    #[arg(long, conflicts_with = "config")]
    socket: Option<PathBuf>,
    /// The `ebb up` configuration: its `controlSocket`, or the default socket for its admin
    /// port. Without either flag, the default socket for the default admin port.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Hold a service's count (the policy goes on deciding; `status` says what it would set).
    Pause {
        /// The service's name in the configuration.
        service: String,
        /// Set this many replicas and hold them (at most the policy's maxReplicas).
        replicas: Option<u32>,
    },
    /// Let the policy scale the service again.
    Resume {
        /// The service's name in the configuration.
        service: String,
    },
    /// Each service's count and hold.
    Status,
}

/// Where the socket is: `--socket`, `--config`'s, or the default admin port's.
fn socket(args: &CtlArgs) -> anyhow::Result<PathBuf> {
    if let Some(s) = &args.socket {
        return Ok(s.clone());
    }
    let Some(path) = &args.config else {
        let admin = ebb_local::config::DEFAULT_ADMIN.rsplit(':').next();
        let port = admin.and_then(|p| p.parse().ok()).unwrap_or(9901);
        return Ok(ebb_local::config::default_control_socket(port));
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let config =
        Config::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config.control_socket)
}

pub(crate) fn ctl(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let path = socket(&args)?;
    let command = match args.action {
        Action::Pause { service, replicas } => Command::Pause { service, replicas },
        Action::Resume { service } => Command::Resume { service },
        Action::Status => Command::Status,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = runtime.block_on(control::send(&path, &command))?;
    match reply.split_once(": ") {
        Some(("ok", message)) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Some(("error", message)) => {
            eprintln!("error: {message}");
            Ok(ExitCode::FAILURE)
        }
        _ => anyhow::bail!("{}: unexpected answer '{reply}'", path.display()),
    }
}
