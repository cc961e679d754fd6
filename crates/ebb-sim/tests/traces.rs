//! Trace readers on the real files (shipped ones always, `../shared/traces` when present) and
//! on small files in the same formats; malformed rows name the file, line and reason.

use ebb_sim::trace::{read_trace, TraceFormat};
use ebb_sim::Workload;
use std::io::Write;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> Option<PathBuf> {
    let p = repo().join("../shared/traces");
    p.is_dir().then_some(p)
}

fn requests(w: &Workload) -> usize {
    match w {
        Workload::Requests(r) => r.len(),
        Workload::Rate { .. } => panic!("expected requests"),
    }
}

#[test]
fn shipped_azure_traces_read_with_real_columns() {
    let code = read_trace(
        &repo().join("traces/azure-public-dataset/AzureLLMInferenceTrace_code.csv"),
        None,
    )
    .unwrap();
    assert_eq!(code.format, TraceFormat::AzureLlm);
    assert_eq!(requests(&code.workload), 8819);
    // 57 minutes, per SOURCES.md.
    let minutes = code.workload.duration() / 60.0;
    assert!((56.0..58.0).contains(&minutes), "{minutes}");
    let Workload::Requests(r) = &code.workload else {
        unreachable!()
    };
    assert_eq!(r[0].at, 0.0);
    assert_eq!(r[0].work, 10.0, "first row generated 10 tokens");
    assert_eq!(r[0].prompt, 4808.0, "first row's context was 4,808 tokens");
    let conv = read_trace(
        &repo().join("traces/azure-public-dataset/AzureLLMInferenceTrace_conv.csv"),
        None,
    )
    .unwrap();
    assert_eq!(requests(&conv.workload), 19366);
}

#[test]
fn shipped_mooncake_traces_read() {
    let conv = read_trace(
        &repo().join("traces/mooncake/conversation_trace.jsonl"),
        None,
    )
    .unwrap();
    assert_eq!(conv.format, TraceFormat::Mooncake);
    assert_eq!(requests(&conv.workload), 12031);
    let Workload::Requests(r) = &conv.workload else {
        unreachable!()
    };
    assert_eq!(
        (r[0].prompt, r[0].work),
        (6758.0, 500.0),
        "the first line's lengths"
    );
    let minutes = conv.workload.duration() / 60.0;
    assert!((55.0..61.0).contains(&minutes), "{minutes}");
    let syn = read_trace(&repo().join("traces/mooncake/synthetic_trace.jsonl"), None).unwrap();
    assert_eq!(requests(&syn.workload), 3993);
}

#[test]
fn shipped_worldcup_counts_become_a_per_minute_rate() {
    let t = read_trace(
        &repo().join("traces/worldcup98-dataset/invocation_count.csv"),
        None,
    )
    .unwrap();
    assert_eq!(t.format, TraceFormat::WorldCup);
    let Workload::Rate { interval, rates } = &t.workload else {
        panic!()
    };
    assert_eq!(*interval, 60.0);
    // 125,300 rows over 125,310 calendar minutes: the ten minutes missing from the source
    // read as zero requests.
    assert_eq!(rates.len(), 125_310);
    assert_eq!(rates.iter().filter(|r| **r == 0.0).count(), 10);
    assert!((rates[0] - 2.0 / 60.0).abs() < 1e-12);
    let peak = rates.iter().copied().fold(0.0, f64::max) * 60.0;
    assert_eq!(peak, 229_426.0);
}

