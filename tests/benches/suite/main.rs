//! The benchmark suite: one run prints one table of median, p99 and throughput for
//!
//! 1. the floor: raw wasmtime, fresh store + instantiate + call + drop, host engine settings;
//! 2. the host's runtime path for one task, without the network;
//! 3. end to end over a loopback WebSocket against the local server (ASSIGN sent → terminal
//!    report received), for `add`, a generator yielding 100 values and a CPU-bound action;
//! 4. cold start of `rekuest-host run` to REGISTER, 10 components, empty and warm cache;
//! 5. the agent's RSS, idle and with 1,000 tasks in flight;
//! 6. the reference Python agent (rekuest-next) on the same server, when
//!    `REKUEST_PEER_PYTHON` names a Python with rekuest-next 2.3.1 installed;
//!
//! and then the targets, met or missed. Only when `BENCH_ONLY` names it: `python`, what a task
//! of a Python component costs next to its Rust twin, in parts, under several allocators.
//!
//! `cargo bench -p rekuest-host-tests --bench suite` (a few minutes on 2 cores);
//! `BENCH_SCALE=0.2` takes a fifth of the samples; `BENCH_ONLY=floor,e2e,start,memory,peer`
//! picks parts (`BENCH_ONLY=python` the Python part alone); `BENCH_HOST=path/to/rekuest-host` measures another build of the agent against
//! the same local server (e.g. an older commit's, to compare in one run).

mod drive;
mod echo;
mod floor;
mod processes;
mod python;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rekuest_host::devserver::DevServer;
use rekuest_host::runtime::limits::DEFAULT_MEMORY_BYTES;
use rekuest_host::runtime::{
    ActionComponent, Allocation, ComponentCache, EVENT_BUFFER, Outcome, Runtime, RuntimeConfig,
    SandboxPolicy, TaskControl, TaskEvent, TaskRequest,
};
use rekuest_host_tests::{component, fleet, host_binary, workspace_root};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use drive::{drive_warm, warmup_tasks};
use floor::{Metering, RawComponent};
use processes::{Agent, assign_and_wait, own_cpu_time, start_server, wait_connected};
use stats::{Measurement, human, row, section};

/// The local server in this process allocates as it does in `rekuest-host dev` (the host
/// binary's global allocator), so the server's cost is the one a user's local server has.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The args every `add` task gets, as they arrive on the wire.
const ADD_ARGS: &str = r#"{"a":1,"b":2}"#;
/// A CPU-bound task of some milliseconds.
const PRIMES_BELOW: i64 = 100_000;
/// The primes below [`PRIMES_BELOW`].
const PRIMES_COUNT: i64 = 9592;
/// Pool slots of the in-process engines.
const SLOTS: u32 = 64;
/// Components in the cold-start measurement.
const FLEET_SIZE: usize = 10;
/// Tasks in flight in the memory measurement.
const IN_FLIGHT: usize = 1000;

/// Sample counts times `BENCH_SCALE` (default 1).
fn samples(count: usize) -> usize {
    let scale = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(1.0);
    ((count as f64 * scale) as usize).max(2)
}

/// The figures the targets are checked against.
#[derive(Default)]
struct Figures {
    floor_c1: Option<Measurement>,
    runtime_c1: Option<Measurement>,
    floor_c32: Option<Measurement>,
    runtime_c32: Option<Measurement>,
    metered: Option<Measurement>,
    unmetered: Option<Measurement>,
    e2e_add_c1: Option<Measurement>,
    e2e_add_c32: Option<Measurement>,
    warm_start: Option<Measurement>,
    peer_c32: Option<Measurement>,
}

fn main() {
    echo::serve_if_child();
    let components = Components::build();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "rekuest-host benchmark suite: {cores} cores, BENCH_SCALE={}",
        std::env::var("BENCH_SCALE").unwrap_or_else(|_| "1".into())
    );
    let mut figures = Figures::default();
    if selected("floor") {
        multi_thread(cores).block_on(in_process(&components, &mut figures));
    }
    if selected("e2e") {
        current_thread().block_on(end_to_end(&components, &mut figures));
    }
    if selected("start") {
        multi_thread(1).block_on(cold_start(&components, &mut figures));
    }
    if selected("memory") {
        multi_thread(1).block_on(memory(&components));
    }
    if selected("peer") {
        current_thread().block_on(peer(&mut figures));
    }
    if named("python") {
        multi_thread(2).block_on(python::python_next_to_rust());
    }
    targets(&figures);
}

