//! `ebb controller` end to end on a real Kubernetes control plane (API level 1.20), with the
//! permissions of `deploy/rbac.yaml`. Skipped without a control plane, unless CI is set.

mod harness;
mod pod_network;
mod process_kubelet;

use ebb_kube::crd::{Autoscaler, AutoscalerStatus};
use harness::{apply, metric, namespace, plane, wait, Controller, Kubelet};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use std::io::{Read, Write};
use std::time::Duration;

fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: m, image: example/model:1}}]}}\n"
    )
}

async fn get_deployment(client: &kube::Client, ns: &str, name: &str) -> Option<Deployment> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get(name).await.ok()
}

/// The Deployment's replicas as its spec asks (-1 when it cannot be read).
async fn replicas(client: &kube::Client, ns: &str, name: &str) -> i32 {
    let d = get_deployment(client, ns, name).await;
    d.and_then(|d| d.spec)
        .and_then(|s| s.replicas)
        .unwrap_or(-1)
}

/// The Deployment's ready replicas, as its controller last counted them.
async fn ready_replicas(client: &kube::Client, ns: &str, name: &str) -> i32 {
    let d = get_deployment(client, ns, name).await;
    d.and_then(|d| d.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

async fn autoscaler(client: &kube::Client, ns: &str, name: &str) -> Option<Autoscaler> {
    Api::<Autoscaler>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()
}

fn condition(a: &Autoscaler, type_: &str) -> Option<(String, String, String)> {
    a.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until Autoscaler `name`'s condition `type_` has `status` and `reason`, and its
/// message contains every one of `mentions`.
async fn wait_condition(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    mentions: &[&str],
) {
    let what = format!("{type_}={status} {reason} mentioning {mentions:?}");
    wait(Duration::from_secs(30), &what, || async {
        autoscaler(client, ns, name)
            .await
            .and_then(|a| condition(&a, type_))
            .is_some_and(|(s, r, m)| {
                s == status && r == reason && mentions.iter().all(|x| m.contains(x))
            })
    })
    .await;
}

async fn events(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

const TRAFFIC_SOURCE: &str = "  sources:\n  - name: traffic\n    pollSeconds: 0.5\n    podScrape: {port: PORT, traffic: {arrivals: ebb_requests_total, completions: ebb_responses_total, inFlight: [ebb_in_flight]}}\n";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn scales_a_deployment_up_and_down_through_scale_on_pod_scraped_traffic() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-scale").await;
    apply(&client, &deployment("model", 1), Some(&ns)).await;
    let kubelet = Kubelet::start(p, &ns, "app=model");
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  concurrency: {{metric: concurrency, targetPerReplica: 4, stableWindowSeconds: 3, panicWindowSeconds: 1}}\n  behavior:\n    scaleDown: {{stabilizationWindowSeconds: 2, policies: [{{type: Percent, value: 100, periodSeconds: 1}}]}}\n  scaleIn: {{deletionCost: true, waitForIdleSeconds: 3}}\n{}",
        TRAFFIC_SOURCE.replace("PORT", &kubelet.port.to_string())
    );
    apply(&client, &spec, Some(&ns)).await;
    let ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    // 14 requests in flight at 4 per replica: 4 replicas.
    kubelet.set_load(14.0);
    wait(
        Duration::from_secs(30),
        "a scale-up to 4, in the status too",
        || async {
            replicas(&client, &ns, "model").await == 4
                && autoscaler(&client, &ns, "model")
                    .await
                    .and_then(|a| a.status)
                    .and_then(|s| s.desired_replicas)
                    == Some(4)
        },
    )
    .await;
    let a = autoscaler(&client, &ns, "model").await.expect("autoscaler");
    let st = a.status.clone().expect("status");
    assert_eq!(st.desired_replicas, Some(4));
    assert!(
        st.decision_state.is_some(),
        "the decision state is kept in the status"
    );
    assert!(st.last_scale_time.is_some());
    assert_eq!(
        condition(&a, "AbleToScale").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(
        condition(&a, "ScalingActive").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(st.observed_generation, a.metadata.generation);
    wait(
        Duration::from_secs(10),
        "a SuccessfulRescale event",
        || async {
            events(&client, &ns)
                .await
                .iter()
                .any(|(r, n)| r == "SuccessfulRescale" && n.starts_with("New size: 4; reason:"))
        },
    )
    .await;
    // Load drops: before the scale-in the victims get a low pod-deletion-cost, and Ebb
    // waits (up to 3 s) for their requests to finish; then replicas go down to 1.
    kubelet.set_load(1.0);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let costs = || async {
        harness::pods_matching(&pods, "app=model")
            .await
            .iter()
            .filter_map(|p| {
                p.annotations()
                    .get(ebb_kube::actuate::DELETION_COST)
                    .and_then(|c| c.parse::<i32>().ok())
            })
            .collect::<Vec<i32>>()
    };
    wait(
        Duration::from_secs(30),
        "victims with a low pod-deletion-cost and others high",
        || async {
            let c = costs().await;
            c.iter().filter(|c| **c < 0).count() == 3
                && c.iter().filter(|c| **c >= 1000).count() == 1
        },
    )
    .await;
    assert_eq!(
        replicas(&client, &ns, "model").await,
        4,
        "the scale-in waits for the victims to go idle"
    );
    wait(Duration::from_secs(30), "a scale-down to 1", || async {
        replicas(&client, &ns, "model").await == 1
    })
    .await;
    let text = ctl.scrape();
    assert!(
        metric(
            &text,
            &format!("ebb_controller_desired_replicas{{namespace=\"{ns}\",autoscaler=\"model\"}}")
        )
        .is_some(),
        "{text}"
    );
    drop(kubelet);
    drop(ctl);
}

/// The Deployment's spec generation: it moves with every write of the replica count, while
/// the deployment controller's status updates leave it alone.
async fn generation(client: &kube::Client, ns: &str, name: &str) -> Option<i64> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get(name).await.expect("deployment").metadata.generation
}

/// The Deployment's resourceVersion once its controller has nothing left to write: its status
/// has caught up with its spec and every replica is ready. From then on only a write to the
/// Deployment (its spec, or `/scale`) changes it.
async fn settled_version(client: &kube::Client, ns: &str, name: &str) -> String {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let settled = |d: &Deployment| {
        let status = d.status.clone().unwrap_or_default();
        let wanted = d.spec.as_ref().and_then(|s| s.replicas);
        status.observed_generation == d.metadata.generation
            && status.ready_replicas == wanted
            && status.updated_replicas == wanted
            && status.available_replicas == wanted
    };
    wait(
        Duration::from_secs(60),
        "the Deployment settled",
        || async { api.get(name).await.is_ok_and(|d| settled(&d)) },
    )
    .await;
    api.get(name)
        .await
        .expect("deployment")
        .metadata
        .resource_version
        .expect("a resourceVersion")
}

/// Sets (or, with `None`, removes) one annotation of the Autoscaler.
async fn annotate(client: &kube::Client, ns: &str, name: &str, key: &str, value: Option<&str>) {
    let api: Api<Autoscaler> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate the autoscaler");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn pause_holds_the_count_and_paused_replicas_sets_it_while_status_says_what_ebb_would_do() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-pause").await;
    apply(&client, &deployment("model", 1), Some(&ns)).await;
    let kubelet = Kubelet::start(p, &ns, "app=model");
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model, annotations: {{ebb.dev/paused: \"true\"}}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  concurrency: {{metric: concurrency, targetPerReplica: 4, stableWindowSeconds: 3, panicWindowSeconds: 1}}\n{}",
        TRAFFIC_SOURCE.replace("PORT", &kubelet.port.to_string())
    );
    apply(&client, &spec, Some(&ns)).await;
    let before = generation(&client, &ns, "model").await;
    let ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    // 14 in flight at 4 per replica: the policy wants 4; paused, the target keeps its 1.
    kubelet.set_load(14.0);
    let desired = |want: u32| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            autoscaler(&client, &ns, "model")
                .await
                .and_then(|a| a.status)
                .and_then(|s| s.desired_replicas)
                == Some(want)
        }
    };
    wait(
        Duration::from_secs(30),
        "status saying 4 while paused",
        || desired(4),
    )
    .await;
    wait_condition(
        &client,
        &ns,
        "model",
        "Paused",
        "True",
        "PausedByAnnotation",
        &["the count is held at 1 (the policy would set 4)"],
    )
    .await;
    assert_eq!(replicas(&client, &ns, "model").await, 1);
    assert_eq!(
        generation(&client, &ns, "model").await,
        before,
        "nothing wrote the target while paused"
    );
    let text = ctl.scrape();
    let desired_metric =
        format!("ebb_controller_desired_replicas{{namespace=\"{ns}\",autoscaler=\"model\"}}");
    assert_eq!(metric(&text, &desired_metric), Some(4.0), "{text}");
    // paused-replicas: set 2 and hold it.
    annotate(&client, &ns, "model", "ebb.dev/paused-replicas", Some("2")).await;
    wait(Duration::from_secs(30), "the paused count of 2", || async {
        replicas(&client, &ns, "model").await == 2
    })
    .await;
    ctl.decisions_pass(&ns, "model", 4.0).await;
    assert_eq!(replicas(&client, &ns, "model").await, 2, "held at 2");
    assert!(desired(4).await, "the status still says what Ebb would do");
    // A value that cannot be read holds the count and says why.
    annotate(
        &client,
        &ns,
        "model",
        "ebb.dev/paused-replicas",
        Some("two"),
    )
    .await;
    wait_condition(
        &client,
        &ns,
        "model",
        "Paused",
        "True",
        "InvalidPauseAnnotation",
        &["'two' is not a whole number"],
    )
    .await;
    assert_eq!(replicas(&client, &ns, "model").await, 2);
    // Unpaused: the policy's count.
    annotate(&client, &ns, "model", "ebb.dev/paused-replicas", None).await;
    annotate(&client, &ns, "model", "ebb.dev/paused", None).await;
    wait(
        Duration::from_secs(30),
        "the policy's 4 once unpaused",
        || async { replicas(&client, &ns, "model").await == 4 },
    )
    .await;
    wait_condition(&client, &ns, "model", "Paused", "False", "NotPaused", &[]).await;
    drop(kubelet);
    drop(ctl);
}

/// Unix milliseconds of a UTC wall-clock time.
fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|d| d.and_hms_opt(h, mi, s))
        .expect("a valid time")
        .and_utc()
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_schedule_raises_the_floor_ahead_of_its_start_and_lets_go_at_its_end() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-schedule").await;
    apply(&client, &deployment("model", 1), Some(&ns)).await;
    let kubelet = Kubelet::start(p, &ns, "app=model");
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n  concurrency: {{metric: concurrency, targetPerReplica: 4, stableWindowSeconds: 3, panicWindowSeconds: 1}}\n  schedules:\n  - {{name: weekday-peak, days: [Mon-Fri], from: '08:00', to: '18:00', timezone: Europe/Berlin, minReplicas: 4, prewarmSeconds: 120}}\n{}",
        TRAFFIC_SOURCE.replace("PORT", &kubelet.port.to_string())
    );
    apply(&client, &spec, Some(&ns)).await;
    // The controller reads the time from a file the test writes: Monday 2027-01-04, Berlin
    // on CET (UTC+1), so the window opens at 07:00 UTC.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = dir.path().join("now");
    let set_clock = |ms: i64| std::fs::write(&clock, ms.to_string()).expect("write the clock");
    set_clock(utc_ms(2027, 1, 4, 6, 50, 0));
    let clock_arg = clock.to_string_lossy().to_string();
    let ctl = Controller::start(
        p,
        &[
            "--namespace",
            &ns,
            "--no-leader-election",
            "--clock-file",
            &clock_arg,
        ],
    );
    kubelet.set_load(0.0);
    ctl.decisions_pass(&ns, "model", 4.0).await;
    assert_eq!(
        replicas(&client, &ns, "model").await,
        1,
        "10 minutes before: no floor"
    );
    // 90 s before 08:00 local, within the 120 s lead: the floor rises.
    set_clock(utc_ms(2027, 1, 4, 6, 58, 30));
    wait(
        Duration::from_secs(30),
        "the pre-warmed floor of 4",
        || async { replicas(&client, &ns, "model").await == 4 },
    )
    .await;
    let prewarming = "schedule weekday-peak (Mon-Fri 08:00-18:00 Europe/Berlin) opens in 90s: pre-warming to minReplicas 4";
    wait(
        Duration::from_secs(30),
        "the pre-warming reason in the status",
        || async {
            autoscaler(&client, &ns, "model")
                .await
                .and_then(|a| a.status)
                .is_some_and(|s| s.reasons.iter().any(|r| r == prewarming))
        },
    )
    .await;
    // Open: the floor holds while the load is nil.
    set_clock(utc_ms(2027, 1, 4, 12, 0, 0));
    ctl.decisions_pass(&ns, "model", 4.0).await;
    assert_eq!(replicas(&client, &ns, "model").await, 4, "held while open");
    // 18:00 local: the window closes and the load's count (1) applies.
    set_clock(utc_ms(2027, 1, 4, 17, 0, 0));
    wait(
        Duration::from_secs(30),
        "back to 1 after the window",
        || async { replicas(&client, &ns, "model").await == 1 },
    )
    .await;
    drop(kubelet);
    drop(ctl);
}

