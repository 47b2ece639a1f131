//! Per-task resource limits and the memory limiter that enforces them.

use std::time::Duration;

/// Default cap on the sum of a task's linear memories.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Default wall-clock cap per task.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cancelled task may run on to end cleanly before it is stopped.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(3);
/// Default of [`HostResourceCaps::open_files`].
pub const DEFAULT_OPEN_FILES: usize = 256;
/// Default of [`HostResourceCaps::host_resources`].
pub const DEFAULT_HOST_RESOURCES: usize = 1024;

/// Smallest `host_resources` cap: a task needs a few for its standard streams and clocks.
pub const MIN_HOST_RESOURCES: usize = 32;
/// Largest `open_files` and `host_resources` cap.
pub const MAX_RESOURCE_CAP: usize = 1 << 20;

/// What one task may send back to its caller: log lines (the log import and the guest's
/// stdout/stderr), progress updates, yields and its error text. A line or message past its cap
/// is cut with a marker, log text past the task's budget is dropped after one marker line, and
/// a yield past its cap fails the task. Every task is held to [`OutputCaps::DEFAULT`] unless
/// its [`Limits::output`] says otherwise (tests shrink them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCaps {
    /// Longest log line forwarded (bytes); a longer line is cut with a marker.
    pub log_line_bytes: usize,
    /// Log text (all sources) forwarded per task (bytes); the rest is dropped after a marker.
    pub log_bytes: usize,
    /// Log lines and progress updates per second a task may send, and the burst it may send
    /// at once; the lines over it are dropped and counted in a marker.
    pub log_lines_per_second: u32,
    /// Least time between two "log lines dropped" markers of one task (the last one comes at
    /// its end), so the markers are no flood of their own.
    pub dropped_marker_interval: Duration,
    /// Longest progress message forwarded (bytes); a longer one is cut with a marker.
    pub progress_message_bytes: usize,
    /// Largest single yield (its JSON text, also once its structures are in their envelopes).
    /// The official Python client cannot take a frame of about 1 MiB, so large data goes by
    /// reference (a file, a URL), not in a yield.
    pub yield_bytes: usize,
    /// Deepest nesting of arrays and objects in a yield (the top object is level 1); the
    /// Python clients' parsers give up on deeper JSON.
    pub yield_depth: usize,
    /// Longest FAILED / CRITICAL error text a guest can send (bytes); a longer text is cut with
    /// a marker (the server stores at most 30,000 characters of a message).
    pub error_bytes: usize,
    /// How much of the guest's stderr is kept (bytes) to explain a crash, such as the panic
    /// message std's hook writes there.
    pub stderr_tail_bytes: usize,
}

impl OutputCaps {
    /// The caps of every task: 16 KiB log lines, 1 MiB of log text, 1000 lines per second (one
    /// dropped-lines marker per second), 1 KiB progress messages, 512 KiB and 64 levels per
    /// yield, 16 KiB of error text, the last 4 KiB of stderr kept.
    pub const DEFAULT: OutputCaps = OutputCaps {
        log_line_bytes: 16 * 1024,
        log_bytes: 1024 * 1024,
        log_lines_per_second: 1000,
        dropped_marker_interval: Duration::from_secs(1),
        progress_message_bytes: 1024,
        yield_bytes: 512 * 1024,
        yield_depth: 64,
        error_bytes: 16 * 1024,
        stderr_tail_bytes: 4 * 1024,
    };
}

impl Default for OutputCaps {
    /// [`OutputCaps::DEFAULT`].
    fn default() -> Self {
        OutputCaps::DEFAULT
    }
}

/// How many host resources one task of a component may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResourceCaps {
    /// Files and directories (the grants' preopens included); `open` fails with
    /// `insufficient-memory` beyond it (WASI 0.2 has no "too many open files").
    pub open_files: usize,
    /// Every host resource (open files and directories, streams, pollables, ...); a task that
    /// asks for more fails.
    pub host_resources: usize,
}

impl Default for HostResourceCaps {
    fn default() -> Self {
        HostResourceCaps {
            open_files: DEFAULT_OPEN_FILES,
            host_resources: DEFAULT_HOST_RESOURCES,
        }
    }
}

/// The shape every task's store is held to, whatever the allocator: the pooling allocator's
/// slots are sized from it ([`pooling_config`](super::pooling_config)) and [`TaskLimiter`]
/// enforces the same numbers, so `call`, `dev` and `run` apply one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreShape {
    /// Core module instances per task.
    pub core_instances: usize,
    /// Linear memories per task (all of them together hold to [`Limits::memory_bytes`]).
    pub memories: usize,
    /// Tables per task.
    pub tables: usize,
    /// Table elements per task, summed over all its tables.
    pub table_elements: usize,
}

