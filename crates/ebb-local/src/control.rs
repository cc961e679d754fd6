//! `ebb up`'s control socket: an operator pauses and resumes a service's scaling from the same
//! machine (`ebb ctl pause SERVICE [REPLICAS]`, `ebb ctl resume SERVICE`, `ebb ctl status`).
//! It is a Unix socket in a directory only the user can enter, not an HTTP endpoint: changing
//! the count is for whoever runs Ebb, not for whoever reaches a port.
//!
//! The protocol is one line each way: a command, then `ok: ...` or `error: ...`.

use crate::config::MAX_SOCKET_PATH;
use ebb_core::Hold;
use ebb_proxy::state::ServiceState;
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The longest command line read; anything longer is refused.
pub const MAX_LINE: usize = 1024;
/// How long a client has to send its command.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Hold the count (`pause SERVICE`) or set and hold it (`pause SERVICE REPLICAS`).
    Pause {
        /// The service.
        service: String,
        /// The count to set, if any.
        replicas: Option<u32>,
    },
    /// Let the policy scale again.
    Resume {
        /// The service.
        service: String,
    },
    /// Each service's count, and its hold.
    Status,
}

impl FromStr for Command {
    type Err = String;

    fn from_str(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["pause", service] => Ok(Command::Pause {
                service: service.to_string(),
                replicas: None,
            }),
            ["pause", service, n] => n
                .parse()
                .map(|n| Command::Pause {
                    service: service.to_string(),
                    replicas: Some(n),
                })
                .map_err(|_| format!("'{n}' is not a whole number of replicas (0 or more)")),
            ["resume", service] => Ok(Command::Resume {
                service: service.to_string(),
            }),
            ["status"] => Ok(Command::Status),
            _ => Err(format!(
                "'{line}': expected 'pause SERVICE [REPLICAS]', 'resume SERVICE' or 'status'"
            )),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Pause {
                service,
                replicas: None,
            } => write!(f, "pause {service}"),
            Command::Pause {
                service,
                replicas: Some(n),
            } => write!(f, "pause {service} {n}"),
            Command::Resume { service } => write!(f, "resume {service}"),
            Command::Status => write!(f, "status"),
        }
    }
}

/// A service the socket controls, with the most replicas its policy allows.
#[derive(Clone)]
pub struct Controlled {
    /// The service's state (its hold lives there).
    pub state: Arc<ServiceState>,
    /// `maxReplicas`: a paused count above it is refused (each replica is a process here).
    pub max_replicas: u32,
}