/// Waits for the pool Autoscaler `name`'s status to say its own policy wants `own` replicas
/// (before the other pool's guard).
async fn wait_own_replicas(client: &kube::Client, ns: &str, name: &str, own: u32) {
    let what = format!("{name}'s status: its own policy wants {own}");
    wait(Duration::from_secs(10), &what, || async {
        autoscaler(client, ns, name)
            .await
            .and_then(|a| a.status)
            .and_then(|s| s.pool)
            .is_some_and(|p| p.own_replicas == own)
    })
    .await;
}

/// Disaggregated serving: two Autoscalers, one per pool, paired by `spec.pool`. The prefill
/// pool scales on its traffic (14 in flight at 4 a replica: 4); the decode pool's own traffic
/// asks for its floor of 1, and its guard raises it to one decode replica per prefill replica,
/// read from the prefill Autoscaler's `status.pool`. When prefill falls back, so does decode.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_decode_pool_follows_its_prefill_pool_through_the_ratio_guard() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-pools").await;
    apply(&client, &deployment("prefill", 1), Some(&ns)).await;
    apply(&client, &deployment("decode", 1), Some(&ns)).await;
    let prefill = Kubelet::start(p, &ns, "app=prefill");
    let decode = Kubelet::start(p, &ns, "app=decode");
    let pool = |name: &str, role: &str, partner: &str, port: u16| {
        format!(
            "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: {name}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  pool: {{role: {role}, partner: {partner}, ratio: {{min: 1, max: 4}}}}\n  minReplicas: 1\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  concurrency: {{metric: concurrency, targetPerReplica: 4, stableWindowSeconds: 3, panicWindowSeconds: 1}}\n  behavior:\n    scaleDown: {{stabilizationWindowSeconds: 2, policies: [{{type: Percent, value: 100, periodSeconds: 1}}]}}\n{}",
            TRAFFIC_SOURCE.replace("PORT", &port.to_string())
        )
    };
    apply(
        &client,
        &pool("prefill", "prefill", "decode", prefill.port),
        Some(&ns),
    )
    .await;
    apply(
        &client,
        &pool("decode", "decode", "prefill", decode.port),
        Some(&ns),
    )
    .await;
    let ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    prefill.set_load(14.0);
    decode.set_load(0.0);
    wait(
        Duration::from_secs(40),
        "prefill at 4 and decode raised to 4",
        || async {
            replicas(&client, &ns, "prefill").await == 4
                && replicas(&client, &ns, "decode").await == 4
        },
    )
    .await;
    // The scale is written before the status of the same pass, so the status may lag the
    // replica count by one write: wait for it rather than read it once.
    wait_own_replicas(&client, &ns, "decode", 1).await;
    let raised = "decode pool raised from 1 to 4 replicas: the other pool wants 4, and decode replicas per prefill replica stay within 1-4";
    wait(Duration::from_secs(10), "the guard's reason", || async {
        autoscaler(&client, &ns, "decode")
            .await
            .and_then(|a| a.status)
            .is_some_and(|s| s.reasons.iter().any(|r| r == raised))
    })
    .await;
    // The prefill pool was never raised for decode's sake: its status says its own count.
    wait_own_replicas(&client, &ns, "prefill", 4).await;
    prefill.set_load(1.0);
    wait(Duration::from_secs(40), "both back to 1", || async {
        replicas(&client, &ns, "prefill").await == 1 && replicas(&client, &ns, "decode").await == 1
    })
    .await;
    drop((prefill, decode, ctl));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn scales_a_seldon_like_model_on_a_pods_metric() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-model").await;
    // The Model's pods are the server's: two bare pods carry its label.
    for i in 0..2 {
        apply(&client, &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: iris-{i}, labels: {{model: iris}}}}\nspec: {{containers: [{{name: s, image: example/mlserver:1}}]}}\n"), Some(&ns)).await;
    }
    apply(&client, "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: iris}\nspec: {replicas: 2, storageUri: 'gs://models/iris'}\n", Some(&ns)).await;
    let models = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "mlops.seldon.io",
            "v1alpha1",
            "Model",
        )),
    );
    let status = serde_json::json!({"status": {"replicas": 2, "selector": "model=iris"}});
    models
        .patch_status(
            "iris",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .expect("model status");
    let kubelet = Kubelet::start(p, &ns, "model=iris");
    kubelet.set_gauge(90.0);
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: iris}}\nspec:\n  scaleTargetRef: {{apiVersion: mlops.seldon.io/v1alpha1, kind: Model, name: iris}}\n  minReplicas: 1\n  maxReplicas: 8\n  syncPeriodSeconds: 0.5\n  metrics:\n  - type: Pods\n    pods: {{metric: {{name: gpu}}, target: {{type: AverageValue, averageValue: '30'}}}}\n  sources:\n  - name: gpu\n    pollSeconds: 0.5\n    podScrape: {{port: {}, metric: model_gpu_utilization}}\n",
        kubelet.port
    );
    apply(&client, &spec, Some(&ns)).await;
    let _ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    // 2 pods at 90 against 30 per pod: 6 replicas.
    let spec_replicas = || async {
        models
            .get("iris")
            .await
            .ok()
            .and_then(|m| m.data["spec"]["replicas"].as_i64())
            .unwrap_or(-1)
    };
    wait(Duration::from_secs(30), "the Model scaled to 6", || async {
        spec_replicas().await == 6
    })
    .await;
    // The status is written after the scale: wait for it rather than race it.
    // A value alone is written at most every 15 s (NUMBERS_REFRESH_SECONDS).
    wait(
        Duration::from_secs(20),
        "the summed per-pod value (180) in the status",
        || async {
            autoscaler(&client, &ns, "iris")
                .await
                .and_then(|a| a.status)
                .and_then(|st| st.current_metrics.first().and_then(|m| m.value))
                == Some(180.0)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_failing_source_holds_replicas_and_says_which() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-fail").await;
    apply(&client, &deployment("model", 3), Some(&ns)).await;
    let kubelet = Kubelet::start(p, &ns, "app=model");
    // The source scrapes a port nothing listens on.
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  concurrency: {{metric: concurrency, targetPerReplica: 4}}\n  behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n{}",
        TRAFFIC_SOURCE.replace("PORT", &harness::free_port().to_string())
    );
    apply(&client, &spec, Some(&ns)).await;
    let ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    wait_condition(
        &client,
        &ns,
        "model",
        "ScalingActive",
        "False",
        "FailedGetMetrics",
        &["source traffic (podScrape) failed"],
    )
    .await;
    wait(
        Duration::from_secs(10),
        "a FailedGetSource event",
        || async {
            events(&client, &ns)
                .await
                .iter()
                .any(|(r, n)| r == "FailedGetSource" && n.contains("source traffic"))
        },
    )
    .await;
    ctl.decisions_pass(&ns, "model", 4.0).await;
    assert_eq!(
        replicas(&client, &ns, "model").await,
        3,
        "no scale-down on a failed source"
    );
    drop(kubelet);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_source_that_keeps_failing_falls_back_after_its_threshold() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-fallback").await;
    apply(&client, &deployment("model", 3), Some(&ns)).await;
    let kubelet = Kubelet::start(p, &ns, "app=model");
    // The source scrapes a port nothing listens on; after 3 failed polls in a row its
    // signal proposes 5 (a floor), where a plain hold would keep 3.
    let source = TRAFFIC_SOURCE
        .replace("PORT", &harness::free_port().to_string())
        .replace(
            "    pollSeconds: 0.5\n",
            "    pollSeconds: 0.5\n    fallback: {failureThreshold: 3, behavior: replicas, replicas: 5}\n",
        );
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  concurrency: {{metric: concurrency, targetPerReplica: 4}}\n{source}"
    );
    apply(&client, &spec, Some(&ns)).await;
    let _ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    wait(
        Duration::from_secs(30),
        "the fallback's 5 replicas",
        || async { replicas(&client, &ns, "model").await == 5 },
    )
    .await;
    wait_condition(
        &client,
        &ns,
        "model",
        "ScalingActive",
        "True",
        "ValidMetricFound",
        &[
            "source traffic (podScrape) failed",
            "its metrics fall back to replicas 5",
        ],
    )
    .await;
    let reasons = autoscaler(&client, &ns, "model")
        .await
        .and_then(|a| a.status)
        .map(|s| s.reasons.join("; "))
        .unwrap_or_default();
    assert!(
        reasons.contains("source traffic failed")
            && reasons.contains("concurrency falls back to 5 replicas"),
        "{reasons}"
    );
    drop(kubelet);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn an_invalid_fallback_is_named_by_its_field_path() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-bad-fallback").await;
    apply(&client, &deployment("model", 2), Some(&ns)).await;
    let source = TRAFFIC_SOURCE.replace("PORT", "9").replace(
        "    pollSeconds: 0.5\n",
        "    pollSeconds: 0.5\n    fallback: {behavior: currentReplicasIfLower}\n",
    );
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  concurrency: {{metric: concurrency, targetPerReplica: 4}}\n{source}"
    );
    apply(&client, &spec, Some(&ns)).await;
    let _ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    wait_condition(
        &client,
        &ns,
        "model",
        "ScalingActive",
        "False",
        "InvalidSpec",
        &["spec.sources[0].fallback.replicas: is required with behavior currentReplicasIfLower"],
    )
    .await;
    assert_eq!(replicas(&client, &ns, "model").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn an_hpa_on_the_same_target_is_refused() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-hpa").await;
    apply(&client, &deployment("model", 2), Some(&ns)).await;
    apply(&client, "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: model}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: model}\n  minReplicas: 1\n  maxReplicas: 4\n", Some(&ns)).await;
    apply(&client, "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {name: model}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: model}\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  externalCount: {mode: desiredReplicas}\n", Some(&ns)).await;
    let _ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    wait_condition(
        &client,
        &ns,
        "model",
        "AbleToScale",
        "False",
        "ConflictingAutoscaler",
        &["HorizontalPodAutoscaler model"],
    )
    .await;
    assert_eq!(replicas(&client, &ns, "model").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_dry_run_beside_an_hpa_publishes_its_decisions_and_never_writes_the_target() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-dry-run").await;
    apply(&client, &deployment("model", 2), Some(&ns)).await;
    apply(&client, "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: model}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: model}\n  minReplicas: 1\n  maxReplicas: 4\n", Some(&ns)).await;
    let kubelet = Kubelet::start(p, &ns, "app=model");
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  mode: DryRun\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  concurrency: {{metric: concurrency, targetPerReplica: 4, stableWindowSeconds: 3, panicWindowSeconds: 1}}\n{}",
        TRAFFIC_SOURCE.replace("PORT", &kubelet.port.to_string())
    );
    apply(&client, &spec, Some(&ns)).await;
    let before = generation(&client, &ns, "model").await;
    let version = settled_version(&client, &ns, "model").await;
    let ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    // 22 in flight at 4 per replica: Ebb would set 6; the target keeps the HPA's 2.
    kubelet.set_load(22.0);
    wait(
        Duration::from_secs(30),
        "a dry-run difference of 2 against 6",
        || async {
            autoscaler(&client, &ns, "model")
                .await
                .and_then(|a| a.status)
                .and_then(|s| s.dry_run)
                .is_some_and(|d| {
                    d.differences
                        .iter()
                        .any(|x| (x.target_replicas, x.ebb_replicas) == (2, 6))
                })
        },
    )
    .await;
    let a = autoscaler(&client, &ns, "model").await.expect("autoscaler");
    assert_eq!(a.status.as_ref().and_then(|s| s.desired_replicas), Some(6));
    assert_eq!(condition(&a, "DryRun").map(|c| c.0), Some("True".into()));
    assert!(
        condition(&a, "AbleToScale").is_none_or(|c| c.1 != "ConflictingAutoscaler"),
        "a dry run may sit beside an HPA"
    );
    wait(Duration::from_secs(10), "a DryRunRescale event", || async {
        events(&client, &ns)
            .await
            .iter()
            .any(|(r, n)| r == "DryRunRescale" && n.starts_with("would set 6 (the target has 2)"))
    })
    .await;
    ctl.decisions_pass(&ns, "model", 4.0).await;
    let text = ctl.scrape();
    let seconds = |by: &str| {
        metric(
            &text,
            &format!("ebb_controller_dry_run_replica_seconds_total{{namespace=\"{ns}\",autoscaler=\"model\",by=\"{by}\"}}"),
        )
    };
    let (ebb, target) = (seconds("ebb"), seconds("target"));
    assert!(
        ebb.zip(target).is_some_and(|(e, t)| e > t && t > 0.0),
        "replica-seconds by ebb {ebb:?} and by the target {target:?}\n{text}"
    );
    assert_eq!(replicas(&client, &ns, "model").await, 2);
    assert_eq!(
        generation(&client, &ns, "model").await,
        before,
        "the target was never written"
    );
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let after = api
        .get("model")
        .await
        .expect("deployment")
        .metadata
        .resource_version;
    assert_eq!(
        after,
        Some(version),
        "nothing wrote the Deployment or its /scale"
    );
    drop(kubelet);
    drop(ctl);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn an_invalid_spec_is_reported_with_its_field_path_and_nothing_scales() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-invalid").await;
    apply(&client, &deployment("model", 2), Some(&ns)).await;
    apply(&client, "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {name: model}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: model}\n  minReplicas: 5\n  maxReplicas: 3\n  behavior: {scaleUp: {selectPolicy: Fast}}\n", Some(&ns)).await;
    let _ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    wait_condition(
        &client,
        &ns,
        "model",
        "ScalingActive",
        "False",
        "InvalidSpec",
        &["spec.maxReplicas", "spec.behavior.scaleUp.selectPolicy"],
    )
    .await;
    assert_eq!(replicas(&client, &ns, "model").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn two_controllers_elect_one_leader_and_the_second_takes_over() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-leader").await;
    apply(&client, &deployment("model", 1), Some(&ns)).await;
    let kubelet = Kubelet::start(p, &ns, "app=model");
    let spec = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 6\n  syncPeriodSeconds: 0.5\n  concurrency: {{metric: concurrency, targetPerReplica: 4, stableWindowSeconds: 3, panicWindowSeconds: 1}}\n{}",
        TRAFFIC_SOURCE.replace("PORT", &kubelet.port.to_string())
    );
    apply(&client, &spec, Some(&ns)).await;
    // Identities unique to this run: a lease left by an earlier run's "ctl-b" must not make
    // this run's ctl-b its holder.
    let id_a = format!("ctl-a-{}", std::process::id());
    let id_b = format!("ctl-b-{}", std::process::id());
    let args = |id: &str| {
        [
            "--namespace".to_string(),
            ns.clone(),
            "--identity".into(),
            id.to_string(),
            "--lease-namespace".into(),
            "ebb-system".into(),
            "--lease-duration-seconds".into(),
            "4".into(),
        ]
    };
    let a_args = args(&id_a);
    let b_args = args(&id_b);
    let a = Controller::start(p, &a_args.iter().map(String::as_str).collect::<Vec<_>>());
    // B starts once A runs (its /metrics answers), not after a guessed delay.
    wait(
        Duration::from_secs(20),
        "the first controller up",
        || async { metric(&a.scrape(), "ebb_controller_leader").is_some() },
    )
    .await;
    let b = Controller::start(p, &b_args.iter().map(String::as_str).collect::<Vec<_>>());
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "ebb-system");
    let holder = || async {
        leases
            .get("ebb-controller")
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    };
    // Either may win (a lease left by an earlier run expires while both wait for it).
    wait(
        Duration::from_secs(20),
        "one of the two to hold the lease",
        || async {
            let h = holder().await;
            h == id_a || h == id_b
        },
    )
    .await;
    let (leader, follower, follower_id) = if holder().await == id_a {
        (a, b, id_b.clone())
    } else {
        (b, a, id_a.clone())
    };
    wait(Duration::from_secs(10), "exactly one leader", || async {
        metric(&leader.scrape(), "ebb_controller_leader") == Some(1.0)
            && metric(&follower.scrape(), "ebb_controller_leader") == Some(0.0)
    })
    .await;
    kubelet.set_load(10.0);
    wait(
        Duration::from_secs(30),
        "the leader to scale to 3",
        || async { replicas(&client, &ns, "model").await == 3 },
    )
    .await;
    // The leader stops: the other takes over within one lease duration (4 s) and acts.
    let stopped = std::time::Instant::now();
    leader.stop();
    wait(
        Duration::from_secs(12),
        "the other to take over",
        || async { holder().await == follower_id },
    )
    .await;
    let took = stopped.elapsed();
    println!("the second controller took over {took:?} after the leader stopped (lease 4 s)");
    assert!(took < Duration::from_secs(4 + 2), "took over in {took:?}");
    kubelet.set_load(18.0);
    wait(
        Duration::from_secs(30),
        "the new leader to scale to 5",
        || async { replicas(&client, &ns, "model").await == 5 },
    )
    .await;
    // A graceful stop (SIGTERM) releases the lease: a third replica takes over at its next
    // poll, long before the lease could expire.
    let id_c = format!("ctl-c-{}", std::process::id());
    let c_args = args(&id_c);
    let c = Controller::start(p, &c_args.iter().map(String::as_str).collect::<Vec<_>>());
    wait(
        Duration::from_secs(10),
        "the third replica to stand by",
        || async { metric(&c.scrape(), "ebb_controller_leader") == Some(0.0) },
    )
    .await;
    let stopped = std::time::Instant::now();
    assert!(follower.terminate().success(), "a clean exit on SIGTERM");
    wait(
        Duration::from_secs(10),
        "the third to take over",
        || async { holder().await == id_c },
    )
    .await;
    let took = stopped.elapsed();
    println!("after a graceful stop the next replica took over in {took:?} (lease 4 s)");
    assert!(
        took < Duration::from_secs(2),
        "released, not expired: {took:?}"
    );
    drop(c);
    drop(kubelet);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn the_crd_and_the_kubernetes_examples_apply() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-examples").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes");
    let mut applied = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/kubernetes") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("example");
            apply(&client, &text, Some(&ns)).await;
            applied += 1;
        }
    }
    assert!(
        applied >= 4,
        "one example per seed situation, got {applied}"
    );
    // The gateway's manifests, in this namespace instead of `models`.
    let gateway = std::fs::read_to_string(dir.join("../../deploy/gateway.yaml")).expect("gateway");
    apply(
        &client,
        &gateway.replace("namespace: models", &format!("namespace: {ns}")),
        None,
    )
    .await;
    let list = Api::<Autoscaler>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("list");
    assert!(list.items.len() >= 4);
    for a in &list.items {
        assert!(
            a.spec.policy().is_ok(),
            "{}: {:?}",
            a.name_any(),
            a.spec.policy().err()
        );
        assert!(
            a.spec.check_sources().is_ok(),
            "{}: {:?}",
            a.name_any(),
            a.spec.check_sources().err()
        );
    }
}

