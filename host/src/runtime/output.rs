//! A task's bounded output: log lines (from the log import and the guest's stdout/stderr),
//! progress and yields, flowing to the caller through one bounded channel.
//!
//! Every byte a guest sends is counted against the task's [`OutputCaps`]: log text past
//! [`OutputCaps::log_bytes`] is dropped after one marker line, single lines are cut at
//! [`OutputCaps::log_line_bytes`], and a yield larger than [`OutputCaps::yield_bytes`] fails
//! the task. The channel is bounded, so a guest that outpaces its
//! caller waits instead of filling host memory. Structure references in yields are put in
//! their wire envelope here (see [`crate::envelope`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::json_check::check_yield_json;
use crate::definition::Port;
use crate::envelope;

use super::events::{LogLevel, TaskEvent};
use super::limits::{LimitExceeded, OutputCaps, format_bytes};

/// How Rust panic messages start (std's hook and the guest SDK's alike).
const PANIC_PREFIX: &str = "panicked at ";

/// The sending half of a task's output, shared by the host imports and the stdio streams.
#[derive(Clone)]
pub struct TaskOutput {
    events: mpsc::Sender<TaskEvent>,
    state: Arc<Mutex<OutputState>>,
    /// What the task may send.
    caps: OutputCaps,
    /// The action's return ports when one of them holds a structure (else no yield is walked).
    structure_returns: Option<Arc<[Port]>>,
}

struct OutputState {
    log_bytes: usize,
    truncated: bool,
    rate: LineRate,
    dropped_lines: u64,
    last_dropped_marker: Option<Instant>,
    /// Complete lines from stdout/stderr not yet handed to the channel.
    pending: VecDeque<TaskEvent>,
    stdout_partial: Vec<u8>,
    stderr_partial: Vec<u8>,
    stderr_tail: String,
    reported_panic: Option<String>,
}

/// Which of the guest's output streams.
#[derive(Debug, Clone, Copy)]
pub enum Stdio {
    /// Forwarded as INFO lines.
    Stdout,
    /// Forwarded as WARN lines.
    Stderr,
}

impl TaskOutput {
    /// Output that flows into `events`, held to `caps`.
    pub fn new(events: mpsc::Sender<TaskEvent>, caps: OutputCaps) -> Self {
        TaskOutput {
            events,
            state: Arc::new(Mutex::new(OutputState::new(&caps))),
            caps,
            structure_returns: None,
        }
    }

    /// Puts the structure references in yields in their envelopes, following `returns` (the
    /// action's return ports, given only when one of them holds a structure).
    pub fn wrapping_structures(mut self, returns: Option<Arc<[Port]>>) -> Self {
        self.structure_returns = returns;
        self
    }

    fn state(&self) -> MutexGuard<'_, OutputState> {
        // The lock is only held for bookkeeping that cannot panic midway.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a log line, bounded; waits while the caller is behind.
    pub async fn log(&self, level: LogLevel, message: String) {
        self.state().admit_log(&self.caps, level, message);
        self.flush_pending().await;
    }

    /// Sends a progress update (dropped while the task is over its line rate).
    pub async fn progress(&self, percent: u8, message: Option<String>) {
        let admitted = self.state().rate.admit(self.caps.log_lines_per_second);
        self.flush_pending().await;
        if admitted {
            let message = message.map(|text| cut(text, self.caps.progress_message_bytes));
            self.send(TaskEvent::Progress {
                percent: percent.min(100),
                message,
            })
            .await;
        }
    }

    /// Checks and sends one yield; `Err` when it is too large (also once its structures are
    /// in envelopes), not a JSON object, or JSON a client cannot parse ([`check_yield_json`]).
    pub async fn yield_returns(&self, json: String) -> Result<(), YieldError> {
        let limit = self.caps.yield_bytes;
        let too_large = |what, size: usize| {
            YieldError::TooLarge(LimitExceeded::Output {
                what,
                size: size as u64,
                limit: limit as u64,
            })
        };
        if json.len() > limit {
            return Err(too_large("a yield", json.len()));
        }
        let raw = RawValue::from_string(json)
            .map_err(|error| YieldError::Malformed(error.to_string()))?;
        check_yield_json(raw.get(), self.caps.yield_depth).map_err(YieldError::Unreadable)?;
        let raw = match &self.structure_returns {
            None => raw,
            Some(ports) => {
                let value: Value = serde_json::from_str(raw.get())
                    .map_err(|error| YieldError::Malformed(error.to_string()))?;
                let Value::Object(mut returns) = value else {
                    return Err(YieldError::Malformed(
                        "returns must be a JSON object".into(),
                    ));
                };
                envelope::wrap_returns(ports, &mut returns);
                let wrapped = Value::Object(returns).to_string();
                if wrapped.len() > limit {
                    return Err(too_large(
                        "a yield (with its structures in envelopes)",
                        wrapped.len(),
                    ));
                }
                RawValue::from_string(wrapped)
                    .map_err(|error| YieldError::Malformed(error.to_string()))?
            }
        };
        self.flush_pending().await;
        self.send(TaskEvent::Yield(raw)).await;
        Ok(())
    }