/// Whether `BENCH_ONLY` (comma-separated: floor, e2e, start, memory, peer) includes `part`;
/// everything runs when it is unset.
fn selected(part: &str) -> bool {
    std::env::var("BENCH_ONLY").is_err() || named(part)
}

/// Whether `BENCH_ONLY` names `part` (for parts that only run when asked for).
fn named(part: &str) -> bool {
    std::env::var("BENCH_ONLY").is_ok_and(|only| only.split(',').any(|p| p.trim() == part))
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio starts")
}

fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio starts")
}

/// The components and the binary, built before anything is timed.
struct Components {
    host: PathBuf,
    math: PathBuf,
    generator: PathBuf,
    compute: PathBuf,
    hostile: PathBuf,
    fleet: Vec<PathBuf>,
    cache: PathBuf,
}

impl Components {
    fn build() -> Self {
        let cache = workspace_root().join("target").join("bench-cache");
        Components {
            host: std::env::var_os("BENCH_HOST").map_or_else(host_binary, PathBuf::from),
            math: component("math"),
            generator: component("generator"),
            compute: component("compute"),
            hostile: component("hostile"),
            fleet: fleet(FLEET_SIZE),
            cache,
        }
    }

    fn cache_dir(&self, name: &str) -> PathBuf {
        self.cache.join(name)
    }
}

fn args(json: &str) -> Map<String, Value> {
    serde_json::from_str(json).expect("benchmark args are a JSON object")
}

/// One task through the host runtime, as the agent runs it: args decoded from wire text,
/// validated, run in a fresh sandbox, yields collected.
async fn runtime_task(component: &ActionComponent, action: &str, args_json: &str) -> Vec<String> {
    let args: Map<String, Value> = match serde_json::from_str(args_json) {
        Ok(args) => args,
        Err(error) => panic!("bad benchmark args: {error}"),
    };
    let (events, mut receiver) = mpsc::channel(EVENT_BUFFER);
    let outcome = component
        .run(TaskRequest::new(action, args), events, &TaskControl::new())
        .await
        .0;
    assert_eq!(outcome, Outcome::Completed, "{action} did not complete");
    let mut yields = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        if let TaskEvent::Yield(returns) = event {
            yields.push(returns.get().to_string());
        }
    }
    yields
}

/// A runtime as the host builds it: [`SLOTS`] pooling slots of the default memory limit,
/// compiled components cached in `cache`, fuel metering on or off.
fn host_runtime(cache: PathBuf, fuel: bool) -> Runtime {
    Runtime::new(RuntimeConfig {
        allocation: Allocation::Pooling {
            slots: SLOTS,
            max_memory_bytes: DEFAULT_MEMORY_BYTES,
        },
        cache: Some(ComponentCache::new(cache)),
        fuel,
    })
    .expect("the runtime starts")
}