/// The chart rendered by scripts/render-chart.py (gotpl: Go templates in Python, as no helm
/// binary exists here).
fn render_chart(namespace: &str, values: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("python3")
        .arg(root.join("scripts/render-chart.py"))
        .arg(root.join("deploy/helm/ebb"))
        .arg(namespace)
        .arg(values)
        .output()
        .expect("python3");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        panic!("render-chart.py failed (it needs `pip install gotpl==0.1.0 pyyaml`): {err}");
    }
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn cluster_role_rules(yaml: &str) -> serde_json::Value {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .find(|v: &serde_json::Value| v["kind"] == "ClusterRole")
        .map(|v| v["rules"].clone())
        .expect("a ClusterRole")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn the_helm_chart_renders_the_deploy_pieces_and_applies() {
    let p = plane();
    // With a gateway in front of a model, in the chart's namespace.
    let rendered = render_chart(
        "ebb-chart",
        "{gateways: [{name: model, namespace: ebb-chart, selector: app=model, targetPort: 8080, replicas: 2, queueTimeoutSeconds: 300}]}",
    );
    let rbac = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac.yaml"),
    )
    .expect("rbac");
    assert_eq!(
        cluster_role_rules(&rendered),
        cluster_role_rules(&rbac),
        "the chart grants what deploy/rbac.yaml grants"
    );
    let client = harness::admin(p).await;
    apply(
        &client,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ebb-chart}\n",
        None,
    )
    .await;
    // Cluster-scoped pieces (CRD, ClusterRole, binding) are shared with the other tests: apply
    // the namespaced ones, and check the cluster-scoped ones with a server-side dry run.
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).expect("yaml");
        let kind = v["kind"].as_str().unwrap_or("").to_string();
        let text = serde_yaml::to_string(&v).expect("yaml");
        if [
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ]
        .contains(&kind.as_str())
        {
            continue;
        }
        apply(&client, &text, None).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ebb-chart");
    let d = deployments
        .get("ebb-controller")
        .await
        .expect("the chart's Deployment");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(2));
    let g = deployments
        .get("ebb-gateway-model")
        .await
        .expect("the chart's gateway");
    let args = g
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        args.contains(&"--selector=app=model".to_string())
            && args.contains(&"--autoscaler=model".to_string()),
        "{args:?}"
    );
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), "ebb-chart");
    let rules = roles
        .get("ebb-gateway-model")
        .await
        .expect("the gateway's Role")
        .rules;
    assert_eq!(
        serde_json::to_value(&rules).unwrap(),
        serde_json::json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["ebb.dev"], "resources": ["autoscalers"], "resourceNames": ["model"], "verbs": ["get", "list", "watch"]}
        ]),
        "the gateway may only read pods and its own Autoscaler"
    );
}