    /// Takes guest stdio bytes; complete lines are queued as log lines.
    pub fn write_stdio(&self, stream: Stdio, bytes: &[u8]) {
        let mut state = self.state();
        state.take_stdio(&self.caps, stream, bytes);
        state.drain_into(&self.events);
    }

    /// Whether stdio lines still wait for the channel.
    pub fn stdio_blocked(&self) -> bool {
        let mut state = self.state();
        state.drain_into(&self.events);
        !state.pending.is_empty()
    }

    /// Waits until queued stdio lines are in the channel.
    pub async fn flush_pending(&self) {
        loop {
            let Some(event) = self.state().pending.pop_front() else {
                return;
            };
            self.send(event).await;
        }
    }

    /// Emits unterminated stdio lines and everything queued (at task end).
    pub async fn finish(&self) {
        {
            let mut state = self.state();
            for stream in [Stdio::Stdout, Stdio::Stderr] {
                let rest = std::mem::take(state.partial(stream));
                if !rest.is_empty() {
                    state.queue_line(&self.caps, stream, &rest);
                }
            }
            state.report_dropped_lines(&self.caps, true);
        }
        self.flush_pending().await;
    }

    /// The panic message the guest reported, if it did (`panicked at file:line: msg`): a log
    /// line (as the guest SDK's panic hook sends it), else std's default hook on stderr.
    pub fn panic_message(&self) -> Option<String> {
        let state = self.state();
        if let Some(reported) = &state.reported_panic {
            return Some(reported.clone());
        }
        let tail = &state.stderr_tail;
        let start = tail.rfind(PANIC_PREFIX)?;
        let text: Vec<&str> = tail[start..]
            .lines()
            .take_while(|line| !line.starts_with("note: "))
            .collect();
        Some(text.join("\n").trim().to_string())
    }

    async fn send(&self, event: TaskEvent) {
        // A caller that stopped listening loses nothing it wanted; the task goes on.
        let _ = self.events.send(event).await;
    }
}

/// Why a yield was refused.
#[derive(Debug, thiserror::Error)]
pub enum YieldError {
    /// Larger than [`OutputCaps::yield_bytes`].
    #[error(transparent)]
    TooLarge(LimitExceeded),
    /// Not JSON at all.
    #[error("the action yielded malformed returns: {0}")]
    Malformed(String),
    /// JSON the server or a client cannot take (not an object, a number out of range, a lone
    /// surrogate, too deep).
    #[error("the action's returns were refused: {0}")]
    Unreadable(String),
}

impl OutputState {
    /// Nothing sent yet, with a full burst of lines to send.
    fn new(caps: &OutputCaps) -> Self {
        OutputState {
            log_bytes: 0,
            truncated: false,
            rate: LineRate::full(caps.log_lines_per_second),
            dropped_lines: 0,
            last_dropped_marker: None,
            pending: VecDeque::new(),
            stdout_partial: Vec::new(),
            stderr_partial: Vec::new(),
            stderr_tail: String::new(),
            reported_panic: None,
        }
    }

    /// Queues a log line unless the task is over its byte budget or line rate.
    fn admit_log(&mut self, caps: &OutputCaps, level: LogLevel, message: String) {
        if message.starts_with(PANIC_PREFIX) {
            self.reported_panic = Some(cut(message.clone(), caps.log_line_bytes));
        }
        if self.truncated {
            return;
        }
        if !self.rate.admit(caps.log_lines_per_second) {
            self.dropped_lines += 1;
            return;
        }
        self.report_dropped_lines(caps, false);
        let message = cut(message, caps.log_line_bytes);
        if self.log_bytes + message.len() > caps.log_bytes {
            self.truncated = true;
            self.pending.push_back(TaskEvent::Log {
                level: LogLevel::Warn,
                message: format!(
                    "[log output truncated: this task reached its limit of {} of log text]",
                    format_bytes(caps.log_bytes as u64)
                ),
            });
            return;
        }
        self.log_bytes += message.len();
        self.pending.push_back(TaskEvent::Log { level, message });
    }

