//! `ebb up`'s side of an `engine` block: each ready replica's `/metrics` (on the replica's own
//! port), read through the engine's preset into the observations of the policy's engine
//! metrics.

use bytes::Bytes;
use ebb_core::engine::{EngineReader, EngineReading, Sample};
use ebb_core::policy::Engine;
use ebb_core::Time;
use ebb_proxy::upstream::Upstream;
use http_body_util::{BodyExt, Full, Limited};
use std::collections::BTreeSet;
use std::time::Duration;

/// The most a replica's metrics page may hold.
const MAX_METRICS_BYTES: usize = 4 << 20;

/// Fetches one replica's metrics and parses the samples named in `names` (the engine's:
/// [`ebb_core::engine::EngineKind::sample_names`]); the error says why.
pub async fn scrape(
    client: &Upstream,
    port: u16,
    path: &str,
    timeout: Duration,
    names: &BTreeSet<String>,
) -> Result<Vec<Sample>, String> {
    let req = hyper::Request::get(format!("http://127.0.0.1:{port}{path}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let fetch = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{path} answered {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_METRICS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading {path}: {e}"))?;
        String::from_utf8(body.to_bytes().to_vec()).map_err(|e| e.to_string())
    };
    let text = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("{path} took over {:.1}s", timeout.as_secs_f64()))??;
    ebb_proxy::exposition::parse_where(&text, |name| names.contains(name))
}

/// Scrapes every serving replica (name, port) at once and reads the engine's signals
/// (`starting`: whether others are starting); a replica whose scrape failed gives nothing (a
/// signal none gave is missing, and holds the count).
pub async fn observe(
    client: &Upstream,
    engine: &Engine,
    reader: &mut EngineReader,
    (replicas, starting): (&[(String, u16)], bool),
    timeout: Duration,
    now: Time,
) -> EngineReading {
    // A replica whose scrape failed comes with no samples: it gives no value this round, but
    // its histogram window goes on.
    let names = &engine.kind.sample_names();
    let scrapes: Vec<(String, Vec<Sample>)> =
        futures::future::join_all(replicas.iter().map(|(name, port)| async move {
            let samples = scrape(client, *port, &engine.path, timeout, names).await;
            (name.clone(), samples.unwrap_or_default())
        }))
        .await;
    reader.read(engine, &scrapes, starting, now)
}

#[cfg(test)]
mod tests {
    use ebb_core::engine::{EngineReader, Sample};
    use ebb_core::{MetricValues, Policy, Time};

    fn parse(text: &str) -> Vec<Sample> {
        ebb_proxy::exposition::parse(text).expect("exposition")
    }

    fn engine(yaml: &str) -> ebb_core::policy::Engine {
        Policy::from_yaml(yaml)
            .expect("policy")
            .engine
            .expect("engine")
    }

