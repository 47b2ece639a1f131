//! `rekuest-host call`: one task in the sandbox, with live logs and progress.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use rekuest_host::definition::ActionKind;
use rekuest_host::runtime::{
    ActionComponent, EVENT_BUFFER, Failure, Outcome, TaskControl, TaskEvent,
};
use rekuest_host::text::{self, Lines, OneLine};

/// Exit code of a task that failed with an action error.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of bad args (and of usage errors, as clap uses it).
pub const EXIT_BAD_ARGS: u8 = 2;
/// Exit code of a task that hit a limit (fuel, memory, time, output).
pub const EXIT_LIMIT: u8 = 3;
/// Exit code of a crashed task (trap, panic).
pub const EXIT_CRITICAL: u8 = 4;
/// Exit code of a task cancelled with Ctrl-C.
pub const EXIT_CANCELLED: u8 = 130;

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
    let outcome = component.run(action, args, events, &control).await;
    ctrl_c.abort();
    let returns = printer.await.unwrap_or_default();
    report(&outcome, returns)
}

/// Prints the outcome; a function's single yield is printed now, a generator's as they came.
fn report(outcome: &Outcome, returns: Option<String>) -> ExitCode {
    if let Some(returns) = returns {
        println!("{returns}");
    }
    let (label, code) = match outcome {
        Outcome::Completed => return ExitCode::SUCCESS,
        Outcome::Failed(Failure::Action(_) | Failure::RefusedOutput(_)) => ("failed", EXIT_FAILED),
        Outcome::Failed(Failure::InvalidArgs(_)) => ("invalid arguments", EXIT_BAD_ARGS),
        Outcome::Failed(Failure::Limit(_)) => ("limit exceeded", EXIT_LIMIT),
        Outcome::Critical(_) => ("crashed", EXIT_CRITICAL),
        Outcome::Cancelled | Outcome::Interrupted => ("cancelled", EXIT_CANCELLED),
    };
    match outcome.error() {
        Some(error) => eprintln!("error: {label}: {}", Lines(&error)),
        None => eprintln!("error: {label}"),
    }
    ExitCode::from(code)
}

/// Renders events: a progress bar on a terminal, plain lines otherwise.
struct Display {
    bar: Option<ProgressBar>,
    generator: bool,
    last_returns: Option<String>,
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
        }
    }

    fn show(&mut self, event: TaskEvent) {
        match event {
            TaskEvent::Log { level, message } => {
                let line = format!("[{}] {}", level.as_str(), Lines(&message));
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
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

    fn finish(self) -> Option<String> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.last_returns
    }
}