async fn in_process(components: &Components, figures: &mut Figures) {
    section("1-2. one task in this process: the raw wasmtime floor and the host runtime path");
    // The host's defaults: epoch interruption, no fuel (no fuel limit is configured).
    let raw = Arc::new(RawComponent::load(&components.math, Metering::Epoch, SLOTS));
    assert_eq!(raw.call("add", ADD_ARGS).await, r#"{"return0":3}"#);
    // As `rekuest-host run` without fuel limits in its configuration.
    let runtime = host_runtime(components.cache_dir("in-process"), false);
    let math = Arc::new(
        runtime
            .load_file(&components.math, SandboxPolicy::default())
            .await
            .expect("math loads"),
    );
    assert_eq!(
        runtime_task(&math, "add", ADD_ARGS).await,
        [r#"{"return0":3}"#]
    );
    for concurrency in [1, 32] {
        let total = samples(if concurrency == 1 { 5_000 } else { 30_000 });
        let raw_task = {
            let raw = raw.clone();
            move |_| {
                let raw = raw.clone();
                async move {
                    std::hint::black_box(raw.call("add", ADD_ARGS).await);
                }
            }
        };
        let host_task = {
            let math = math.clone();
            move |_| {
                let math = math.clone();
                async move {
                    std::hint::black_box(runtime_task(&math, "add", ADD_ARGS).await);
                }
            }
        };
        let floor = drive_warm(
            &format!("floor: raw wasmtime add, c={concurrency}"),
            concurrency,
            total,
            raw_task,
        )
        .await;
        row(&floor);
        let host = drive_warm(
            &format!("runtime path: host runtime add, c={concurrency}"),
            concurrency,
            total,
            host_task,
        )
        .await;
        row(&host);
        if concurrency == 1 {
            figures.floor_c1 = Some(floor);
            figures.runtime_c1 = Some(host);
        } else {
            figures.floor_c32 = Some(floor);
            figures.runtime_c32 = Some(host);
        }
    }

    section(&format!(
        "metering: raw wasmtime count_primes(below={PRIMES_BELOW}), fuel + epoch vs none"
    ));
    let metered = Arc::new(RawComponent::load(
        &components.compute,
        Metering::FuelAndEpoch,
        SLOTS,
    ));
    let epoch_only = Arc::new(RawComponent::load(
        &components.compute,
        Metering::Epoch,
        SLOTS,
    ));
    let unmetered = Arc::new(RawComponent::load(
        &components.compute,
        Metering::None,
        SLOTS,
    ));
    let primes_args = json!({ "below": PRIMES_BELOW }).to_string();
    let expected = json!({ "return0": PRIMES_COUNT }).to_string();
    let mut metered_times = Vec::new();
    let mut epoch_times = Vec::new();
    let mut unmetered_times = Vec::new();
    let rounds = samples(40);
    let started = Instant::now();
    // Alternate the two so machine noise hits both alike.
    for _ in 0..rounds {
        for (component, times) in [
            (&metered, &mut metered_times),
            (&epoch_only, &mut epoch_times),
            (&unmetered, &mut unmetered_times),
        ] {
            let begun = Instant::now();
            assert_eq!(component.call("count_primes", &primes_args).await, expected);
            times.push(begun.elapsed());
        }
    }
    let elapsed = started.elapsed() / 3;
    let metered = Measurement::new("fuel + epoch", metered_times, elapsed);
    let epoch_only = Measurement::new("epoch only", epoch_times, elapsed);
    let unmetered = Measurement::new("no metering", unmetered_times, elapsed);
    row(&metered);
    row(&epoch_only);
    row(&unmetered);
    figures.metered = Some(metered);
    figures.unmetered = Some(unmetered);
}

async fn end_to_end(components: &Components, figures: &mut Figures) {
    section(
        "3. end to end: local server in this process, `rekuest-host run` agent, loopback WebSocket",
    );
    let transport = echo::round_trips(samples(5_000)).await;
    row(&transport);
    let server = start_server().await;
    let agent = Agent::host(
        &components.host,
        &server,
        "bench",
        &[
            components.math.clone(),
            components.generator.clone(),
            components.compute.clone(),
        ],
        64,
        &components.cache_dir("agent"),
    );
    wait_async(&server, "bench").await;
    let hundred_words = (0..100)
        .map(|index| format!("w{index}"))
        .collect::<Vec<_>>()
        .join(" ");
    let scenarios: [(&str, &str, Value, usize, usize); 3] = [
        ("add", "add", json!({"a": 1, "b": 2}), 5_000, 40_000),
        (
            "generator: enumerate_words, 100 yields",
            "enumerate_words",
            json!({ "text": hundred_words }),
            500,
            4_000,
        ),
        (
            "CPU-bound: count_primes(100000)",
            "count_primes",
            json!({ "below": PRIMES_BELOW }),
            40,
            100,
        ),
    ];
    for (label, action, args, serial, parallel) in scenarios {
        let expected_yields = if action == "enumerate_words" { 100 } else { 1 };
        let args = args.as_object().cloned().unwrap_or_default();
        for (concurrency, total) in [(1, serial), (32, parallel)] {
            let assigned = Assigned {
                action,
                args: args.clone(),
                yields: expected_yields,
            };
            let label = format!("{label}, c={concurrency}");
            let measured = assigned
                .measure(&server, &agent, &label, concurrency, samples(total))
                .await;
            if action == "add" {
                if concurrency == 1 {
                    figures.e2e_add_c1 = Some(measured);
                } else {
                    figures.e2e_add_c32 = Some(measured);
                }
            }
        }
    }
}

/// Tasks of one action, each checked to complete with `yields` yields.
struct Assigned {
    action: &'static str,
    args: Map<String, Value>,
    yields: usize,
}

impl Assigned {
    /// Assigns `total` of them on `server` (served by `agent`), `concurrency` at a time, prints
    /// and returns the row with the agent's CPU time per task.
    async fn measure(
        self,
        server: &Arc<DevServer>,
        agent: &Agent,
        label: &str,
        concurrency: usize,
        total: usize,
    ) -> Measurement {
        let assigned = Arc::new(self);
        let server = server.clone();
        let task = move |_| {
            let server = server.clone();
            let assigned = assigned.clone();
            async move {
                let finished =
                    assign_and_wait(&server, assigned.action, assigned.args.clone()).await;
                assert_eq!(
                    finished.yields.len(),
                    assigned.yields,
                    "{}",
                    assigned.action
                );
            }
        };
        let cpu_before = agent.cpu_time();
        let server_cpu_before = own_cpu_time();
        let mut measured = drive_warm(label, concurrency, total, task).await;
        let tasks = (total + warmup_tasks(total)).max(1) as u32;
        measured.agent_cpu_per_task = Some(agent.cpu_time().saturating_sub(cpu_before) / tasks);
        measured.server_cpu_per_task =
            Some(own_cpu_time().saturating_sub(server_cpu_before) / tasks);
        row(&measured);
        measured
    }
}

/// Waits for the agent's connection without blocking this (single) thread.
async fn wait_async(server: &DevServer, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !server.is_connected(token) {
        assert!(Instant::now() < deadline, "the agent did not connect");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn cold_start(components: &Components, figures: &mut Figures) {
    section(&format!(
        "4. cold start: process start → REGISTER received, {FLEET_SIZE} components"
    ));
    let trials = samples(10).min(10);
    let warm_cache = components.cache_dir("warm");
    for (label, warm) in [("empty cache", false), ("warm cache", true)] {
        let mut times = Vec::new();
        if warm {
            start_once(components, &warm_cache).await;
        }
        let started = Instant::now();
        for trial in 0..trials {
            let cache = if warm {
                warm_cache.clone()
            } else {
                let empty = components.cache_dir(&format!("empty-{trial}"));
                let _ = std::fs::remove_dir_all(&empty);
                empty
            };
            times.push(start_once(components, &cache).await);
        }
        let measured = Measurement::new(label, times, started.elapsed());
        row(&measured);
        if warm {
            figures.warm_start = Some(measured);
        }
    }
}

/// Starts an agent with the fleet on a fresh server; returns the time to its REGISTER.
async fn start_once(components: &Components, cache: &Path) -> Duration {
    let server = start_server().await;
    let spawned = Instant::now();
    let _agent = Agent::host(
        &components.host,
        &server,
        "cold",
        &components.fleet,
        16,
        cache,
    );
    let registered = wait_connected(&server, "cold", Duration::from_secs(300));
    registered - spawned
}

async fn memory(components: &Components) {
    println!("\n## 5. memory: resident set of the `rekuest-host run` process");
    let server = start_server().await;
    let agent = Agent::host(
        &components.host,
        &server,
        "memory",
        &[components.math.clone(), components.hostile.clone()],
        IN_FLIGHT,
        &components.cache_dir("agent"),
    );
    wait_connected(&server, "memory", Duration::from_secs(120));
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("{:<60} {:>10}", "idle, registered", mib(agent.rss_bytes()));
    let tasks: Vec<String> = (0..IN_FLIGHT)
        .map(|_| {
            server
                .assign("sleep", args(r#"{"seconds": 5.0}"#))
                .expect("sleep is offered")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = tasks
            .iter()
            .filter(|task| {
                server.task(task).is_some_and(|snapshot| {
                    snapshot.events.iter().any(|event| event.kind == "STARTED")
                })
            })
            .count();
        if started == IN_FLIGHT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {started} of {IN_FLIGHT} tasks started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{:<60} {:>10}",
        format!("{IN_FLIGHT} tasks in flight (hostile.sleep, each its own sandbox)"),
        mib(agent.rss_bytes())
    );
    for task in &tasks {
        let events = server
            .watch(task)
            .expect("the task exists")
            .until_end()
            .await;
        let last = events.last().map(|event| event.kind.as_str());
        assert_eq!(last, Some("COMPLETED"), "{events:?}");
    }
    println!(
        "{:<60} {:>10}",
        "after they finished",
        mib(agent.rss_bytes())
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

async fn peer(figures: &mut Figures) {
    println!("\n## 6. the peer: rekuest-next 2.3.1 (Python) serving add on the same local server");
    let Some(python) = std::env::var_os("REKUEST_PEER_PYTHON").map(PathBuf::from) else {
        println!("skipped: set REKUEST_PEER_PYTHON to a Python with rekuest-next==2.3.1 installed");
        return;
    };
    let server = start_server().await;
    let script = workspace_root().join("tests/peer/python_agent.py");
    let url = server.url();
    // The server runs on this thread: wait for READY on another.
    let agent = tokio::task::spawn_blocking(move || Agent::python(&python, &script, &url, "peer"))
        .await
        .expect("the Python agent starts");
    section("rekuest-next agent, ASSIGN sent → terminal report received");
    for (concurrency, total) in [(1, 500), (32, 4_000)] {
        let assigned = Assigned {
            action: "add",
            args: args(ADD_ARGS),
            yields: 1,
        };
        let label = format!("python add, c={concurrency}");
        let measured = assigned
            .measure(&server, &agent, &label, concurrency, samples(total))
            .await;
        if concurrency == 32 {
            figures.peer_c32 = Some(measured);
        }
    }
}

fn targets(figures: &Figures) {
    println!("\n## targets");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    if let Some(add) = &figures.e2e_add_c1 {
        let p50 = add.p50();
        println!(
            "end to end add c=1 p50 ≤ 100 µs: {} ({})",
            human(p50),
            verdict(p50 <= Duration::from_micros(100))
        );
    }
    if let Some(add) = &figures.e2e_add_c32 {
        println!(
            "end to end add c=32 ≥ 20,000 tasks/s: {:.0} ({})",
            add.throughput(),
            verdict(add.throughput() >= 20_000.0)
        );
    }
    for (label, floor, host) in [
        ("c=1", &figures.floor_c1, &figures.runtime_c1),
        ("c=32", &figures.floor_c32, &figures.runtime_c32),
    ] {
        if let (Some(floor), Some(host)) = (floor, host) {
            let ratio = host.p50().as_secs_f64() / floor.p50().as_secs_f64();
            let throughput = floor.throughput() / host.throughput();
            println!(
                "runtime path within 2× of the floor, {label}: p50 {ratio:.2}×, throughput {throughput:.2}× ({})",
                verdict(ratio <= 2.0 && throughput <= 2.0)
            );
        }
    }
    match (&figures.e2e_add_c32, &figures.peer_c32) {
        (Some(ours), Some(theirs)) => {
            let ratio = ours.throughput() / theirs.throughput();
            println!(
                "≥ 20× the Python agent at c=32: {ratio:.1}× ({:.0} vs {:.0} tasks/s) ({})",
                ours.throughput(),
                theirs.throughput(),
                verdict(ratio >= 20.0)
            );
            if let (Some(our_cpu), Some(their_cpu)) =
                (ours.agent_cpu_per_task, theirs.agent_cpu_per_task)
            {
                println!(
                    "agent CPU per task at c=32: {} vs {} for the Python agent ({:.1}× less)",
                    human(our_cpu),
                    human(their_cpu),
                    their_cpu.as_secs_f64() / our_cpu.as_secs_f64().max(f64::EPSILON)
                );
            }
            if let (Some(our_server), Some(their_server)) =
                (ours.server_cpu_per_task, theirs.server_cpu_per_task)
            {
                println!(
                    "local server CPU per task at c=32: {} serving this agent, {} serving the Python agent",
                    human(our_server),
                    human(their_server)
                );
            }
        }
        _ => println!("≥ 20× the Python agent at c=32: not measured (no peer)"),
    }
    if let Some(warm) = &figures.warm_start {
        println!(
            "warm-cache cold start ≤ 50 ms for {FLEET_SIZE} components: {} ({})",
            human(warm.p50()),
            verdict(warm.p50() <= Duration::from_millis(50))
        );
    }
    if let (Some(metered), Some(unmetered)) = (&figures.metered, &figures.unmetered) {
        let overhead = metered.p50().as_secs_f64() / unmetered.p50().as_secs_f64() - 1.0;
        println!(
            "fuel + epoch overhead ≤ 15% on count_primes: {:+.1}% ({})",
            overhead * 100.0,
            verdict(overhead <= 0.15)
        );
    }
}
