//! `ebb fault-replica`: a tiny HTTP/1.1 server that misbehaves on demand, for the proxy's
//! fault tests (and for anyone who wants to see what Ebb does with a bad replica).
//!
//! It reads its mode from a control directory before every request: the file named after its
//! port, else the file `all`, else `ok`. Modes:
//! - `ok`: 200 with a small JSON body naming the replica; `slow:MS` answers after MS ms
//!   (readiness at once);
//! - `error`: 500 to everything but the readiness path (a process alive, its model broken);
//! - `reset`: reads the request, then resets the connection (TCP RST), readiness included;
//! - `hang`: reads the request and never answers, readiness included;
//! - `stop-reading`: stops reading new connections (its backlog fills);
//! - `stream:N:MS`: 200 with a chunked body of N server-sent events, MS ms apart, as a token
//!   stream arrives; `stream-break:N:MS` resets the connection after the N-th event (a
//!   replica dying mid-stream).
//!
//! Its JSON answers name the replica and the request body's length (`received`).
//!
//! It writes HTTP by hand on purpose: a reset or a half-read request is not something an
//! HTTP library lets a server do.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the replica behaves now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers 200.
    Ok,
    /// Answers 200 after this many milliseconds.
    Slow(u64),
    /// Answers 500 (readiness still 200).
    Error,
    /// Resets the connection after reading the request.
    Reset,
    /// Never answers.
    Hang,
    /// Does not read from connections.
    StopReading,
    /// Streams server-sent events.
    Stream {
        /// Events sent.
        events: u32,
        /// Milliseconds between two.
        gap_ms: u64,
        /// Resets the connection after the last event instead of ending the body.
        breaks: bool,
    },
}

/// `N:MS` of a stream mode.
fn stream(spec: &str, breaks: bool) -> Option<Mode> {
    let (n, ms) = spec.split_once(':')?;
    Some(Mode::Stream {
        events: n.parse().ok()?,
        gap_ms: ms.parse().ok()?,
        breaks,
    })
}

impl Mode {
    /// Parses a control file's text; unknown text means `ok`.
    pub fn parse(text: &str) -> Mode {
        let t = text.trim();
        match t {
            "error" => Mode::Error,
            "reset" => Mode::Reset,
            "hang" => Mode::Hang,
            "stop-reading" => Mode::StopReading,
            _ => {
                if let Some(spec) = t.strip_prefix("stream:") {
                    return stream(spec, false).unwrap_or(Mode::Ok);
                }
                if let Some(spec) = t.strip_prefix("stream-break:") {
                    return stream(spec, true).unwrap_or(Mode::Ok);
                }
                t.strip_prefix("slow:")
                    .and_then(|ms| ms.parse().ok())
                    .map_or(Mode::Ok, Mode::Slow)
            }
        }
    }
}

/// The fault replica's settings.
#[derive(Debug, Clone)]
pub struct FaultReplica {
    /// Its port (it names its control file).
    pub port: u16,
    /// Where the control files are.
    pub control: PathBuf,
    /// The path answered 200 in `error` mode.
    pub readiness_path: String,
}

fn mode_of(control: &Path, port: u16) -> Mode {
    std::fs::read_to_string(control.join(port.to_string()))
        .or_else(|_| std::fs::read_to_string(control.join("all")))
        .map_or(Mode::Ok, |t| Mode::parse(&t))
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, cfg: FaultReplica) {
    loop {
        if mode_of(&cfg.control, cfg.port) == Mode::StopReading {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let _ = connection(stream, &cfg).await;
        });
    }
}

/// One request's head: the path and how many body bytes follow.
fn parse_head(head: &[u8]) -> Option<(String, usize)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    Some((path, length))
}

async fn connection(mut stream: TcpStream, cfg: &FaultReplica) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        if mode_of(&cfg.control, cfg.port) == Mode::StopReading {
            return std::future::pending().await;
        }
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let Some((path, length)) = parse_head(&buf[..end]) else {
            return Ok(());
        };
        buf.drain(..end);
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..length);
        let ok = format!("{{\"replica\":{},\"received\":{length}}}", cfg.port);
        let (status, body) = match mode_of(&cfg.control, cfg.port) {
            Mode::Reset => {
                stream.set_zero_linger()?;
                return Ok(());
            }
            Mode::Hang | Mode::StopReading => return std::future::pending().await,
            Mode::Error if path != cfg.readiness_path => (
                "500 Internal Server Error",
                "{\"error\":\"broken\"}".to_string(),
            ),
            Mode::Slow(ms) if path != cfg.readiness_path => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ("200 OK", ok)
            }
            Mode::Stream {
                events,
                gap_ms,
                breaks,
            } if path != cfg.readiness_path => {
                send_events(&mut stream, events, gap_ms, breaks).await?;
                continue;
            }
            _ => ("200 OK", ok),
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).await?;
    }
}

/// Sends `events` server-sent events `gap_ms` apart in a chunked body; ends the body, or
/// resets the connection if `breaks`.
async fn send_events(
    stream: &mut TcpStream,
    events: u32,
    gap_ms: u64,
    breaks: bool,
) -> std::io::Result<()> {
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        .await?;
    for i in 0..events {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(gap_ms)).await;
        }
        let event = format!("data: token {i}\n\n");
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        stream.write_all(chunk.as_bytes()).await?;
    }
    if breaks {
        // Dies a gap after its last event, so that the event is read before the reset (a
        // reset discards what the peer has not read yet).
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
        stream.set_zero_linger()?;
        return Err(std::io::Error::other("broken on purpose"));
    }
    stream.write_all(b"0\r\n\r\n").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_heads_parse() {
        assert_eq!(Mode::parse("error\n"), Mode::Error);
        assert_eq!(Mode::parse("slow:250"), Mode::Slow(250));
        assert_eq!(Mode::parse("nonsense"), Mode::Ok);
        assert_eq!(
            Mode::parse("stream:5:100"),
            Mode::Stream {
                events: 5,
                gap_ms: 100,
                breaks: false
            }
        );
        assert_eq!(
            Mode::parse("stream-break:2:10"),
            Mode::Stream {
                events: 2,
                gap_ms: 10,
                breaks: true
            }
        );
        assert_eq!(Mode::parse("stream:x"), Mode::Ok);
        assert_eq!(
            parse_head(b"POST /v2/x HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Some(("/v2/x".into(), 12))
        );
    }
}
