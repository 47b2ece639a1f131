//! `rekuest-host call`: one task in the sandbox, with live logs and progress.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use rekuest_host::definition::ActionKind;
use rekuest_host::runtime::{
    ActionComponent, EVENT_BUFFER, Outcome, TaskControl, TaskEvent, TaskRequest,
};
use rekuest_host::text::{self, Lines, OneLine};

use super::exit::Exit;

/// Runs `action` once, streaming logs and progress to stderr and returns to stdout.
pub async fn run(component: &ActionComponent, action: &str, args: Map<String, Value>) -> ExitCode {
    let generator = component
        .definition(action)
        .is_some_and(|definition| definition.kind == ActionKind::Generator);
    let (events, mut receiver) = mpsc::channel(EVENT_BUFFER);
    let control = TaskControl::new();
    let interrupt = control.clone();
    // The first Ctrl-C cancels (the action may end cleanly within its grace period), a
    // second one stops it at once.
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("cancelling the task (Ctrl-C again to stop it at once)");
            interrupt.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.interrupt();
            }
        }
    });
    let printer = tokio::spawn(async move {
        let mut display = Display::new(generator);
        while let Some(event) = receiver.recv().await {
            display.show(event);
        }
        display.finish()
    });
    let (outcome, sandbox) = component
        .run(TaskRequest::new(action, args), events, &control)
        .await;
    drop(sandbox);
    ctrl_c.abort();
    let (returns, held) = printer.await.unwrap_or_default();
    report(&outcome, returns, held)
}

/// Prints the outcome; a function's single yield is printed now, a generator's as they came.
/// A held-back CRITICAL log line is printed unless it is the crash message said again.
fn report(outcome: &Outcome, returns: Option<String>, held: HeldCritical) -> ExitCode {
    if let Some(line) = held.unless(outcome.error().as_deref()) {
        eprintln!("{line}");
    }
    if let Some(returns) = returns {
        println!("{returns}");
    }
    let exit = Exit::of(outcome);
    let label = match exit {
        Exit::Completed => return ExitCode::SUCCESS,
        Exit::Failed => "failed",
        Exit::Usage => "invalid arguments",
        Exit::Limit => "limit exceeded",
        Exit::Crashed => "crashed",
        Exit::Cancelled => "cancelled",
    };
    match outcome.error() {
        Some(error) => eprintln!("error: {label}: {}", Lines(&error)),
        None => eprintln!("error: {label}"),
    }
    exit.into()
}

/// A CRITICAL log line held back until the next event or the end of the task: a crashing
/// guest logs its panic message at CRITICAL (the SDK's panic hook) just before the task ends
/// CRITICAL with that same message, which is then shown once.
#[derive(Default)]
pub struct HeldCritical {
    /// The guest's message and the line that shows it.
    held: Option<(String, String)>,
}

impl HeldCritical {
    /// Whether a log line of `level` (`None`: not known) saying `message` is held back.
    pub fn holds(level: Option<&str>, message: &str) -> bool {
        match level {
            Some(level) => level == "CRITICAL",
            None => message.starts_with("panicked at "),
        }
    }

    /// Holds `line` showing `message` (after [`take`](Self::take) printed the one before).
    pub fn hold(&mut self, message: &str, line: String) {
        self.held = Some((message.to_string(), line));
    }

    /// The held line, to print now (another event came).
    pub fn take(&mut self) -> Option<String> {
        self.held.take().map(|(_, line)| line)
    }

    /// The held line to print at the end of a task that ended with `error`: none when it
    /// says the same.
    pub fn unless(self, error: Option<&str>) -> Option<String> {
        self.held
            .filter(|(message, _)| Some(message.trim()) != error.map(str::trim))
            .map(|(_, line)| line)
    }
}

/// Renders events: a progress bar on a terminal, plain lines otherwise.
struct Display {
    bar: Option<ProgressBar>,
    generator: bool,
    last_returns: Option<String>,
    held: HeldCritical,
}

impl Display {
    fn new(generator: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Display {
            bar,
            generator,
            last_returns: None,
            held: HeldCritical::default(),
        }
    }

    fn print_line(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn show(&mut self, event: TaskEvent) {
        if let Some(line) = self.held.take() {
            self.print_line(line);
        }
        match event {
            TaskEvent::Log { level, message } => {
                // Printed with the level the server would show.
                let level = level.as_str();
                let line = format!("[{level}] {}", Lines(&message));
                if HeldCritical::holds(Some(level), &message) {
                    self.held.hold(&message, line);
                } else {
                    self.print_line(line);
                }
            }
            TaskEvent::Progress { percent, message } => {
                let message = OneLine(message.as_deref().unwrap_or_default()).to_string();
                match &self.bar {
                    Some(bar) => {
                        bar.set_position(u64::from(percent));
                        bar.set_message(message);
                    }
                    None => eprintln!("progress {percent}% {message}"),
                }
            }
            TaskEvent::Yield(returns) => {
                if self.generator {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{}", text::json(returns.get()));
                    let _ = stdout.flush();
                } else {
                    self.last_returns = Some(text::json(returns.get()).into_owned());
                }
            }
        }
    }

    /// The function's returns and the CRITICAL line still held back.
    fn finish(self) -> (Option<String>, HeldCritical) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        (self.last_returns, self.held)
    }
}
