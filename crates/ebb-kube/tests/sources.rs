//! The metric sources against real servers on loopback: a Prometheus server (Debian's
//! `prometheus`) scraping an exporter this test serves, a Redis server (`redis-server`), and
//! pods' metrics endpoints served over real HTTP. `scripts/test-services.sh` starts the
//! servers; the tests that need them are ignored by a plain `cargo test` and run with
//! `--include-ignored` (as `.ci/run` does), where a missing server is a failure.

use ebb_kube::crd::{PodScrapeSource, PrometheusSource, RedisSource};
use ebb_kube::sources::{self, Credentials, PodEndpoint, SourceValue};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A server's address from `scripts/test-services.sh`'s environment.
fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start scripts/test-services.sh start DIR; source DIR/env")
    })
}

/// Serves `body` over HTTP on `listener` until the process ends.
fn serve(listener: TcpListener, body: String) {
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
}

/// The exporter Prometheus scrapes (started once per test process).
fn exporter() {
    static STARTED: OnceLock<bool> = OnceLock::new();
    let port = env("EBB_TEST_EXPORTER_PORT");
    STARTED.get_or_init(|| {
        let l = TcpListener::bind(format!("127.0.0.1:{port}")).expect("exporter port");
        serve(
            l,
            "# TYPE dcgm_fi_dev_gpu_util gauge\ndcgm_fi_dev_gpu_util{pod=\"triton-0\",gpu=\"0\"} 40\ndcgm_fi_dev_gpu_util{pod=\"triton-1\",gpu=\"0\"} 70\n# TYPE queue_depth gauge\nqueue_depth 17\n".into(),
        );
        true
    });
}

fn prometheus() -> PrometheusSource {
    exporter();
    PrometheusSource {
        url: env("EBB_TEST_PROMETHEUS_URL"),
        ..Default::default()
    }
}

