//! What the agent counts for operators: tasks by action and outcome, their durations, fuel and
//! memory, limit hits, and the connection's and registration's state, in Prometheus' text
//! format (see [`super::metrics_server`] for `/metrics` and `/healthz`).
//!
//! Every series a task touches is resolved once per action when the actions are set
//! ([`Metrics::action`]), so finishing a task costs a few atomic additions and one histogram
//! observation: no label lookup, no allocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::runtime::limits::LimitExceeded;
use crate::runtime::{Failure, Outcome, TaskUsage};

/// The wasmtime release this host is built on (the workspace pins it exactly; a unit test
/// checks the two agree).
pub const WASMTIME_VERSION: &str = "48.0.8";
/// The WIT world components are built against.
pub const WIT_WORLD: &str = "arkitekt:rekuest/action-component@0.1.0";

/// Outcome label values, in [`outcome_index`] order.
const OUTCOMES: [&str; 5] = [
    "completed",
    "failed",
    "critical",
    "cancelled",
    "interrupted",
];
/// Limit kinds, in [`limit_index`] order.
const LIMITS: [&str; 6] = [
    "fuel",
    "memory",
    "timeout",
    "table",
    "host_resources",
    "output",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    action: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    wit_world: &'static str,
    wasmtime: &'static str,
}

fn duration_histogram() -> Histogram {
    // 100 µs to ~100 s, ×4 per bucket.
    Histogram::new(exponential_buckets(0.0001, 4.0, 11))
}

/// The agent's series; cheap to share.
pub struct Metrics {
    registry: Registry,
    tasks: Family<TaskLabels, Counter>,
    durations: Family<ActionLabels, Histogram, fn() -> Histogram>,
    fuel: Family<ActionLabels, Counter>,
    peak_memory: Family<ActionLabels, Gauge>,
    limit_hits: [Counter; LIMITS.len()],
    running: Gauge,
    queued: Gauge,
    unacked: Gauge,
    connected: Gauge,
    registered: Gauge,
    reconnects: Counter,
}

/// The series of one action, resolved once.
pub struct ActionMetrics {
    action: String,
    outcomes: [Counter; OUTCOMES.len()],
    duration: Histogram,
    fuel: Counter,
    peak_memory: Gauge,
    limit_hits: [Counter; LIMITS.len()],
}

impl ActionMetrics {
    /// The action's key.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Counts a finished task: its outcome, how long it took from ASSIGN, and what its
    /// sandbox used (`None`: it never got one).
    pub fn finished(&self, outcome: &Outcome, took: Duration, usage: Option<TaskUsage>) {
        self.outcomes[outcome_index(outcome)].inc();
        self.duration.observe(took.as_secs_f64());
        if let Outcome::Failed(Failure::Limit(limit)) = outcome {
            self.limit_hits[limit_index(limit)].inc();
        }
        if let Some(usage) = usage {
            if let Some(fuel) = usage.fuel_used {
                self.fuel.inc_by(fuel);
            }
            let bytes = i64::try_from(usage.memory_bytes).unwrap_or(i64::MAX);
            let peak: &AtomicI64 = self.peak_memory.inner();
            peak.fetch_max(bytes, Ordering::Relaxed);
        }
    }
}

fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Completed => 0,
        Outcome::Failed(_) => 1,
        Outcome::Critical(_) => 2,
        Outcome::Cancelled => 3,
        Outcome::Interrupted => 4,
    }
}

fn limit_index(limit: &LimitExceeded) -> usize {
    match limit {
        LimitExceeded::Fuel { .. } => 0,
        LimitExceeded::Memory { .. } => 1,
        LimitExceeded::Timeout { .. } => 2,
        LimitExceeded::Table { .. } => 3,
        LimitExceeded::HostResources { .. } => 4,
        LimitExceeded::Output { .. } => 5,
    }
}