    fn per_pod(obs: &[ebb_core::MetricObservation], name: &str) -> Vec<f64> {
        match obs.iter().find(|o| o.name == name).map(|o| &o.values) {
            Some(MetricValues::PerPod { samples }) => samples.iter().map(|s| s.value).collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn external(obs: &[ebb_core::MetricObservation], name: &str) -> Option<f64> {
        match obs.iter().find(|o| o.name == name).map(|o| &o.values) {
            Some(MetricValues::External { values, .. }) => values.first().copied(),
            _ => None,
        }
    }

    /// A TTFT histogram, in the engine's own names and units: `n` observations, a share `fast`
    /// of them within the second bound, the rest within the third.
    fn histogram(name: &str, labels: &str, bounds: [&str; 3], n: f64, fast: f64) -> String {
        let [a, b, c] = bounds;
        format!(
            "# TYPE {name} histogram\n{name}_bucket{{{labels}le=\"{a}\"}} 0\n{name}_bucket{{{labels}le=\"{b}\"}} {}\n{name}_bucket{{{labels}le=\"{c}\"}} {n}\n{name}_bucket{{{labels}le=\"+Inf\"}} {n}\n{name}_sum{{{labels}}} 1\n{name}_count{{{labels}}} {n}\n",
            n * fast
        )
    }

    /// The names a vLLM engine reads ([`ebb_core::engine::EngineKind::sample_names`], what the
    /// controller's engine scrape keeps of each page) read every signal as the whole page
    /// does: the demo engine's page (vLLM's names, labels and buckets), three rounds, with every
    /// target and the LLM SLO in the policy.
    #[test]
    fn the_names_an_engine_reads_read_what_the_whole_page_reads() {
        use crate::demo_llm::metrics::Metrics;
        use std::sync::atomic::Ordering;
        use std::time::Duration;
        let e = engine(
            "maxReplicas: 8\nengine: {kind: vllm, kvCacheUtilization: 80%, waitingPerReplica: 2, runningPerReplica: 8, ttft: {percentile: p90, below: 500ms}, itl: {percentile: p50, below: 50ms}, queueTime: {percentile: p90, below: 1s}}\nslo: {ttft: {latency: 2s, percentile: p90}, itl: {latency: 50ms}}",
        );
        let names = e.kind.sample_names();
        let metrics = Metrics::default();
        let mut whole = EngineReader::default();
        let mut kept = EngineReader::default();
        for (round, s) in [(1u64, 10), (2, 20), (3, 30)] {
            for i in 0..200 * round {
                let ms = |base: u64| Duration::from_millis(base + i % 97);
                metrics.time_to_first_token.observe(ms(40));
                metrics.inter_token.observe(ms(5));
                metrics.time_per_output_token.observe(ms(5));
                metrics.queue_time.observe(ms(20));
                metrics.e2e_latency.observe(ms(900));
            }
            metrics
                .prompt_tokens
                .fetch_add(5_000 * round, Ordering::Relaxed);
            metrics
                .generation_tokens
                .fetch_add(900 * round, Ordering::Relaxed);
            let page = metrics.exposition("m", 5, 3, 0.6);
            let all = parse(&page);
            let read = ebb_proxy::exposition::parse_where(&page, |n| names.contains(n)).unwrap();
            // The demo's page is mostly the histograms read; vLLM's own has a dozen more.
            assert!(read.len() < all.len(), "{} of {}", read.len(), all.len());
            let at = Time::from_secs(s);
            let from_whole = whole.read(&e, &[("a".into(), all)], false, at);
            let from_kept = kept.read(&e, &[("a".into(), read)], false, at);
            assert_eq!(from_whole, from_kept, "round {round}");
            if round == 3 {
                assert_eq!(from_whole.metrics.len(), 6, "{from_whole:?}");
                assert!(from_whole.sample.is_some(), "{from_whole:?}");
            }
        }
    }

    /// vLLM's V1 names and labels, as its `/metrics` writes them.
    #[test]
    fn vllm_gauges_and_ttft_histogram() {
        let e = engine("maxReplicas: 8\nengine: {kind: vllm, kvCacheUtilization: 80%, waitingPerReplica: 2, ttft: {percentile: p90, below: 500ms}}");
        let labels = "engine=\"0\",model_name=\"m\",";
        let page = |n: f64| {
            format!(
                "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{engine=\"0\",model_name=\"m\"}} 3.0\n# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"m\"}} 0.92\n{}",
                histogram("vllm:time_to_first_token_seconds", labels, ["0.1", "0.25", "1.0"], n, 0.5)
            )
        };
        let mut reader = EngineReader::default();
        let first = reader.observe(
            &e,
            &[("a".into(), parse(&page(100.0)))],
            false,
            Time::from_secs(10),
        );
        assert_eq!(per_pod(&first, "engine.waiting"), vec![3.0]);
        assert_eq!(per_pod(&first, "engine.kvCacheUtilization"), vec![0.92]);
        assert_eq!(
            external(&first, "engine.ttft"),
            None,
            "one scrape is no window"
        );
        // 200 more, half within 0.25 s and half within 1 s: p90's rank 180 is 80 of the 100
        // in (0.25, 1]: 0.25 + 0.75 * 0.8 = 0.85 s.
        let second = reader.observe(
            &e,
            &[("a".into(), parse(&page(300.0)))],
            false,
            Time::from_secs(20),
        );
        let p90 = external(&second, "engine.ttft").expect("p90");
        assert!((p90 - 0.85).abs() < 1e-9, "{p90}");
    }

    /// A window in which every replica was scraped throughout and none counted a request is
    /// an idle fleet, read as nothing waiting (0 s), so that quiet hours may scale down; a
    /// window not yet seen whole stays missing (held).
    #[test]
    fn an_idle_window_seen_whole_reads_zero_not_missing() {
        let e = engine("maxReplicas: 8\nengine: {kind: vllm, ttft: {percentile: p90, below: 500ms}, windowSeconds: 60}");
        let labels = "engine=\"0\",model_name=\"m\",";
        let page = || {
            parse(&histogram(
                "vllm:time_to_first_token_seconds",
                labels,
                ["0.1", "0.25", "1.0"],
                100.0,
                0.5,
            ))
        };
        let mut reader = EngineReader::default();
        let at = |reader: &mut EngineReader, s: i64| {
            let obs = reader.observe(&e, &[("a".into(), page())], false, Time::from_secs(s));
            external(&obs, "engine.ttft")
        };
        assert_eq!(at(&mut reader, 0), None, "one scrape is no window");
        assert_eq!(at(&mut reader, 30), None, "half a window seen");
        assert_eq!(
            at(&mut reader, 70),
            Some(0.0),
            "a whole window without a request"
        );
        // A replica that joins has not been seen over the window: missing again.
        let obs = reader.observe(
            &e,
            &[("a".into(), page()), ("b".into(), page())],
            false,
            Time::from_secs(80),
        );
        assert_eq!(external(&obs, "engine.ttft"), None);
    }

    /// The LLM SLO's sample from vLLM's text: token counters' growth per second over the
    /// window, summed over replicas (a replica whose counter went back restarted and counts
    /// from zero); the goals' quantiles from the histograms; waiting summed; KV use averaged.
    #[test]
    fn vllm_pages_give_the_llm_slo_its_sample() {
        let e = engine(
            "maxReplicas: 8\nengine: {kind: vllm}\nslo: {ttft: {latency: 2s, percentile: p90}, itl: {latency: 50ms}}",
        );
        let labels = "engine=\"0\",model_name=\"m\",";
        let page = |prompt: f64, generated: f64, n: f64, waiting: f64, kv: f64| {
            parse(&format!(
                "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{{engine=\"0\",model_name=\"m\"}} {prompt}\n# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{{engine=\"0\",model_name=\"m\"}} {generated}\nvllm:num_requests_waiting{{engine=\"0\",model_name=\"m\"}} {waiting}\nvllm:num_requests_running{{engine=\"0\",model_name=\"m\"}} 4\nvllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"m\"}} {kv}\n{}{}",
                histogram("vllm:time_to_first_token_seconds", labels, ["0.1", "0.25", "1.0"], n, 0.5),
                histogram("vllm:inter_token_latency_seconds", labels, ["0.01", "0.025", "0.05"], 10.0 * n, 1.0)
            ))
        };
        let mut reader = EngineReader::default();
        let first = reader.read(
            &e,
            &[
                ("a".into(), page(1_000.0, 500.0, 100.0, 1.0, 0.2)),
                ("b".into(), page(9_000.0, 900.0, 100.0, 0.0, 0.4)),
            ],
            false,
            Time::from_secs(10),
        );
        let s = first.sample.expect("a sample");
        assert_eq!((s.replicas, s.tokens_per_second), (2, None));
        // Ten seconds on: a grew by 3,000 + 1,000 tokens; b restarted and counted 2,000 + 0.
        let second = reader.read(
            &e,
            &[
                ("a".into(), page(4_000.0, 1_500.0, 300.0, 2.0, 0.5)),
                ("b".into(), page(2_000.0, 0.0, 300.0, 3.0, 0.7)),
            ],
            false,
            Time::from_secs(20),
        );
        let s = second.sample.expect("a sample");
        assert_eq!(s.tokens_per_second, Some(600.0));
        assert_eq!(s.waiting, 5.0);
        assert!((s.kv_cache.expect("kv") - 0.6).abs() < 1e-12);
        // TTFT: b's counts went back too, so all 300 of its count with a's 200: 500 in the
        // window, 250 within 0.25 s and 250 within 1 s: p90's rank 450 is 200 of the 250 in
        // (0.25, 1]: 0.25 + 0.75 x 0.8 = 0.85 s.
        let ttft = s.ttft_quantile.expect("p90");
        assert!((ttft - 0.85).abs() < 1e-9, "{ttft}");
        // ITL: every gap within 0.025 s; p99 within (0.01, 0.025].
        let itl = s.itl_quantile.expect("p99");
        assert!(itl > 0.01 && itl <= 0.025, "{itl}");
        assert!(
            second.metrics.is_empty(),
            "the block has no target of its own"
        );
    }

    /// vLLM before 0.10 named the KV-cache gauge `gpu_cache_usage_perc`.
    #[test]
    fn vllm_older_kv_cache_name() {
        let e = engine("maxReplicas: 8\nengine: {kind: vllm, kvCacheUtilization: 0.8}");
        let text = "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n";
        let obs =
            EngineReader::default().observe(&e, &[("a".into(), parse(text))], false, Time::ZERO);
        assert_eq!(per_pod(&obs, "engine.kvCacheUtilization"), vec![0.5]);
    }

    /// SGLang's names (`--enable-metrics`), two replicas.
    #[test]
    fn sglang_gauges_per_replica() {
        let e = engine(
            "maxReplicas: 8\nengine: {kind: sglang, kvCacheUtilization: 0.8, waitingPerReplica: 4}",
        );
        let page = |usage: f64, queue: f64| {
            parse(&format!(
                "# TYPE sglang:token_usage gauge\nsglang:token_usage{{model_name=\"m\"}} {usage}\n# TYPE sglang:num_queue_reqs gauge\nsglang:num_queue_reqs{{model_name=\"m\"}} {queue}\n# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{{model_name=\"m\"}} 7\n"
            ))
        };
        let obs = EngineReader::default().observe(
            &e,
            &[("a".into(), page(0.3, 1.0)), ("b".into(), page(0.9, 6.0))],
            false,
            Time::ZERO,
        );
        assert_eq!(per_pod(&obs, "engine.kvCacheUtilization"), vec![0.3, 0.9]);
        assert_eq!(per_pod(&obs, "engine.waiting"), vec![1.0, 6.0]);
    }

    /// The token counters of SGLang (`sglang:prompt_tokens_total`,
    /// `sglang:generation_tokens_total`) and TGI (the sums of its input-length and
    /// generated-token histograms), as their pages write them: the LLM SLO's token rate.
    #[test]
    fn sglang_and_tgi_token_counters() {
        let pages = [
            (
                "sglang",
                "slo: {ttft: {latency: 2s}}",
                "# TYPE sglang:prompt_tokens_total counter\nsglang:prompt_tokens_total{model_name=\"m\"} {p}\n# TYPE sglang:generation_tokens_total counter\nsglang:generation_tokens_total{model_name=\"m\"} {g}\n",
            ),
            (
                "tgi",
                "slo: {itl: {latency: 50ms}}",
                "# TYPE tgi_request_input_length histogram\ntgi_request_input_length_bucket{le=\"+Inf\"} 3\ntgi_request_input_length_sum {p}\ntgi_request_input_length_count 3\n# TYPE tgi_request_generated_tokens histogram\ntgi_request_generated_tokens_bucket{le=\"+Inf\"} 3\ntgi_request_generated_tokens_sum {g}\ntgi_request_generated_tokens_count 3\n",
            ),
        ];
        for (kind, slo, template) in pages {
            let e = engine(&format!("maxReplicas: 8\nengine: {{kind: {kind}}}\n{slo}"));
            let page = |p: f64, g: f64| {
                parse(
                    &template
                        .replace("{p}", &p.to_string())
                        .replace("{g}", &g.to_string()),
                )
            };
            let mut reader = EngineReader::default();
            reader.read(
                &e,
                &[("a".into(), page(100.0, 10.0))],
                false,
                Time::from_secs(0),
            );
            let s = reader
                .read(
                    &e,
                    &[("a".into(), page(600.0, 510.0))],
                    false,
                    Time::from_secs(5),
                )
                .sample
                .expect("a sample");
            // 500 prompt and 500 generated tokens in 5 s.
            assert_eq!(s.tokens_per_second, Some(200.0), "{kind}");
        }
    }

    /// TGI: queue size and the per-request mean time per token histogram; no KV-cache gauge,
    /// which `ebb check` refuses to target.
    #[test]
    fn tgi_queue_and_time_per_token() {
        let e = engine("maxReplicas: 8\nengine: {kind: tgi, waitingPerReplica: 2, itl: {percentile: p50, below: 50ms}}");
        let page = |n: f64| {
            parse(&format!(
                "tgi_queue_size 5\ntgi_batch_current_size 12\n{}",
                histogram(
                    "tgi_request_mean_time_per_token_duration",
                    "",
                    ["0.01", "0.05", "0.1"],
                    n,
                    1.0
                )
            ))
        };
        let mut reader = EngineReader::default();
        reader.observe(&e, &[("a".into(), page(10.0))], false, Time::from_secs(0));
        let obs = reader.observe(&e, &[("a".into(), page(30.0))], false, Time::from_secs(5));
        assert_eq!(per_pod(&obs, "engine.waiting"), vec![5.0]);
        // All 20 new ones within (0.01, 0.05]: the median is halfway, 0.03 s.
        let p50 = external(&obs, "engine.itl").expect("p50");
        assert!((p50 - 0.03).abs() < 1e-9, "{p50}");
        let refused =
            Policy::from_yaml("maxReplicas: 8\nengine: {kind: tgi, kvCacheUtilization: 0.8}")
                .expect_err("tgi has no KV gauge");
        assert!(
            refused
                .to_string()
                .contains("engine.kvCacheUtilization: tgi exports no metric for it"),
            "{refused}"
        );
    }

    /// Queue time (waiting before being scheduled) under each engine's own histogram name:
    /// vLLM's, SGLang's and TGI's; Triton exports it only as a counter, which `ebb check`
    /// refuses to target.
    #[test]
    fn queue_time_histograms_of_each_engine() {
        for (kind, name) in [
            ("vllm", "vllm:request_queue_time_seconds"),
            ("sglang", "sglang:queue_time_seconds"),
            ("tgi", "tgi_request_queue_duration"),
        ] {
            let e = engine(&format!(
                "maxReplicas: 8\nengine: {{kind: {kind}, queueTime: {{percentile: p90, below: 200ms}}}}"
            ));
            let page = |n: f64| parse(&histogram(name, "", ["0.1", "0.3", "0.5"], n, 0.5));
            let mut reader = EngineReader::default();
            reader.observe(&e, &[("a".into(), page(10.0))], false, Time::from_secs(0));
            let obs = reader.observe(&e, &[("a".into(), page(30.0))], false, Time::from_secs(5));
            // 20 new: 10 within (0.1, 0.3], 10 within (0.3, 0.5]; the 18th lies 8/10 into the
            // upper bucket: p90 = 0.3 + 0.8 x 0.2 = 0.46 s.
            let p90 = external(&obs, "engine.queueTime").expect(kind);
            assert!((p90 - 0.46).abs() < 1e-9, "{kind}: {p90}");
        }
        let refused = Policy::from_yaml(
            "maxReplicas: 8\nengine: {kind: triton, queueTime: {percentile: p90, below: 1s}}",
        )
        .expect_err("triton has no queue histogram");
        assert!(
            refused
                .to_string()
                .contains("engine.queueTime: triton exports no metric for it"),
            "{refused}"
        );
    }

    /// Triton with TensorRT-LLM: labeled request counts, KV blocks used over max, and the
    /// first-response histogram in milliseconds.
    #[test]
    fn triton_labeled_series_and_milliseconds() {
        let e = engine("maxReplicas: 8\nengine: {kind: triton, kvCacheUtilization: 0.8, waitingPerReplica: 2, ttft: {percentile: p50, below: 1s}}");
        let page = |n: f64| {
            parse(&format!(
                "nv_trt_llm_request_metrics{{model=\"tensorrt_llm\",request_type=\"waiting\",version=\"1\"}} 4\nnv_trt_llm_request_metrics{{model=\"tensorrt_llm\",request_type=\"active\",version=\"1\"}} 9\nnv_trt_llm_kv_cache_block_metrics{{kv_cache_block_type=\"used\",model=\"tensorrt_llm\",version=\"1\"}} 300\nnv_trt_llm_kv_cache_block_metrics{{kv_cache_block_type=\"max\",model=\"tensorrt_llm\",version=\"1\"}} 400\n{}",
                histogram("nv_inference_first_response_histogram_ms", "model=\"ensemble\",version=\"1\",", ["100", "500", "1000"], n, 1.0)
            ))
        };
        let mut reader = EngineReader::default();
        reader.observe(&e, &[("a".into(), page(10.0))], false, Time::from_secs(0));
        let obs = reader.observe(&e, &[("a".into(), page(20.0))], false, Time::from_secs(5));
        assert_eq!(per_pod(&obs, "engine.waiting"), vec![4.0]);
        assert_eq!(per_pod(&obs, "engine.kvCacheUtilization"), vec![0.75]);
        // 10 new ones within (100, 500] ms: the median is 300 ms.
        let p50 = external(&obs, "engine.ttft").expect("p50");
        assert!((p50 - 0.3).abs() < 1e-9, "{p50}");
    }

    /// A percentile is read only over the replicas serving now: none while others start, its
    /// window starts again when a replica joins, and none from fewer than 10 observations.
    #[test]
    fn percentiles_wait_for_starting_replicas_and_a_window_of_the_new_set() {
        let e = engine("maxReplicas: 8\nengine: {kind: vllm, ttft: {percentile: p50, below: 1s}}");
        let labels = "model_name=\"m\",";
        let page = |n: f64, fast: f64| {
            parse(&histogram(
                "vllm:time_to_first_token_seconds",
                labels,
                ["0.1", "0.25", "1.0"],
                n,
                fast,
            ))
        };
        let ttft = |obs: &[ebb_core::MetricObservation]| external(obs, "engine.ttft");
        let mut r = EngineReader::default();
        let t = Time::from_secs;
        r.observe(&e, &[("a".into(), page(100.0, 0.0))], false, t(0));
        // 100 more, all slow, while a second replica starts: held.
        let slow = r.observe(&e, &[("a".into(), page(200.0, 0.0))], true, t(1));
        assert_eq!(ttft(&slow), None);
        // b serves now: the window starts again, so this scrape is only its baseline.
        let joined = [("a".into(), page(300.0, 1.0)), ("b".into(), page(0.0, 1.0))];
        assert_eq!(ttft(&r.observe(&e, &joined, false, t(2))), None);
        // 5 more: too few.
        let few = [("a".into(), page(305.0, 1.0)), ("b".into(), page(0.0, 1.0))];
        assert_eq!(ttft(&r.observe(&e, &few, false, t(3))), None);
        // 20 more, all fast (the new set's latency, not the slow window's): the median of
        // (0.1, 0.25] is 0.175 s.
        let fast = [
            ("a".into(), page(315.0, 1.0)),
            ("b".into(), page(10.0, 1.0)),
        ];
        let p50 = ttft(&r.observe(&e, &fast, false, t(4))).expect("p50");
        assert!((p50 - 0.175).abs() < 1e-9, "{p50}");
        // b's scrape fails once (no samples): no restart, the window goes on over a's growth.
        let b_silent = [("a".into(), page(335.0, 1.0)), ("b".into(), Vec::new())];
        assert!(ttft(&r.observe(&e, &b_silent, false, t(5))).is_some());
    }
}