/// The one [`StoreShape`] of this host.
pub const STORE_SHAPE: StoreShape = StoreShape {
    core_instances: 32,
    memories: 4,
    tables: 8,
    table_elements: 100_000,
};

/// The limits one task runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget (roughly one unit per wasm instruction); `None` = unmetered.
    pub fuel: Option<u64>,
    /// Maximum linear memory in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time the task may run (time spent paused does not count).
    pub timeout: Duration,
    /// After a CANCEL, how long the guest keeps running to see `is_cancelled()` and end
    /// cleanly before it is stopped (an INTERRUPT stops it at once).
    pub cancel_grace: Duration,
    /// What the task may send back (logs, progress, yields, error text).
    pub output: OutputCaps,
}

/// Wall-clock cap of the one-off `describe` call at load.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Fuel budget of the one-off `describe` call at load (when the runtime meters fuel).
pub const DESCRIBE_FUEL: u64 = 10_000_000_000;

impl Limits {
    /// The fuel a task's store starts with: its budget, or all there is when unmetered.
    pub fn fuel_budget(&self) -> u64 {
        self.fuel.unwrap_or(u64::MAX)
    }

    /// These limits with the `describe` call's fuel and time caps ([`DESCRIBE_FUEL`],
    /// [`DESCRIBE_TIMEOUT`]) instead of an action's.
    pub fn for_describe(self) -> Limits {
        Limits {
            fuel: Some(DESCRIBE_FUEL),
            timeout: DESCRIBE_TIMEOUT,
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: None,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            cancel_grace: DEFAULT_CANCEL_GRACE,
            output: OutputCaps::DEFAULT,
        }
    }
}

/// A limit a task ran into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The fuel budget was used up.
    #[error("fuel budget of {budget} exhausted")]
    Fuel {
        /// The fuel budget the task had.
        budget: u64,
    },
    /// The guest tried to grow its memories past the cap.
    #[error(
        "memory limit of {} exceeded (the task's linear memories would total {})",
        format_bytes(*limit),
        format_bytes(*total)
    )]
    Memory {
        /// The cap in bytes.
        limit: u64,
        /// What all the task's linear memories would have summed to.
        total: u64,
    },
    /// The task ran longer than its timeout.
    #[error("timeout of {} exceeded", format_duration(*timeout))]
    Timeout {
        /// The timeout the task had (time paused not counted).
        timeout: Duration,
    },
    /// The task's tables grew past [`StoreShape::table_elements`] in total.
    #[error("table limit of {limit} elements exceeded (the task's tables would total {total})")]
    Table {
        /// The cap.
        limit: usize,
        /// What all the task's tables would have summed to.
        total: usize,
    },
    /// The task held [`HostResourceCaps::host_resources`] host resources and asked for another.
    #[error(
        "host resource limit of {limit} exceeded (open files, directories, streams and \
         pollables held at once)"
    )]
    HostResources {
        /// The cap.
        limit: usize,
    },
    /// A single output (yield) was larger than allowed.
    #[error("{what} of {} exceeds the limit of {}", format_bytes(*size), format_bytes(*limit))]
    Output {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl LimitExceeded {
    /// Whether `text` is how this host reports a [`LimitExceeded`] (the FAILED error a caller
    /// of a served task gets), so that a caller through a server can tell a limit from an
    /// action's error. Kept next to the messages it reads.
    pub fn is_report(text: &str) -> bool {
        let text = text.trim();
        (text.starts_with("fuel budget of ") && text.ends_with(" exhausted"))
            || (text.starts_with("timeout of ") && text.ends_with(" exceeded"))
            || [
                "memory limit of ",
                "table limit of ",
                "host resource limit of ",
            ]
            .iter()
            .any(|start| text.starts_with(start) && text.contains(" exceeded ("))
            || text.contains(" exceeds the limit of ")
    }
}

/// Formats a byte count for people, exactly: `64 MiB`, `1.5 KiB`, `12 B` when the unit shows
/// the exact size, else the bytes with an approximation (`4,194,305 bytes (~4.0 MiB)`), so
/// that a size just over a limit never looks equal to it.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut scale: u64 = 1;
    let mut unit = "B";
    for next in UNITS {
        if bytes / scale < 1024 {
            break;
        }
        scale *= 1024;
        unit = next;
    }
    let value = bytes as f64 / scale as f64;
    if bytes.is_multiple_of(scale) {
        format!("{value:.0} {unit}")
    } else if (u128::from(bytes) * 10).is_multiple_of(u128::from(scale)) {
        format!("{value:.1} {unit}")
    } else {
        format!("{} bytes (~{value:.1} {unit})", group_digits(bytes))
    }
}

