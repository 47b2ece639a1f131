//! The transport floor: one WebSocket round trip between this process and another one on
//! loopback, with nothing done in between. The end-to-end figures cannot go below it.

use std::process::{Child, Command};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use rekuest_host::protocol::SOCKET_READ_BUFFER;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::stats::Measurement;

/// Set in the child process: the URL to connect to and echo.
const ECHO_URL: &str = "REKUEST_BENCH_ECHO_URL";

fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(SOCKET_READ_BUFFER)
}

/// In the echo child: echoes text frames until the socket ends, then exits the process.
pub fn serve_if_child() {
    let Ok(url) = std::env::var(ECHO_URL) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio starts");
    runtime.block_on(async {
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config()), true)
                .await
                .expect("the echo child connects");
        while let Some(Ok(message)) = socket.next().await {
            if message.is_text() && socket.send(message).await.is_err() {
                break;
            }
        }
    });
    std::process::exit(0);
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `count` round trips of a frame the size of an ASSIGN, after a tenth as warm-up.
pub async fn round_trips(count: usize) -> Measurement {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback is available");
    let addr = listener.local_addr().expect("the listener has an address");
    let _child = Killed(
        Command::new(std::env::current_exe().expect("this benchmark's path"))
            .env(ECHO_URL, format!("ws://{addr}"))
            .spawn()
            .expect("the echo child starts"),
    );
    let (stream, _) = listener.accept().await.expect("the echo child connects");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut socket = tokio_tungstenite::accept_async_with_config(stream, Some(config()))
        .await
        .expect("the WebSocket handshake succeeds");
    let frame = format!(r#"{{"type":"ASSIGN","padding":"{}"}}"#, "x".repeat(360));
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for index in 0..count + count / 10 {
        let begun = Instant::now();
        socket
            .send(Message::text(frame.clone()))
            .await
            .expect("the echo child reads");
        match socket.next().await {
            Some(Ok(message)) if message.is_text() => {}
            other => panic!("the echo child did not answer: {other:?}"),
        }
        if index >= count / 10 {
            latencies.push(begun.elapsed());
        }
    }
    Measurement::new(
        "transport floor: WebSocket round trip to another process",
        latencies,
        started.elapsed(),
    )
}
