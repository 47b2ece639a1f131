//! The per-task store data and the `host` imports a guest calls.

use tokio::sync::watch;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::arkitekt::rekuest::{calls, host::Host};
use super::bindings::{CallError, WitLogLevel, WitTarget};
use super::calls::{
    CallTarget, ChildCall, ChildEvent, MAX_CALL_DEPTH, MAX_CHILDREN_PER_TASK, TaskCalls,
};
use super::events::{LogLevel, Signal};
use super::guest_fs::DescriptorClaim;
use super::http::TaskHttp;
use super::limits::{HostResourceCaps, TaskLimiter};
use super::output::{TaskOutput, YieldError};

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
    /// What the task may hold of host resources.
    pub(crate) resource_caps: HostResourceCaps,
    /// The task's share of the process's descriptor budget.
    pub(crate) descriptors: DescriptorClaim,
    /// Where calls to other actions go (`None`: this run cannot call, e.g. `rekuest-host call`).
    pub(crate) calls: Option<TaskCalls>,
    /// How many calls this task started.
    pub(crate) children: u32,
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

impl calls::Host for TaskState {
    async fn call(
        &mut self,
        target: WitTarget,
        args_json: String,
    ) -> wasmtime::Result<Result<Resource<ChildCall>, CallError>> {
        let Some(calls) = &self.calls else {
            return Ok(Err(CallError::Refused(
                "calls to other actions need a rekuest server: this task was not assigned by \
                 one (run it with `rekuest-host dev` or `serve`)"
                    .into(),
            )));
        };
        if calls.depth >= MAX_CALL_DEPTH {
            return Ok(Err(CallError::Refused(format!(
                "call depth cap reached: this task is nested {} calls deep and at most \
                 {MAX_CALL_DEPTH} are allowed (does an action call itself without end?)",
                calls.depth
            ))));
        }
        if self.children >= MAX_CHILDREN_PER_TASK {
            return Ok(Err(CallError::Refused(format!(
                "child cap reached: a task may start at most {MAX_CHILDREN_PER_TASK} calls"
            ))));
        }
        let target = match target {
            WitTarget::ActionHash(hash) => CallTarget::ActionHash(hash),
            WitTarget::AgentInterface(reference) => CallTarget::AgentInterface {
                agent: reference.agent,
                interface: reference.interface,
            },
            WitTarget::Dependency(slot) => CallTarget::Dependency(slot),
        };
        self.children += 1;
        let child = calls.port.start(&calls.task, target, args_json);
        Ok(Ok(self.table.push(child)?))
    }
}

impl calls::HostChild for TaskState {
    async fn next(
        &mut self,
        child: Resource<ChildCall>,
    ) -> wasmtime::Result<Result<Option<String>, CallError>> {
        let child = self.table.get_mut(&child)?;
        if child.done {
            return Ok(Ok(None));
        }
        let event = child.events.recv().await;
        let answer = match event {
            Some(ChildEvent::Yield(returns)) => return Ok(Ok(Some(returns))),
            Some(ChildEvent::Completed) => Ok(None),
            Some(ChildEvent::Refused(reason)) => Err(CallError::Refused(reason)),
            Some(ChildEvent::Failed(error)) => Err(CallError::Failed(error)),
            Some(ChildEvent::Critical(error)) => Err(CallError::Critical(error)),
            Some(ChildEvent::Cancelled(reason)) => Err(CallError::Cancelled(reason)),
            None => Err(CallError::Critical(
                "the host lost track of the child task (the agent is shutting down)".into(),
            )),
        };
        child.done = true;
        Ok(answer)
    }

    async fn drop(&mut self, child: Resource<ChildCall>) -> wasmtime::Result<()> {
        // Dropping the call stops the child if it still runs.
        self.table.delete(child)?;
        Ok(())
    }
}