fn seldon(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "mlops.seldon.io",
            "v1alpha1",
            kind,
        )),
    )
}

async fn set_replicas(api: &Api<DynamicObject>, name: &str, n: i64) {
    let patch = serde_json::json!({"spec": {"replicas": n}});
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("patch replicas");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn server_replicas_follow_the_models_packed_by_memory() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-placement").await;
    for (m, r) in [("llama", 2), ("bert", 1), ("resnet", 1)] {
        apply(&client, &format!("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {{name: {m}}}\nspec: {{replicas: {r}, server: mlserver}}\n"), Some(&ns)).await;
    }
    apply(&client, "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\nspec: {replicas: 1}\n", Some(&ns)).await;
    apply(&client, "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {name: mlserver}\nspec:\n  scaleTargetRef: {apiVersion: mlops.seldon.io/v1alpha1, kind: Server, name: mlserver}\n  minReplicas: 1\n  maxReplicas: 3\n  syncPeriodSeconds: 0.5\n  placement:\n    memoryMiB: 81920\n    models:\n    - {ref: {apiVersion: mlops.seldon.io/v1alpha1, kind: Model, name: llama}, memoryMiB: 30720}\n    - {ref: {apiVersion: mlops.seldon.io/v1alpha1, kind: Model, name: bert}, memoryMiB: 30720}\n    - {ref: {apiVersion: mlops.seldon.io/v1alpha1, kind: Model, name: resnet}, memoryMiB: 20480}\n", Some(&ns)).await;
    let _ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    let servers = seldon(&client, &ns, "Server");
    let models = seldon(&client, &ns, "Model");
    let server_replicas = || async {
        servers
            .get("mlserver")
            .await
            .ok()
            .and_then(|s| s.data["spec"]["replicas"].as_i64())
            .unwrap_or(-1)
    };
    // 2 x 30 + 30 + 20 GiB on 80 GiB servers, two llama replicas apart: 2 servers.
    wait(Duration::from_secs(30), "2 servers", || async {
        server_replicas().await == 2
    })
    .await;
    // The status is written after the scale: wait for it rather than race it.
    wait(
        Duration::from_secs(10),
        "the placement in the status",
        || async {
            autoscaler(&client, &ns, "mlserver")
                .await
                .and_then(|a| a.status)
                .and_then(|st| st.placement)
                .is_some_and(|p| p.len() == 2)
        },
    )
    .await;
    let a = autoscaler(&client, &ns, "mlserver")
        .await
        .expect("autoscaler");
    let st = a.status.clone().expect("status");
    let placement = st
        .placement
        .clone()
        .expect("the placement is kept in the status");
    assert_eq!(placement.len(), 2);
    assert!(
        placement
            .values()
            .all(|ms| ms.iter().filter(|m| m.as_str() == "Model/llama").count() <= 1),
        "{placement:?}"
    );
    assert!(
        st.reasons.iter().any(|r| r.contains("added")),
        "the plan says why: {:?}",
        st.reasons
    );
    assert_eq!(
        condition(&a, "ScheduleFailed").map(|c| c.0),
        Some("False".into())
    );
    // llama's own Autoscaler wants 3: a third server (anti-affinity).
    set_replicas(&models, "llama", 3).await;
    wait(Duration::from_secs(30), "3 servers", || async {
        server_replicas().await == 3
    })
    .await;
    // The models shrink: the placement consolidates onto one server.
    set_replicas(&models, "llama", 1).await;
    set_replicas(&models, "bert", 0).await;
    wait(Duration::from_secs(30), "1 server", || async {
        server_replicas().await == 1
    })
    .await;
    // More than 3 servers can hold: the rest is reported, existing replicas keep serving.
    set_replicas(&models, "llama", 4).await;
    wait_condition(
        &client,
        &ns,
        "mlserver",
        "ScheduleFailed",
        "True",
        "MaxServersReached",
        &["1 replica(s) of Model/llama"],
    )
    .await;
    assert_eq!(server_replicas().await, 3);
    // Paused at 2 servers: held there while the plan still says 3.
    annotate(
        &client,
        &ns,
        "mlserver",
        "ebb.dev/paused-replicas",
        Some("2"),
    )
    .await;
    wait(
        Duration::from_secs(30),
        "2 servers while paused",
        || async { server_replicas().await == 2 },
    )
    .await;
    wait_condition(
        &client,
        &ns,
        "mlserver",
        "Paused",
        "True",
        "PausedByAnnotation",
        &["the count is held at 2 (the plan would set 3)"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane and Redis: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env; scripts/test-services.sh start DIR2, source DIR2/env; then cargo test -- --include-ignored"]
async fn a_redis_count_with_its_password_from_a_granted_secret() {
    let p = plane();
    let url = std::env::var("EBB_TEST_REDIS_URL").expect(
        "EBB_TEST_REDIS_URL is not set: start Redis with scripts/test-services.sh start DIR; source DIR/env",
    );
    let password = std::env::var("EBB_TEST_REDIS_PASSWORD").unwrap_or_default();
    let client = harness::admin(p).await;
    // deploy/rbac.yaml lets the controller read ebb-redis-auth in `default`, and nothing else.
    let ns = "default";
    let key = format!("ebb:e2e:desired:{}", std::process::id());
    let u = redis_url(&url, &password);
    set_redis(&u, &key, "3").await;
    apply(&client, &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: ebb-redis-auth}}\nstringData: {{password: '{password}'}}\n"), Some(ns)).await;
    apply(&client, &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: not-granted}}\nstringData: {{password: '{password}'}}\n"), Some(ns)).await;
    apply(&client, &deployment("tfserving-e2e", 1), Some(ns)).await;
    apply(&client, &deployment("tfserving-denied", 1), Some(ns)).await;
    let source = |secret: &str| {
        format!("  sources:\n  - name: externalCount\n    pollSeconds: 0.5\n    redis: {{address: '{url}', key: '{key}', passwordSecretRef: {{name: {secret}, key: password}}}}\n")
    };
    for (name, secret) in [
        ("tfserving-e2e", "ebb-redis-auth"),
        ("tfserving-denied", "not-granted"),
    ] {
        apply(&client, &format!("apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: {name}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  minReplicas: 1\n  maxReplicas: 10\n  syncPeriodSeconds: 0.5\n  externalCount: {{mode: desiredReplicas}}\n{}", source(secret)), Some(ns)).await;
    }
    let _ctl = Controller::start(p, &["--namespace", ns, "--no-leader-election"]);
    wait(
        Duration::from_secs(30),
        "3 replicas from the Redis count",
        || async { replicas(&client, ns, "tfserving-e2e").await == 3 },
    )
    .await;
    set_redis(&u, &key, "5").await;
    wait(Duration::from_secs(30), "5 replicas", || async {
        replicas(&client, ns, "tfserving-e2e").await == 5
    })
    .await;
    // The Secret the RBAC does not grant is refused, and said so; nothing scales.
    wait_condition(
        &client,
        ns,
        "tfserving-denied",
        "ScalingActive",
        "False",
        "FailedGetMetrics",
        &["secret not-granted", "forbidden"],
    )
    .await;
    assert_eq!(replicas(&client, ns, "tfserving-denied").await, 1);
    for name in ["tfserving-e2e", "tfserving-denied"] {
        let _ = Api::<Autoscaler>::namespaced(client.clone(), ns)
            .delete(name, &Default::default())
            .await;
        let _ = Api::<Deployment>::namespaced(client.clone(), ns)
            .delete(name, &Default::default())
            .await;
    }
}

fn redis_url(url: &str, password: &str) -> String {
    match url.strip_prefix("redis://") {
        Some(rest) if !password.is_empty() => format!("redis://:{password}@{rest}"),
        _ => url.to_string(),
    }
}

async fn set_redis(url: &str, key: &str, value: &str) {
    let client = redis::Client::open(url).expect("redis url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut con)
        .await
        .expect("SET");
}

/// `ebb gateway` as a process for the pods `selector` names, with its admin endpoint on
/// `admin_ip` (a stand-in gateway pod's IP), killed when dropped.
struct Gateway {
    child: std::process::Child,
    /// Where it takes requests.
    listen: String,
    /// The IP of the gateway pod it stands for, where its admin endpoint listens.
    ip: String,
    /// Its admin port (what the Autoscaler's gateway source names).
    admin_port: u16,
}

impl Gateway {
    fn start(p: &harness::Plane, ns: &str, selector: &str, proxy: &str) -> Gateway {
        // The model pods' slots, from the Autoscaler's `slo.slotsPerReplica` where the test
        // has one: answers to requests sent to a full pod are not service times.
        let slots = ["--autoscaler", "model"];
        Gateway::start_as(&p.kubeconfig, ns, selector, proxy, &slots)
    }

    /// [`Gateway::start`] with the credentials in `kubeconfig` and the slots flags `slots`.
    fn start_as(
        kubeconfig: &std::path::Path,
        ns: &str,
        selector: &str,
        proxy: &str,
        slots: &[&str],
    ) -> Gateway {
        let (port, admin) = (harness::free_port(), harness::free_port());
        let admin_ip = harness::next_pod_ip();
        let listen = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(["gateway", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--namespace", ns, "--selector", selector, "--name", "model"])
            .args(["--target-port", &process_kubelet::MODEL_PORT.to_string()])
            .args([
                "--listen",
                &listen,
                "--admin",
                &format!("{admin_ip}:{admin}"),
            ])
            .args(["--queue-timeout-seconds", "60", "--proxy", proxy])
            .args(slots)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ebb gateway");
        let g = Gateway {
            child,
            listen,
            ip: admin_ip,
            admin_port: admin,
        };
        let start = std::time::Instant::now();
        while g.admin("/readyz") != "ok\n" {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the gateway never became ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    /// The body of `path` on its admin endpoint ("" when it does not answer).
    fn admin(&self, path: &str) -> String {
        harness::http_get(&format!("{}:{}", self.ip, self.admin_port), path).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Autoscaler `model` with an SLO of `slots` slots a pod, read through a gateway source.
fn slots_autoscaler(slots: u32) -> String {
    format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  maxReplicas: 3\n  slo: {{latency: 1s, attainment: 99%, slotsPerReplica: {slots}}}\n  sources:\n  - name: traffic\n    gateway: {{selector: app=ebb-gateway, port: 9901}}\n"
    )
}

/// The gateway run with the ServiceAccount, Role and RoleBinding of deploy/gateway.yaml (and
/// nothing more) takes the slots a pod serves at once from its Autoscaler's
/// `slo.slotsPerReplica`, and follows a change to it: the two settings cannot disagree.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn the_gateway_follows_its_autoscalers_slots_with_the_role_deploy_grants_it() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-gateway-slots").await;
    let manifests = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gateway.yaml"),
    )
    .expect("deploy/gateway.yaml");
    for doc in serde_yaml::Deserializer::from_str(&manifests) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).expect("yaml");
        if ["ServiceAccount", "Role", "RoleBinding"].contains(&v["kind"].as_str().unwrap_or("")) {
            let text = serde_yaml::to_string(&v).expect("yaml");
            apply(
                &client,
                &text.replace("namespace: models", &format!("namespace: {ns}")),
                None,
            )
            .await;
        }
    }
    let kubeconfig =
        harness::service_account_kubeconfig(&client, &p.server, &ns, "ebb-gateway", &p.dir).await;
    let gateway = Gateway::start_as(
        &kubeconfig,
        &ns,
        "app=model",
        "{}",
        &["--autoscaler", "model"],
    );
    let slots = || {
        metric(
            &gateway.admin("/metrics"),
            "ebb_slots_per_replica{service=\"model\"}",
        )
    };
    assert_eq!(slots(), None, "no Autoscaler yet: every answer is timed");
    apply(&client, &slots_autoscaler(8), Some(&ns)).await;
    wait(
        Duration::from_secs(20),
        "the gateway to read 8 slots",
        || async { slots() == Some(8.0) },
    )
    .await;
    apply(&client, &slots_autoscaler(2), Some(&ns)).await;
    wait(
        Duration::from_secs(20),
        "the gateway to follow the change to 2",
        || async { slots() == Some(2.0) },
    )
    .await;
    let status = gateway.admin("/ebb/status");
    assert!(status.contains("\"slotsPerReplica\":2"), "{status}");
    assert!(
        status.contains("from Autoscaler model's slo.slotsPerReplica"),
        "{status}"
    );
    // Deleted: the policy that said 2 is gone, and every answer is timed again.
    let autoscalers: Api<Autoscaler> = Api::namespaced(client.clone(), &ns);
    autoscalers
        .delete("model", &Default::default())
        .await
        .expect("delete the Autoscaler");
    wait(
        Duration::from_secs(20),
        "the gateway to time every answer once the Autoscaler is gone",
        || async { slots().is_none() },
    )
    .await;
    let status = gateway.admin("/ebb/status");
    assert!(status.contains("Autoscaler model is gone"), "{status}");
}

/// A gateway run with slots stated by hand that differ from the Autoscaler's: the controller
/// reads the gateway's `ebb_slots_per_replica` and says so in a Warning Event (the service
/// times it sizes on would include waits in full pods' queues).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_gateway_counting_other_slots_than_the_autoscalers_is_warned_of() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-gateway-slots-off").await;
    apply(&client, &deployment("model", 1), Some(&ns)).await;
    let _kubelet = process_kubelet::ProcessKubelet::running(
        p,
        &ns,
        "app=model",
        process_kubelet::Program::Model,
    );
    let slots = ["--slots-per-replica", "4"];
    let gateway = Gateway::start_as(&p.kubeconfig, &ns, "app=model", "{}", &slots);
    gateway_pod(&client, &ns, &gateway.ip).await;
    let autoscaler = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 2\n  slo: {{latency: 1s, attainment: 99%, slotsPerReplica: 8}}\n  sources:\n  - name: traffic\n    gateway: {{selector: app=ebb-gateway, port: {}}}\n",
        gateway.admin_port
    );
    apply(&client, &autoscaler, Some(&ns)).await;
    let _ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    wait(
        Duration::from_secs(30),
        "a GatewaySlots warning",
        || async {
            events(&client, &ns).await.iter().any(|(r, n)| {
                r == "GatewaySlots"
                    && n.contains("gateway-0 counts 4")
                    && n.contains("slo.slotsPerReplica 8")
            })
        },
    )
    .await;
}

/// A pod object standing for a gateway replica at `ip` (the test runs the gateway itself).
async fn gateway_pod(client: &kube::Client, ns: &str, ip: &str) {
    apply(
        client,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: gateway-0, labels: {app: ebb-gateway}}\nspec: {containers: [{name: g, image: example/ebb:1}]}\n",
        Some(ns),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    assert!(
        harness::mark_ready(&pods, "gateway-0", ip).await,
        "gateway pod status"
    );
}

/// A model Deployment run as processes by a stand-in kubelet, one gateway in front of it with
/// its pod, and a controller for the Autoscaler `model` behind the gateway.
struct GatewayScene {
    client: kube::Client,
    ns: String,
    /// Declared before the gateway and the kubelet, so that it stops first.
    ctl: Controller,
    gateway: Gateway,
    _kubelet: process_kubelet::ProcessKubelet,
}

impl GatewayScene {
    /// Waits until a request through the gateway is answered 200.
    async fn first_replica_serving(&self) {
        wait(
            Duration::from_secs(20),
            "the first replica serving",
            || async { infer(&self.gateway.listen) == 200 },
        )
        .await;
    }
}

/// Sets a [`GatewayScene`] up in namespace `name`: `replicas` model pods, the gateway's
/// `--proxy` YAML `proxy`, and the Autoscaler's spec after its target: `spec`, which ends with
/// its sources' `- name: traffic` entry (and its options), to which the gateway is added.
async fn gateway_scene(name: &str, replicas: u32, proxy: &str, spec: &str) -> GatewayScene {
    gateway_scene_running(name, replicas, proxy, spec, process_kubelet::Program::Model).await
}

/// [`gateway_scene`] with each model pod running `program`.
async fn gateway_scene_running(
    name: &str,
    replicas: u32,
    proxy: &str,
    spec: &str,
    program: process_kubelet::Program,
) -> GatewayScene {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, name).await;
    apply(&client, &deployment("model", replicas), Some(&ns)).await;
    let kubelet = process_kubelet::ProcessKubelet::running(p, &ns, "app=model", program);
    let gateway = Gateway::start(p, &ns, "app=model", proxy);
    gateway_pod(&client, &ns, &gateway.ip).await;
    let autoscaler = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n{spec}    gateway: {{selector: app=ebb-gateway, port: {}}}\n",
        gateway.admin_port
    );
    apply(&client, &autoscaler, Some(&ns)).await;
    let ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    GatewayScene {
        client,
        ns,
        ctl,
        gateway,
        _kubelet: kubelet,
    }
}

