//! A local, rekuest-compatible server: GraphQL `ensureAgent`/`implementAgent`, the `/agi`
//! agent socket (REGISTER, INIT with inquiries, heartbeats with the 3001 timeout, EVENT_ACK,
//! the close codes), the caller GraphQL (`assign`, the controls, the lookups, and the
//! `mytasks` subscription over WebSocket), calls from running tasks (ASSIGN_REQUEST, the
//! child's `*_EVENT` frames routed to the caller, CANCEL_REQUEST, ...), and the Arkitekt
//! platform's login endpoints (fakts discovery, redeem, device codes, claim, OAuth2 tokens;
//! see [`platform`]) whose tokens GraphQL, its subscriptions and REGISTER check.
//!
//! It backs `rekuest-host dev` and the end-to-end tests. State lives in memory; a
//! [`DevServer::restart`] keeps it, like a real server restarting on its database.

mod agent_socket;
mod caller_api;
mod feed;
pub mod graphql;
mod http;
mod keep;
pub mod platform;
mod state;
mod subscriptions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

pub use feed::{REPLAY_WINDOW, SUBSCRIBER_QUEUE};
pub use platform::{PlatformConfig, PlatformCounts};
pub use state::{
    Control, MAX_EVENT_BYTES, MAX_MESSAGE_CHARS, MAX_TASK_EVENT_BYTES, MAX_TASK_EVENTS,
    OfferedAction, ServerEvent, TaskSnapshot,
};
pub use subscriptions::MAX_SUBSCRIPTIONS;

use crate::protocol::ToAgent;
use state::{Outgoing, Shared};

/// How the local server behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DevServerConfig {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Time between HEARTBEATs (the real server: about 10 s).
    pub heartbeat_interval: Duration,
    /// How long an answer may take before the socket closes with 3001 (real: 5 s).
    pub heartbeat_timeout: Duration,
    /// How long in-flight tasks wait for a same-session reconnect before they become
    /// DISCONNECTED (real: 30 s).
    pub reconnect_grace: Duration,
    /// How long a connection lost without a close handshake (a restart, a 3001 close, a
    /// network cut, [`DevServer::silence`]) still counts as live: REGISTER without `force`
    /// gets 4004 meanwhile and `ensureAgent` says `connected` (real: ~3 heartbeats, ~30 s).
    pub stale_window: Duration,
    /// Accepted static tokens; `None` accepts any non-empty token. Access tokens the
    /// platform issued are accepted while they are valid, whatever this says.
    pub tokens: Option<Vec<String>>,
    /// The login endpoints.
    pub platform: PlatformConfig,
}

impl Default for DevServerConfig {
    fn default() -> Self {
        DevServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(5),
            reconnect_grace: Duration::from_secs(30),
            stale_window: Duration::from_secs(30),
            tokens: None,
            platform: PlatformConfig::default(),
        }
    }
}

/// Why the local server could not start.
#[derive(Debug, thiserror::Error)]
#[error("the local server cannot listen on {addr}")]
pub struct DevServerError {
    /// The address it could not listen on.
    pub addr: SocketAddr,
    /// The IO error.
    pub source: std::io::Error,
}

/// A running local server; stops when dropped.
pub struct DevServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

/// The events of one task: the ones so far, then the rest as they happen.
pub struct TaskWatch {
    history: std::collections::VecDeque<ServerEvent>,
    receiver: mpsc::UnboundedReceiver<ServerEvent>,
}

impl TaskWatch {
    /// The next event (`None` after the terminal one, or when the server is gone).
    pub async fn next(&mut self) -> Option<ServerEvent> {
        match self.history.pop_front() {
            Some(event) => Some(event),
            None => self.receiver.recv().await,
        }
    }

    /// Every event up to and including the terminal one (fewer if the server goes away
    /// first: then the last one is not terminal).
    pub async fn until_end(mut self) -> Vec<ServerEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            let terminal = event.is_terminal();
            events.push(event);
            if terminal {
                break;
            }
        }
        events
    }
}

impl DevServer {
    /// Binds `config.listen` and starts serving.
    pub async fn start(config: DevServerConfig) -> Result<Self, DevServerError> {
        let listen = config.listen;
        Self::serve(Shared::new(config), listen).await
    }

