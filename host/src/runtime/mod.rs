//! The sandbox runtime: one wasmtime engine per process, components loaded once, a fresh
//! store per task with fuel, memory, time and output limits and a WASI context that grants
//! nothing unless configured.
//!
//! One task, as `rekuest-host call` runs it: load a component under a policy (limits and
//! grants), run an action with JSON args, read its events while it runs and its one outcome:
//!
//! ```no_run
//! use rekuest_host::runtime::{
//!     EVENT_BUFFER, Outcome, Runtime, RuntimeConfig, SandboxPolicy, TaskControl, TaskEvent,
//!     TaskRequest,
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let math = runtime
//!     .load_file("math.wasm".as_ref(), SandboxPolicy::default())
//!     .await?;
//! let args = serde_json::from_str(r#"{"a": 1, "b": 2}"#)?;
//! let (events, mut received) = tokio::sync::mpsc::channel(EVENT_BUFFER);
//! let (outcome, sandbox) = math
//!     .run(TaskRequest::new("add", args), events, &TaskControl::new())
//!     .await;
//! drop(sandbox); // frees the instance; the events stay readable
//! while let Ok(event) = received.try_recv() {
//!     if let TaskEvent::Yield(returns) = event {
//!         println!("{}", returns.get()); // {"return0":3}
//!     }
//! }
//! assert_eq!(outcome, Outcome::Completed);
//! # Ok(())
//! # }
//! ```

mod bindings;
mod cache;
mod calls;
mod engine;
mod events;
mod guest_fs;
mod host_api;
pub mod http;
mod json_check;
mod keep;
pub mod limits;
mod output;
mod sandbox;
mod stdio;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

pub use cache::{CacheEntry, ComponentCache, DEFAULT_CACHE_MAX_BYTES};
pub use calls::{
    CHILD_EVENTS, CallPort, CallTarget, ChildCall, ChildEvent, MAX_CALL_DEPTH,
    MAX_CHILDREN_PER_TASK, TaskCalls,
};

pub use engine::{Allocation, AllocatorInUse, EPOCH_TICK, base_config, pooling_config};
pub use events::{Failure, LogLevel, Outcome, Signal, TaskControl, TaskEvent};
pub use guest_fs::DescriptorBudget;
pub use keep::{KeepPort, Shelving};
pub use limits::{HostResourceCaps, LimitExceeded, Limits, OutputCaps, STORE_SHAPE, StoreShape};
pub use sandbox::{
    ActionComponent, DescribeError, DirGrant, EVENT_BUFFER, MAX_DESCRIPTION_BYTES, Sandbox,
    SandboxPolicy, TaskRequest, TaskUsage,
};

use bindings::{
    ActionComponentPre, arkitekt::rekuest::calls as call_api, arkitekt::rekuest::host,
    arkitekt::rekuest::keep as keep_api,
};
use engine::{EpochTicker, build_engine};
use host_api::TaskState;

/// Largest component file accepted.
pub const MAX_COMPONENT_BYTES: usize = 256 * 1024 * 1024;
/// The world every action component must implement.
pub const WORLD: &str = "arkitekt:rekuest/action-component@0.1.0";