async fn query_until_data(src: &PrometheusSource, q: &str) -> SourceValue {
    let start = Instant::now();
    loop {
        match sources::prometheus_query(src, q, &Credentials::default(), Duration::from_secs(5))
            .await
        {
            Ok(series) if !series.is_empty() => {
                return sources::prometheus_value(series).expect("value")
            }
            Ok(_) | Err(_) if start.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            other => panic!("prometheus never answered {q}: {other:?}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs Prometheus and Redis: scripts/test-services.sh start DIR; source DIR/env; then cargo test -- --include-ignored"]
async fn prometheus_per_pod_and_scalar_queries() {
    let src = prometheus();
    // The exporter's series, scraped by the real server: per pod by the pod label.
    let v = query_until_data(&src, "avg by (pod) (dcgm_fi_dev_gpu_util)").await;
    assert_eq!(
        v,
        SourceValue::PerPod(BTreeMap::from([
            ("triton-0".into(), 40.0),
            ("triton-1".into(), 70.0)
        ]))
    );
    let v = query_until_data(&src, "sum(queue_depth)").await;
    assert_eq!(v, SourceValue::Scalar(17.0));
    // Template variables.
    let q = sources::render_query(
        "sum(dcgm_fi_dev_gpu_util{pod=~\"{{name}}-.*\"})",
        "triton",
        "prod",
    );
    assert_eq!(query_until_data(&src, &q).await, SourceValue::Scalar(110.0));
}

#[tokio::test]
#[ignore = "needs Prometheus and Redis: scripts/test-services.sh start DIR; source DIR/env; then cargo test -- --include-ignored"]
async fn prometheus_errors_name_the_cause() {
    let src = prometheus();
    let e = sources::prometheus_query(
        &src,
        "sum(",
        &Credentials::default(),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("bad_data"), "{e}");
    let down = PrometheusSource {
        url: format!("http://127.0.0.1:{}", free_port()),
        ..Default::default()
    };
    let e = sources::prometheus_query(&down, "up", &Credentials::default(), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}/api/v1/query", down.url)),
        "{e}"
    );
    // A query with no series is no data, not zero.
    let series = sources::prometheus_query(
        &src,
        "absent_metric_ebb",
        &Credentials::default(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(sources::prometheus_value(series).is_err());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn redis_source(key: &str, kind: &str, field: Option<&str>) -> RedisSource {
    RedisSource {
        address: env("EBB_TEST_REDIS_URL"),
        key: key.into(),
        kind: Some(kind.into()),
        field: field.map(str::to_string),
        password_secret_ref: None,
    }
}

fn password() -> Credentials {
    Credentials {
        password: std::env::var("EBB_TEST_REDIS_PASSWORD").ok(),
        ..Default::default()
    }
}

async fn redis_cmd(args: &[&str]) {
    let url = std::env::var("EBB_TEST_REDIS_URL").expect("url");
    let mut u = reqwest::Url::parse(&url).expect("url");
    u.set_password(std::env::var("EBB_TEST_REDIS_PASSWORD").ok().as_deref())
        .expect("password");
    let client = redis::Client::open(u.as_str()).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(&mut con).await.expect("command");
}

#[tokio::test]
#[ignore = "needs Prometheus and Redis: scripts/test-services.sh start DIR; source DIR/env; then cargo test -- --include-ignored"]
async fn redis_counts_backlogs_and_errors() {
    let src = redis_source("ebb:desired", "string", None);
    redis_cmd(&["SET", "ebb:desired", "7"]).await;
    redis_cmd(&["DEL", "ebb:queue"]).await;
    redis_cmd(&["RPUSH", "ebb:queue", "a", "b", "c"]).await;
    redis_cmd(&["HSET", "ebb:h", "backlog", "120"]).await;
    redis_cmd(&["SET", "ebb:text", "lots"]).await;
    let t = Duration::from_secs(5);
    assert_eq!(sources::redis_value(&src, &password(), t).await, Ok(7.0));
    let list = redis_source("ebb:queue", "listLength", None);
    assert_eq!(sources::redis_value(&list, &password(), t).await, Ok(3.0));
    let hash = redis_source("ebb:h", "hashField", Some("backlog"));
    assert_eq!(sources::redis_value(&hash, &password(), t).await, Ok(120.0));
    let missing = redis_source("ebb:nope", "string", None);
    let e = sources::redis_value(&missing, &password(), t)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("key ebb:nope is not set"), "{e}");
    let text = redis_source("ebb:text", "string", None);
    let e = sources::redis_value(&text, &password(), t)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds 'lots', not a number"), "{e}");
    // The server requires a password.
    let e = sources::redis_value(&src, &Credentials::default(), t)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("redis "), "{e}");
}

#[tokio::test]
async fn pods_are_scraped_over_http() {
    let a = TcpListener::bind("127.0.1.2:0").expect("bind");
    let port = a.local_addr().expect("addr").port();
    let b = TcpListener::bind(("127.0.1.3", port)).expect("bind");
    serve(a, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 3\nvllm:num_requests_waiting{model_name=\"m\"} 2\n".into());
    serve(b, "vllm:num_requests_running{model_name=\"m\"} 5\n".into());
    let src = PodScrapeSource {
        port,
        metric: Some("vllm:num_requests_running".into()),
        ..Default::default()
    };
    let pods = [
        PodEndpoint {
            name: "a".into(),
            ip: Some("127.0.1.2".into()),
        },
        PodEndpoint {
            name: "b".into(),
            ip: Some("127.0.1.3".into()),
        },
        PodEndpoint {
            name: "c".into(),
            ip: None,
        },
    ];
    let scrapes = sources::scrape_pods(&src, &pods, Duration::from_secs(2)).await;
    let by: BTreeMap<String, Option<f64>> = scrapes
        .iter()
        .map(|(p, r)| {
            (
                p.clone(),
                r.as_ref()
                    .ok()
                    .and_then(|s| sources::metric_sum(s, "vllm:num_requests_running")),
            )
        })
        .collect();
    assert_eq!(
        by,
        BTreeMap::from([
            ("a".into(), Some(3.0)),
            ("b".into(), Some(5.0)),
            ("c".into(), None)
        ])
    );
    let c = &scrapes[2].1;
    assert!(c
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("pod c has no IP yet"));
}

/// A pod whose metrics page never ends (streamed without a length) and one that states a
/// length past the bound: each fails its own scrape, named, after at most the bound read,
/// and the pod beside them is scraped as usual.
#[tokio::test]
async fn a_metrics_page_past_the_bound_fails_its_scrape() {
    let endless = TcpListener::bind("127.0.1.4:0").expect("bind");
    let port = endless.local_addr().expect("addr").port();
    let stated = TcpListener::bind(("127.0.1.5", port)).expect("bind");
    let fine = TcpListener::bind(("127.0.1.6", port)).expect("bind");
    std::thread::spawn(move || {
        for s in endless.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.read(&mut [0u8; 2048]);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            );
            let line = b"# an endless comment line, sixty-four bytes long, again and on\n";
            let mut sent = 0usize;
            // Twice the bound at most, so that a reader without one would still finish.
            while sent < 2 * sources::MAX_BODY_BYTES && s.write_all(line).is_ok() {
                sent += line.len();
            }
        }
    });
    std::thread::spawn(move || {
        for s in stated.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.read(&mut [0u8; 2048]);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\nm 1\n",
                1u64 << 40
            );
        }
    });
    serve(fine, "m 4\n".into());
    let src = PodScrapeSource {
        port,
        metric: Some("m".into()),
        ..Default::default()
    };
    let pod = |name: &str, ip: &str| PodEndpoint {
        name: name.into(),
        ip: Some(ip.into()),
    };
    let pods = [
        pod("endless", "127.0.1.4"),
        pod("stated", "127.0.1.5"),
        pod("fine", "127.0.1.6"),
    ];
    let scrapes = sources::scrape_pods(&src, &pods, Duration::from_secs(20)).await;
    for (name, scrape) in &scrapes[..2] {
        let e = scrape.as_ref().map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("answered more than 16 MiB"), "{name}: {e}");
    }
    let fine = scrapes[2].1.as_ref().expect("the pod beside them");
    assert_eq!(sources::metric_sum(fine, "m"), Some(4.0));
}

