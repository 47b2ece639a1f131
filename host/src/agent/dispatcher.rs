//! The task table: runs assignments in fresh sandboxes under concurrency caps, routes
//! CANCEL / INTERRUPT / PAUSE / RESUME, answers inquiries, and remembers finished tasks.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::Instrument;

use super::calls::Calls;
use super::caps::AgentCaps;
use super::keep::Keep;
use super::metrics::{ActionMetrics, Snapshot};
use super::outbox::Outbox;
use crate::protocol::{Assign, ChildControl, Inquiry, Report, ReportKind, ReportType};
use crate::runtime::{
    ActionComponent, EPOCH_TICK, EVENT_BUFFER, Outcome, Sandbox, Signal, TaskCalls, TaskControl,
    TaskEvent, TaskRequest, TaskUsage,
};

/// How long a stepped task runs before it parks again (one epoch tick is the granularity).
pub const STEP_DURATION: Duration = EPOCH_TICK;

/// How a CANCEL or INTERRUPT stops a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// CANCEL: the guest sees `is_cancelled()` and may end within its grace period; the task
    /// reports CANCELLED.
    Cancel,
    /// INTERRUPT: the guest is stopped at once; the task reports INTERRUPTED.
    Interrupt,
}

impl StopMode {
    /// The control passed on to the task's children.
    fn child_control(self) -> ChildControl {
        match self {
            StopMode::Cancel => ChildControl::Cancel,
            StopMode::Interrupt => ChildControl::Interrupt,
        }
    }

    /// The terminal report of a task stopped this way.
    fn report(self) -> ReportKind {
        match self {
            StopMode::Cancel => ReportKind::Cancelled,
            StopMode::Interrupt => ReportKind::Interrupted,
        }
    }
}

impl From<Outcome> for ReportKind {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Completed => ReportKind::Completed,
            Outcome::Failed(failure) => ReportKind::Failed {
                error: failure.to_string(),
            },
            Outcome::Critical(error) => ReportKind::Critical { error },
            Outcome::Cancelled => ReportKind::Cancelled,
            Outcome::Interrupted => ReportKind::Interrupted,
        }
    }
}

/// What is remembered of a finished task's terminal report: its kind, the error cut to
/// `error_chars` characters.
fn finished_summary(report: &Report, error_chars: usize) -> Report {
    let kind = match &report.kind {
        ReportKind::Failed { error } => ReportKind::Failed {
            error: summary_text(error, error_chars),
        },
        ReportKind::Critical { error } => ReportKind::Critical {
            error: summary_text(error, error_chars),
        },
        other => other.clone(),
    };
    Report {
        task: report.task.clone(),
        id: report.id.clone(),
        seq: None,
        kind,
    }
}

fn summary_text(error: &str, error_chars: usize) -> String {
    match error.char_indices().nth(error_chars) {
        None => error.to_string(),
        Some((end, _)) => format!("{}… [{} bytes cut]", &error[..end], error.len() - end),
    }
}

/// An action the dispatcher can run.
pub struct ActionSlot {
    /// The component implementing it.
    pub component: Arc<ActionComponent>,
    /// At most this many of its tasks at once (`None`: only the global cap applies).
    pub concurrency: Option<usize>,
    /// Its series (see [`super::metrics::Metrics::action`]).
    pub metrics: Arc<ActionMetrics>,
}

struct Entry {
    control: TaskControl,
    started: bool,
    progress: Option<i64>,
    /// The size of its ASSIGN frame while it waits for a slot; 0 once it runs.
    queued_bytes: usize,
    /// How many calls deep the task is nested (see [`TaskCalls::depth`]).
    depth: u32,
    /// When its ASSIGN arrived.
    assigned: Instant,
    /// Its action's series.
    metrics: Arc<ActionMetrics>,
}

#[derive(Default)]
struct Table {
    /// The actions by interface; replaced whole on a reload (running tasks keep their
    /// component).
    actions: HashMap<String, Action>,
    running: HashMap<String, Entry>,
    /// The sum of the waiting entries' `queued_bytes`.
    queued_bytes: usize,
    finished: HashMap<String, Report>,
    finished_order: VecDeque<String>,
}

