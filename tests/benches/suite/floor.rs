//! The floor: raw wasmtime with the host's engine settings, no host runtime around it. A
//! fresh store, instantiate, one `run` call and drop per task; the host imports do nothing
//! but keep the returns. Every import an action component may have is linked (WASI,
//! `wasi:http`, the host interface, `calls`, `keep`), so any example loads; what a floor task
//! does not use refuses (a call, a shelf, a request).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rekuest_host::runtime::limits::DEFAULT_MEMORY_BYTES;
use rekuest_host::runtime::{ComponentCache, EPOCH_TICK, base_config, pooling_config};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "action-component",
    imports: { default: async | trappable },
    exports: { default: async },
});

use arkitekt::rekuest::calls::{self, CallError, Child, HostChild, Target};
use arkitekt::rekuest::host::{Host, LogLevel};
use arkitekt::rekuest::keep;

/// What a floor task answers to an import it does not use.
const UNUSED: &str = "not offered by the benchmark floor";

/// The store data of one raw call.
struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    refuse_requests: RefuseRequests,
    returns: Option<String>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// `wasi:http` hooks that deny every request.
struct RefuseRequests;

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for RefuseRequests {
    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>
    {
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.refuse_requests,
        }
    }
}

impl calls::Host for CallState {
    async fn call(
        &mut self,
        _target: Target,
        _args_json: String,
    ) -> wasmtime::Result<Result<Resource<Child>, CallError>> {
        Ok(Err(CallError::Refused(UNUSED.into())))
    }
}

impl HostChild for CallState {
    async fn next(
        &mut self,
        _child: Resource<Child>,
    ) -> wasmtime::Result<Result<Option<String>, CallError>> {
        // `call` never hands out a child.
        Err(wasmtime::Error::msg(UNUSED))
    }

    async fn drop(&mut self, _child: Resource<Child>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl keep::Host for CallState {
    async fn shelve(
        &mut self,
        _identifier: String,
        _value_json: String,
    ) -> wasmtime::Result<Result<String, String>> {
        Ok(Err(UNUSED.into()))
    }

    async fn unshelve(&mut self, _drawer: String) -> wasmtime::Result<Result<String, String>> {
        Ok(Err(UNUSED.into()))
    }

    async fn get_state(&mut self, _name: String) -> wasmtime::Result<Result<String, String>> {
        Ok(Err(UNUSED.into()))
    }

    async fn set_state(
        &mut self,
        _name: String,
        _value_json: String,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(Err(UNUSED.into()))
    }
}

impl Host for CallState {
    async fn log(&mut self, _level: LogLevel, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }

    async fn progress(&mut self, _percent: u8, _message: Option<String>) -> wasmtime::Result<()> {
        Ok(())
    }

    async fn yield_returns(&mut self, returns_json: String) -> wasmtime::Result<()> {
        self.returns = Some(returns_json);
        Ok(())
    }

    async fn is_cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(false)
    }

    async fn task_token(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}

/// Which interruption mechanisms the engine compiles into guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metering {
    /// Fuel and epoch interruption, as the host runs.
    FuelAndEpoch,
    /// Epoch interruption only.
    Epoch,
    /// Neither.
    None,
}

/// One component on a raw engine with the host's settings but the given metering.
pub struct RawComponent {
    pre: ActionComponentPre<CallState>,
    metering: Metering,
    ticking: Arc<AtomicBool>,
}

impl RawComponent {
    /// Compiles `path` on an engine with the host's settings and `slots` pooling slots.
    pub fn load(path: &Path, metering: Metering, slots: u32) -> Self {
        let pool = pooling_config(slots, DEFAULT_MEMORY_BYTES);
        Self::load_with(path, metering, None, |config| {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        })
    }

    /// Compiles `path` (or takes it from `cache`) on an engine with the host's settings
    /// changed by `configure` (e.g. another allocator).
    pub fn load_with(
        path: &Path,
        metering: Metering,
        cache: Option<&ComponentCache>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = base_config(metering == Metering::FuelAndEpoch);
        config.epoch_interruption(metering != Metering::None);
        configure(&mut config);
        let engine = Engine::new(&config).expect("the engine starts");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI links");
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .expect("wasi:http links");
        ActionComponent::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .expect("the host API, calls and keep link");
        let component = match cache {
            Some(cache) => {
                let wasm = std::fs::read(path).expect("the component can be read");
                cache.load_or_compile(&engine, &path.display().to_string(), &wasm)
            }
            None => Component::from_file(&engine, path),
        }
        .expect("the component compiles");
        let pre = linker
            .instantiate_pre(&component)
            .expect("the component links");
        let pre = ActionComponentPre::new(pre).expect("the component is an action component");
        let ticking = Arc::new(AtomicBool::new(metering != Metering::None));
        if metering != Metering::None {
            let ticking = ticking.clone();
            std::thread::spawn(move || {
                while ticking.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        }
        RawComponent {
            pre,
            metering,
            ticking,
        }
    }

    /// Runs `action` with `args_json` in a fresh store and returns what it yielded.
    pub async fn call(&self, action: &str, args_json: &str) -> String {
        let (mut store, instance) = self.instantiate().await;
        Self::run(&mut store, &instance, action, args_json).await;
        store.into_data().returns.expect("the action yielded")
    }

    /// Runs `action` in a fresh store like [`RawComponent::call`], timing its parts: store +
    /// instantiate, the call, dropping the store.
    pub async fn call_in_parts(&self, action: &str, args_json: &str) -> [Duration; 3] {
        let started = Instant::now();
        let (mut store, instance) = self.instantiate().await;
        let instantiated = started.elapsed();
        let started = Instant::now();
        Self::run(&mut store, &instance, action, args_json).await;
        let called = started.elapsed();
        let started = Instant::now();
        drop(store);
        [instantiated, called, started.elapsed()]
    }

    /// Each of `count` calls of `action` on one instance (no fresh store per task).
    pub async fn calls_on_one_instance(
        &self,
        action: &str,
        args_json: &str,
        count: usize,
    ) -> Vec<Duration> {
        let (mut store, instance) = self.instantiate().await;
        let mut latencies = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            Self::run(&mut store, &instance, action, args_json).await;
            latencies.push(started.elapsed());
        }
        latencies
    }

    /// A fresh store with the instance of this component in it.
    async fn instantiate(&self) -> (Store<CallState>, ActionComponent) {
        let state = CallState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            refuse_requests: RefuseRequests,
            returns: None,
        };
        let mut store = Store::new(self.pre.engine(), state);
        if self.metering == Metering::FuelAndEpoch {
            store.set_fuel(u64::MAX).expect("fuel is on");
        }
        if self.metering != Metering::None {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        }
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("the component instantiates");
        (store, instance)
    }

    async fn run(
        store: &mut Store<CallState>,
        instance: &ActionComponent,
        action: &str,
        args_json: &str,
    ) {
        instance
            .arkitekt_rekuest_actions()
            .call_run(&mut *store, action, args_json)
            .await
            .expect("the call does not trap")
            .expect("the action succeeds");
    }
}

impl Drop for RawComponent {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}