#[test]
#[ignore = "needs ../shared/traces beside the checkout; then cargo test -- --include-ignored"]
fn shared_traces_all_read() {
    let dir = shared().expect("../shared/traces is not beside the checkout");
    let cases: &[(&str, TraceFormat, f64)] = &[
        (
            "alibaba-clusterdata/cluster-trace-v2026-GenAI/lora_request_trace.csv",
            TraceFormat::AlibabaLora,
            26_823.0,
        ),
        (
            "alibaba-clusterdata/cluster-trace-v2026-GenAI/qps.tar.gz",
            TraceFormat::AlibabaQps,
            0.0,
        ),
        (
            "web-service-datasets/nasa/workload.tbz2",
            TraceFormat::CountsPerSecond,
            0.0,
        ),
        (
            "alibaba-clusterdata/cluster-trace-gpu-v2025/disaggregated_DLRM_trace.csv",
            TraceFormat::AlibabaDlrm,
            0.0,
        ),
    ];
    for (file, format, count) in cases {
        let t = read_trace(&dir.join(file), None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(t.format, *format, "{file}");
        if *count > 0.0 {
            assert_eq!(t.workload.expected_requests(), *count, "{file}");
        }
    }
    // NASA: 5,059,950 seconds, mean 0.68 req/s, as SOURCES.md says.
    let nasa = read_trace(&dir.join("web-service-datasets/nasa/workload.tbz2"), None).unwrap();
    let Workload::Rate { rates, .. } = &nasa.workload else {
        panic!()
    };
    assert_eq!(rates.len(), 5_059_950);
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    assert!((mean - 0.68).abs() < 0.01, "{mean}");
    // Archives without traffic are refused with a reason.
    let e = read_trace(
        &dir.join("alibaba-clusterdata/cluster-trace-v2026-GenAI/queue_size_raw_anon.tar.gz"),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no request or rate series"), "{e}");
}

/// Writes a one-file tar archive through `compressor` (gzip or bzip2).
fn tar_with<W: Write>(compressor: W, name: &str, text: &str) -> W {
    let mut tar = tar::Builder::new(compressor);
    let mut h = tar::Header::new_gnu();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, name, text.as_bytes()).unwrap();
    tar.into_inner().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn small_files_in_each_format() {
    let d = tempfile::tempdir().unwrap();
    let lora = write(d.path(), "lora.csv", "gmt_create,predict_type,predict_status,exec_time_seconds,groupId\n2024-11-15 16:57:50,TXT_2_IMG,SUCCEED,32.0,G0\n2024-11-15 16:58:00,TXT_2_IMG,FAILED,,G1\n");
    let t = read_trace(&lora, None).unwrap();
    let Workload::Requests(r) = &t.workload else {
        panic!()
    };
    assert_eq!((r[1].at, r[0].work), (10.0, 32.0));
    assert!(r[1].work.is_nan());

    // qps.tar.gz: two containers' generative QPS summed per sample time; API rows ignored.
    let csv = "timestamp_anon,value,container_ip,request_type\n100.0,5.0,,API Requests\n100.0,0.5,a,Generative Requests\n100.0,0.25,b,Generative Requests\n157.0,1.0,a,Generative Requests\n";
    let qps = d.path().join("qps.tar.gz");
    tar_with(
        flate2::write::GzEncoder::new(
            std::fs::File::create(&qps).unwrap(),
            flate2::Compression::default(),
        ),
        "qps.csv",
        csv,
    )
    .finish()
    .unwrap();
    let t = read_trace(&qps, None).unwrap();
    assert_eq!(
        t.workload,
        Workload::Rate {
            interval: 57.0,
            rates: vec![0.75, 1.0]
        }
    );

    // Whitespace-separated per-second counts, plain and tbz2.
    let counts = "1 0 2\n3 0\n";
    let txt = write(d.path(), "workload.txt", counts);
    assert_eq!(
        read_trace(&txt, None).unwrap().workload,
        Workload::Rate {
            interval: 1.0,
            rates: vec![1.0, 0.0, 2.0, 3.0, 0.0]
        }
    );
    let tbz = d.path().join("workload.tbz2");
    tar_with(
        bzip2::write::BzEncoder::new(
            std::fs::File::create(&tbz).unwrap(),
            bzip2::Compression::default(),
        ),
        "workload.txt",
        counts,
    )
    .finish()
    .unwrap();
    assert_eq!(
        read_trace(&tbz, None).unwrap().workload.expected_requests(),
        6.0
    );

    // DLRM instances: replica count per minute of the busiest app.
    let dlrm = write(
        d.path(),
        "dlrm.csv",
        "instance_sn,role,app_name,creation_time,scheduled_time,deletion_time\ni0,HN,app_0,,,120\ni1,HN,app_0,60,61,\ni2,HN,app_1,0,1,30\n",
    );
    let t = read_trace(&dlrm, None).unwrap();
    assert_eq!(
        t.workload,
        Workload::Rate {
            interval: 60.0,
            rates: vec![1.0, 2.0]
        }
    );

    // Generic request and rate CSVs.
    let req = write(
        d.path(),
        "req.csv",
        "timestamp,model,work\n10.5,a,3\n11,b,\n12,a,1\n",
    );
    let t = read_trace(&req, None).unwrap();
    let Workload::Requests(r) = &t.workload else {
        panic!()
    };
    assert_eq!(
        r.iter().map(|q| (q.at, q.model)).collect::<Vec<_>>(),
        vec![(0.0, 0), (0.5, 1), (1.5, 0)]
    );
    let rate = write(d.path(), "rate.csv", "time,count\n0,60\n60,120\n");
    assert_eq!(
        read_trace(&rate, None).unwrap().workload,
        Workload::Rate {
            interval: 60.0,
            rates: vec![1.0, 2.0]
        }
    );
}

#[test]
fn measured_latencies_become_a_cold_start_distribution() {
    let d = tempfile::tempdir().unwrap();
    let csv = "timestamp_anon,value,container_ip\n1662859290.0,2639.0,a\n1662859404.0,22700.0,b\n";
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(d.path().join("lat.tar.gz")).unwrap(),
        flate2::Compression::default(),
    );
    tar_with(gz, "basemodel_update_latency_anon.csv", csv)
        .finish()
        .unwrap();
    assert_eq!(
        ebb_sim::trace::read_latencies_ms(&d.path().join("lat.tar.gz")).unwrap(),
        vec![2.639, 22.7]
    );
    let bad = write(d.path(), "bad.csv", "value\n12\nslow\n");
    let e = ebb_sim::trace::read_latencies_ms(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("bad.csv:3: value is not a number of milliseconds"),
        "{e}"
    );
    if let Some(dir) = shared() {
        let v = ebb_sim::trace::read_latencies_ms(&dir.join(
            "alibaba-clusterdata/cluster-trace-v2026-GenAI/basemodel_update_latency_anon.tar.gz",
        ))
        .unwrap();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let p50 = sorted[sorted.len() / 2];
        assert!(
            (p50 - 22.7).abs() < 0.5,
            "p50 {p50} s, SOURCES.md says 22.7 s"
        );
    }
}

#[test]
fn malformed_rows_name_file_line_and_reason() {
    let d = tempfile::tempdir().unwrap();
    let azure = write(d.path(), "AzureLLMInferenceTrace_x.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04,12,lots\n");
    let e = read_trace(&azure, None).unwrap_err().to_string();
    assert!(
        e.ends_with(
            "AzureLLMInferenceTrace_x.csv:3: GeneratedTokens 'lots' is not a number of tokens"
        ),
        "{e}"
    );
    let negative = write(
        d.path(),
        "AzureLLMInferenceTrace_y.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,-3,10\n",
    );
    let e = read_trace(&negative, None).unwrap_err().to_string();
    assert!(
        e.ends_with("AzureLLMInferenceTrace_y.csv:2: ContextTokens '-3' is not a number of tokens"),
        "{e}"
    );

    let bad_time = write(
        d.path(),
        "AzureLLMInferenceTrace_y.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n",
    );
    let e = read_trace(&bad_time, None).unwrap_err().to_string();
    assert!(
        e.contains(":2: TIMESTAMP 'yesterday' is not a date-time"),
        "{e}"
    );

    let mut f = std::fs::File::create(d.path().join("t.jsonl")).unwrap();
    writeln!(
        f,
        "{{\"timestamp\": 0, \"output_length\": 5}}\n{{\"timestamp\": \"soon\"}}"
    )
    .unwrap();
    let e = read_trace(&d.path().join("t.jsonl"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.jsonl:2: invalid type: string \"soon\""),
        "{e}"
    );

    let counts = write(d.path(), "workload.txt", "1 2\n3 x\n");
    let e = read_trace(&counts, None).unwrap_err().to_string();
    assert!(
        e.ends_with("workload.txt:2: 'x' is not a request count"),
        "{e}"
    );

    let wc = write(
        d.path(),
        "wc.csv",
        "period,count\n1998-04-30 21:30:00,2\n1998-04-30 21:31:00,-4\n",
    );
    let e = read_trace(&wc, None).unwrap_err().to_string();
    assert!(
        e.ends_with("wc.csv:3: count -4 is not a request count"),
        "{e}"
    );

    let unknown = write(d.path(), "what.csv", "a,b\n1,2\n");
    let e = read_trace(&unknown, None).unwrap_err().to_string();
    assert!(
        e.contains("unknown trace format (header 'a,b'); pass --trace-format"),
        "{e}"
    );

    let missing = read_trace(&d.path().join("nope.csv"), None)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.csv"), "{missing}");
}

/// A rate series's rates, or a panic naming what it is instead.
fn rates(w: &Workload) -> (f64, Vec<f64>) {
    match w {
        Workload::Rate { interval, rates } => (*interval, rates.clone()),
        Workload::Requests(_) => panic!("expected a rate series"),
    }
}

#[test]
fn prometheus_range_answers_become_one_rate_series() {
    let d = tempfile::tempdir().unwrap();
    // What curl saves from /api/v1/query_range: two pods' rates are added up; a NaN (a gap in
    // scraping) is left out, which leaves that step at the other pod's rate.
    let api = r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"pod":"a"},"values":[[1733011200,"1.5"],[1733011215,"2"],[1733011230,"NaN"]]},
        {"metric":{"pod":"b"},"values":[[1733011200,"0.5"],[1733011215,"1"],[1733011230,"4"]]}]}}"#;
    let p = write(d.path(), "traffic.json", api);
    let t = read_trace(&p, None).unwrap();
    assert_eq!(t.format, TraceFormat::Prometheus);
    assert_eq!(rates(&t.workload), (15.0, vec![2.0, 3.0, 4.0]));
    assert_eq!(
        t.start_unix_ms,
        Some(1_733_011_200_000),
        "Unix times are on the calendar"
    );

    // Two day-long answers appended by a loop: the sample where they meet counts once.
    let day = |from: i64, v: &str| {
        format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[[{from},"{v}"],[{},"{v}"]]}}]}}}}"#,
            from + 60
        )
    };
    let appended = format!("{}\n{}\n", day(0, "1"), day(60, "2"));
    let p = write(d.path(), "week.txt", &appended);
    let t = read_trace(&p, None).unwrap();
    assert_eq!(t.format, TraceFormat::Prometheus, "detected by content");
    assert_eq!(rates(&t.workload), (60.0, vec![1.0, 2.0, 2.0]));

    // promtool query range -o json: the bare matrix.
    let bare = r#"[{"metric":{"job":"x"},"values":[[10.5,"3"],[11.5,"5"]]}]"#;
    let p = write(d.path(), "promtool.json", bare);
    assert_eq!(
        rates(&read_trace(&p, None).unwrap().workload),
        (1.0, vec![3.0, 5.0])
    );
}