    async fn serve(shared: Arc<Shared>, listen: SocketAddr) -> Result<Self, DevServerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| DevServerError {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| DevServerError {
            addr: listen,
            source,
        })?;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept(listener, Arc::clone(&shared), stopped));
        tracing::info!("local rekuest server listening on http://{addr}");
        Ok(DevServer { shared, addr, stop })
    }

    /// Stops serving (every connection drops without a close frame) and serves again on the
    /// same address with the same state, like a server process restarting on its database.
    pub async fn restart(self, downtime: Duration) -> Result<Self, DevServerError> {
        let shared = Arc::clone(&self.shared);
        let addr = self.addr;
        drop(self);
        tokio::time::sleep(downtime).await;
        Self::serve(shared, addr).await
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Assigns `action` to a connected agent implementing it; returns the task id.
    pub fn assign(&self, action: &str, args: Map<String, Value>) -> Result<String, String> {
        self.shared.assign(action, args, None)
    }

    /// Assigns `action` with `step: true`: it should park before running until RESUME.
    pub fn assign_stepping(
        &self,
        action: &str,
        args: Map<String, Value>,
    ) -> Result<String, String> {
        self.shared.assign(action, args, Some(true))
    }

    /// Sends a control message for `task` to its agent.
    pub fn control(&self, task: &str, control: Control) -> Result<(), String> {
        self.shared.control(task, control)
    }

    /// Follows the events of `task`.
    pub fn watch(&self, task: &str) -> Option<TaskWatch> {
        let (history, receiver) = self.shared.watch(task)?;
        Some(TaskWatch {
            history: history.into(),
            receiver,
        })
    }

    /// What the server knows about `task`.
    pub fn task(&self, task: &str) -> Option<TaskSnapshot> {
        self.shared.snapshot(task)
    }

    /// The child tasks `task` called from inside its action, in the order they started.
    pub fn children(&self, task: &str) -> Vec<String> {
        self.shared.children(task)
    }

    /// Every action agents offer.
    pub fn actions(&self) -> Vec<OfferedAction> {
        self.shared.actions()
    }

    /// Whether the agent of `token` is connected.
    pub fn is_connected(&self, token: &str) -> bool {
        self.shared.is_connected(token)
    }

    /// Resolves once the agent of `token` is connected (checks every 5 ms, as the server keeps
    /// no connection events); callers bound it with their own timeout.
    pub async fn wait_connected(&self, token: &str) {
        while !self.is_connected(token) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether the server counts the agent of `token` as connected: connected, or lost
    /// within the stale window (what `ensureAgent` answers as `connected`).
    pub fn counts_as_connected(&self, token: &str) -> bool {
        self.shared.counts_as_connected(token)
    }

    /// The definition hash stored for the agent of `token` (`None`: never ensured).
    pub fn agent_hash(&self, token: &str) -> Option<String> {
        self.shared.agent_hash(token)
    }

    /// How many HEARTBEAT_ANSWERs arrived.
    pub fn heartbeats_answered(&self) -> u64 {
        self.shared.heartbeats()
    }

    /// How many REGISTERs were accepted (connections that got INIT).
    pub fn registrations(&self) -> u64 {
        self.shared.registrations()
    }

    /// The close codes the server sent, in order.
    pub fn close_codes(&self) -> Vec<u16> {
        self.shared.closes()
    }

    /// The SESSION_INIT, STATE_PATCH, STATE_SNAPSHOT, LOCK and UNLOCK frames the agent of
    /// `token` sent, in order (at most the latest 10,000).
    pub fn keep_frames(&self, token: &str) -> Vec<Value> {
        self.shared
            .agent_id(token)
            .map(|agent| self.shared.keep.frames(&agent))
            .unwrap_or_default()
    }

    /// The value of the state `key` of the agent of `token`, as its frames left it.
    pub fn agent_state(&self, token: &str, key: &str) -> Option<Value> {
        let agent = self.shared.agent_id(token)?;
        self.shared.keep.state(&agent, key)
    }

    /// The drawers the agent of `token` has registered.
    pub fn drawers(&self, token: &str) -> Vec<String> {
        self.shared
            .agent_id(token)
            .map(|agent| self.shared.keep.drawers(&agent))
            .unwrap_or_default()
    }

    /// GraphQL `collect`: forgets `drawers` and sends their agents COLLECT.
    pub fn collect(&self, drawers: &[String]) -> Result<(), String> {
        self.shared.collect(drawers)
    }

    /// Sends a protocol frame to the agent of `token`; false if it is not connected.
    pub fn send(&self, token: &str, frame: &ToAgent) -> bool {
        self.shared.send_to(token, Outgoing::Text(frame.to_json()))
    }

    /// Sends any frame (binary, broken JSON, ...) to the agent of `token`.
    pub fn send_raw(&self, token: &str, frame: Message) -> bool {
        self.shared.send_to(token, Outgoing::Raw(frame))
    }

    /// Closes the agent's socket with `code`.
    pub fn close(&self, token: &str, code: u16, reason: &str) -> bool {
        self.shared
            .send_to(token, Outgoing::Close(code, reason.to_string()))
    }

    /// Makes the agent's connection half-open: the server stops sending (no HEARTBEATs,
    /// acks or assignments) and ignores what arrives, without closing TCP, and counts the
    /// connection as stale (see [`DevServerConfig::stale_window`]).
    pub fn silence(&self, token: &str) -> bool {
        self.shared.silence(token)
    }

    /// Stops (`false`) or resumes reading what agents send: a server that stopped reading.
    /// Its heartbeat timeout still closes connections whose answers it does not read.
    pub fn set_reading(&self, reading: bool) {
        self.shared.set_reading(reading);
    }

    /// The clients the platform created (by redeem or device code), oldest first; an
    /// agent logged in as a client is known by its client id (use it where these methods
    /// take a token).
    pub fn clients(&self) -> Vec<String> {
        self.shared.platform.clients()
    }

    /// How often the platform granted a redeem, a device code, a claim and a token.
    pub fn platform_counts(&self) -> PlatformCounts {
        self.shared.platform.counts()
    }

    /// Revokes a client: its secret changes (claiming again gives the new one) and its access
    /// tokens stop working. False if there is no such client.
    pub fn revoke_client(&self, client_id: &str) -> bool {
        self.shared.platform.revoke(client_id)
    }

    /// Makes every access token issued so far invalid at once.
    pub fn expire_tokens(&self) {
        self.shared.platform.expire_tokens();
    }

    /// Drops the agent's TCP connection without a close frame (a network cut).
    pub fn cut(&self, token: &str) -> bool {
        self.shared.send_to(token, Outgoing::Cut)
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("local server: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut connection_stop = stop.clone();
            let service =
                service_fn(move |request| http::handle(Arc::clone(&shared), stop.clone(), request));
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!("local server: connection from {peer}: {error}");
                    }
                }
                _ = stopped(&mut connection_stop) => {}
            }
        });
    }
}
