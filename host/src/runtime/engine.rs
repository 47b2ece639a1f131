//! The process-wide wasmtime engine and its epoch ticker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::limits::STORE_SHAPE;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of cancel, pause and timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Native stack a guest may use (deeper recursion traps with a stack overflow).
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Pre-reserved slots, fast to reuse; falls back to on-demand if the machine refuses.
    Pooling {
        /// Component instances that may be alive at once.
        slots: u32,
        /// Largest linear memory a slot holds (the highest per-task memory limit).
        max_memory_bytes: u64,
    },
    /// Plain mmap per instance.
    OnDemand,
}

/// Which allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorInUse {
    /// The pooling allocator.
    Pooling,
    /// On-demand allocation, chosen by configuration.
    OnDemand,
    /// On-demand allocation because the pooling allocator could not be set up.
    OnDemandFallback,
}

/// The engine settings every runtime uses (pooling aside): components, epoch interruption,
/// fuel metering if `fuel`, and the guest stack cap. Public so benchmarks can build the same
/// engine by hand.
pub fn base_config(fuel: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(fuel)
        .max_wasm_stack(MAX_WASM_STACK);
    config
}

/// Bytes of each linear memory kept mapped between tasks (what a small guest touches).
const KEEP_RESIDENT_MEMORY: usize = 2 * 1024 * 1024;

/// The pooling allocator settings for `slots` instances of up to `max_memory_bytes` each
/// (the highest per-task memory limit). Per-component caps are [`STORE_SHAPE`], the numbers
/// the store limiter enforces; the totals assume a typical task uses a few of them.
pub fn pooling_config(slots: u32, max_memory_bytes: u64) -> PoolingAllocationConfig {
    let shape = STORE_SHAPE;
    let per_component = |cap: usize| u32::try_from(cap).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(8))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .total_stacks(slots)
        .max_core_instances_per_component(per_component(shape.core_instances))
        .max_memories_per_component(per_component(shape.memories))
        .max_memories_per_module(per_component(shape.memories))
        .max_tables_per_component(per_component(shape.tables))
        .max_tables_per_module(per_component(shape.tables))
        .table_elements(shape.table_elements)
        .max_memory_size(usize::try_from(max_memory_bytes).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(64 * 1024)
        .async_stack_keep_resident(64 * 1024)
        // Reset only the pages a task dirtied (Linux 6.7+), instead of memsetting the whole
        // kept-resident region after every task.
        .pagemap_scan(Enabled::Auto);
    pool
}

/// Builds the engine (with fuel metering if `fuel`); a pooling engine the machine refuses is
/// replaced by an on-demand one.
pub fn build_engine(
    allocation: Allocation,
    fuel: bool,
) -> Result<(Engine, AllocatorInUse), wasmtime::Error> {
    match allocation {
        Allocation::OnDemand => Ok((Engine::new(&base_config(fuel))?, AllocatorInUse::OnDemand)),
        Allocation::Pooling {
            slots,
            max_memory_bytes,
        } => {
            let mut config = base_config(fuel);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
                slots,
                max_memory_bytes,
            )));
            match Engine::new(&config) {
                Ok(engine) => Ok((engine, AllocatorInUse::Pooling)),
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "the pooling allocator is not available on this machine; \
                         falling back to on-demand allocation (slower under concurrency)"
                    );
                    Ok((
                        Engine::new(&base_config(fuel))?,
                        AllocatorInUse::OnDemandFallback,
                    ))
                }
            }
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
