//! The running action's view of the host: logs, progress, cancellation.

use std::fmt;
use std::rc::Rc;

/// Severity of a log line (the level the host's LOG report carries).
pub use rekuest_definition::LogLevel;

/// What the host offers a running action; the WIT imports on wasm, a fake in tests.
pub(crate) trait Host {
    fn log(&self, level: LogLevel, message: &str);
    fn progress(&self, percent: u8, message: Option<&str>);
    fn yield_returns(&self, returns_json: &str);
    fn is_cancelled(&self) -> bool;
    fn call(
        &self,
        target: &crate::call::Target,
        args_json: &str,
    ) -> Result<Box<dyn crate::call::ChildStream>, crate::call::CallError>;
    fn task_token(&self) -> Option<String>;
    /// The agent state `key` as JSON (a host without an agent keeps none).
    fn get_state(&self, key: &str) -> Result<String, String> {
        Err(format!("no agent keeps the state '{key}' here"))
    }
    /// Replaces the agent state `key`.
    fn set_state(&self, key: &str, _value_json: &str) -> Result<(), String> {
        Err(format!("no agent keeps the state '{key}' here"))
    }
}

/// Access to the host for a running action: logs, progress and cancellation.
///
/// Take it as a parameter of a `#[register]` function, by value (`ctx: Context`) or by
/// reference (`ctx: &Context`), anywhere in the signature; it is not a port. It is cheap to
/// clone and may be moved into the iterator a generator returns.
#[derive(Clone)]
pub struct Context {
    host: Rc<dyn Host>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(host: Rc<dyn Host>) -> Self {
        Context { host }
    }

    /// Sends a log line to the caller.
    pub fn log(&self, level: LogLevel, message: impl AsRef<str>) {
        self.host.log(level, message.as_ref());
    }

    /// Sends a DEBUG log line.
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Debug, message);
    }

    /// Sends an INFO log line.
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Info, message);
    }

    /// Sends a WARN log line.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Warn, message);
    }

    /// Sends an ERROR log line.
    pub fn error(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Error, message);
    }

    /// Sends a CRITICAL log line.
    pub fn critical(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Critical, message);
    }

    /// Reports progress: `percent` is clamped to 0..=100, the message is optional
    /// (`ctx.progress(50, "half way")`, `ctx.progress(50, None)`).
    pub fn progress(&self, percent: impl Percent, message: impl Into<ProgressMessage>) {
        let message = message.into();
        self.host
            .progress(percent.to_percent(), message.0.as_deref());
    }

    /// Whether the caller asked to stop (a CANCEL or INTERRUPT). After a CANCEL the action
    /// has its cancel grace (3 s by default) to return; then it is stopped where it is.
    pub fn is_cancelled(&self) -> bool {
        self.host.is_cancelled()
    }

    /// The task's provenance token (rekuest's signed token naming the user, the agent and the
    /// task), if the task has one. Requests to origins the host knows as Arkitekt services
    /// carry it already; send it as header `Rekuest-Task` to other services that act on the
    /// task's behalf.
    pub fn task_token(&self) -> Option<String> {
        self.host.task_token()
    }

    /// The current value of the agent state `S` (declare it with
    /// `#[register(state = S)]`); an error names why it cannot be had.
    pub fn state<S: crate::State>(&self) -> Result<S, String> {
        let json = self.host.get_state(S::KEY)?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|error| format!("the state '{}' is not JSON: {error}", S::KEY))?;
        S::decode(value, &crate::port::Path::arg(S::KEY)).map_err(|error| error.to_string())
    }

    /// Replaces the agent state `S` with `value`; the host streams the change to the server.
    pub fn set_state<S: crate::State>(&self, value: &S) -> Result<(), String> {
        let value = value
            .clone()
            .encode(&crate::port::Path::ret(S::KEY))
            .map_err(|error| error.to_string())?;
        self.host.set_state(S::KEY, &value.to_string())
    }

    pub(crate) fn yield_returns(&self, returns_json: &str) {
        self.host.yield_returns(returns_json);
    }

    pub(crate) fn host(&self) -> &dyn Host {
        &*self.host
    }
}

/// The optional message of [`Context::progress`]: a `&str`, a `String` or `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgressMessage(Option<String>);