/// A stand-in for a Prometheus behind auth: answers a scalar only when the request carries
/// `expected` as its Authorization header, 401 otherwise.
fn authenticated_prometheus(expected: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            let ok = req.contains(&format!("authorization: {}", expected.to_lowercase()));
            let (status, body) = if ok {
                (
                    "200 OK",
                    r#"{"status":"success","data":{"resultType":"scalar","result":[1,"42"]}}"#,
                )
            } else {
                (
                    "401 Unauthorized",
                    r#"{"status":"error","errorType":"unauthorized","error":"missing or bad credentials"}"#,
                )
            };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn prometheus_bearer_and_basic_auth() {
    let src = PrometheusSource {
        url: authenticated_prometheus("Bearer s3cret-token"),
        ..Default::default()
    };
    let t = Duration::from_secs(2);
    let creds = Credentials {
        token: Some("s3cret-token".into()),
        ..Default::default()
    };
    let series = sources::prometheus_query(&src, "up", &creds, t)
        .await
        .expect("with the token");
    assert_eq!(
        sources::prometheus_value(series),
        Ok(SourceValue::Scalar(42.0))
    );
    let e = sources::prometheus_query(&src, "up", &Credentials::default(), t)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("401") && e.contains("unauthorized"), "{e}");
    // Basic auth: "ebb:pw" in base64.
    let src = PrometheusSource {
        url: authenticated_prometheus("Basic ZWJiOnB3"),
        ..Default::default()
    };
    let creds = Credentials {
        basic: Some(("ebb".into(), "pw".into())),
        ..Default::default()
    };
    assert!(sources::prometheus_query(&src, "up", &creds, t)
        .await
        .is_ok());
}

/// The test-only certificates in `tests/fixtures/tls` (README there says how they were made).
fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Prometheus stand-in over TLS with `server.crt` (signed by `ca.crt`), answering a scalar
/// to every request. Returns its URL.
fn tls_prometheus() -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&fixture("server.crt"))
        .collect::<Result<_, _>>()
        .expect("server.crt");
    let key = PrivateKeyDer::from_pem_slice(&fixture("server.key")).expect("server.key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let config = std::sync::Arc::new(config);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, s);
            let mut buf = [0u8; 4096];
            if tls.read(&mut buf).unwrap_or(0) == 0 {
                continue; // the client refused the certificate
            }
            let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#;
            let _ = write!(tls, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    format!("https://{addr}")
}

/// A CA bundle is trusted whole (a cluster's CA beside others, as `ca.crt` Secrets and
/// `--prometheus-ca-file` hold them), wherever in it the server's CA is; without it, the
/// server's certificate is refused and the error says so.
#[tokio::test]
async fn prometheus_over_tls_trusts_every_ca_in_a_bundle() {
    let src = PrometheusSource {
        url: tls_prometheus(),
        ..Default::default()
    };
    let t = Duration::from_secs(5);
    let with_ca = |pem: Vec<u8>| Credentials {
        ca_pem: Some(pem),
        ..Default::default()
    };
    let bundle = [fixture("other.crt"), fixture("ca.crt")].concat();
    let series = sources::prometheus_query(&src, "up", &with_ca(bundle), t)
        .await
        .expect("the server's CA second in the bundle");
    assert_eq!(
        sources::prometheus_value(series),
        Ok(SourceValue::Scalar(7.0))
    );
    let e = sources::prometheus_query(&src, "up", &with_ca(fixture("other.crt")), t)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let e = sources::prometheus_query(&src, "up", &with_ca(b"junk".to_vec()), t)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ca.crt") && e.contains("no PEM certificate"),
        "{e}"
    );
}
