//! The guest's stdout and stderr as WASI output streams that become log lines.

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::output::{Stdio, TaskOutput};

/// How many bytes a guest may hand over per write while the caller keeps up.
const WRITE_BUDGET: usize = 64 * 1024;

/// A guest stdio stream feeding [`TaskOutput`].
#[derive(Clone)]
pub struct GuestStdio {
    output: TaskOutput,
    stream: Stdio,
}

impl GuestStdio {
    /// The guest's `stream` feeding `output`.
    pub fn new(output: TaskOutput, stream: Stdio) -> Self {
        GuestStdio { output, stream }
    }
}

impl IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestStdio {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.output.write_stdio(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // No capacity while lines wait for the caller: the guest then blocks in `ready`.
        Ok(if self.output.stdio_blocked() {
            0
        } else {
            WRITE_BUDGET
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStdio {
    async fn ready(&mut self) {
        self.output.flush_pending().await;
    }
}

impl tokio::io::AsyncWrite for GuestStdio {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.output.write_stdio(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