impl Table {
    /// Keeps the terminal `report` of a task for inquiries and duplicate assignments,
    /// forgetting the oldest beyond [`AgentCaps::finished_tasks`].
    fn remember(&mut self, report: Report, caps: &AgentCaps) {
        self.finished_order.push_back(report.task.clone());
        self.finished.insert(
            report.task.clone(),
            finished_summary(&report, caps.finished_error_chars),
        );
        while self.finished_order.len() > caps.finished_tasks {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }
}

/// What a finished task still holds: its used sandbox and its concurrency permits, released
/// together once the terminal report had its chance to go out.
struct UsedSlot {
    _sandbox: Sandbox,
    _permits: (Option<OwnedSemaphorePermit>, OwnedSemaphorePermit),
}

/// What a task of an action waits for before it runs, besides a global slot.
struct Waits {
    /// A slot of its action, if the action has a cap.
    action: Option<Arc<Semaphore>>,
    /// The action's locks, sorted by key.
    locks: Arc<[(String, Arc<Semaphore>)]>,
}

struct Action {
    component: Arc<ActionComponent>,
    /// The action's cap and its semaphore.
    permits: Option<(usize, Arc<Semaphore>)>,
    metrics: Arc<ActionMetrics>,
    /// The locks its tasks hold while they run, sorted by key (empty for most actions).
    locks: Arc<[(String, Arc<Semaphore>)]>,
}

/// Routes server messages to tasks; cheap to share.
pub struct Dispatcher {
    global: Arc<Semaphore>,
    /// Most tasks queued or running at once: the concurrency plus the queue cap.
    capacity: usize,
    /// What may wait for a slot, and what is remembered of finished tasks.
    caps: AgentCaps,
    table: Mutex<Table>,
    outbox: Arc<Outbox>,
    calls: Arc<Calls>,
    keep: Arc<Keep>,
    executor: Handle,
    accepting: AtomicBool,
    idle: Notify,
}

/// Runs `task` on the guest `executor`; with `here_first`, polls it once where the socket runs
/// first and moves it only if it is not done by then (it waited for a slot, a timer, or its
/// first epoch slice ran out).
///
/// A lone short task (most calls take tens of microseconds) finishes on the socket's thread,
/// with no cross-thread wakeup on its way in or out; long ones cost the socket at most one epoch
/// tick before they leave. When other tasks are in flight, the socket's thread has frames to
/// read and write for them, so a new task goes to the guest workers at once and the two run on
/// different cores. Errors are panics of the host side.
async fn run_on_executor<T: Send + 'static>(
    task: impl Future<Output = T> + Send + 'static,
    executor: &Handle,
    here_first: bool,
) -> Result<T, String> {
    let mut task = Box::pin(std::panic::AssertUnwindSafe(task).catch_unwind());
    let first = if here_first {
        std::future::poll_fn(|context| Poll::Ready(task.as_mut().poll(context))).await
    } else {
        Poll::Pending
    };
    let finished = match first {
        Poll::Ready(finished) => finished,
        Poll::Pending => match executor.spawn(task).await {
            Ok(finished) => finished,
            Err(error) => return Err(error.to_string()),
        },
    };
    finished.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    })
}

