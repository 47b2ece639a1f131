//! A loaded action component: compiled once, described once, instantiated fresh per task.

mod policy;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{ActionComponentPre, RunError};
use super::calls::TaskCalls;
use super::events::{Failure, Outcome, Signal, TaskControl, TaskEvent, wait_while_paused};
use super::host_api::{ContractViolation, TaskState};
use super::http::TaskHttp;
use super::limits::{LimitExceeded, Limits, TaskLimiter};
use super::output::{TaskOutput, YieldError, cut_error};
use crate::definition::{ActionKind, Definition, Port, parse_definitions, prepare_args};
use crate::envelope;
pub use policy::{DirGrant, SandboxPolicy};

/// Largest self-description accepted.
pub const MAX_DESCRIPTION_BYTES: usize = 1024 * 1024;
/// How many events may wait between a task and its caller.
pub const EVENT_BUFFER: usize = 256;

/// Why a component could not be described.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// `describe` trapped, ran out of a limit or did not finish: its outcome's text (the
    /// guest's crash message or the limit report).
    #[error("its describe() call did not complete: {0}")]
    Failed(String),
    /// The description is larger than [`MAX_DESCRIPTION_BYTES`].
    #[error("its self-description is {size} bytes; at most {MAX_DESCRIPTION_BYTES} are allowed")]
    TooLarge {
        /// The size.
        size: usize,
    },
    /// The description is not valid.
    #[error("its self-description is invalid")]
    Invalid(#[source] crate::definition::DefinitionError),
}

/// One task for [`ActionComponent::run`]: the action, its args, and on whose behalf it runs.
pub struct TaskRequest<'a> {
    /// The action's key (see [`ActionComponent::definitions`]).
    pub action: &'a str,
    /// Its args, checked against the action's definition before the guest sees them.
    pub args: Map<String, Value>,
    /// The provenance token of the task (ASSIGN's `token`): sent to Arkitekt services and
    /// readable by the guest.
    pub task_token: Option<String>,
    /// How it may call other actions; `None`: it may not.
    pub calls: Option<TaskCalls>,
}

impl<'a> TaskRequest<'a> {
    /// A task of `action` with `args`, without a token and without calls.
    pub fn new(action: &'a str, args: Map<String, Value>) -> Self {
        TaskRequest {
            action,
            args,
            task_token: None,
            calls: None,
        }
    }
}

/// A component ready to run tasks.
pub struct ActionComponent {
    /// Its runtime; holding it also keeps the engine's epoch ticker alive (without it timeouts,
    /// cancel and pause stop).
    runtime: super::Runtime,
    name: String,
    pre: ActionComponentPre<TaskState>,
    definitions: Vec<Definition>,
    by_key: HashMap<String, usize>,
    /// Per definition: its return ports if one holds a structure (those yields get envelopes).
    structure_returns: Vec<Option<Arc<[Port]>>>,
    policy: SandboxPolicy,
}

/// A used sandbox (the task's store and instance); dropping it returns the instance to the
/// pool, which resets its memory. The default one holds nothing (the task never got a store).
#[derive(Default)]
pub struct Sandbox {
    store: Option<Store<TaskState>>,
    /// Whether the store meters fuel (asking an unmetered store for its fuel builds an error,
    /// with a backtrace when `RUST_BACKTRACE` is set: too dear for every task).
    metered: bool,
}

/// What one task's sandbox used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskUsage {
    /// Fuel burnt (`None`: the runtime does not meter fuel).
    pub fuel_used: Option<u64>,
    /// The peak total of its linear memories, in bytes.
    pub memory_bytes: u64,
}

impl Sandbox {
    /// What the task used; `None` if it never got a store.
    pub fn usage(&self) -> Option<TaskUsage> {
        let store = self.store.as_ref()?;
        let limiter = &store.data().limiter;
        Some(TaskUsage {
            fuel_used: self
                .metered
                .then(|| store.get_fuel().ok())
                .flatten()
                .map(|left| limiter.fuel_budget().saturating_sub(left)),
            memory_bytes: limiter.memory_total(),
        })
    }
}

/// What a sandboxed call should do.
enum Call<'a> {
    Describe,
    Run { key: &'a str, args: &'a str },
}

