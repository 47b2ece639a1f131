//! What a task of a Python action component costs next to its Rust twin with wasmtime used
//! directly (the host's engine settings, and variations of the allocator the host could
//! choose), split into its parts: store + instantiate, the call, dropping the store; and a
//! call on a reused instance; then the whole task through the host's own runtime (its linker,
//! sandbox and output path, as the agent runs it). See BENCHMARKS.md ("Python components").

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rekuest_host::runtime::limits::DEFAULT_MEMORY_BYTES;
use rekuest_host::runtime::{ActionComponent, ComponentCache, SandboxPolicy, pooling_config};
use rekuest_host_tests::{component, python_component, workspace_root};
use wasmtime::InstanceAllocationStrategy;

use crate::floor::{Metering, RawComponent};
use crate::stats::{human, title};
use crate::{ADD_ARGS, SLOTS, host_runtime, runtime_task, samples};

/// Bytes of each linear memory the host keeps resident between tasks.
const HOST_KEEP_RESIDENT: usize = 2 << 20;

/// How instances are allocated.
#[derive(Clone, Copy)]
enum Setting {
    OnDemand,
    /// The host's pooling allocator keeping this many bytes of each linear memory resident.
    Pooling {
        keep_resident: usize,
    },
    /// The host's pooling allocator without copy-on-write memory images.
    PoolingWithoutCow,
}

impl Setting {
    const ALL: [Setting; 5] = [
        Setting::OnDemand,
        Setting::Pooling {
            keep_resident: HOST_KEEP_RESIDENT,
        },
        Setting::Pooling {
            keep_resident: 16 << 20,
        },
        Setting::Pooling {
            keep_resident: 32 << 20,
        },
        Setting::PoolingWithoutCow,
    ];

    fn label(self) -> String {
        match self {
            Setting::OnDemand => "on-demand".into(),
            Setting::Pooling { keep_resident } if keep_resident == HOST_KEEP_RESIDENT => {
                "pooling, keep 2 MiB resident (host today)".into()
            }
            Setting::Pooling { keep_resident } => {
                format!("pooling, keep {} MiB resident", keep_resident >> 20)
            }
            Setting::PoolingWithoutCow => "pooling, keep 2 MiB, copy-on-write images off".into(),
        }
    }

    fn load(self, path: &Path, cache: &ComponentCache) -> RawComponent {
        RawComponent::load_with(path, Metering::FuelAndEpoch, Some(cache), |config| {
            let mut pool = pooling_config(SLOTS, DEFAULT_MEMORY_BYTES);
            match self {
                Setting::OnDemand => return,
                Setting::Pooling { keep_resident } => {
                    pool.linear_memory_keep_resident(keep_resident);
                }
                Setting::PoolingWithoutCow => {
                    config.memory_init_cow(false);
                }
            }
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        })
    }
}

/// The Rust and the Python `math` under every [`Setting`], one table row each.
pub async fn python_next_to_rust() {
    let guests = [
        ("Rust", component("math")),
        ("Python", python_component("math")),
    ];
    let cache_dir = workspace_root().join("target").join("bench-cache/python");
    let cache = ComponentCache::new(&cache_dir);
    let runtime = host_runtime(cache_dir.join("runtime"), true);
    let sequential = samples(300);
    let in_flight = samples(600);
    title(&format!(
        "Python components: `add` per task, medians of {sequential}; tasks/s with 2 in flight, \
         {in_flight} tasks"
    ));
    println!(
        "| guest | allocation | store + instantiate | call | drop | fresh task | call on a reused instance | tasks/s, 2 in flight |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (guest, path) in &guests {
        for setting in Setting::ALL {
            let raw = Arc::new(setting.load(path, &cache));
            println!(
                "| {guest} | {} | {} |",
                setting.label(),
                measure(&raw, sequential, in_flight).await.join(" | ")
            );
        }
        let served = Arc::new(
            runtime
                .load_file(path, SandboxPolicy::default())
                .await
                .unwrap_or_else(|error| panic!("{guest} math loads in the host runtime: {error}")),
        );
        println!(
            "| {guest} | host runtime, whole task (pooling, keep 2 MiB resident) | {} |",
            measure_runtime(&served, sequential, in_flight)
                .await
                .join(" | ")
        );
    }
}

const ADD: &str = "add";

/// The medians of each part of a fresh task, of a whole one and of a call on a reused
/// instance, and the tasks per second with two in flight.
async fn measure(raw: &Arc<RawComponent>, sequential: usize, in_flight: usize) -> [String; 6] {
    for _ in 0..20 {
        raw.call(ADD, ADD_ARGS).await;
    }
    let mut parts: [Vec<Duration>; 4] = Default::default();
    for _ in 0..sequential {
        let split = raw.call_in_parts(ADD, ADD_ARGS).await;
        parts[3].push(split.iter().sum());
        for (part, duration) in parts.iter_mut().zip(split) {
            part.push(duration);
        }
    }
    let reused = raw.calls_on_one_instance(ADD, ADD_ARGS, sequential).await;
    let per_second = two_in_flight(in_flight, {
        let raw = Arc::clone(raw);
        move || {
            let raw = Arc::clone(&raw);
            async move {
                raw.call(ADD, ADD_ARGS).await;
            }
        }
    })
    .await;
    let [instantiate, call, teardown, total] = parts.map(median);
    [
        human(instantiate),
        human(call),
        human(teardown),
        human(total),
        human(median(reused)),
        format!("{per_second:.0}"),
    ]
}

/// The median of a whole task through the host runtime and the tasks per second with two in
/// flight; the parts and the reused instance do not apply (a dash).
async fn measure_runtime(
    served: &Arc<ActionComponent>,
    sequential: usize,
    in_flight: usize,
) -> [String; 6] {
    for _ in 0..20 {
        runtime_task(served, ADD, ADD_ARGS).await;
    }
    let mut tasks = Vec::with_capacity(sequential);
    for _ in 0..sequential {
        let started = Instant::now();
        runtime_task(served, ADD, ADD_ARGS).await;
        tasks.push(started.elapsed());
    }
    let per_second = two_in_flight(in_flight, {
        let served = Arc::clone(served);
        move || {
            let served = Arc::clone(&served);
            async move {
                runtime_task(&served, ADD, ADD_ARGS).await;
            }
        }
    })
    .await;
    let none = || "—".to_string();
    [
        none(),
        none(),
        none(),
        human(median(tasks)),
        none(),
        format!("{per_second:.0}"),
    ]
}

/// Tasks per second of `total` tasks (`task()` each), two at a time.
async fn two_in_flight<Task, Done>(total: usize, task: Task) -> f64
where
    Task: Fn() -> Done + Clone + Send + 'static,
    Done: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let task = task.clone();
            tokio::spawn(async move {
                for _ in 0..total / 2 {
                    task().await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker finishes");
    }
    (total / 2 * 2) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
