//! Figures for BENCHMARKS.md (not a timed test; ignored by default): what a Python component
//! costs next to its Rust twin through the runtime library, as the host runs tasks today
//! (a fresh instance per task), with the pooling and the on-demand allocator.
//!
//! `cargo test --release --test all python_bench -- --ignored --nocapture`

use std::path::Path;
use std::time::{Duration, Instant};

use rekuest_host::runtime::{
    ActionComponent, Allocation, ComponentCache, Outcome, Runtime, RuntimeConfig, SandboxPolicy,
    TaskControl, TaskRequest,
};
use rekuest_host_tests::{component, python_component, test_cache_dir};
use serde_json::json;
use tokio::sync::mpsc;

const SAMPLES: usize = 300;
const THROUGHPUT_TASKS: usize = 600;

fn runtime(allocation: Allocation, cached: bool) -> Runtime {
    Runtime::new(RuntimeConfig {
        allocation,
        cache: cached.then(|| ComponentCache::new(test_cache_dir())),
        fuel: true,
    })
    .expect("runtime starts")
}

fn pooling() -> Allocation {
    Allocation::Pooling {
        slots: 64,
        max_memory_bytes: 64 << 20,
    }
}

async fn load(runtime: &Runtime, path: &Path) -> ActionComponent {
    runtime
        .load_file(path, SandboxPolicy::default())
        .await
        .expect("component loads")
}

async fn add(component: &ActionComponent, a: usize) {
    let (events, mut receiver) = mpsc::channel(16);
    let drain = tokio::spawn(async move { while receiver.recv().await.is_some() {} });
    let args = json!({"a": a, "b": 1})
        .as_object()
        .cloned()
        .expect("object");
    let outcome = component
        .run(TaskRequest::new("add", args), events, &TaskControl::new())
        .await
        .0;
    drain.await.expect("drain");
    assert_eq!(outcome, Outcome::Completed);
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

/// Sequential `add` tasks: (median, p99).
async fn latency(component: &ActionComponent) -> (Duration, Duration) {
    for index in 0..20 {
        add(component, index).await;
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for index in 0..SAMPLES {
        let started = Instant::now();
        add(component, index).await;
        samples.push(started.elapsed());
    }
    samples.sort();
    (samples[SAMPLES / 2], samples[SAMPLES * 99 / 100])
}

/// `add` tasks per second with two tasks in flight.
async fn throughput(component: &ActionComponent) -> f64 {
    let started = Instant::now();
    let halves = tokio::join!(
        async {
            for index in 0..THROUGHPUT_TASKS / 2 {
                add(component, index).await;
            }
        },
        async {
            for index in 0..THROUGHPUT_TASKS / 2 {
                add(component, index).await;
            }
        }
    );
    let () = halves.0;
    THROUGHPUT_TASKS as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn python_next_to_rust() {
    let rust = component("math");
    let python = tokio::task::spawn_blocking(|| python_component("math"))
        .await
        .expect("the Python components build");
    println!(
        "component sizes: Rust math {} KiB, Python math {} KiB",
        std::fs::metadata(&rust).expect("rust").len() / 1024,
        std::fs::metadata(&python).expect("python").len() / 1024
    );

    for (label, path) in [("Rust", &rust), ("Python", &python)] {
        let started = Instant::now();
        load(&runtime(pooling(), false), path).await;
        let compiled = started.elapsed();
        let cached_runtime = runtime(pooling(), true);
        load(&cached_runtime, path).await; // fills the cache
        let started = Instant::now();
        load(&cached_runtime, path).await;
        println!(
            "{label:6} load: compile {:.2} s, from the disk cache {:.1} ms (both incl. describe)",
            compiled.as_secs_f64(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }

    println!("\nper task (fresh store + instance + run + drop), `add`, {SAMPLES} sequential:");
    println!("| guest | allocator | median | p99 | tasks/s, 2 in flight |");
    println!("|---|---|---|---|---|");
    for (allocator, allocation) in [("pooling", pooling()), ("on-demand", Allocation::OnDemand)] {
        let runtime = runtime(allocation, true);
        for (label, path) in [("Rust", &rust), ("Python", &python)] {
            let math = load(&runtime, path).await;
            let (median, p99) = latency(&math).await;
            let per_second = throughput(&math).await;
            println!(
                "| {label} | {allocator} | {} | {} | {per_second:.0} |",
                micros(median),
                micros(p99)
            );
        }
    }
}