    /// Queues one marker for the lines dropped by the rate limit since the last one: at most
    /// one per [`OutputCaps::dropped_marker_interval`] (the markers must not become a flood
    /// of their own), or now when `finally` (at the task's end).
    fn report_dropped_lines(&mut self, caps: &OutputCaps, finally: bool) {
        let due = finally
            || self
                .last_dropped_marker
                .is_none_or(|last| last.elapsed() >= caps.dropped_marker_interval);
        if self.dropped_lines > 0 && due {
            self.last_dropped_marker = Some(Instant::now());
            let dropped = std::mem::take(&mut self.dropped_lines);
            self.pending.push_back(TaskEvent::Log {
                level: LogLevel::Warn,
                message: format!(
                    "[{dropped} log lines dropped: over {} lines per second]",
                    caps.log_lines_per_second
                ),
            });
        }
    }

    fn partial(&mut self, stream: Stdio) -> &mut Vec<u8> {
        match stream {
            Stdio::Stdout => &mut self.stdout_partial,
            Stdio::Stderr => &mut self.stderr_partial,
        }
    }

    fn take_stdio(&mut self, caps: &OutputCaps, stream: Stdio, bytes: &[u8]) {
        if let Stdio::Stderr = stream {
            self.stderr_tail.push_str(&String::from_utf8_lossy(bytes));
            if self.stderr_tail.len() > caps.stderr_tail_bytes {
                let mut cut_at = self.stderr_tail.len() - caps.stderr_tail_bytes;
                while !self.stderr_tail.is_char_boundary(cut_at) {
                    cut_at += 1;
                }
                self.stderr_tail.drain(..cut_at);
            }
        }
        if self.truncated {
            return;
        }
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&byte| byte == b'\n') {
            let mut line = std::mem::take(self.partial(stream));
            line.extend_from_slice(&rest[..newline]);
            self.queue_line(caps, stream, &line);
            rest = &rest[newline + 1..];
        }
        let partial = self.partial(stream);
        partial.extend_from_slice(rest);
        if partial.len() >= caps.log_line_bytes {
            let line = std::mem::take(partial);
            self.queue_line(caps, stream, &line);
        }
    }

    fn queue_line(&mut self, caps: &OutputCaps, stream: Stdio, line: &[u8]) {
        let level = match stream {
            Stdio::Stdout => LogLevel::Info,
            Stdio::Stderr => LogLevel::Warn,
        };
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
        if text.trim().is_empty() {
            return;
        }
        self.admit_log(caps, level, text);
    }

    fn drain_into(&mut self, events: &mpsc::Sender<TaskEvent>) {
        while let Some(event) = self.pending.pop_front() {
            match events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.pending.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }
}

/// A token bucket over log lines and progress updates: [`OutputCaps::log_lines_per_second`]
/// sustained, bursts of as many.
struct LineRate {
    tokens: f64,
    refilled: Instant,
}

impl LineRate {
    /// A bucket holding a full burst of `per_second` lines.
    fn full(per_second: u32) -> Self {
        LineRate {
            tokens: f64::from(per_second),
            refilled: Instant::now(),
        }
    }

