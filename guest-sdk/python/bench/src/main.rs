//! Per-task cost of action components with wasmtime used directly, split into its parts
//! (store + instantiate, the call, dropping the store), under instance-allocation settings the
//! host could choose, and with instance reuse. See BENCHMARKS.md ("Python components").
//!
//! Usage: python-component-bench COMPONENT.wasm... (e.g. the Rust and the Python `math`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../../../wit",
    world: "action-component",
});

use arkitekt::rekuest::host::{Host, LogLevel};

const SAMPLES: usize = 300;
const THROUGHPUT_TASKS: usize = 600;

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    yields: usize,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Host for State {
    fn log(&mut self, _level: LogLevel, _message: String) {}
    fn progress(&mut self, _percent: u8, _message: Option<String>) {}
    fn yield_returns(&mut self, _returns: String) {
        self.yields += 1;
    }
    fn is_cancelled(&mut self) -> bool {
        false
    }
}

/// How instances are allocated.
#[derive(Clone, Copy)]
enum Setting {
    OnDemand,
    /// The pooling allocator keeping this many bytes of each linear memory resident.
    Pooling {
        keep_resident: usize,
    },
    /// The pooling allocator (2 MiB resident) without copy-on-write memory images.
    PoolingWithoutCow,
}

impl Setting {
    fn label(self) -> String {
        match self {
            Setting::OnDemand => "on-demand".into(),
            Setting::Pooling { keep_resident } => {
                format!("pooling, keep {} MiB resident", keep_resident >> 20)
            }
            Setting::PoolingWithoutCow => "pooling, keep 2 MiB resident, no CoW images".into(),
        }
    }
}

/// The engine settings of rekuest-host (host/src/runtime/engine.rs) under `setting`.
fn engine(setting: Setting) -> Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(true)
        .max_wasm_stack(512 * 1024);
    let keep_resident = match setting {
        Setting::OnDemand => None,
        Setting::Pooling { keep_resident } => Some(keep_resident),
        Setting::PoolingWithoutCow => {
            config.memory_init_cow(false);
            Some(2 << 20)
        }
    };
    if let Some(keep_resident) = keep_resident {
        let slots = 64;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            .total_stacks(slots)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(64 << 20)
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(64 * 1024)
            .async_stack_keep_resident(64 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(Engine::new(&config)?)
}

fn new_store(engine: &Engine) -> Result<Store<State>> {
    let mut store = Store::new(
        engine,
        State {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            yields: 0,
        },
    );
    store.set_fuel(u64::MAX)?;
    store.set_epoch_deadline(u64::MAX);
    Ok(store)
}

fn add(instance: &ActionComponent, store: &mut Store<State>, a: usize) -> Result<()> {
    let args = format!("{{\"a\":{a},\"b\":1}}");
    instance
        .arkitekt_rekuest_actions()
        .call_run(&mut *store, "add", &args)?
        .map_err(|error| anyhow::anyhow!("add failed: {error:?}"))
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

/// One fresh task: new store, instantiate, `add`, drop; the three parts' durations.
fn fresh_task(engine: &Engine, pre: &ActionComponentPre<State>, a: usize) -> Result<[Duration; 3]> {
    let started = Instant::now();
    let mut store = new_store(engine)?;
    let instance = pre.instantiate(&mut store)?;
    let instantiated = started.elapsed();
    let started = Instant::now();
    add(&instance, &mut store, a)?;
    let called = started.elapsed();
    let started = Instant::now();
    drop(store);
    Ok([instantiated, called, started.elapsed()])
}

fn measure(name: &str, path: &Path, setting: Setting) -> Result<()> {
    let engine = engine(setting)?;
    let component = load(&engine, path)?;
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    arkitekt::rekuest::host::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
    let pre = ActionComponentPre::new(linker.instantiate_pre(&component)?)?;

    for index in 0..20 {
        fresh_task(&engine, &pre, index)?;
    }
    let mut parts: [Vec<Duration>; 4] = Default::default();
    for index in 0..SAMPLES {
        let started = Instant::now();
        let split = fresh_task(&engine, &pre, index)?;
        parts[3].push(started.elapsed());
        for (part, duration) in parts.iter_mut().zip(split) {
            part.push(duration);
        }
    }
    let [instantiate, call, teardown, total] = parts.map(|mut part| median(&mut part));

    // Instance reuse: one instance runs every task.
    let mut store = new_store(&engine)?;
    let instance = pre.instantiate(&mut store)?;
    let mut reused = Vec::with_capacity(SAMPLES);
    for index in 0..SAMPLES + 20 {
        let started = Instant::now();
        add(&instance, &mut store, index)?;
        if index >= 20 {
            reused.push(started.elapsed());
        }
    }
    let reused = median(&mut reused);
    drop(store);

    // Throughput: two threads running fresh tasks.
    let shared = Arc::new((engine.clone(), pre));
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || -> Result<()> {
                for index in 0..THROUGHPUT_TASKS / 2 {
                    fresh_task(&shared.0, &shared.1, index)?;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker")?;
    }
    let per_second = THROUGHPUT_TASKS as f64 / started.elapsed().as_secs_f64();

    println!(
        "| {name} | {} | {} | {} | {} | {} | {} | {per_second:.0} |",
        setting.label(),
        micros(instantiate),
        micros(call),
        micros(teardown),
        micros(total),
        micros(reused),
    );
    Ok(())
}

/// Compiles `path`, or loads it from a cache next to the benchmark's other build output.
fn load(engine: &Engine, path: &Path) -> Result<Component> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let dir = std::env::temp_dir().join("python-component-bench");
    std::fs::create_dir_all(&dir)?;
    let cached = dir.join(format!("{:016x}.cwasm", hasher.finish()));
    if cached.is_file() {
        // SAFETY: written by `Component::serialize` below for this engine's settings.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &cached) } {
            return Ok(component);
        }
    }
    let component = Component::new(engine, &bytes)?;
    std::fs::write(&cached, component.serialize()?)?;
    Ok(component)
}

fn main() -> Result<()> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        !paths.is_empty(),
        "usage: python-component-bench COMPONENT.wasm..."
    );
    println!(
        "`add` per task, medians of {SAMPLES}; tasks/s with 2 threads, {THROUGHPUT_TASKS} tasks\n"
    );
    println!(
        "| component | allocation | store + instantiate | call | drop | fresh task | call on a reused instance | tasks/s, 2 threads |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for path in &paths {
        let path = Path::new(path);
        let name = format!(
            "{} ({} KiB)",
            path.display(),
            std::fs::metadata(path)?.len() / 1024
        );
        for setting in [
            Setting::OnDemand,
            Setting::Pooling {
                keep_resident: 2 << 20,
            },
            Setting::Pooling {
                keep_resident: 16 << 20,
            },
            Setting::Pooling {
                keep_resident: 32 << 20,
            },
            Setting::PoolingWithoutCow,
        ] {
            measure(&name, path, setting)?;
        }
    }
    Ok(())
}