#[test]
fn prometheus_answers_that_cannot_be_replayed_say_why() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries"}"#,
            "Prometheus answered error (bad_data): exceeded maximum resolution of 11,000 points per timeseries",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            "the answer is a vector, not a range query's matrix: save /api/v1/query_range, not /api/v1/query",
        ),
        (
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            "the answer holds no samples (the query matched no series over that range)",
        ),
        (
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[0,"-2"]]}]}}"#,
            "the value -2 at 0 is not a request rate (requests per second)",
        ),
        ("", "the file holds no answer"),
    ];
    for (text, reason) in cases {
        let p = write(d.path(), "answer.json", text);
        let e = read_trace(&p, None).unwrap_err().to_string();
        assert!(e.ends_with(&format!("answer.json: {reason}")), "{e}");
    }
    let p = write(d.path(), "answer.json", "{\"status\":\n\"success\", oops}");
    let e = read_trace(&p, None).unwrap_err().to_string();
    assert!(
        e.contains("answer.json:2: not a Prometheus range query's answer"),
        "{e}"
    );
}

#[test]
fn grafana_csv_exports_add_up_their_series() {
    let d = tempfile::tempdir().unwrap();
    // Formatted times, a series name with commas inside its quotes, an empty cell where a
    // series had no sample.
    let csv = "\"Time\",\"{pod=\"\"a\"\",job=\"\"m\"\"}\",\"{pod=\"\"b\"\",job=\"\"m\"\"}\"\n2026-12-01 00:00:00,1,2\n2026-12-01 00:00:30,4,\n2026-12-01 00:01:00,,\n2026-12-01 00:01:30,1,1\n";
    let p = write(d.path(), "grafana.csv", csv);
    let t = read_trace(&p, None).unwrap();
    assert_eq!(t.format, TraceFormat::RateCsv);
    assert_eq!(rates(&t.workload), (30.0, vec![3.0, 4.0, 0.0, 2.0]));
    assert_eq!(
        t.start_unix_ms, None,
        "a date-time without a zone is not on the calendar"
    );
    // Unix milliseconds (Grafana without formatted data).
    let ms = "Time,rate\n1764547200000,2\n1764547215000,6\n";
    let p = write(d.path(), "ms.csv", ms);
    assert_eq!(
        rates(&read_trace(&p, None).unwrap().workload),
        (15.0, vec![2.0, 6.0])
    );
    let bad = write(d.path(), "bad.csv", "\"Time\",\"x\"\n0,1\n15,fast\n");
    let e = read_trace(&bad, None).unwrap_err().to_string();
    assert!(e.ends_with("bad.csv:3: x 'fast' is not a number"), "{e}");
}
