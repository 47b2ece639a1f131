//! The `rekuest-host` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use rekuest_host::text::Lines;

/// Tasks allocate many small short-lived buffers (frames, envelopes, stores); mimalloc serves
/// them with far less work than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread for the agent socket, the local server and the first slice of every task;
/// guests that run longer move to the guest workers (`agent::GuestWorkers`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::logging::init(cli.log_format(), cli.default_log_filter());
    match cli.run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", Lines(&error_text(&error)));
            if error.chain().any(|cause| cause.is::<cli::UsageError>()) {
                cli::Exit::Usage.into()
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes, each said once: a cause whose text its parent already quotes
/// (e.g. an I/O or TOML error inside a config error) is not repeated.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}
