//! The `rekuest-host` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use rekuest_host::error_chain::ErrorChain;
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
            eprintln!("error: {}", Lines(&ErrorChain(&*error).to_string()));
            if error.chain().any(|cause| cause.is::<cli::UsageError>()) {
                cli::Exit::Usage.into()
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