/// What a sandboxed call returned when it did not trap.
enum Returned {
    Description(String),
    Ran(Result<(), RunError>),
}

/// Why supervision ended a call early.
enum Interruption {
    Timeout,
    Stop(Signal),
}

/// Raised from the epoch callback when a stop was asked for.
#[derive(Debug, thiserror::Error)]
#[error("the task was stopped")]
struct Stopped;

/// What a task may reach beyond its sandbox: origins by its HTTP grants, other actions.
struct Reach {
    http: TaskHttp,
    calls: Option<TaskCalls>,
}

impl ActionComponent {
    /// Describes a freshly pre-instantiated component and checks its description.
    pub(crate) async fn describe(
        runtime: super::Runtime,
        name: String,
        pre: ActionComponentPre<TaskState>,
        policy: SandboxPolicy,
    ) -> Result<Self, DescribeError> {
        let mut component = ActionComponent {
            runtime,
            name,
            pre,
            definitions: Vec::new(),
            by_key: HashMap::new(),
            structure_returns: Vec::new(),
            policy,
        };
        let limits = component.policy.limits.for_describe();
        let (events, mut receiver) = mpsc::channel(EVENT_BUFFER);
        let name = component.name.clone();
        let drain = tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if let TaskEvent::Log { message, .. } = event {
                    tracing::debug!(component = %name, "describe: {message}");
                }
            }
        });
        // Describing reaches nothing: no grants, no token.
        let http = TaskHttp::new(
            Arc::default(),
            component.policy.http.limits,
            component.policy.http.client.clone(),
            None,
        );
        let (result, _sandbox) = component
            .sandboxed(
                Call::Describe,
                &limits,
                false,
                TaskOutput::new(events, limits.output),
                &TaskControl::new(),
                Reach { http, calls: None },
            )
            .await;
        drain.abort();
        let json = match result {
            Ok(Returned::Description(json)) => json,
            Ok(Returned::Ran(_)) => unreachable!("describe returns a description"),
            Err(outcome) => {
                // Nothing stops a describe call: it ends by failing or crashing.
                let reason = outcome
                    .error()
                    .unwrap_or_else(|| "it stopped without describing itself".into());
                return Err(DescribeError::Failed(reason));
            }
        };
        if json.len() > MAX_DESCRIPTION_BYTES {
            return Err(DescribeError::TooLarge { size: json.len() });
        }
        component.definitions = parse_definitions(&json).map_err(DescribeError::Invalid)?;
        component.by_key = component
            .definitions
            .iter()
            .enumerate()
            .map(|(index, definition)| (definition.key.clone(), index))
            .collect();
        component.structure_returns = component
            .definitions
            .iter()
            .map(|definition| {
                envelope::needs_wrapping(&definition.returns)
                    .then(|| definition.returns.as_slice().into())
            })
            .collect();
        Ok(component)
    }

    /// The component's name (its file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The actions it implements, as it describes them.
    pub fn definitions(&self) -> &[Definition] {
        &self.definitions
    }

    /// The definition of `action`.
    pub fn definition(&self, action: &str) -> Option<&Definition> {
        self.by_key
            .get(action)
            .map(|&index| &self.definitions[index])
    }

    /// Runs one task in a fresh sandbox. Logs, progress and yields go to `events` while it
    /// runs; the returned outcome is its one terminal report. The used sandbox comes back with
    /// it: whoever reports the outcome drops it afterwards, so resetting the instance's memory
    /// does not delay the report. Every event is in `events` when this returns, but the
    /// channel only closes with the sandbox; children still running when it drops are stopped.
    pub async fn run(
        &self,
        request: TaskRequest<'_>,
        events: mpsc::Sender<TaskEvent>,
        control: &TaskControl,
    ) -> (Outcome, Sandbox) {
        let TaskRequest {
            action,
            args,
            task_token,
            calls,
        } = request;
        let Some(&index) = self.by_key.get(action) else {
            let known: Vec<&str> = self.definitions.iter().map(|d| d.key.as_str()).collect();
            let outcome = Outcome::Failed(Failure::InvalidArgs(format!(
                "unknown action '{action}'; {} has: {}",
                self.name,
                known.join(", ")
            )));
            return (outcome, Sandbox::default());
        };
        let definition = &self.definitions[index];
        let prepared = if costs_more_than(&args, INLINE_ARG_COST) {
            // Big args leave the caller's thread (for served tasks the socket's) first.
            let definition = definition.clone();
            tokio::task::spawn_blocking(move || encode_args(&definition, args))
                .await
                .unwrap_or_else(|join_error| {
                    Err(Outcome::Critical(format!(
                        "the host failed while checking the args: {join_error}"
                    )))
                })
        } else {
            encode_args(definition, args)
        };
        let args = match prepared {
            Ok(args) => args,
            Err(outcome) => return (outcome, Sandbox::default()),
        };
        let limits = *self.policy.limits_for(action);
        let generator = definition.kind == ActionKind::Generator;
        let call = Call::Run {
            key: action,
            args: &args,
        };
        let output = TaskOutput::new(events, limits.output)
            .wrapping_structures(self.structure_returns[index].clone());
        let http = &self.policy.http;
        let http = TaskHttp::new(
            Arc::clone(http.grants_for(action)),
            http.limits,
            http.client.clone(),
            task_token,
        );
        let (result, sandbox) = self
            .sandboxed(
                call,
                &limits,
                generator,
                output,
                control,
                Reach { http, calls },
            )
            .await;
        let outcome = match result {
            Ok(Returned::Ran(Ok(()))) => Outcome::Completed,
            Ok(Returned::Ran(Err(RunError::Failed(message)))) => {
                Outcome::Failed(Failure::Action(cut_error(message, &limits.output)))
            }
            Ok(Returned::Ran(Err(RunError::Critical(message)))) => {
                Outcome::Critical(cut_error(message, &limits.output))
            }
            Ok(Returned::Description(_)) => unreachable!("run returns a run result"),
            Err(outcome) => outcome,
        };
        (outcome, sandbox)
    }

    /// Runs `call` in a fresh store under `limits`, supervised by `control`.
    async fn sandboxed(
        &self,
        call: Call<'_>,
        limits: &Limits,
        generator: bool,
        output: TaskOutput,
        control: &TaskControl,
        reach: Reach,
    ) -> (Result<Returned, Outcome>, Sandbox) {
        let signal = control.subscribe();
        let new_store = self.new_store(limits, generator, output.clone(), signal.clone(), reach);
        let mut store = match new_store {
            Ok(store) => store,
            Err(error) => {
                tracing::error!(component = %self.name, "could not set up a sandbox: {error:?}");
                let outcome =
                    Outcome::Critical(format!("the host could not set up a sandbox: {error}"));
                return (Err(outcome), Sandbox::default());
            }
        };
        let invocation = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let actions = instance.arkitekt_rekuest_actions();
            match call {
                Call::Describe => actions
                    .call_describe(&mut store)
                    .await
                    .map(Returned::Description),
                Call::Run { key, args } => actions
                    .call_run(&mut store, key, args)
                    .await
                    .map(Returned::Ran),
            }
        };
        let result = supervise(invocation, signal, limits.timeout, limits.cancel_grace).await;
        output.finish().await;
        let result = match result {
            Ok(Ok(returned)) => {
                let state = store.data();
                let completed = matches!(returned, Returned::Ran(Ok(())));
                if completed && !state.generator && state.yields == 0 {
                    Err(Outcome::Critical(
                        "the action completed without yielding its returns".into(),
                    ))
                } else {
                    Ok(returned)
                }
            }
            Ok(Err(error)) => Err(self.classify_trap(error, &mut store, limits, &output, control)),
            Err(Interruption::Timeout) => {
                Err(Outcome::Failed(Failure::Limit(LimitExceeded::Timeout {
                    timeout: limits.timeout,
                })))
            }
            Err(Interruption::Stop(signal)) => Err(stopped_outcome(signal)),
        };
        let metered = self.runtime.fuel_metering();
        (
            result,
            Sandbox {
                store: Some(store),
                metered,
            },
        )
    }

    fn new_store(
        &self,
        limits: &Limits,
        generator: bool,
        output: TaskOutput,
        signal: watch::Receiver<Signal>,
        reach: Reach,
    ) -> Result<Store<TaskState>, wasmtime::Error> {
        let Reach { http, calls } = reach;
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.policy.resources.host_resources);
        let state = TaskState {
            wasi: self.policy.wasi_ctx(&output)?,
            table,
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http,
            limiter: TaskLimiter::new(limits),
            output,
            signal,
            generator,
            yields: 0,
            contract_error: None,
            resource_caps: self.policy.resources,
            descriptors: self.runtime.descriptor_budget().claim(),
            calls,
            children: 0,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        if self.runtime.fuel_metering() {
            store.set_fuel(store.data().limiter.fuel_budget())?;
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            let signal = *context.data().signal.borrow();
            match signal {
                Signal::Run => Ok(UpdateDeadline::Yield(1)),
                Signal::Pause => {
                    let mut signal = context.data().signal.clone();
                    Ok(UpdateDeadline::YieldCustom(
                        1,
                        Box::pin(async move {
                            wait_while_paused(&mut signal).await;
                        }),
                    ))
                }
                // A cancelled guest runs on through its grace period (`supervise` ends it).
                Signal::Cancel => Ok(UpdateDeadline::Yield(1)),
                Signal::Interrupt => Err(wasmtime::Error::new(Stopped)),
            }
        });
        Ok(store)
    }

    /// Turns an error out of wasm into the outcome a caller sees; details go to the host log.
    fn classify_trap(
        &self,
        error: wasmtime::Error,
        store: &mut Store<TaskState>,
        limits: &Limits,
        output: &TaskOutput,
        control: &TaskControl,
    ) -> Outcome {
        tracing::debug!(component = %self.name, "task ended by a trap: {error:?}");
        if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
            return Outcome::Failed(Failure::Limit(limit.clone()));
        }
        if let Some(ResourceTableError::Full) = error.downcast_ref::<ResourceTableError>() {
            return Outcome::Failed(Failure::Limit(LimitExceeded::HostResources {
                limit: self.policy.resources.host_resources,
            }));
        }
        if error.downcast_ref::<Stopped>().is_some() {
            return stopped_outcome(control.signal());
        }
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return Outcome::Critical(exit_message(exit.0).into());
        }
        if let Some(violation) = error.downcast_ref::<ContractViolation>() {
            return Outcome::Critical(violation.0.clone());
        }
        match store.data_mut().contract_error.take() {
            Some(YieldError::TooLarge(limit)) => return Outcome::Failed(Failure::Limit(limit)),
            Some(malformed @ YieldError::Malformed(_)) => {
                return Outcome::Critical(malformed.to_string());
            }
            Some(unreadable @ YieldError::Unreadable(_)) => {
                return Outcome::Failed(Failure::RefusedOutput(unreadable.to_string()));
            }
            None => {}
        }
        let outcome = match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Outcome::Failed(Failure::Limit(LimitExceeded::Fuel {
                budget: limits.fuel_budget(),
            })),
            Some(Trap::StackOverflow) => {
                Outcome::Critical("stack overflow: the action recursed too deeply".into())
            }
            Some(Trap::MemoryOutOfBounds) if output.panic_message().is_none() => {
                Outcome::Critical(format!(
                    "the action crashed: {} (in Rust guests usually a stack overflow: \
                     the shadow stack in linear memory ran out, e.g. from deep recursion)",
                    Trap::MemoryOutOfBounds
                ))
            }
            Some(trap) => Outcome::Critical(match output.panic_message() {
                Some(panic) => panic,
                None => format!("the action crashed: {trap}"),
            }),
            None => Outcome::Critical(format!("the action failed in a host call: {error}")),
        };
        // The caller gets the message in the CRITICAL report; the backtrace (naming functions
        // when the component kept its name section) is for whoever debugs the host.
        if let Outcome::Critical(message) = &outcome {
            match error.downcast_ref::<wasmtime::WasmBacktrace>() {
                Some(backtrace) => {
                    tracing::debug!(component = %self.name, "task crashed: {message}\n{backtrace}")
                }
                None => tracing::debug!(component = %self.name, "task crashed: {message}"),
            }
        }
        outcome
    }
}

