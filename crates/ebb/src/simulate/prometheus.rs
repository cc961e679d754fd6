//! `--prometheus URL --query PROMQL`: the traffic a user's own Prometheus recorded, as the
//! trace to replay. Fetched in ranges Prometheus answers (at most 11,000 points a series),
//! saved in the report folder as `traffic.json` (the answers one after another, which
//! `--trace` reads again, so a run can be repeated without the server), then read as a trace.

use anyhow::{bail, Context};
use ebb_kube::crd::PrometheusSource;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Points asked for in one range query: below Prometheus's limit of 11,000 a series.
const POINTS_PER_QUERY: f64 = 10_000.0;
/// How long one range query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// What to fetch: the server, the query (requests per second), how far back from now, and
/// the step between points.
pub(crate) struct Fetch<'a> {
    pub(crate) url: &'a str,
    pub(crate) query: &'a str,
    pub(crate) since_seconds: f64,
    pub(crate) step_seconds: f64,
    pub(crate) credentials: Credentials<'a>,
}

/// How to reach a server that asks who is calling (a managed Prometheus, a proxy in front),
/// each from a file so that no secret is on the command line: the same three the controller's
/// Prometheus sources take from a Secret.
#[derive(Default)]
pub(crate) struct Credentials<'a> {
    /// A bearer token.
    pub(crate) token_file: Option<&'a Path>,
    /// Basic auth: the user, and a file holding the password.
    pub(crate) user: Option<&'a str>,
    pub(crate) password_file: Option<&'a Path>,
    /// A PEM bundle of the CAs that sign the server's certificate.
    pub(crate) ca_file: Option<&'a Path>,
}

impl Credentials<'_> {
    /// Read from their files; a file that cannot be read, or a secret that is empty, is named
    /// by its flag.
    fn read(&self) -> anyhow::Result<ebb_kube::sources::Credentials> {
        let password = self
            .password_file
            .map(|p| secret("--prometheus-password-file", p))
            .transpose()?;
        let ca_pem = self.ca_file.map(ca_bundle).transpose()?;
        Ok(ebb_kube::sources::Credentials {
            token: self
                .token_file
                .map(|p| secret("--prometheus-token-file", p))
                .transpose()?,
            basic: self.user.map(str::to_string).zip(password),
            ca_pem,
            password: None,
        })
    }
}

/// The PEM bundle in `path`, parsed as the sources' client will parse it, so that a wrong
/// file is named by its flag before anything is asked.
fn ca_bundle(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("--prometheus-ca-file: cannot read {}", path.display()))?;
    if let Err(why) = ebb_kube::sources::ca_certificates(&pem) {
        bail!("--prometheus-ca-file: {}: {why}", path.display());
    }
    Ok(pem)
}

/// The secret in `path` (a token, a password), trimmed of the newline most tools write after
/// it.
fn secret(flag: &str, path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("{flag}: {} is empty", path.display());
    }
    Ok(secret.to_string())
}

/// The ranges, oldest first, that cover `since` seconds up to `end` at `step`, each at most
/// [`POINTS_PER_QUERY`] steps long; consecutive ranges share their boundary point (the
/// reader counts it once).
fn ranges(end: f64, since: f64, step: f64) -> Vec<(f64, f64)> {
    let span = step * POINTS_PER_QUERY;
    let start = end - since;
    let count = (since / span).ceil().max(1.0) as usize;
    (0..count)
        .map(|i| {
            let from = start + i as f64 * span;
            (from, (from + span).min(end))
        })
        .collect()
}

/// Fetches the ranges into `<report>/traffic.json` and returns its path.
pub(crate) fn fetch(f: &Fetch, report: &Path) -> anyhow::Result<PathBuf> {
    if f.step_seconds < 1.0 {
        bail!("--step must be at least 1s (Prometheus's resolution is its scrape interval)");
    }
    if f.since_seconds < f.step_seconds * 2.0 {
        bail!("--since must cover at least two steps");
    }
    let creds = f.credentials.read()?;
    std::fs::create_dir_all(report)
        .with_context(|| format!("cannot create {}", report.display()))?;
    let path = report.join("traffic.json");
    let mut out =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs() as f64;
    let src = PrometheusSource {
        url: f.url.to_string(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let all = ranges(end, f.since_seconds, f.step_seconds);
    for (i, &(from, to)) in all.iter().enumerate() {
        eprintln!(
            "--prometheus: range {} of {} ({:.0} s at {} s steps)",
            i + 1,
            all.len(),
            to - from,
            f.step_seconds
        );
        let answer = rt
            .block_on(ebb_kube::sources::prometheus_range(
                &src,
                f.query,
                (from, to, f.step_seconds),
                &creds,
                QUERY_TIMEOUT,
            ))
            .with_context(|| format!("--prometheus: the range query {}", f.query))?;
        serde_json::to_writer(&mut out, &answer)?;
        writeln!(out)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_span_in_answerable_pieces() {
        // A week at 15 s: 40,320 steps, five queries, each within the limit.
        let week = 7.0 * 86_400.0;
        let r = ranges(1_000_000.0, week, 15.0);
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].0, 1_000_000.0 - week);
        assert_eq!(r.last().unwrap().1, 1_000_000.0);
        for w in r.windows(2) {
            assert_eq!(w[0].1, w[1].0, "consecutive ranges meet");
        }
        assert!(r.iter().all(|(a, b)| (b - a) / 15.0 <= POINTS_PER_QUERY));
        assert_eq!(ranges(100.0, 60.0, 1.0), vec![(40.0, 100.0)]);
    }
}