/// How to set up the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How instances are allocated: pooled slots (the default for serving) or on demand.
    pub allocation: Allocation,
    /// The cache of compiled components (directory and size cap); `None` disables it.
    pub cache: Option<ComponentCache>,
    /// Compile fuel metering into guests. Fuel limits need it; without any, leave it off:
    /// it costs compute-heavy guests a few percent (epoch interruption, which timeouts,
    /// cancel and pause use, is always on).
    pub fuel: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            allocation: Allocation::Pooling {
                slots: 1000,
                max_memory_bytes: limits::DEFAULT_MEMORY_BYTES,
            },
            cache: ComponentCache::default_dir().map(ComponentCache::new),
            fuel: true,
        }
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the configuration.
    #[error("could not create the wasmtime engine")]
    Engine(#[source] wasmtime::Error),
    /// The epoch ticker thread could not start.
    #[error("could not start the epoch ticker")]
    Ticker(#[source] std::io::Error),
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Not a regular file (a directory, a device such as `/dev/zero`, a pipe): refused before
    /// anything is read from it.
    #[error("{path} is not a regular file (it is {what})")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// Larger than [`MAX_COMPONENT_BYTES`].
    #[error(
        "{name} is {size} bytes; components of at most {MAX_COMPONENT_BYTES} bytes are accepted"
    )]
    TooLarge {
        /// The component's name (its file name without `.wasm`).
        name: String,
        /// Its size.
        size: usize,
    },
    /// Not a WebAssembly component (a core module, or not wasm at all).
    #[error("{name} is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The component's name (its file name without `.wasm`).
        name: String,
        /// What it is instead.
        reason: String,
    },
    /// wasmtime could not compile it.
    #[error("{name} could not be compiled")]
    Compile {
        /// The component's name (its file name without `.wasm`).
        name: String,
        /// wasmtime's error, saying what does not compile or validate.
        source: wasmtime::Error,
    },
    /// It does not implement the action world.
    #[error("{name} does not implement the {WORLD} world")]
    WrongWorld {
        /// The component's name (its file name without `.wasm`).
        name: String,
        /// What is missing or extra, as wasmtime's linker says.
        source: wasmtime::Error,
    },
    /// Its policy sets a fuel limit, but the runtime has no fuel metering.
    #[error(
        "{name} has a fuel limit, but the runtime was created without fuel metering \
         (RuntimeConfig::fuel)"
    )]
    FuelDisabled {
        /// The component's name (its file name without `.wasm`).
        name: String,
    },
    /// Its self-description failed or is invalid.
    #[error("{name} was refused")]
    Describe {
        /// The component's name (its file name without `.wasm`).
        name: String,
        /// What went wrong.
        source: DescribeError,
    },
}

/// The process-wide runtime; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<TaskState>,
    cache: Option<ComponentCache>,
    allocator: AllocatorInUse,
    fuel: bool,
    descriptors: Arc<DescriptorBudget>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Creates the engine, the linker with WASI and the host API, and starts the epoch ticker.
    /// Guests share the process's open-file limit minus a reserve for the host
    /// ([`DescriptorBudget::for_this_process`], which raises the soft limit to the hard one).
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Self::with_descriptor_budget(config, DescriptorBudget::for_this_process())
    }

    /// [`Runtime::new`] with guests sharing `descriptors` host file descriptors.
    pub fn with_descriptor_budget(
        config: RuntimeConfig,
        descriptors: DescriptorBudget,
    ) -> Result<Self, RuntimeError> {
        let engine_error = RuntimeError::Engine;
        let (engine, allocator) =
            build_engine(config.allocation, config.fuel).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        guest_fs::shadow_filesystem(&mut linker).map_err(engine_error)?;
        http::add_to_linker(&mut linker).map_err(engine_error)?;
        host::add_to_linker::<TaskState, HasSelf<TaskState>>(&mut linker, |state| state)
            .map_err(engine_error)?;
        call_api::add_to_linker::<TaskState, HasSelf<TaskState>>(&mut linker, |state| state)
            .map_err(engine_error)?;
        keep_api::add_to_linker::<TaskState, HasSelf<TaskState>>(&mut linker, |state| state)
            .map_err(engine_error)?;
        let ticker = EpochTicker::start(engine.clone()).map_err(RuntimeError::Ticker)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache: config.cache,
                allocator,
                fuel: config.fuel,
                descriptors: Arc::new(descriptors),
                _ticker: ticker,
            }),
        })
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> AllocatorInUse {
        self.inner.allocator
    }

    /// Whether guests are compiled with fuel metering.
    pub(crate) fn fuel_metering(&self) -> bool {
        self.inner.fuel
    }

    /// The host file descriptors all tasks together may hold.
    pub fn descriptor_budget(&self) -> &Arc<DescriptorBudget> {
        &self.inner.descriptors
    }

    /// Loads the component at `path` (its name is the file stem) under `policy`.
    pub async fn load_file(
        &self,
        path: &Path,
        policy: SandboxPolicy,
    ) -> Result<ActionComponent, LoadError> {
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let bytes = read_component_file(path, &name).await?;
        self.load_bytes(name, bytes, policy).await
    }

    /// Loads a component from its bytes: checks, compiles (or takes it from the cache),
    /// links it against the host API and asks it to describe itself.
    pub async fn load_bytes(
        &self,
        name: String,
        bytes: Vec<u8>,
        policy: SandboxPolicy,
    ) -> Result<ActionComponent, LoadError> {
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge {
                name,
                size: bytes.len(),
            });
        }
        if !self.inner.fuel && policy.uses_fuel() {
            return Err(LoadError::FuelDisabled { name });
        }
        check_component_header(&bytes).map_err(|reason| LoadError::NotAComponent {
            name: name.clone(),
            reason,
        })?;
        let component =
            self.compile(name.clone(), bytes)
                .await
                .map_err(|source| LoadError::Compile {
                    name: name.clone(),
                    source,
                })?;
        let wrong_world = |source| LoadError::WrongWorld {
            name: name.clone(),
            source,
        };
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = ActionComponentPre::new(instance_pre).map_err(wrong_world)?;
        ActionComponent::describe(self.clone(), name.clone(), pre, policy)
            .await
            .map_err(|source| LoadError::Describe { name, source })
    }

    async fn compile(&self, name: String, bytes: Vec<u8>) -> wasmtime::Result<Component> {
        let engine = self.inner.engine.clone();
        let cache = self.inner.cache.clone();
        let compile = move || match &cache {
            Some(cache) => cache.load_or_compile(&engine, &name, &bytes),
            None => Component::new(&engine, &bytes),
        };
        match tokio::task::spawn_blocking(compile).await {
            Ok(result) => result,
            Err(join_error) => Err(wasmtime::format_err!(
                "the compiler thread failed: {join_error}"
            )),
        }
    }
}