    /// Takes one line's token at `per_second` lines per second; `false` when none is left.
    fn admit(&mut self, per_second: u32) -> bool {
        let now = Instant::now();
        let rate = f64::from(per_second);
        let earned = now.duration_since(self.refilled).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Cuts a guest's error text to `caps`' [`OutputCaps::error_bytes`], marking the cut.
pub(crate) fn cut_error(text: String, caps: &OutputCaps) -> String {
    cut(text, caps.error_bytes)
}

/// Cuts `text` to at most `limit` bytes (on a char boundary), marking the cut.
fn cut(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let dropped = text.len() - limit;
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("… [{dropped} bytes cut]"));
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const EVENT_BUFFER_FOR_TESTS: usize = 256;
    const CAPS: OutputCaps = OutputCaps::DEFAULT;

    fn drain(receiver: &mut mpsc::Receiver<TaskEvent>) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            if let TaskEvent::Log { message, .. } = event {
                lines.push(message);
            }
        }
        lines
    }

    #[tokio::test]
    async fn stdio_becomes_lines_and_partial_lines_flush_at_the_end() {
        let (sender, mut receiver) = mpsc::channel(16);
        let output = TaskOutput::new(sender, CAPS);
        output.write_stdio(Stdio::Stdout, b"hello\nwor");
        output.write_stdio(Stdio::Stdout, b"ld\r\nlast");
        output.finish().await;
        assert_eq!(drain(&mut receiver), ["hello", "world", "last"]);
    }

    #[tokio::test]
    async fn log_text_is_bounded_per_task() {
        let (sender, mut receiver) = mpsc::channel(1024);
        let output = TaskOutput::new(sender, CAPS);
        let line = "x".repeat(CAPS.log_line_bytes);
        for _ in 0..(CAPS.log_bytes / CAPS.log_line_bytes + 5) {
            output.log(LogLevel::Info, line.clone()).await;
        }
        let lines = drain(&mut receiver);
        assert_eq!(lines.len(), CAPS.log_bytes / CAPS.log_line_bytes + 1);
        assert!(
            lines
                .last()
                .is_some_and(|last| last.contains("log output truncated"))
        );
    }

    /// The number a "[N log lines dropped: ...]" marker reports, `None` for other lines.
    fn dropped_count(line: &str) -> Option<u64> {
        let count = line.strip_prefix('[')?.strip_suffix(']')?;
        let (count, rest) = count.split_once(' ')?;
        rest.starts_with("log lines dropped")
            .then(|| count.parse().ok())
            .flatten()
    }

    #[tokio::test]
    async fn log_lines_are_rate_limited_with_a_marker() {
        let (sender, mut receiver) = mpsc::channel(4096);
        let output = TaskOutput::new(sender, CAPS);
        let flood = CAPS.log_lines_per_second as usize + 500;
        let started = Instant::now();
        for index in 0..flood {
            output.log(LogLevel::Info, format!("line {index}")).await;
        }
        // The bucket refills while the flood runs (slowly, on a loaded machine): allow for it.
        let refilled = (started.elapsed().as_secs_f64() * f64::from(CAPS.log_lines_per_second))
            .ceil() as usize;
        output.finish().await;
        let lines = drain(&mut receiver);
        let burst = CAPS.log_lines_per_second as usize;
        let guest_lines = lines
            .iter()
            .filter(|line| line.starts_with("line "))
            .count();
        assert!(
            (burst..=burst + refilled).contains(&guest_lines),
            "{guest_lines} lines for a burst of {burst} and {refilled} refilled"
        );
        let dropped: u64 = lines.iter().filter_map(|line| dropped_count(line)).sum();
        assert_eq!(
            guest_lines as u64 + dropped,
            flood as u64,
            "every line is either shown or counted as dropped: {:?}",
            lines
                .iter()
                .filter(|line| !line.starts_with("line "))
                .collect::<Vec<_>>()
        );
        assert!(lines.last().and_then(|line| dropped_count(line)).is_some());
    }

    #[tokio::test]
    async fn dropped_line_markers_are_rate_limited_too() {
        let (sender, mut receiver) = mpsc::channel(EVENT_BUFFER_FOR_TESTS);
        let counter = tokio::spawn(async move {
            let (mut markers, mut dropped, mut shown) = (0u64, 0u64, 0u64);
            while let Some(event) = receiver.recv().await {
                if let TaskEvent::Log { message, .. } = event {
                    match dropped_count(&message) {
                        Some(count) => {
                            markers += 1;
                            dropped += count;
                        }
                        None => shown += 1,
                    }
                }
            }
            (markers, dropped, shown)
        });
        let output = TaskOutput::new(sender, CAPS);
        // A flood at full speed for 2.5 s: the rate limit admits a line whenever a token is
        // back (about every millisecond), and each such line used to bring its own marker.
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_millis(2500) {
            output.log(LogLevel::Info, format!("line {sent}")).await;
            sent += 1;
        }
        let elapsed = started.elapsed();
        output.finish().await;
        drop(output);
        let (markers, dropped, shown) = counter.await.expect("counter");
        assert_eq!(shown + dropped, sent, "every line is shown or counted");
        assert!(
            dropped > 0,
            "the flood of {sent} lines was not rate-limited"
        );
        // One marker per interval, the first at once, and the last at the end.
        let allowed = elapsed.as_secs_f64() / CAPS.dropped_marker_interval.as_secs_f64() + 2.0;
        assert!(
            markers as f64 <= allowed,
            "{markers} markers in {elapsed:?} (at most {allowed})"
        );
    }

    #[tokio::test]
    async fn yields_must_be_bounded_json_objects() {
        let (sender, _receiver) = mpsc::channel(4);
        let output = TaskOutput::new(sender, CAPS);
        assert!(
            output
                .yield_returns(r#"{"return0": 1}"#.into())
                .await
                .is_ok()
        );
        assert!(matches!(
            output.yield_returns("[1]".into()).await,
            Err(YieldError::Unreadable(_))
        ));
        assert!(matches!(
            output
                .yield_returns(r#"{"return0": 1e999999}"#.into())
                .await,
            Err(YieldError::Unreadable(_))
        ));
        assert!(matches!(
            output
                .yield_returns(r#"{"return0": "\ud800"}"#.into())
                .await,
            Err(YieldError::Unreadable(_))
        ));
        assert!(matches!(
            output.yield_returns("{".into()).await,
            Err(YieldError::Malformed(_))
        ));
        let huge = format!("{{\"return0\": \"{}\"}}", "x".repeat(CAPS.yield_bytes));
        assert!(matches!(
            output.yield_returns(huge).await,
            Err(YieldError::TooLarge(_))
        ));
    }

    #[test]
    fn error_text_is_cut_with_a_marker() {
        let long = "é".repeat(CAPS.error_bytes);
        let cut = cut_error(long.clone(), &CAPS);
        assert!(cut.len() < CAPS.error_bytes + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!("… [{} bytes cut]", long.len() - CAPS.error_bytes)));
        assert_eq!(cut_error("short".into(), &CAPS), "short");
    }

    #[tokio::test]
    async fn yields_of_structure_actions_leave_in_envelopes_within_the_limit() {
        let (sender, mut receiver) = mpsc::channel(4);
        let ports: Vec<Port> = serde_json::from_value(serde_json::json!([{
            "key": "return0", "kind": "LIST",
            "children": [{"key": "...", "kind": "STRUCTURE", "identifier": "@mikro/image"}]
        }]))
        .expect("ports");
        let output = TaskOutput::new(sender, CAPS).wrapping_structures(Some(ports.into()));
        output
            .yield_returns(r#"{"return0": ["image:1"]}"#.into())
            .await
            .expect("wrapped");
        match receiver.try_recv() {
            Ok(TaskEvent::Yield(raw)) => assert_eq!(
                raw.get(),
                r#"{"return0":[{"__identifier":"@mikro/image","object":"image:1"}]}"#
            ),
            other => panic!("expected a yield, got {other:?}"),
        }
        assert!(matches!(
            output.yield_returns("[1]".into()).await,
            Err(YieldError::Unreadable(_))
        ));
        // Small references that fit as bare text may not fit once in envelopes.
        let count = CAPS.yield_bytes / 5;
        let references = vec!["\"1\""; count].join(",");
        let error = output
            .yield_returns(format!("{{\"return0\": [{references}]}}"))
            .await
            .expect_err("too large once wrapped");
        assert!(
            error.to_string().contains("structures in envelopes"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_task_is_held_to_its_own_output_caps() {
        let caps = OutputCaps {
            log_line_bytes: 8,
            log_bytes: 40,
            progress_message_bytes: 4,
            yield_bytes: 32,
            yield_depth: 2,
            error_bytes: 6,
            ..CAPS
        };
        let (sender, mut receiver) = mpsc::channel(64);
        let output = TaskOutput::new(sender, caps);
        output.log(LogLevel::Info, "0123456789".into()).await;
        output.progress(50, Some("halfway".into())).await;
        for _ in 0..3 {
            output.log(LogLevel::Info, "abcdefgh".into()).await;
        }
        let mut events = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            events.push(event);
        }
        let texts: Vec<String> = events
            .iter()
            .map(|event| match event {
                TaskEvent::Log { message, .. } => message.clone(),
                TaskEvent::Progress { message, .. } => message.clone().unwrap_or_default(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            texts,
            [
                "01234567… [2 bytes cut]",
                "half… [3 bytes cut]",
                "abcdefgh",
                "[log output truncated: this task reached its limit of 40 B of log text]",
            ]
        );
        let error = output
            .yield_returns(format!("{{\"return0\": \"{}\"}}", "x".repeat(32)))
            .await
            .expect_err("over 32 bytes");
        assert_eq!(
            error.to_string(),
            "a yield of 47 B exceeds the limit of 32 B"
        );
        let error = output
            .yield_returns(r#"{"return0": [[1]]}"#.into())
            .await
            .expect_err("three levels deep");
        assert!(
            error
                .to_string()
                .contains("nesting deeper than the limit of 2 levels"),
            "{error}"
        );
        assert_eq!(
            cut_error("boom boom".into(), &caps),
            "boom b… [3 bytes cut]"
        );
    }

    #[tokio::test]
    async fn finds_the_panic_message_on_stderr() {
        let (sender, _receiver) = mpsc::channel(16);
        let output = TaskOutput::new(sender, CAPS);
        output.write_stdio(
            Stdio::Stderr,
            b"\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n",
        );
        assert_eq!(
            output.panic_message().as_deref(),
            Some("panicked at src/lib.rs:3:5:\nboom")
        );
    }
}
