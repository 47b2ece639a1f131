//! Samples, percentiles and the printed table.

use std::time::Duration;

/// One row of the table: per-task latencies and the wall time they took together.
pub struct Measurement {
    /// What was measured.
    pub name: String,
    /// Per-task latencies, sorted.
    pub latencies: Vec<Duration>,
    /// Wall time from the first start to the last finish.
    pub elapsed: Duration,
    /// CPU time (user + system) the serving agent process spent per task, where measured: unlike
    /// wall-clock figures it barely moves when other work shares the machine.
    pub agent_cpu_per_task: Option<Duration>,
    /// CPU time this benchmark process (the local server and the callers driving it) spent per
    /// task, where measured: the server's share of the machine.
    pub server_cpu_per_task: Option<Duration>,
}

impl Measurement {
    /// A row from unsorted latencies.
    pub fn new(name: impl Into<String>, mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        Measurement {
            name: name.into(),
            latencies,
            elapsed,
            agent_cpu_per_task: None,
            server_cpu_per_task: None,
        }
    }

    /// The `fraction` quantile (nearest rank).
    pub fn quantile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
        self.latencies[index.min(self.latencies.len() - 1)]
    }

    /// The median.
    pub fn p50(&self) -> Duration {
        self.quantile(0.5)
    }

    /// Tasks per second over the wall time.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// A duration in the unit that reads best.
pub fn human(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// Prints a section title alone (for a section with a table of its own).
pub fn title(title: &str) {
    println!("\n## {title}");
}

/// Prints a section title and the column heads of [`row`].
pub fn section(title: &str) {
    self::title(title);
    println!(
        "{:<60} {:>6} {:>10} {:>10} {:>10} {:>10} {:>11}",
        "", "n", "p50", "p99", "tasks/s", "agent CPU", "server CPU"
    );
}

/// Prints one row.
pub fn row(measurement: &Measurement) {
    println!(
        "{:<60} {:>6} {:>10} {:>10} {:>10.0} {:>10} {:>11}",
        measurement.name,
        measurement.latencies.len(),
        human(measurement.p50()),
        human(measurement.quantile(0.99)),
        measurement.throughput(),
        measurement
            .agent_cpu_per_task
            .map_or_else(|| "-".to_string(), human),
        measurement
            .server_cpu_per_task
            .map_or_else(|| "-".to_string(), human)
    );
}
