//! The per-task store data and the `host` imports a guest calls.

use tokio::sync::watch;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{WitLogLevel, arkitekt::rekuest::host::Host};
use super::http::TaskHttp;
use super::limits::TaskLimiter;
use super::output::{TaskOutput, YieldError};
use super::task::{LogLevel, Signal};

/// Everything one task's store holds.
pub struct TaskState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    /// Outbound HTTP under the action's grants.
    pub(crate) http: TaskHttp,
    pub(crate) limiter: TaskLimiter,
    pub(crate) output: TaskOutput,
    pub(crate) signal: watch::Receiver<Signal>,
    /// Whether the action may yield more than once.
    pub(crate) generator: bool,
    pub(crate) yields: u64,
    /// Set when the host refused a yield; the trap that follows carries it.
    pub(crate) contract_error: Option<YieldError>,
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A guest broke the contract (e.g. a FUNCTION yielding twice); ends the task as CRITICAL.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ContractViolation(pub String);

impl Host for TaskState {
    async fn log(&mut self, level: WitLogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            WitLogLevel::Debug => LogLevel::Debug,
            WitLogLevel::Info => LogLevel::Info,
            WitLogLevel::Warn => LogLevel::Warn,
            WitLogLevel::Error => LogLevel::Error,
            WitLogLevel::Critical => LogLevel::Critical,
        };
        self.output.log(level, message).await;
        Ok(())
    }

    async fn progress(&mut self, percent: u8, message: Option<String>) -> wasmtime::Result<()> {
        self.output.progress(percent, message).await;
        Ok(())
    }

    async fn yield_returns(&mut self, returns_json: String) -> wasmtime::Result<()> {
        if !self.generator && self.yields > 0 {
            return Err(wasmtime::Error::new(ContractViolation(
                "the action is a FUNCTION but yielded its returns more than once".into(),
            )));
        }
        self.yields += 1;
        match self.output.yield_returns(returns_json).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let message = error.to_string();
                self.contract_error = Some(error);
                Err(wasmtime::format_err!("{message}"))
            }
        }
    }

    async fn is_cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(matches!(
            *self.signal.borrow(),
            Signal::Cancel | Signal::Interrupt
        ))
    }

    async fn task_token(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.http.task_token.clone())
    }
}