/// Args costing more than this (one unit per JSON value and per KiB of string) are checked
/// and encoded on a blocking thread rather than where the task starts; smaller ones take
/// microseconds.
const INLINE_ARG_COST: usize = 1_000;

/// Checks `args` against `definition` and encodes them for the guest.
fn encode_args(definition: &Definition, args: Map<String, Value>) -> Result<String, Outcome> {
    match prepare_args(definition, args) {
        Ok(args) => Ok(Value::Object(args).to_string()),
        Err(error) => Err(Outcome::Failed(Failure::InvalidArgs(error.to_string()))),
    }
}

/// Whether checking `args` costs more than `limit` (see [`INLINE_ARG_COST`]); stops counting
/// at the limit.
fn costs_more_than(args: &Map<String, Value>, limit: usize) -> bool {
    fn count(value: &Value, budget: &mut usize) -> bool {
        let cost = match value {
            Value::String(text) => 1 + text.len() / 1024,
            _ => 1,
        };
        if *budget < cost {
            return true;
        }
        *budget -= cost;
        match value {
            Value::Array(items) => items.iter().any(|item| count(item, budget)),
            Value::Object(entries) => entries.values().any(|item| count(item, budget)),
            _ => false,
        }
    }
    let mut budget = limit;
    args.values().any(|value| count(value, &mut budget))
}