/// `4194305` as `4,194,305`.
fn group_digits(number: u64) -> String {
    let digits = number.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// Formats a duration for people (`10s`, `1.5s`, `250ms`).
pub fn format_duration(duration: Duration) -> String {
    if duration.as_millis() < 1000 {
        format!("{}ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// Smallest memory limit: one WebAssembly page.
pub const MIN_MEMORY_LIMIT: u64 = 64 * 1024;
/// Largest memory limit: all a 32-bit guest can address.
pub const MAX_MEMORY_LIMIT: u64 = 4 * 1024 * 1024 * 1024;

/// Checks a memory limit: from one WebAssembly page ([`MIN_MEMORY_LIMIT`]) to what a 32-bit
/// guest can address ([`MAX_MEMORY_LIMIT`]).
pub fn check_memory_limit(bytes: u64) -> Result<u64, String> {
    if bytes < MIN_MEMORY_LIMIT {
        return Err(format!(
            "a memory limit of {} is too small: at least 64KiB (one WebAssembly page) is needed \
             (a bare number counts bytes)",
            format_bytes(bytes)
        ));
    }
    if bytes > MAX_MEMORY_LIMIT {
        return Err(format!(
            "a memory limit of {} is more than a 32-bit guest can address: at most 4GiB",
            format_bytes(bytes)
        ));
    }
    Ok(bytes)
}

/// Checks a task timeout (of the config file or `--timeout`, [`crate::config::parse_duration`]): above zero.
pub fn check_timeout(timeout: Duration) -> Result<Duration, String> {
    if timeout.is_zero() {
        Err("a timeout must be above zero".into())
    } else {
        Ok(timeout)
    }
}

/// Enforces [`Limits::memory_bytes`] on the sum of a store's linear memories and the
/// [`STORE_SHAPE`] caps on its instances and tables.
///
/// Growing past a cap traps with a [`LimitExceeded`] the runtime reports to the caller, rather
/// than letting the guest see a failed `memory.grow` and abort with an opaque trap.
pub struct TaskLimiter {
    /// The fuel the store starts with (unmetered tasks get all there is).
    fuel_budget: u64,
    /// Bytes of all the store's linear memories (creation counts as growth from 0).
    memory: GrowthBudget,
    /// Elements of all the store's tables.
    table: GrowthBudget,
}

/// A cap on what all of a store's memories (or all its tables) hold together, with the last
/// growth allowed, taken back if wasmtime then fails to grow.
struct GrowthBudget {
    limit: u64,
    total: u64,
    pending: u64,
}

impl GrowthBudget {
    fn new(limit: u64) -> Self {
        GrowthBudget {
            limit,
            total: 0,
            pending: 0,
        }
    }

    /// Whether one memory (or table) may grow from `current` to `desired`: `Ok(false)` past
    /// its own declared `maximum` (wasmtime refuses that itself, nothing is counted), and
    /// `Err(total)` when all of them would total more than the limit.
    fn grow(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, u64> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        let growth = desired.saturating_sub(current) as u64;
        let total = self.total.saturating_add(growth);
        if total > self.limit {
            return Err(total);
        }
        self.total = total;
        self.pending = growth;
        Ok(true)
    }

    /// Takes back the last growth allowed: wasmtime could not grow after all.
    fn failed(&mut self) {
        self.total -= std::mem::take(&mut self.pending);
    }
}

impl TaskLimiter {
    /// The fuel the store starts with.
    pub(crate) fn fuel_budget(&self) -> u64 {
        self.fuel_budget
    }

    /// Bytes of all the store's linear memories: their peak, as memories never shrink.
    pub(crate) fn memory_total(&self) -> u64 {
        self.memory.total
    }

    /// A limiter for `limits`.
    pub fn new(limits: &Limits) -> Self {
        TaskLimiter {
            fuel_budget: limits.fuel_budget(),
            memory: GrowthBudget::new(limits.memory_bytes),
            table: GrowthBudget::new(STORE_SHAPE.table_elements as u64),
        }
    }
}

impl wasmtime::ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.memory.limit;
        self.memory
            .grow(current, desired, maximum)
            .map_err(|total| wasmtime::Error::new(LimitExceeded::Memory { limit, total }))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory.failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.table.grow(current, desired, maximum).map_err(|total| {
            wasmtime::Error::new(LimitExceeded::Table {
                limit: STORE_SHAPE.table_elements,
                total: usize::try_from(total).unwrap_or(usize::MAX),
            })
        })
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.table.failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        STORE_SHAPE.core_instances
    }

    fn tables(&self) -> usize {
        STORE_SHAPE.tables
    }

    fn memories(&self) -> usize {
        STORE_SHAPE.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_report_is_recognised_and_action_errors_are_not() {
        let reports = [
            LimitExceeded::Fuel { budget: 1000 },
            LimitExceeded::Memory {
                limit: 16 << 20,
                total: 17 << 20,
            },
            LimitExceeded::Timeout {
                timeout: Duration::from_millis(2500),
            },
            LimitExceeded::Table {
                limit: 10,
                total: 11,
            },
            LimitExceeded::HostResources { limit: 1024 },
            LimitExceeded::Output {
                what: "a yield",
                size: 600 << 10,
                limit: 512 << 10,
            },
        ];
        for report in reports {
            assert!(LimitExceeded::is_report(&report.to_string()), "{report}");
        }
        for error in [
            "cannot divide by zero",
            "argument 'a': missing; expected INT",
            "the timeout of the microscope",
        ] {
            assert!(!LimitExceeded::is_report(error), "{error}");
        }
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(12), "12 B");
        assert_eq!(format_bytes(4 << 30), "4 GiB");
    }

    #[test]
    fn sizes_over_a_limit_never_look_equal_to_it() {
        assert_eq!(format_bytes((4 << 20) + 1), "4,194,305 bytes (~4.0 MiB)");
        assert_eq!(format_bytes(1025), "1,025 bytes (~1.0 KiB)");
        let over = LimitExceeded::Output {
            what: "a yield",
            size: (4 << 20) + 1,
            limit: 4 << 20,
        };
        assert_eq!(
            over.to_string(),
            "a yield of 4,194,305 bytes (~4.0 MiB) exceeds the limit of 4 MiB"
        );
        for (size, limit) in [((64 << 20) + 65536, 64 << 20), ((1 << 30) + 1, 1 << 30)] {
            assert_ne!(format_bytes(size), format_bytes(limit));
        }
    }

    #[test]
    fn memory_limits_are_one_page_to_4_gib() {
        assert_eq!(check_memory_limit(4 << 30), Ok(4 << 30));
        assert_eq!(check_memory_limit(64 << 10), Ok(64 << 10));
        assert!(check_memory_limit((4 << 30) + 1).is_err());
        assert!(check_memory_limit(64).is_err());
    }

    #[test]
    fn the_limiter_holds_the_sum_of_all_memories_and_tables() {
        use wasmtime::ResourceLimiter;
        let mut limiter = TaskLimiter::new(&Limits {
            memory_bytes: 100,
            ..Limits::default()
        });
        let grows = |limiter: &mut TaskLimiter, current, desired| {
            limiter
                .memory_growing(current, desired, None)
                .map_err(|error| error.downcast_ref::<LimitExceeded>().cloned())
        };
        assert_eq!(grows(&mut limiter, 0, 60), Ok(true));
        assert_eq!(grows(&mut limiter, 0, 30), Ok(true));
        // wasmtime could not grow after all: the growth does not count.
        limiter
            .memory_grow_failed(wasmtime::format_err!("the system refused"))
            .expect("reported");
        assert_eq!(grows(&mut limiter, 0, 40), Ok(true));
        assert_eq!(
            grows(&mut limiter, 40, 41),
            Err(Some(LimitExceeded::Memory {
                limit: 100,
                total: 101
            }))
        );
        // Past a memory's own declared maximum wasmtime refuses; nothing is counted.
        assert_eq!(
            limiter.memory_growing(0, 10, Some(5)).map_err(|_| ()),
            Ok(false)
        );

        let elements = STORE_SHAPE.table_elements;
        assert!(matches!(
            limiter.table_growing(0, elements - 1, None),
            Ok(true)
        ));
        let error = limiter
            .table_growing(0, 2, None)
            .expect_err("over the sum of elements");
        assert_eq!(
            error.downcast_ref::<LimitExceeded>(),
            Some(&LimitExceeded::Table {
                limit: elements,
                total: elements + 1
            })
        );
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}