/// Reads a component file, bounded: the path must be a regular file of at most
/// [`MAX_COMPONENT_BYTES`] (checked before reading), and no more than that is read even if the
/// file grows meanwhile.
async fn read_component_file(path: &Path, name: &str) -> Result<Vec<u8>, LoadError> {
    use tokio::io::AsyncReadExt;

    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let too_large = |size: u64| LoadError::TooLarge {
        name: name.to_string(),
        size: usize::try_from(size).unwrap_or(usize::MAX),
    };
    let metadata = tokio::fs::metadata(path).await.map_err(read_error)?;
    if !metadata.is_file() {
        let what = if metadata.is_dir() {
            "a directory"
        } else {
            "a device, pipe or socket"
        };
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
            what,
        });
    }
    if metadata.len() > MAX_COMPONENT_BYTES as u64 {
        return Err(too_large(metadata.len()));
    }
    let file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(MAX_COMPONENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(read_error)?;
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Checks the preamble: `\0asm`, then the component-model layer rather than a core module.
fn check_component_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("the file does not start with the WebAssembly magic bytes".into());
    }
    match bytes[6..8] {
        [1, 0] => Ok(()),
        [0, 0] => Err(
            "it is a core WebAssembly module; build it for wasm32-wasip2 (or wrap it with \
             `wasm-tools component new`) to get a component"
                .into(),
        ),
        _ => Err("unknown WebAssembly layer in the preamble".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::error_chain::ErrorChain;

    fn runtime() -> Runtime {
        Runtime::new(RuntimeConfig {
            allocation: Allocation::OnDemand,
            cache: None,
            fuel: false,
        })
        .expect("runtime")
    }

    #[tokio::test]
    async fn a_component_that_does_not_compile_keeps_wasmtimes_error_as_its_cause() {
        // A component preamble, then a section that is not one.
        let bytes = b"\0asm\x0d\x00\x01\x00\xff\xff\xff".to_vec();
        let error = runtime()
            .load_bytes("broken".into(), bytes, SandboxPolicy::default())
            .await
            .err()
            .expect("refused");
        assert!(matches!(error, LoadError::Compile { .. }), "{error:?}");
        assert_eq!(error.to_string(), "broken could not be compiled");
        let cause = error.source().expect("wasmtime's error").to_string();
        assert!(!cause.is_empty());
        let chain = ErrorChain(&error).to_string();
        assert!(
            chain.starts_with("broken could not be compiled: "),
            "{chain}"
        );
        assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
    }
}
