//! The end-to-end tests of rekuest-host, one module per area, linked into one binary (like
//! wasmtime's `tests/all`): run one area with `cargo test --release --test all sandbox::`.

mod alone;
mod attacks_support;
mod serve_support;
mod twins;

mod calls;
mod cli;
mod cli_author;
mod cli_guest_text;
mod cli_operator_input;
mod http;
mod keep;
mod login;
mod operating;
mod python_bench;
mod python_caller;
mod python_peer;
mod runtime;
mod sandbox;
mod sandbox_attacks;
mod serve_basics;
mod serve_callers;
mod serve_cli;
mod serve_control;
mod serve_delivery;
mod serve_devserver;
mod serve_resilience;
mod tls;