/// A connection refused: the request was never sent.
const REFUSED: u16 = 1;

/// One V2 inference request through `addr`: its status code, 0 when it was sent and got no
/// answer, [`REFUSED`] when it could not be sent.
fn infer(addr: &str) -> u16 {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return REFUSED;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let body = ebb_local::load::V2_BODY;
    let _ = write!(
        s,
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn requests_at_zero_are_held_by_the_gateway_until_a_replica_is_ready() {
    let scene = gateway_scene(
        "e2e-gateway",
        0,
        "{}",
        "  minReplicas: 0\n  maxReplicas: 3\n  syncPeriodSeconds: 0.25\n  concurrency: {targetPerReplica: 4}\n  scaleToZero: {idleSeconds: 600}\n  sources:\n  - name: traffic\n",
    )
    .await;
    let (client, ns, gateway, ctl) = (&scene.client, &scene.ns, &scene.gateway, &scene.ctl);
    ctl.decisions_pass(ns, "model", 2.0).await;
    assert_eq!(
        replicas(client, ns, "model").await,
        0,
        "nothing asks for a replica yet"
    );
    // A burst of requests at zero: held by the gateway, every one answered once a replica is up.
    // Meanwhile, when the controller's write of the scale-up lands.
    let watcher = {
        let (client, ns) = (client.clone(), ns.clone());
        tokio::spawn(async move {
            loop {
                if replicas(&client, &ns, "model").await >= 1 {
                    return std::time::Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let sent = std::time::Instant::now();
    let listen = gateway.listen.clone();
    let codes = tokio::task::spawn_blocking(move || {
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..12)
                .map(|_| {
                    let listen = listen.clone();
                    sc.spawn(move || (infer(&listen), sent.elapsed()))
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    })
    .await
    .unwrap();
    let first = codes.iter().map(|c| c.1).min().unwrap();
    let scaled = watcher.await.unwrap().saturating_duration_since(sent);
    eprintln!("the scale-up was written {scaled:?} after the first held request");
    assert!(scaled < Duration::from_secs(3), "{scaled:?}");
    eprintln!(
        "12 requests at zero: first answered after {first:?}; codes {:?}",
        codes.iter().map(|c| c.0).collect::<Vec<_>>()
    );
    assert!(codes.iter().all(|c| c.0 == 200), "{codes:?}");
    // The source is polled every 0.5 s and the model starts in a blink: well within seconds.
    assert!(first < Duration::from_secs(10), "{first:?}");
    assert!(replicas(client, ns, "model").await >= 1);
    let text = gateway.admin("/metrics");
    assert_eq!(
        metric(&text, "ebb_requests_total{service=\"model\"}"),
        Some(12.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "ebb_proxy_errors_total{service=\"model\"}"),
        Some(0.0),
        "{text}"
    );
    wait(
        Duration::from_secs(10),
        "the scale-up's Event names the activation",
        || async {
            events(client, ns).await.iter().any(|(r, n)| {
                r == "SuccessfulRescale" && n.contains("activated from zero by traffic")
            })
        },
    )
    .await;
    drop(scene);
}

/// [`load_through`] `addr` for `seconds` from now, in the background: its answer when joined.
fn load_for(addr: &str, clients: usize, seconds: u64) -> tokio::task::JoinHandle<(u64, u64)> {
    let addr = addr.to_string();
    let until = std::time::Instant::now() + Duration::from_secs(seconds);
    tokio::task::spawn_blocking(move || load_through(&addr, clients, until))
}

/// Requests sent one after another by each of `clients` threads until `until`: (answered 200,
/// answered otherwise or not at all).
fn load_through(addr: &str, clients: usize, until: std::time::Instant) -> (u64, u64) {
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..clients)
            .map(|_| {
                sc.spawn(move || {
                    let (mut ok, mut failed) = (0, 0);
                    while std::time::Instant::now() < until {
                        let t = std::time::Instant::now();
                        let code = infer(addr);
                        if t.elapsed() > Duration::from_secs(1) {
                            eprintln!("a request took {:?} (answered {code})", t.elapsed());
                        }
                        if code == 200 {
                            ok += 1;
                        } else {
                            failed += 1;
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    })
}

/// Requests sent at `per_second`, each on its own thread, until `until`, whether or not the
/// earlier ones were answered (an open loop, as independent clients send): (answered 200,
/// answered otherwise or not at all). A burst that finds no replica ready arrives in full and
/// waits in the gateway, where a few looping clients would send a trickle until one is ready.
fn load_at_rate(addr: &str, per_second: u32, until: std::time::Instant) -> (u64, u64) {
    let every = Duration::from_secs(1) / per_second;
    std::thread::scope(|sc| {
        let mut sent = Vec::new();
        let mut next = std::time::Instant::now();
        while next < until {
            std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
            sent.push(sc.spawn(move || infer(addr)));
            next += every;
        }
        sent.into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(ok, failed), code| match code {
                200 => (ok + 1, failed),
                _ => (ok, failed + 1),
            })
    })
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn through_the_gateway_a_step_of_load_scales_up_and_back_down_with_every_request_answered() {
    // Inference has no side effects: a request cut by a replica that stops is sent again.
    let scene = gateway_scene(
        "e2e-gateway-step",
        1,
        "{retryNonIdempotent: true}",
        "  minReplicas: 1\n  maxReplicas: 4\n  syncPeriodSeconds: 0.25\n  concurrency: {targetPerReplica: 2, stableWindowSeconds: 3, panicWindowSeconds: 1}\n  behavior:\n    scaleDown: {stabilizationWindowSeconds: 2, policies: [{type: Percent, value: 100, periodSeconds: 1}]}\n  sources:\n  - name: traffic\n    pollSeconds: 0.25\n",
    )
    .await;
    let (client, ns, gateway) = (&scene.client, &scene.ns, &scene.gateway);
    scene.first_replica_serving().await;
    // Eight clients for 8 s (about 8 in flight: 4 replicas at 2 each), then one for 10 s.
    let listen = gateway.listen.clone();
    let step = tokio::task::spawn_blocking(move || {
        let high = load_through(
            &listen,
            8,
            std::time::Instant::now() + Duration::from_secs(8),
        );
        let low = load_through(
            &listen,
            1,
            std::time::Instant::now() + Duration::from_secs(10),
        );
        (high, low)
    });
    let (mut most, mut seen, started) = (0, -1, std::time::Instant::now());
    while !step.is_finished() {
        let n = replicas(client, ns, "model").await;
        if n != seen {
            eprintln!("[{:>5.1}s] {n} replicas", started.elapsed().as_secs_f64());
            seen = n;
        }
        most = most.max(n);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    eprintln!("[{:>5.1}s] the load ended", took.as_secs_f64());
    // 18 s of load: no request was held for long (a drained pod that the ReplicaSet kept, on
    // Kubernetes before 1.22, still serves when it is the only one).
    assert!(took < Duration::from_secs(25), "{took:?}");
    let ((high_ok, high_failed), (low_ok, low_failed)) = step.await.unwrap();
    let last = replicas(client, ns, "model").await;
    let text = gateway.admin("/metrics");
    let retries = metric(&text, "ebb_retries_total{service=\"model\"}").unwrap_or(-1.0);
    eprintln!(
        "step: {high_ok} answered, {high_failed} failed; after it: {low_ok} answered, {low_failed} failed; replicas up to {most}, then {last}; {retries} retries"
    );
    let status = gateway.admin("/ebb/status/model");
    let drains = status
        .matches("drained: the controller is about to remove it")
        .count();
    eprintln!("{drains} pods drained through the gateway before their removal");
    if std::env::var_os("EBB_TEST_SHOW_GATEWAY").is_some() {
        eprintln!("{status}");
    }
    assert!(
        drains >= 1,
        "the scale-in drains its victims through the gateway first: {status}"
    );
    assert!(most >= 3, "the step scaled up to {most}");
    assert!(last <= 2, "the scale-down under light load reached {last}");
    assert_eq!(high_failed + low_failed, 0, "every request is answered 200");
    drop(scene);
}

/// The SLO model behind a gateway reads the replicas' service time from the gateway's
/// counters (the model pods serve in 50 ms), not Little's law on in-flight requests, and the
/// attainment reached from its histogram of answers as clients saw them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn the_slo_model_measures_the_service_time_through_the_gateway() {
    let scene = gateway_scene(
        "e2e-gateway-slo",
        1,
        "{}",
        "  minReplicas: 1\n  maxReplicas: 3\n  syncPeriodSeconds: 0.25\n  slo: {latency: 1s, attainment: 99%, slotsPerReplica: 8, coldStartSeconds: 2}\n  sources:\n  - name: traffic\n    pollSeconds: 0.25\n",
    )
    .await;
    let (client, ns, gateway) = (&scene.client, &scene.ns, &scene.gateway);
    scene.first_replica_serving().await;
    let load = load_for(&gateway.listen, 2, 6);
    let plan = || async {
        autoscaler(client, ns, "model")
            .await
            .and_then(|a| a.status)
            .map(|s| s.reasons.join("; "))
            .unwrap_or_default()
    };
    let measured = |r: &str| r.contains(" ms +- ") && !r.contains("Little's law");
    wait(
        Duration::from_secs(20),
        "an SLO plan on the gateway's service-time counters",
        || async { measured(&plan().await) },
    )
    .await;
    // The attainment reached, from the gateway's histogram of answers at its 1 s bucket.
    wait(
        Duration::from_secs(20),
        "the attainment reached, from the gateway's answers",
        || async { plan().await.contains("reached: ") },
    )
    .await;
    let reasons = plan().await;
    assert!(
        reasons.contains(" within 1s over about the last hour ("),
        "{reasons}"
    );
    // The gateway counts a pod full at the Autoscaler's slotsPerReplica, read from it.
    let slots = metric(
        &gateway.admin("/metrics"),
        "ebb_slots_per_replica{service=\"model\"}",
    );
    assert_eq!(slots, Some(8.0));
    let warned = events(client, ns).await;
    assert!(
        !warned.iter().any(|(r, _)| r == "GatewaySlots"),
        "a gateway that follows the Autoscaler is not warned of: {warned:?}"
    );
    let (ok, failed) = load.await.unwrap();
    eprintln!("{ok} answered, {failed} failed; {reasons}");
    let service_ms: f64 = reasons
        .split("service ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    assert!(
        (45.0..=80.0).contains(&service_ms),
        "the 50 ms service measured as {service_ms} ms: {reasons}"
    );
    assert_eq!(failed, 0);
    drop(scene);
}

/// With no `syncPeriodSeconds` (5 s) and no `pollSeconds`, an SLO behind the gateway still
/// decides every 0.5 s, the gateway's default poll: a pass runs when the sync period passes or
/// a source is due, whichever is sooner. The SLO's own record of its loop's period (the time
/// between the samples of its last two decisions, which sets how far ahead it starts
/// capacity) says so; the docs' account of the controller's decision period rests on it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn an_slo_decides_as_often_as_its_traffic_is_polled() {
    let scene = gateway_scene(
        "e2e-slo-period",
        1,
        "{}",
        "  minReplicas: 1\n  maxReplicas: 3\n  slo: {latency: 1s, attainment: 99%, slotsPerReplica: 8, coldStartSeconds: 2}\n  sources:\n  - name: traffic\n",
    )
    .await;
    let (client, ns, gateway) = (&scene.client, &scene.ns, &scene.gateway);
    scene.first_replica_serving().await;
    let load = load_for(&gateway.listen, 1, 4);
    let period = || async {
        autoscaler(client, ns, "model")
            .await
            .and_then(|a| a.status?.decision_state?.slo?.period_seconds)
    };
    wait(
        Duration::from_secs(20),
        "the SLO's loop period in the status",
        || async { period().await.is_some() },
    )
    .await;
    let seconds = period().await.unwrap_or(f64::NAN);
    let (_, failed) = load.await.unwrap();
    assert!(
        (0.3..=1.5).contains(&seconds),
        "decisions {seconds} s apart, not the gateway's 0.5 s poll"
    );
    assert_eq!(failed, 0);
    drop(scene);
}

/// Bursts on a clock behind the gateway, silence between: once two alike bursts have come 40 s
/// apart, the SLO takes the last replica away through the silence (`SloSilentUntilBurst`, from
/// the gateway's counters, which keep reporting at zero) and starts the next burst's replica
/// one lead ahead of it, so the third burst finds it ready; the first burst's replicas start
/// before any request has been answered. The model pods load for 2 s
/// before they turn ready, and the cold start is measured from their creation to Ready on the
/// API's whole-second timestamps (status and Events say "measured"). Each burst comes from
/// independent clients at a set rate, so the first, which finds no replica, arrives like the
/// others and waits in the gateway; a few clients each waiting for its answer would send a
/// trickle through that cold start, and the first burst would not look like the second.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn the_slo_goes_to_zero_between_bursts_on_a_clock_and_is_ready_for_the_next() {
    const PERIOD: Duration = Duration::from_secs(40);
    const BURST: Duration = Duration::from_secs(5);
    let scene = gateway_scene_running(
        "e2e-gateway-slo-zero",
        0,
        "{}",
        "  minReplicas: 0\n  maxReplicas: 3\n  syncPeriodSeconds: 0.25\n  slo: {latency: 1s, attainment: 99%, slotsPerReplica: 8}\n  scaleToZero: {idleSeconds: never}\n  sources:\n  - name: traffic\n    pollSeconds: 0.25\n",
        process_kubelet::Program::SlowModel,
    )
    .await;
    let (client, ns, gateway) = (&scene.client, &scene.ns, &scene.gateway);
    // The first burst comes out of a silence the SLO model has seen, as the later ones do.
    wait(
        Duration::from_secs(30),
        "the SLO model's decisions on the silence before the first burst",
        || async {
            let status = autoscaler(client, ns, "model").await.and_then(|a| a.status);
            status.is_some_and(|s| s.reasons.iter().any(|r| r.contains("no completed request")))
        },
    )
    .await;
    // The replica count every 100 ms, from the first burst on.
    let counts = {
        let (client, ns) = (client.clone(), ns.clone());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let start = std::time::Instant::now();
        let task = tokio::spawn(async move {
            let mut last = String::new();
            loop {
                let n = replicas(&client, &ns, "model").await;
                s.lock().unwrap().push((start.elapsed(), n));
                let reasons = autoscaler(&client, &ns, "model")
                    .await
                    .and_then(|a| a.status)
                    .map(|s| s.reasons.join("; "))
                    .unwrap_or_default();
                if reasons != last {
                    eprintln!("{:?} at {n}: {reasons}", start.elapsed());
                    last = reasons;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (seen, start, task)
    };
    let mut answered = (0, 0);
    for burst in 0..3u32 {
        let at = counts.1 + PERIOD * burst;
        tokio::time::sleep_until(at.into()).await;
        if burst == 2 {
            let ready = ready_replicas(client, ns, "model").await;
            assert!(ready >= 1, "no replica ready ahead of the third burst");
        }
        let listen = gateway.listen.clone();
        let (ok, failed) =
            tokio::task::spawn_blocking(move || load_at_rate(&listen, 40, at + BURST))
                .await
                .unwrap();
        eprintln!("burst {burst}: {ok} answered, {failed} failed");
        answered = (answered.0 + ok, answered.1 + failed);
    }
    counts.2.abort();
    let seen = counts.0.lock().unwrap().clone();
    let zero_between =
        |from: Duration, to: Duration| seen.iter().any(|(t, n)| *t > from && *t < to && *n == 0);
    assert!(
        zero_between(PERIOD + BURST, PERIOD * 2),
        "never at zero between the second and third bursts: {seen:?}"
    );
    let reasons = events(client, ns).await;
    // Out of zero with nothing answered yet, the first burst's replicas start before any has
    // answered, sized as if each request took the SLO's 1 s (40 req/s over 8 slots: 5, within
    // the 3 allowed), not one now and the rest a cold start later (`SloServiceUnknown`).
    let unknown = reasons.iter().find(|(r, n)| {
        r == "SuccessfulRescale"
            && n.starts_with("New size: 3;")
            && n.contains("no request answered yet")
    });
    assert!(
        unknown.is_some(),
        "the first burst's replicas not started before an answer: {reasons:?}"
    );
    let silent = reasons
        .iter()
        .find(|(_, n)| n.contains("silent for") && n.contains("bursts recur every"));
    let silent = silent.unwrap_or_else(|| panic!("no Event of the silence: {reasons:?}"));
    assert!(silent.1.contains("cold start (measured over"), "{silent:?}");
    assert_eq!(answered.1, 0, "every request answered");
    drop(scene);
}

/// gRPC through the gateway to pods that speak HTTP/2 (`--proxy '{upstreamProtocol: h2c}'`):
/// a gRPC health check from an HTTP/2 client reaches the model process in its pod and comes
/// back SERVING with `grpc-status: 0` in the trailers; REST from HTTP/1.1 clients goes over
/// the same HTTP/2 connections.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn grpc_passes_through_the_gateway_to_h2c_pods() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let scene = gateway_scene(
        "e2e-gateway-grpc",
        1,
        "{upstreamProtocol: h2c}",
        "  minReplicas: 1\n  maxReplicas: 1\n  sources:\n  - name: traffic\n",
    )
    .await;
    scene.first_replica_serving().await;
    let stream = tokio::net::TcpStream::connect(&scene.gateway.listen)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/2 handshake with the gateway");
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = hyper::Request::post(format!(
            "http://{}{}",
            scene.gateway.listen,
            ebb_local::grpc_health::CHECK_PATH
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(ebb_local::grpc_health::framed(&[])))
        .unwrap();
        let answer = send.send_request(req).await.expect("an answer");
        let status = answer.status();
        let body = answer.into_body().collect().await.expect("a body");
        let trailers = body.trailers().cloned();
        let bytes = body.to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(&bytes[..], &[0, 0, 0, 0, 2, 0x08, 0x01], "SERVING");
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    }
    drop(scene);
}

/// SIGKILLs the process that serves on `ip` (a pod's model, or a gateway), as a crash would.
fn kill_process_on(ip: &str) -> bool {
    let (alone, with_port) = (format!("\0{ip}\0"), format!("\0{ip}:"));
    let mut killed = false;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let raw = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&raw);
        if cmdline.contains(&alone) || cmdline.contains(&with_port) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            killed = true;
        }
    }
    killed
}

async fn pod_ips(client: &kube::Client, ns: &str, selector: &str) -> Vec<String> {
    harness::pods_matching(&Api::namespaced(client.clone(), ns), selector)
        .await
        .iter()
        .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
        .collect()
}

/// A namespace named after `name` with a Deployment of two model pods, run (and ready) by a
/// stand-in kubelet that lives as long as the returned handle.
async fn two_model_pods(
    p: &harness::Plane,
    name: &str,
) -> (kube::Client, String, process_kubelet::ProcessKubelet) {
    let client = harness::admin(p).await;
    let ns = namespace(&client, name).await;
    apply(&client, &deployment("model", 2), Some(&ns)).await;
    let kubelet = process_kubelet::ProcessKubelet::start(p, &ns, "app=model");
    wait(Duration::from_secs(20), "two model pods ready", || async {
        pod_ips(&client, &ns, "app=model").await.len() == 2
    })
    .await;
    (client, ns, kubelet)
}

/// A Service in front of the Deployment `name`'s pods, on the models' port.
fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: {}, protocol: TCP}}]\n",
        process_kubelet::MODEL_PORT
    )
}

/// The ready addresses the endpoint controllers wrote for Service `name`: from its Endpoints
/// (`v1`) and from its EndpointSlices (`discovery.k8s.io/v1beta1`, the version the 1.20 test
/// plane serves), sorted.
async fn service_addresses(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> (Vec<String>, Vec<String>) {
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client.clone(), ns);
    let mut from_endpoints: Vec<String> = endpoints
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .into_iter()
        .flat_map(|e| e.subsets.unwrap_or_default())
        .flat_map(|s| s.addresses.unwrap_or_default())
        .map(|a| a.ip)
        .collect();
    from_endpoints.sort();
    let (resource, _) = kube::discovery::pinned_kind(
        client,
        &kube::api::GroupVersionKind::gvk("discovery.k8s.io", "v1beta1", "EndpointSlice"),
    )
    .await
    .expect("the server has EndpointSlices");
    let slices: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut from_slices: Vec<String> = list
        .iter()
        .flat_map(|s| s.data["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"].as_bool() != Some(false))
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    from_slices.sort();
    (from_endpoints, from_slices)
}

/// The stand-in kubelet's pods are what a cluster's are to the endpoint controllers: each at an
/// IP of its own network namespace (not loopback, which Endpoints refuse), listed as ready
/// in the Service's Endpoints and EndpointSlices, and answering there.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn the_endpoint_controllers_list_the_pods_at_their_namespace_addresses() {
    let p = plane();
    let (client, ns, _kubelet) = two_model_pods(p, "e2e-pod-network").await;
    apply(&client, &service("model"), Some(&ns)).await;
    let mut ips = pod_ips(&client, &ns, "app=model").await;
    ips.sort();
    for ip in &ips {
        let addr: std::net::IpAddr = ip.parse().expect("a pod IP");
        assert!(!addr.is_loopback(), "pod IP {ip} is loopback");
        assert!(
            ip.starts_with("198.18."),
            "pod IP {ip} is not in the test range"
        );
        assert_eq!(infer(&format!("{ip}:{}", process_kubelet::MODEL_PORT)), 200);
    }
    wait(
        Duration::from_secs(20),
        "the Service's Endpoints and EndpointSlices listing both pods",
        || async { service_addresses(&client, &ns, "model").await == (ips.clone(), ips.clone()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_model_process_killed_under_load_has_its_requests_retried_on_another() {
    let p = plane();
    let (client, ns, _kubelet) = two_model_pods(p, "e2e-gateway-crash").await;
    let gateway = Gateway::start(p, &ns, "app=model", "{retryNonIdempotent: true}");
    let victim = pod_ips(&client, &ns, "app=model").await[0].clone();
    let load = load_for(&gateway.listen, 6, 5);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(kill_process_on(&victim), "no process serves {victim}");
    let (ok, failed) = load.await.unwrap();
    let text = gateway.admin("/metrics");
    let retries = metric(&text, "ebb_retries_total{service=\"model\"}").unwrap_or(0.0);
    let ejections = metric(&text, "ebb_ejections_total{service=\"model\"}").unwrap_or(0.0);
    eprintln!("{ok} answered, {failed} failed; {retries} retries, {ejections} ejections");
    assert_eq!(failed, 0, "a killed model's requests go to the other");
    assert!(retries >= 1.0, "{text}");
    assert!(ejections >= 1.0, "the dead pod is ejected: {text}");
}

/// A node that fails or is cut off by a partition: its pod's packets are dropped (no reset),
/// and its pod object stays Ready in the API for as long as the node controller takes to
/// notice. With the default upstream timeout (60 s), the gateway must still not wait on it
/// for long nor keep sending to it: a connection whose data goes unacknowledged, or whose
/// keep-alive probes go unanswered, is given up within seconds (the requests caught on it
/// fail then, not after 60 s); new connections give up at the connect timeout and go to the
/// other pod; the gateway's own checks take the pod out of rotation. From then on every
/// request is answered, and when the partition heals the checks put the pod back.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_pod_cut_off_the_network_leaves_the_rotation_and_only_its_requests_caught_there_fail() {
    let p = plane();
    let (client, ns, kubelet) = two_model_pods(p, "e2e-gateway-partition").await;
    let gateway = Gateway::start(p, &ns, "app=model", "{connectTimeoutSeconds: 0.5}");
    let victim = pod_ips(&client, &ns, "app=model").await[0].clone();
    let listen = gateway.listen.clone();
    let start = std::time::Instant::now();
    let (cut_at, heal_at, end) = (
        Duration::from_secs(2),
        Duration::from_secs(12),
        Duration::from_secs(16),
    );
    // Each request's status and when it was sent and answered, from six clients.
    let load = tokio::task::spawn_blocking(move || {
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..6)
                .map(|_| {
                    let listen = listen.clone();
                    sc.spawn(move || {
                        let mut seen = Vec::new();
                        while start.elapsed() < end {
                            let sent = start.elapsed();
                            let code = infer(&listen);
                            seen.push((code, sent, start.elapsed()));
                        }
                        seen
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    });
    tokio::time::sleep(cut_at).await;
    assert!(kubelet.cut_off(&victim), "no pod at {victim}");
    tokio::time::sleep(heal_at - cut_at).await;
    assert!(kubelet.rejoin(&victim), "no pod at {victim}");
    let seen = load.await.unwrap();
    let status = gateway.admin("/ebb/status/model");
    let failed: Vec<_> = seen.iter().filter(|(code, _, _)| *code != 200).collect();
    let longest = seen
        .iter()
        .map(|(_, s, e)| *e - *s)
        .max()
        .unwrap_or_default();
    let last_failure = failed.iter().map(|(_, _, e)| *e).max();
    let out = status.matches("unreachable 2 times in a row").count();
    let back = status.matches("back in rotation").count();
    eprintln!(
        "{} requests, {} failed ({:?}), the last failure answered at {last_failure:?}; longest request {longest:?}; {out} taken out by the checks, {back} put back",
        seen.len(),
        failed.len(),
        failed.iter().map(|(c, _, _)| *c).collect::<Vec<_>>()
    );
    assert!(out >= 1, "the checks take the cut-off pod out: {status}");
    assert!(
        failed
            .iter()
            .all(|(code, _, _)| *code == 502 || *code == 504),
        "a request caught on the cut-off pod gets the gateway's error: {failed:?}"
    );
    assert!(
        longest < Duration::from_secs(9),
        "a vanished pod's connections are given up within seconds, not at the 60 s upstream timeout: {longest:?}"
    );
    let settled = cut_at + Duration::from_secs(9);
    assert!(
        last_failure.is_none_or(|t| t < settled),
        "requests still failed {last_failure:?} after the cut"
    );
    assert!(
        failed.len() <= 12,
        "only the requests caught on the pod before it left the rotation fail: {}",
        failed.len()
    );
    let after: Vec<_> = seen.iter().filter(|(_, s, _)| *s > settled).collect();
    assert!(
        after.len() > 50 && after.iter().all(|(code, _, _)| *code == 200),
        "once it left the rotation every request is answered by the other pod"
    );
    assert!(
        back >= 1,
        "the pod is back once it can be reached: {status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_gateway_replica_killed_under_load_loses_only_its_requests_in_flight() {
    let p = plane();
    let (_client, ns, _kubelet) = two_model_pods(p, "e2e-gateway-replicas").await;
    let a = Gateway::start(p, &ns, "app=model", "{}");
    let b = Gateway::start(p, &ns, "app=model", "{}");
    let a_ip = a.ip.clone();
    // Clients spread over both, as a Service would; one whose gateway refuses its connection
    // or loses its request goes to the other (as the Service does once the dead pod leaves
    // its endpoints). A request sent and then not answered is lost.
    let (a_addr, b_addr) = (a.listen.clone(), b.listen.clone());
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let load = tokio::task::spawn_blocking(move || {
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..6)
                .map(|i| {
                    let (first, second) = if i % 2 == 0 {
                        (a_addr.clone(), b_addr.clone())
                    } else {
                        (b_addr.clone(), a_addr.clone())
                    };
                    sc.spawn(move || {
                        let (mut ok, mut lost, mut target) = (0u64, 0u64, first);
                        while std::time::Instant::now() < until {
                            match infer(&target) {
                                200 => ok += 1,
                                // Not sent: the gateway is gone; send it to the other.
                                REFUSED => target = second.clone(),
                                // Sent and lost: the client moves on, as the Service's
                                // endpoints do once the dead pod leaves them.
                                _ => {
                                    lost += 1;
                                    target = second.clone();
                                }
                            }
                        }
                        (ok, lost)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |x, y| (x.0 + y.0, x.1 + y.1))
        })
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(kill_process_on(&a_ip), "no gateway serves {a_ip}");
    let (ok, lost) = load.await.unwrap();
    eprintln!("{ok} answered through the gateways, {lost} lost when one was killed");
    // Only what the killed gateway's three clients had in flight: a request each.
    assert!(lost <= 3, "{lost} lost");
    assert!(ok > 100, "{ok}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn a_stopping_gateway_answers_what_it_holds_so_another_can_take_it() {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, "e2e-gateway-stop").await;
    apply(&client, &deployment("model", 0), Some(&ns)).await;
    let mut gateway = Gateway::start(p, &ns, "app=model", "{}");
    let listen = gateway.listen.clone();
    let held = tokio::task::spawn_blocking(move || {
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3).map(|_| sc.spawn(|| infer(&listen))).collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<u16>>()
        })
    });
    wait(Duration::from_secs(10), "three requests held", || async {
        let text = gateway.admin("/metrics");
        metric(&text, "ebb_waiting{service=\"model\"}") == Some(3.0)
    })
    .await;
    let stopped = std::time::Instant::now();
    unsafe {
        libc::kill(gateway.child.id() as i32, libc::SIGTERM);
    }
    let codes = held.await.unwrap();
    let answered = stopped.elapsed();
    let status = gateway.child.wait().expect("the gateway exits");
    let exited = stopped.elapsed();
    eprintln!(
        "held requests answered {codes:?} {answered:?} after SIGTERM; exited after {exited:?}"
    );
    assert_eq!(codes, [503, 503, 503], "answered, not cut");
    assert!(answered < Duration::from_secs(2), "{answered:?}");
    assert!(status.success(), "{status:?}");
    assert!(exited < Duration::from_secs(5), "{exited:?}");
}

/// One completion request of a 100-word prompt and 20 tokens to `addr`: its status line.
fn completion(addr: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return "refused".into();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let prompt = vec!["word"; 100].join(" ");
    let body = format!(r#"{{"model": "demo", "prompt": "{prompt}", "max_tokens": 20}}"#);
    let _ = write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or_default().to_string()
}

/// An `engine: vllm` block in the cluster: the controller scrapes the pods' own `/metrics` by
/// vLLM's names (no adapter, no source), and requests waiting for a full KV cache add
/// replicas.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn the_controller_scales_on_the_engines_waiting_requests() {
    let engine = format!(
        "  engine: {{kind: vllm, port: {}, waitingPerReplica: 1}}\n",
        process_kubelet::MODEL_PORT
    );
    let status = scale_up_on_a_full_kv_cache("e2e-engine", &engine).await;
    let reasons = status.reasons.join("; ");
    assert!(reasons.contains("engine.waiting"), "{reasons}");
    // The status lists the engine's signal beside the sources.
    assert!(
        status
            .current_metrics
            .iter()
            .any(|m| m.name == "engine.waiting" && m.source == "engine"),
        "{:?}",
        status.current_metrics
    );
}

/// The LLM SLO in the cluster: the controller reads the pods' TTFT and inter-token
/// histograms and token counters, and a queue of requests waiting for a full KV cache asks
/// for more replicas at once; the reason carries the goals.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored"]
async fn the_controller_sizes_an_llm_slo_from_the_engines() {
    let engine = format!(
        "  engine: {{kind: vllm, port: {}, windowSeconds: 5}}\n  slo: {{ttft: {{latency: 2s}}, itl: {{latency: 100ms}}}}\n",
        process_kubelet::MODEL_PORT
    );
    let status = scale_up_on_a_full_kv_cache("e2e-llm-slo", &engine).await;
    let reasons = status.reasons.join("; ");
    assert!(
        reasons.contains("TTFT p99 2s (") && reasons.contains("ITL p99 100ms ("),
        "{reasons}"
    );
    // The status lists what the SLO reads beside the sources.
    assert!(
        status
            .current_metrics
            .iter()
            .any(|m| m.name == "llmSlo.tokensPerSecond" && m.source == "engine"),
        "{:?}",
        status.current_metrics
    );
}

/// One `ebb demo-llm` pod whose KV cache holds one request, an Autoscaler with `spec` (its
/// engine or SLO lines) and eight completions at once: waits for a scale-up, checks every
/// completion was answered, and gives the Autoscaler's status.
async fn scale_up_on_a_full_kv_cache(namespace_name: &str, spec: &str) -> AutoscalerStatus {
    let p = plane();
    let client = harness::admin(p).await;
    let ns = namespace(&client, namespace_name).await;
    apply(&client, &deployment("llm", 1), Some(&ns)).await;
    let _kubelet =
        process_kubelet::ProcessKubelet::running(p, &ns, "app=llm", process_kubelet::Program::Llm);
    apply(
        &client,
        &format!(
            "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: llm}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: llm}}\n  minReplicas: 1\n  maxReplicas: 3\n  syncPeriodSeconds: 0.5\n{spec}"
        ),
        Some(&ns),
    )
    .await;
    let ctl = Controller::start(p, &["--namespace", &ns, "--no-leader-election"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod_ip = || async {
        harness::pods_matching(&pods, "app=llm")
            .await
            .iter()
            .find_map(|p| p.status.as_ref()?.pod_ip.clone())
    };
    wait(
        Duration::from_secs(20),
        "the first engine pod ready",
        || async { pod_ip().await.is_some() },
    )
    .await;
    let ip = pod_ip().await.unwrap_or_default();
    let addr = format!("{ip}:{}", process_kubelet::MODEL_PORT);
    let answers = tokio::task::spawn_blocking(move || {
        std::thread::scope(|sc| {
            let clients: Vec<_> = (0..8).map(|_| sc.spawn(|| completion(&addr))).collect();
            clients
                .into_iter()
                .map(|c| c.join().unwrap())
                .collect::<Vec<_>>()
        })
    });
    wait(
        Duration::from_secs(20),
        "a scale-up on waiting requests",
        || async { replicas(&client, &ns, "llm").await >= 2 },
    )
    .await;
    // The controller patches the scale before it writes the status of the same pass: wait
    // for the status that pass wrote, not the one before it.
    let scaled_status = || async {
        autoscaler(&client, &ns, "llm")
            .await
            .and_then(|a| a.status)
            .filter(|s| s.desired_replicas >= Some(2))
    };
    wait(
        Duration::from_secs(10),
        "the status of the scale-up",
        || async { scaled_status().await.is_some() },
    )
    .await;
    let status = scaled_status().await.unwrap_or_default();
    eprintln!("{}", status.reasons.join("; "));
    for a in answers.await.unwrap() {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    }
    drop(ctl);
    status
}
