//! The rekuest server played by hand over a raw WebSocket: accept the agent's connection,
//! answer its REGISTER, send frames and read what comes back, for tests of what the local
//! server never does on its own (stale connections, malformed frames, withheld acks).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use super::{Serving, bounded, fast_agent};
use rekuest_host::agent::{Agent, AgentConfig, GuestWorkers, ServedComponent};

/// The agent's connection, seen from the server's side.
pub type Peer = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// An agent (one guest worker) serving `served` with `configure`d settings against the server
/// a test plays on `listener`.
pub fn serve_against(
    listener: &TcpListener,
    served: Vec<ServedComponent>,
    configure: impl FnOnce(&mut AgentConfig),
) -> Serving {
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = fast_agent(&url);
    configure(&mut config);
    let pool = GuestWorkers::new(1).expect("pool");
    let agent = Arc::new(Agent::new(config, served, pool.handle()).expect("agent"));
    Serving::serve_only(agent, pool)
}

/// Accepts the agent's next connection.
pub async fn accept(listener: &TcpListener) -> Peer {
    let (stream, _) = bounded("the agent to connect", listener.accept())
        .await
        .expect("accepts");
    bounded("the handshake", tokio_tungstenite::accept_async(stream))
        .await
        .expect("handshake")
}

/// Accepts the agent's next connection and answers its REGISTER with INIT asking about
/// `inquiries`.
pub async fn connect(listener: &TcpListener, inquiries: Value) -> Peer {
    let mut peer = accept(listener).await;
    register(&mut peer, inquiries).await;
    peer
}

/// The next text frame from the agent, as JSON.
pub async fn receive(peer: &mut Peer) -> Value {
    loop {
        let frame = bounded("a frame from the agent", peer.next())
            .await
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).expect("json");
        }
    }
}

/// The next frame of type `kind`, skipping others.
pub async fn receive_type(peer: &mut Peer, kind: &str) -> Value {
    loop {
        let frame = receive(peer).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// Sends `frame` to the agent.
pub async fn send(peer: &mut Peer, frame: Value) {
    peer.send(Message::text(frame.to_string()))
        .await
        .expect("sends");
}

/// Frames that arrive within `window` (none expected to be terminal unless asked).
pub async fn quiet(peer: &mut Peer, window: Duration) -> Vec<Value> {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, peer.next()).await {
        if let Message::Text(text) = frame {
            frames.push(serde_json::from_str(text.as_str()).expect("json"));
        }
    }
    frames
}

/// Reads the agent's REGISTER and answers with INIT asking about `inquiries`; returns the
/// REGISTER.
pub async fn register(peer: &mut Peer, inquiries: Value) -> Value {
    let register = receive(peer).await;
    assert_eq!(register["type"], "REGISTER");
    send(
        peer,
        json!({"id": "i", "type": "INIT", "agent": "1", "inquiries": inquiries}),
    )
    .await;
    register
}

/// An ASSIGN of `task` to the action `interface` with `task_args`.
pub fn assign(task: &str, interface: &str, task_args: Value) -> Value {
    json!({"id": format!("a{task}"), "type": "ASSIGN", "interface": interface, "step": null,
           "task": task, "root": null, "parent": null, "resolution": null, "capture": false,
           "reference": "ref", "args": task_args, "message": null, "user": "1", "org": "o",
           "action": "h", "implementation": "1", "token": null})
}