/// Carries out one command; the answer is the line sent back.
pub fn execute(command: &Command, services: &[Controlled]) -> Result<String, String> {
    let find = |name: &str| {
        services
            .iter()
            .find(|s| s.state.name == name)
            .ok_or_else(|| format!("no service '{name}'"))
    };
    match command {
        Command::Pause { service, replicas } => {
            let s = find(service)?;
            if s.state.models.is_some() && replicas.is_some() {
                return Err(format!(
                    "'{service}' hosts several models: pause holds its placement as it is, without a count"
                ));
            }
            let hold = match replicas {
                None => Hold::Current,
                Some(n) if *n > s.max_replicas => {
                    return Err(format!(
                        "{n} replicas is above the service's maxReplicas ({})",
                        s.max_replicas
                    ))
                }
                Some(n) => Hold::Replicas(*n),
            };
            s.state.set_hold(Some(hold));
            Ok(match replicas {
                None => format!("{service} paused at its current count"),
                Some(n) => format!("{service} paused at {n} replicas"),
            })
        }
        Command::Resume { service } => {
            find(service)?.state.set_hold(None);
            Ok(format!("{service} resumed"))
        }
        Command::Status => Ok(services
            .iter()
            .map(|s| s.state.control_line())
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// Binds the socket at `path`: its directory is created private (0700) if missing and must
/// belong to this user; a socket left by an `ebb up` that died is replaced, one that answers
/// is not (another `ebb up` is running).
pub async fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(io::Error::other(format!(
            "{}: longer than the {MAX_SOCKET_PATH} bytes a Unix socket path holds",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let me = std::fs::metadata("/proc/self").map(|m| m.uid())?;
        let owner = std::fs::metadata(dir)?.uid();
        if owner != me {
            return Err(io::Error::other(format!(
                "{} belongs to another user (uid {owner})",
                dir.display()
            )));
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another ebb up answers there", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers connections until the task is dropped: one command each.
pub async fn serve(listener: UnixListener, services: Vec<Controlled>) {
    let services = Arc::new(services);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let services = services.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &services).await;
        });
    }
}

async fn answer(stream: UnixStream, services: &[Controlled]) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64 + 1);
    let read = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await;
    let reply = match read {
        Err(_) => "error: no command within 5 s".to_string(),
        Ok(Err(e)) => format!("error: {e}"),
        Ok(Ok(_)) if line.len() > MAX_LINE => format!("error: longer than {MAX_LINE} bytes"),
        Ok(Ok(_)) => match line.trim().parse::<Command>() {
            Err(e) => format!("error: {e}"),
            Ok(c) => match execute(&c, services) {
                Ok(msg) => format!("ok: {msg}"),
                Err(e) => format!("error: {e}"),
            },
        },
    };
    write.write_all(format!("{reply}\n").as_bytes()).await?;
    write.shutdown().await
}

/// Sends one command to the socket at `path` and returns the answer line (`ebb ctl`).
pub async fn send(path: &Path, command: &Command) -> io::Result<String> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{}: {e} (is ebb up running?)", path.display()),
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{command}\n").as_bytes()).await?;
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(64 * 1024);
    tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer within 5 s"))??;
    Ok(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn commands_parse_and_print_back() {
        for text in ["pause model", "pause model 3", "resume model", "status"] {
            let c: Command = text.parse().unwrap();
            assert_eq!(c.to_string(), text);
        }
        assert!("pause model -1"
            .parse::<Command>()
            .unwrap_err()
            .contains("'-1' is not a whole number"));
        assert!("scale model 3".parse::<Command>().is_err());
        assert!("".parse::<Command>().is_err());
    }

    fn services() -> Vec<Controlled> {
        vec![Controlled {
            state: Arc::new(ServiceState::new("model", Instant::now())),
            max_replicas: 4,
        }]
    }

    #[test]
    fn pause_sets_the_hold_and_resume_clears_it() {
        let s = services();
        let pause = |replicas| Command::Pause {
            service: "model".into(),
            replicas,
        };
        assert!(execute(&pause(Some(3)), &s).is_ok());
        assert_eq!(s[0].state.hold(), Some(Hold::Replicas(3)));
        assert!(execute(&pause(None), &s).is_ok());
        assert_eq!(s[0].state.hold(), Some(Hold::Current));
        let too_many = execute(&pause(Some(9)), &s).unwrap_err();
        assert!(
            too_many.contains("above the service's maxReplicas (4)"),
            "{too_many}"
        );
        assert_eq!(
            s[0].state.hold(),
            Some(Hold::Current),
            "a refused pause changes nothing"
        );
        let resume = Command::Resume {
            service: "model".into(),
        };
        assert!(execute(&resume, &s).is_ok());
        assert_eq!(s[0].state.hold(), None);
        let unknown = Command::Resume {
            service: "other".into(),
        };
        assert_eq!(execute(&unknown, &s).unwrap_err(), "no service 'other'");
    }

    #[tokio::test]
    async fn the_socket_answers_one_line_and_refuses_a_second_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private").join("up.sock");
        let listener = bind(&path).await.unwrap();
        let mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let task = tokio::spawn(serve(listener, services()));
        let reply = send(&path, &"pause model 2".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(reply, "ok: model paused at 2 replicas");
        let reply = send(&path, &Command::Status).await.unwrap();
        assert!(reply.starts_with("ok: model: paused at 2"), "{reply}");
        let err = bind(&path).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        task.abort();
        let _ = task.await;
        // A socket whose server is gone is replaced.
        assert!(bind(&path).await.is_ok());
    }
}