/// Live numbers read at scrape time rather than kept on the hot path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// Tasks running in a sandbox.
    pub running: usize,
    /// Tasks waiting for a slot.
    pub queued: usize,
    /// Terminal reports sent but not yet acknowledged by the server.
    pub unacked: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series, registered under the `rekuest_host_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rekuest_host");
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasks",
            "Finished tasks by action and outcome",
            tasks.clone(),
        );
        let durations: Family<ActionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "task_duration",
            "Time from ASSIGN to the terminal report, queueing included",
            Unit::Seconds,
            durations.clone(),
        );
        let fuel = Family::<ActionLabels, Counter>::default();
        registry.register(
            "fuel_used",
            "Fuel (about one unit per wasm instruction) used by finished tasks",
            fuel.clone(),
        );
        let peak_memory = Family::<ActionLabels, Gauge>::default();
        registry.register_with_unit(
            "task_peak_memory",
            "Largest linear memory total of any one task of the action",
            Unit::Bytes,
            peak_memory.clone(),
        );
        let limit_family = Family::<LimitLabels, Counter>::default();
        registry.register(
            "limit_hits",
            "Tasks stopped by a resource limit, by kind",
            limit_family.clone(),
        );
        let limit_hits = LIMITS.map(|kind| limit_family.get_or_create_owned(&LimitLabels { kind }));
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let running = gauge(&mut registry, "tasks_running", "Tasks running in a sandbox");
        let queued = gauge(&mut registry, "tasks_queued", "Tasks waiting for a slot");
        let unacked = gauge(
            &mut registry,
            "reports_unacknowledged",
            "Terminal reports waiting for the server's acknowledgement",
        );
        let connected = gauge(
            &mut registry,
            "connected",
            "1 while the agent socket is registered (INIT received)",
        );
        let registered = gauge(
            &mut registry,
            "registered",
            "1 once the actions are registered with the server",
        );
        let reconnects = Counter::default();
        registry.register(
            "reconnects",
            "Agent socket sessions that ended and were reconnected",
            reconnects.clone(),
        );
        registry.register(
            "build",
            "This host's version, WIT world and wasmtime release",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                wit_world: WIT_WORLD,
                wasmtime: WASMTIME_VERSION,
            }),
        );
        Metrics {
            registry,
            tasks,
            durations,
            fuel,
            peak_memory,
            limit_hits,
            running,
            queued,
            unacked,
            connected,
            registered,
            reconnects,
        }
    }

    /// The series of `action`, resolved now so that tasks touch only atomics.
    pub fn action(&self, action: &str) -> Arc<ActionMetrics> {
        let labels = ActionLabels {
            action: action.to_string(),
        };
        Arc::new(ActionMetrics {
            action: action.to_string(),
            outcomes: OUTCOMES.map(|outcome| {
                self.tasks.get_or_create_owned(&TaskLabels {
                    action: action.to_string(),
                    outcome,
                })
            }),
            duration: self.durations.get_or_create_owned(&labels),
            fuel: self.fuel.get_or_create_owned(&labels),
            peak_memory: self.peak_memory.get_or_create_owned(&labels),
            limit_hits: self.limit_hits.clone(),
        })
    }

    /// Records whether the agent socket is registered (INIT received) right now.
    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    /// Records whether the actions are registered with the server.
    pub fn set_registered(&self, registered: bool) {
        self.registered.set(i64::from(registered));
    }

    /// Counts a socket session that ended and is being replaced.
    pub fn reconnecting(&self) {
        self.reconnects.inc();
    }

    /// Whether the agent is connected and registered: what `/healthz` answers.
    pub fn healthy(&self) -> bool {
        self.connected.get() == 1 && self.registered.get() == 1
    }

    /// The series in the OpenMetrics text format, with the live numbers of `snapshot`.
    pub fn encode(&self, snapshot: Snapshot) -> String {
        let count = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.running.set(count(snapshot.running));
        self.queued.set(count(snapshot.queued));
        self.unacked.set(count(snapshot.unacked));
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::limits::LimitExceeded;

    #[test]
    fn a_finished_task_counts_under_its_action_outcome_and_limit() {
        let metrics = Metrics::new();
        let add = metrics.action("add");
        add.finished(
            &Outcome::Completed,
            Duration::from_millis(2),
            Some(TaskUsage {
                fuel_used: Some(1_000),
                memory_bytes: 1 << 20,
            }),
        );
        add.finished(
            &Outcome::Failed(Failure::Limit(LimitExceeded::Timeout {
                timeout: Duration::from_secs(1),
            })),
            Duration::from_secs(1),
            Some(TaskUsage {
                fuel_used: Some(500),
                memory_bytes: 1 << 16,
            }),
        );
        metrics.set_connected(true);
        let text = metrics.encode(Snapshot {
            running: 3,
            queued: 1,
            unacked: 2,
        });
        for line in [
            "rekuest_host_tasks_total{action=\"add\",outcome=\"completed\"} 1",
            "rekuest_host_tasks_total{action=\"add\",outcome=\"failed\"} 1",
            "rekuest_host_tasks_total{action=\"add\",outcome=\"cancelled\"} 0",
            "rekuest_host_task_duration_seconds_count{action=\"add\"} 2",
            "rekuest_host_fuel_used_total{action=\"add\"} 1500",
            "rekuest_host_task_peak_memory_bytes{action=\"add\"} 1048576",
            "rekuest_host_limit_hits_total{kind=\"timeout\"} 1",
            "rekuest_host_limit_hits_total{kind=\"memory\"} 0",
            "rekuest_host_tasks_running 3",
            "rekuest_host_tasks_queued 1",
            "rekuest_host_reports_unacknowledged 2",
            "rekuest_host_connected 1",
            "rekuest_host_registered 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(
            text.contains(&format!(
                "rekuest_host_build_info{{version=\"{}\",wit_world=\"{WIT_WORLD}\",wasmtime=\"{WASMTIME_VERSION}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(!metrics.healthy());
        metrics.set_registered(true);
        assert!(metrics.healthy());
    }

    #[test]
    fn the_build_info_names_the_pinned_wasmtime_and_the_wit_world() {
        let manifest = include_str!("../../../Cargo.toml");
        assert!(
            manifest.contains(&format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"")),
            "the workspace no longer pins wasmtime {WASMTIME_VERSION}: update WASMTIME_VERSION"
        );
        let wit = include_str!("../../../wit/rekuest.wit");
        let (package, world) = WIT_WORLD
            .split_once('/')
            .and_then(|(package, rest)| Some((package, rest.split_once('@')?)))
            .map(|(package, (world, version))| (format!("package {package}@{version};"), world))
            .expect("WIT_WORLD is package/world@version");
        assert!(wit.contains(&package), "{package} is not in rekuest.wit");
        assert!(
            wit.contains(&format!("world {world} {{")),
            "no world {world}"
        );
    }
}