impl Dispatcher {
    /// A dispatcher for `actions` (by interface), at most `concurrency` tasks at once and
    /// what `caps` allows waiting (further ones are answered FAILED at once), moving guests
    /// that outlast their first epoch slice to `executor`, reporting into `outbox`; tasks keep
    /// shelves and states in `keep` and take their actions' locks from it.
    pub fn new(
        actions: HashMap<String, ActionSlot>,
        concurrency: usize,
        caps: &AgentCaps,
        outbox: Arc<Outbox>,
        calls: Arc<Calls>,
        keep: Arc<Keep>,
        executor: Handle,
    ) -> Arc<Self> {
        let table = Table {
            actions: actions_of(actions, &HashMap::new(), &keep),
            ..Table::default()
        };
        Arc::new(Dispatcher {
            global: Arc::new(Semaphore::new(concurrency.max(1))),
            capacity: concurrency.max(1).saturating_add(caps.queued_tasks),
            caps: *caps,
            table: Mutex::new(table),
            outbox,
            calls,
            keep,
            executor,
            accepting: AtomicBool::new(true),
            idle: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The calls of the tasks to other actions.
    pub fn calls(&self) -> &Arc<Calls> {
        &self.calls
    }

    /// The shelves, states and locks of the tasks.
    pub fn keep(&self) -> &Arc<Keep> {
        &self.keep
    }

    /// How many tasks are queued or running.
    pub fn active(&self) -> usize {
        self.table().running.len()
    }

    /// Tasks running and queued, for the metrics.
    pub fn snapshot(&self) -> Snapshot {
        let table = self.table();
        let running = table.running.values().filter(|entry| entry.started).count();
        Snapshot {
            running,
            queued: table.running.len() - running,
            unacked: self.outbox.unacked(),
        }
    }

    /// Serves `actions` from now on. Tasks already assigned finish on the components they
    /// started with; an action whose cap is unchanged keeps its slots (and so counts its
    /// running tasks against the cap).
    pub fn replace_actions(&self, actions: HashMap<String, ActionSlot>) {
        let mut table = self.table();
        table.actions = actions_of(actions, &table.actions, &self.keep);
    }

    /// ASSIGN (a frame of `frame_bytes`): run the task unless it is already known here.
    pub fn assign(self: &Arc<Self>, assign: Assign, frame_bytes: usize) {
        let task = assign.task.clone();
        // The task's story, from the socket through the dispatcher to the sandbox.
        let span = tracing::info_span!("task", task = %task, action = %assign.interface);
        let _entered = span.enter();
        let mut table = self.table();
        if table.running.contains_key(&task) {
            tracing::warn!(%task, "ASSIGN for a task that is already running here; ignored");
            return;
        }
        if let Some(report) = table.finished.get(&task) {
            tracing::warn!(%task, "ASSIGN for a task that already finished here; not running it twice");
            if !self.outbox.retains_terminal(&task) {
                self.outbox.push(Report::new(task, report.kind.clone()));
            }
            return;
        }
        if !self.accepting.load(Ordering::SeqCst) {
            drop(table);
            self.outbox.push(Report::new(
                task,
                ReportKind::Failed {
                    error: "rekuest-host is shutting down; the task was not started".into(),
                },
            ));
            return;
        }
        let overloaded = if table.running.len() >= self.capacity {
            Some(format!(
                "{} tasks queued (beyond the {} running)",
                self.caps.queued_tasks,
                self.capacity - self.caps.queued_tasks
            ))
        } else if table.queued_bytes > 0
            && table.queued_bytes.saturating_add(frame_bytes) > self.caps.queued_bytes
        {
            Some(format!(
                "{} of args queued, and this task's {} would pass the {} cap",
                crate::runtime::limits::format_bytes(table.queued_bytes as u64),
                crate::runtime::limits::format_bytes(frame_bytes as u64),
                crate::runtime::limits::format_bytes(self.caps.queued_bytes as u64),
            ))
        } else {
            None
        };
        if let Some(reason) = overloaded {
            drop(table);
            tracing::warn!(%task, "refusing a task: {reason}");
            self.outbox.push(Report::new(
                task,
                ReportKind::Failed {
                    error: format!("agent overloaded: {reason}; try again later"),
                },
            ));
            return;
        }
        let Some(action) = table.actions.get(&assign.interface) else {
            let mut known: Vec<&str> = table.actions.keys().map(String::as_str).collect();
            known.sort_unstable();
            let error = format!(
                "this agent has no action '{}'; it has: {}",
                assign.interface,
                known.join(", ")
            );
            drop(table);
            self.outbox
                .push(Report::new(task, ReportKind::Failed { error }));
            return;
        };
        let component = Arc::clone(&action.component);
        let permits = action
            .permits
            .as_ref()
            .map(|(_, semaphore)| Arc::clone(semaphore));
        let metrics = Arc::clone(&action.metrics);
        let waits = Waits {
            action: permits,
            locks: Arc::clone(&action.locks),
        };
        // A child of a task running here is one deeper; of a task elsewhere, at least 1.
        let depth = match &assign.parent {
            None => 0,
            Some(parent) => table
                .running
                .get(parent)
                .map_or(1, |parent| parent.depth.saturating_add(1)),
        };
        let control = TaskControl::new();
        if assign.step == Some(true) {
            // Stepping from the start: park at the first epoch tick until RESUME.
            control.pause();
        }
        table.running.insert(
            task.clone(),
            Entry {
                control: control.clone(),
                started: false,
                progress: None,
                queued_bytes: frame_bytes,
                depth,
                assigned: Instant::now(),
                metrics,
            },
        );
        table.queued_bytes += frame_bytes;
        let alone = table.running.len() == 1;
        drop(table);
        let dispatcher = Arc::clone(self);
        // Boxed once here: the task's future is large, and moving it by value into the spawned
        // task cost more instructions per task than the guest call.
        let run = Box::pin(
            Arc::clone(self)
                .run_task(task.clone(), assign, component, waits, control, depth)
                .instrument(span.clone()),
        );
        let executor = self.executor.clone();
        tokio::spawn(async move {
            match run_on_executor(run, &executor, alone).await {
                Ok(used) => {
                    // Let the socket send the terminal report before the sandbox is reset;
                    // the permits (and so the pool slot) stay taken until then.
                    tokio::task::yield_now().await;
                    drop(used);
                }
                Err(failure) => {
                    // A panic in the task is a host bug: the caller still gets a terminal
                    // report.
                    tracing::error!(%task, "the task's host side failed: {failure}");
                    dispatcher.finish(
                        &task,
                        Outcome::Critical(
                            "rekuest-host failed while running this task (a host bug)".into(),
                        ),
                        None,
                    );
                }
            }
        });
    }

    /// Answers an assignment that cannot be run (a malformed ASSIGN) with FAILED and
    /// `reason`, unless the task is already known here.
    pub fn refuse(&self, task: &str, reason: String) {
        let mut table = self.table();
        if table.running.contains_key(task) || table.finished.contains_key(task) {
            tracing::warn!(%task, "{reason}; the task is already known here, so it stands");
            return;
        }
        tracing::warn!(%task, "{reason}");
        let report = Report::new(task, ReportKind::Failed { error: reason });
        table.remember(report.clone(), &self.caps);
        drop(table);
        self.outbox.push(report);
    }

    async fn run_task(
        self: Arc<Self>,
        task: String,
        assign: Assign,
        component: Arc<ActionComponent>,
        waits: Waits,
        control: TaskControl,
        depth: u32,
    ) -> Option<UsedSlot> {
        let Some((permits, held)) = self
            .acquire(waits.action, &waits.locks, &task, &control)
            .await
        else {
            let outcome = match control.signal() {
                Signal::Interrupt => Outcome::Interrupted,
                _ => Outcome::Cancelled,
            };
            self.finish(&task, outcome, None);
            return None;
        };
        {
            let mut table = self.table();
            if let Some(entry) = table.running.get_mut(&task) {
                entry.started = true;
                let waited = std::mem::take(&mut entry.queued_bytes);
                table.queued_bytes -= waited;
            }
        }
        self.outbox
            .push(Report::new(task.clone(), ReportKind::Started));
        if assign.step == Some(true) && control.signal() == Signal::Pause {
            // Assigned with `step`: it parks at its first epoch tick until RESUME.
            self.outbox
                .push(Report::new(task.clone(), ReportKind::Paused));
        }
        let (events, mut receiver) = mpsc::channel(EVENT_BUFFER);
        let calls = TaskCalls {
            port: Arc::clone(&self.calls) as _,
            task: task.clone(),
            depth,
            keep: Some(Arc::clone(&self.keep) as _),
        };
        let request = TaskRequest {
            action: &assign.interface,
            args: assign.args,
            task_token: assign.token,
            calls: Some(calls),
        };
        let run = component.run(request, events, &control);
        tokio::pin!(run);
        // Events are forwarded as they come; the channel stays open while the sandbox lives,
        // so the end of the run (not of the channel) ends the loop. While the outbox is full
        // an event waits here, the channel fills, and the guest waits in its output call; the
        // run keeps being polled, so its timeout and stop signals still apply.
        let (outcome, sandbox) = loop {
            tokio::select! {
                biased;
                Some(event) = receiver.recv() => {
                    let forward = self.outbox.push_output(self.report_of(&task, event));
                    tokio::pin!(forward);
                    tokio::select! {
                        biased;
                        () = &mut forward => {}
                        finished = &mut run => {
                            forward.await;
                            break finished;
                        }
                    }
                }
                finished = &mut run => break finished,
            }
        };
        while let Ok(event) = receiver.try_recv() {
            self.outbox.push_output(self.report_of(&task, event)).await;
        }
        self.release(&waits.locks, held);
        self.finish(&task, outcome, sandbox.usage());
        Some(UsedSlot {
            _sandbox: sandbox,
            _permits: permits,
        })
    }

    /// Waits for a slot of the action, its `locks` (telling the server about each taken) and
    /// a global slot, in arrival order; `None` if the task was stopped while it waited (locks
    /// it took are released).
    async fn acquire(
        &self,
        action: Option<Arc<Semaphore>>,
        locks: &[(String, Arc<Semaphore>)],
        task: &str,
        control: &TaskControl,
    ) -> Option<(
        (Option<OwnedSemaphorePermit>, OwnedSemaphorePermit),
        Vec<OwnedSemaphorePermit>,
    )> {
        let mut signal = control.subscribe();
        let mut held = Vec::new();
        let permits = async {
            let action = match action {
                Some(semaphore) => Some(semaphore.acquire_owned().await.ok()?),
                None => None,
            };
            for (key, semaphore) in locks {
                held.push(Arc::clone(semaphore).acquire_owned().await.ok()?);
                self.keep.locked(key, task);
            }
            let global = Arc::clone(&self.global).acquire_owned().await.ok()?;
            Some((action, global))
        };
        let stopped = async {
            let _ = signal
                .wait_for(|signal| matches!(signal, Signal::Cancel | Signal::Interrupt))
                .await;
        };
        let permits = tokio::select! {
            biased;
            () = stopped => None,
            permits = permits => permits,
        };
        match permits {
            Some(permits) => Some((permits, held)),
            None => {
                self.release(locks, held);
                None
            }
        }
    }

    /// Releases the locks a task `held` (the first of `locks`), telling the server.
    fn release(&self, locks: &[(String, Arc<Semaphore>)], held: Vec<OwnedSemaphorePermit>) {
        // UNLOCK is queued before the lock is free, so the next holder's LOCK follows it.
        for (key, _) in &locks[..held.len()] {
            self.keep.unlocked(key);
        }
        drop(held);
    }

    /// The report of a task's output event.
    fn report_of(&self, task: &str, event: TaskEvent) -> Report {
        let kind = match event {
            TaskEvent::Log { level, message } => ReportKind::Log { message, level },
            TaskEvent::Progress { percent, message } => {
                if let Some(entry) = self.table().running.get_mut(task) {
                    entry.progress = Some(i64::from(percent));
                }
                ReportKind::Progress {
                    progress: Some(i64::from(percent)),
                    message,
                }
            }
            TaskEvent::Yield(returns) => ReportKind::Yield { returns },
        };
        Report::new(task, kind)
    }

    /// Records the terminal report of `task` (once), counts it with what its sandbox used,
    /// queues the report and logs the task's one line.
    fn finish(&self, task: &str, outcome: Outcome, usage: Option<TaskUsage>) {
        let mut table = self.table();
        let Some(entry) = table.running.remove(task) else {
            return;
        };
        let took = entry.assigned.elapsed();
        entry.metrics.finished(&outcome, took, usage);
        let report = Report::new(task, outcome.into());
        let outcome = report.kind.report_type().as_str();
        table.queued_bytes -= entry.queued_bytes;
        table.remember(report.clone(), &self.caps);
        let idle = table.running.is_empty();
        self.outbox.push(report);
        drop(table);
        tracing::info!(
            task,
            action = entry.metrics.action(),
            outcome,
            duration = ?took,
            "task finished"
        );
        if idle {
            self.idle.notify_waiters();
        }
    }

    fn control_of(&self, task: &str) -> Option<TaskControl> {
        self.table()
            .running
            .get(task)
            .map(|entry| entry.control.clone())
    }

    fn finished_kind(&self, task: &str) -> Option<ReportType> {
        self.table()
            .finished
            .get(task)
            .map(|report| report.kind.report_type())
    }

    /// CANCEL or INTERRUPT (`mode`): stops the task and its children; a task unknown here is
    /// answered with the terminal report of `mode` at once, so it does not hang.
    pub fn stop(&self, task: &str, mode: StopMode) {
        if let Some(control) = self.control_of(task) {
            match mode {
                StopMode::Cancel => control.cancel(),
                StopMode::Interrupt => control.interrupt(),
            }
            self.calls.control_children(task, mode.child_control());
            return;
        }
        if let Some(kind) = self.finished_kind(task) {
            tracing::info!(%task, "stop for a task that already ended ({kind}); nothing to do");
            return;
        }
        // Not running here and never was: it is certainly not running, say so.
        tracing::warn!(%task, "stop for a task unknown to this agent");
        self.outbox.push(Report::new(task, mode.report()));
    }

    /// PAUSE: park the guest at its next epoch tick.
    pub fn pause(&self, task: &str) {
        match self.control_of(task) {
            Some(control) => {
                control.pause();
                self.calls.control_children(task, ChildControl::Pause);
                self.outbox.push(Report::new(task, ReportKind::Paused));
            }
            None => tracing::warn!(%task, "PAUSE for a task that is not running here; ignored"),
        }
    }

    /// RESUME: continue the guest; with `step`, park it again after one epoch tick.
    pub fn resume(self: &Arc<Self>, task: &str, step: bool) {
        let Some(control) = self.control_of(task) else {
            tracing::warn!(%task, "RESUME for a task that is not running here; ignored");
            return;
        };
        control.resume();
        self.calls.control_children(task, ChildControl::Resume);
        self.outbox.push(Report::new(task, ReportKind::Resumed));
        if step {
            let dispatcher = Arc::clone(self);
            let task = task.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(STEP_DURATION).await;
                if control.signal() == Signal::Run && dispatcher.control_of(&task).is_some() {
                    control.pause();
                    dispatcher
                        .outbox
                        .push(Report::new(task, ReportKind::Paused));
                }
            });
        }
    }

    /// INIT inquiries after a reconnect: running → a progress ping, finished → its terminal
    /// report again (unless still retained), unknown → CRITICAL so it does not hang.
    /// A task asked about twice in one list is answered once.
    pub fn answer_inquiries(&self, inquiries: &[Inquiry]) {
        let mut asked = std::collections::HashSet::with_capacity(inquiries.len());
        for inquiry in inquiries {
            let task = inquiry.task.as_str();
            if !asked.insert(task) {
                continue;
            }
            let table = self.table();
            if let Some(entry) = table.running.get(task) {
                let message = if entry.started {
                    "still running on this agent"
                } else {
                    "queued on this agent"
                };
                let progress = entry.progress;
                drop(table);
                self.outbox.push(Report::new(
                    task,
                    ReportKind::Progress {
                        progress,
                        message: Some(message.into()),
                    },
                ));
            } else if let Some(report) = table.finished.get(task) {
                let kind = report.kind.clone();
                drop(table);
                if !self.outbox.retains_terminal(task) {
                    self.outbox.push(Report::new(task, kind));
                }
            } else {
                drop(table);
                tracing::warn!(%task, "the server asked about a task this agent does not know");
                self.outbox.push(Report::new(
                    task,
                    ReportKind::Critical {
                        error: format!(
                            "task {task} was lost on this agent: it is not running here and \
                             this agent has no record of it (the agent may have restarted)"
                        ),
                    },
                ));
            }
        }
    }

    /// Stops taking work: later assignments are answered FAILED, queued ones are cancelled.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        let table = self.table();
        for entry in table.running.values().filter(|entry| !entry.started) {
            entry.control.cancel();
        }
    }

    /// Cancels everything still running.
    pub fn cancel_all(&self) {
        for entry in self.table().running.values() {
            entry.control.cancel();
        }
    }

    /// Resolves when no task is queued or running.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.table().running.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// The dispatcher's actions for `slots`, keeping the semaphore of an action in `previous`
/// whose cap is unchanged.
fn actions_of(
    slots: HashMap<String, ActionSlot>,
    previous: &HashMap<String, Action>,
    keep: &Keep,
) -> HashMap<String, Action> {
    slots
        .into_iter()
        .map(|(interface, slot)| {
            let permits = slot.concurrency.map(|limit| {
                let limit = limit.max(1);
                match previous
                    .get(&interface)
                    .and_then(|old| old.permits.as_ref())
                {
                    Some((old_limit, semaphore)) if *old_limit == limit => {
                        (limit, Arc::clone(semaphore))
                    }
                    _ => (limit, Arc::new(Semaphore::new(limit))),
                }
            });
            let locks = slot
                .component
                .definition(&interface)
                .map(|definition| keep.locks_of(&definition.locks))
                .unwrap_or_default();
            let action = Action {
                component: slot.component,
                permits,
                metrics: slot.metrics,
                locks: locks.into(),
            };
            (interface, action)
        })
        .collect()
}