impl From<&str> for ProgressMessage {
    fn from(message: &str) -> Self {
        ProgressMessage(Some(message.to_owned()))
    }
}

impl From<String> for ProgressMessage {
    fn from(message: String) -> Self {
        ProgressMessage(Some(message))
    }
}

impl From<&String> for ProgressMessage {
    fn from(message: &String) -> Self {
        ProgressMessage(Some(message.clone()))
    }
}

impl From<Option<String>> for ProgressMessage {
    fn from(message: Option<String>) -> Self {
        ProgressMessage(message)
    }
}

/// A number usable as a progress percentage; values outside 0..=100 are clamped.
pub trait Percent {
    /// The percentage in 0..=100.
    fn to_percent(self) -> u8;
}

macro_rules! integer_percent {
    ($($int:ty),*) => {$(
        impl Percent for $int {
            fn to_percent(self) -> u8 {
                // Lossless: the value is clamped to 0..=100 first.
                self.clamp(0, 100) as u8
            }
        }
    )*};
}

integer_percent!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl Percent for f64 {
    fn to_percent(self) -> u8 {
        if self.is_nan() {
            0
        } else {
            // Lossless: the value is rounded and clamped to 0..=100 first.
            self.round().clamp(0.0, 100.0) as u8
        }
    }
}

impl Percent for f32 {
    fn to_percent(self) -> u8 {
        f64::from(self).to_percent()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A host that records what the action did.
    #[derive(Default)]
    pub(crate) struct FakeHost {
        pub(crate) events: RefCell<Vec<String>>,
        pub(crate) cancel_after_yields: Option<usize>,
        /// What a call's child yields, then how it ends.
        pub(crate) child_yields: Vec<Result<String, crate::call::CallError>>,
    }

    /// A child that yields a fixed list.
    struct FakeChild(std::collections::VecDeque<Result<String, crate::call::CallError>>);

    impl crate::call::ChildStream for FakeChild {
        fn next(&mut self) -> Result<Option<String>, crate::call::CallError> {
            self.0.pop_front().transpose()
        }
    }

    impl FakeHost {
        pub(crate) fn yields(&self) -> Vec<String> {
            self.events
                .borrow()
                .iter()
                .filter_map(|event| event.strip_prefix("yield ").map(str::to_owned))
                .collect()
        }
    }

    impl Host for FakeHost {
        fn log(&self, level: LogLevel, message: &str) {
            self.events
                .borrow_mut()
                .push(format!("log {level:?} {message}"));
        }

        fn progress(&self, percent: u8, message: Option<&str>) {
            self.events
                .borrow_mut()
                .push(format!("progress {percent} {message:?}"));
        }

        fn yield_returns(&self, returns_json: &str) {
            self.events
                .borrow_mut()
                .push(format!("yield {returns_json}"));
        }

        fn is_cancelled(&self) -> bool {
            self.cancel_after_yields
                .is_some_and(|limit| self.yields().len() >= limit)
        }

        fn task_token(&self) -> Option<String> {
            None
        }

        fn call(
            &self,
            target: &crate::call::Target,
            args_json: &str,
        ) -> Result<Box<dyn crate::call::ChildStream>, crate::call::CallError> {
            self.events
                .borrow_mut()
                .push(format!("call {target:?} {args_json}"));
            Ok(Box::new(FakeChild(self.child_yields.clone().into())))
        }
    }

    #[test]
    fn context_forwards_to_the_host() {
        let host = Rc::new(FakeHost::default());
        let ctx = Context::new(host.clone());
        ctx.info("hello");
        ctx.log(LogLevel::Warn, String::from("careful"));
        ctx.progress(150, "almost");
        ctx.progress(-3i64, None);
        let note = String::from("f");
        ctx.progress(49.6, &note);
        ctx.progress(1u8, note);
        assert!(!ctx.is_cancelled());
        assert_eq!(
            *host.events.borrow(),
            [
                "log Info hello",
                "log Warn careful",
                "progress 100 Some(\"almost\")",
                "progress 0 None",
                "progress 50 Some(\"f\")",
                "progress 1 Some(\"f\")",
            ]
        );
    }
}
