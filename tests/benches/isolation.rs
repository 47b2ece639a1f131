//! Isolation under attack: the latency of a normal `add` task while hostile tasks occupy every
//! core (spinning, blowing their memory limit, flooding their output), next to its latency on
//! an idle host, in one run.
//!
//! `cargo bench -p rekuest-host-tests --bench isolation`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rekuest_host::runtime::{
    ActionComponent, Allocation, ComponentCache, Limits, Outcome, Runtime, RuntimeConfig,
    SandboxPolicy, TaskControl, TaskEvent, TaskRequest,
};
use rekuest_host_tests::{component, test_cache_dir};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const SAMPLES: usize = 400;

async fn run(component: &ActionComponent, action: &str, args: Value) -> Outcome {
    let (events, mut receiver) = mpsc::channel(256);
    let drain = tokio::spawn(async move {
        let mut count = 0usize;
        while let Some(event) = receiver.recv().await {
            if !matches!(event, TaskEvent::Progress { .. }) {
                count += 1;
            }
        }
        count
    });
    let args = args.as_object().cloned().unwrap_or_default();
    let outcome = component
        .run(TaskRequest::new(action, args), events, &TaskControl::new())
        .await
        .0;
    let _ = drain.await;
    outcome
}

/// Latencies of `SAMPLES` sequential `add` tasks, sorted.
async fn add_latencies(math: &ActionComponent) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(SAMPLES);
    for index in 0..SAMPLES {
        let started = Instant::now();
        let outcome = run(math, "add", json!({"a": index, "b": 1})).await;
        latencies.push(started.elapsed());
        assert_eq!(outcome, Outcome::Completed);
        // Let the attackers run between samples.
        tokio::task::yield_now().await;
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

/// Keeps `count` copies of `action` running back to back until `stop`.
fn attack(
    hostile: &Arc<ActionComponent>,
    action: &'static str,
    args: Value,
    count: usize,
    stop: &Arc<AtomicBool>,
    finished: &Arc<AtomicU64>,
) {
    for _ in 0..count {
        let hostile = hostile.clone();
        let stop = stop.clone();
        let finished = finished.clone();
        let args = args.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                run(&hostile, action, args.clone()).await;
                finished.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio.block_on(async move {
        let runtime = Runtime::new(RuntimeConfig {
            allocation: Allocation::Pooling {
                slots: 256,
                max_memory_bytes: 64 << 20,
            },
            cache: Some(ComponentCache::new(test_cache_dir())),
            fuel: true,
        })
        .expect("runtime");
        let math = runtime
            .load_file(&component("math"), SandboxPolicy::default())
            .await
            .expect("math");
        let hostile_policy = SandboxPolicy {
            limits: Limits {
                fuel: None,
                memory_bytes: 16 << 20,
                timeout: Duration::from_secs(1),
                ..Limits::default()
            },
            ..SandboxPolicy::default()
        };
        let hostile = Arc::new(
            runtime
                .load_file(&component("hostile"), hostile_policy)
                .await
                .expect("hostile"),
        );

        println!("isolation: latency of `add` (math.wasm), {SAMPLES} sequential tasks per row, {cores} cores, tokio workers = cores");
        println!(
            "{:<48} {:>10} {:>10} {:>10} {:>10} {:>16}",
            "condition", "p50", "p99", "max", "attackers", "attacks finished"
        );
        add_latencies(&math).await; // warm-up
        let idle = add_latencies(&math).await;
        row("idle host", &idle, 0, 0);

        let scenarios: [(&str, &'static str, Value, usize); 4] = [
            ("spinning guests, one per core", "spin", json!({}), cores),
            ("spinning guests, four per core", "spin", json!({}), cores * 4),
            ("memory bombs (16 MiB), one per core", "memory_bomb", json!({}), cores),
            ("stdout floods (8 MiB each), one per core", "shout", json!({"megabytes": 8}), cores),
        ];
        for (name, action, args, count) in scenarios {
            let stop = Arc::new(AtomicBool::new(false));
            let finished = Arc::new(AtomicU64::new(0));
            attack(&hostile, action, args, count, &stop, &finished);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let latencies = add_latencies(&math).await;
            stop.store(true, Ordering::Relaxed);
            row(name, &latencies, count, finished.load(Ordering::Relaxed));
            // Let the attackers run out (spins end at their 1 s timeout).
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
    });
}

fn row(name: &str, sorted: &[Duration], attackers: usize, attacks_finished: u64) {
    println!(
        "{:<48} {:>10} {:>10} {:>10} {:>10} {:>16}",
        name,
        micros(percentile(sorted, 0.5)),
        micros(percentile(sorted, 0.99)),
        micros(percentile(sorted, 1.0)),
        attackers,
        attacks_finished
    );
}