/// What an `exit()` of the guest means for its caller. WASI's `exit` carries only success or
/// failure (any failing code, e.g. `exit(3)`, arrives as 1), and a successful exit still
/// skips returning the results the action owes.
fn exit_message(status: i32) -> &'static str {
    if status == 0 {
        "the action exited before returning its results (it called exit() with a success \
         status instead of returning)"
    } else {
        "the action called exit() with a failure status (WASI carries no exit code)"
    }
}

fn stopped_outcome(signal: Signal) -> Outcome {
    match signal {
        Signal::Interrupt => Outcome::Interrupted,
        _ => Outcome::Cancelled,
    }
}

/// Drives `call` until it finishes, its (pause-adjusted) timeout passes, or a stop arrives.
///
/// An interrupt stops it at once. A cancel lets it run on for `grace` (it sees
/// `is_cancelled()`); however it ends then, by returning or at the end of the grace, it ends
/// as cancelled.
async fn supervise<T>(
    call: impl Future<Output = T>,
    mut signal: watch::Receiver<Signal>,
    timeout: Duration,
    grace: Duration,
) -> Result<T, Interruption> {
    tokio::pin!(call);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let grace_end = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace_end);
    let mut cancelled = false;
    let mut listening = true;
    // A task paused or stopped before it started waits or ends before running any guest code.
    if *signal.borrow() == Signal::Cancel {
        return Err(Interruption::Stop(Signal::Cancel));
    }
    signal.mark_changed();
    loop {
        tokio::select! {
            biased;
            changed = signal.changed(), if listening => {
                if changed.is_err() {
                    // Nobody can signal any more; run to the end or the deadline.
                    listening = false;
                    continue;
                }
                let current = *signal.borrow_and_update();
                match current {
                    Signal::Interrupt => return Err(Interruption::Stop(current)),
                    Signal::Cancel if !cancelled => {
                        cancelled = true;
                        // A grace beyond any instant never ends (the timeout still does).
                        if let Some(end) = tokio::time::Instant::now().checked_add(grace) {
                            grace_end.as_mut().reset(end);
                        }
                    }
                    Signal::Cancel => {}
                    Signal::Pause => {
                        let paused = wait_while_paused(&mut signal).await;
                        let extended = deadline.deadline() + paused;
                        deadline.as_mut().reset(extended);
                        // A stop that ended the pause is seen on the next turn.
                        signal.mark_changed();
                    }
                    Signal::Run => {}
                }
            }
            output = &mut call => {
                return if cancelled { Err(Interruption::Stop(Signal::Cancel)) } else { Ok(output) };
            }
            () = &mut grace_end, if cancelled => return Err(Interruption::Stop(Signal::Cancel)),
            () = &mut deadline => {
                return Err(if cancelled { Interruption::Stop(Signal::Cancel) } else { Interruption::Timeout });
            }
        }
    }
}
