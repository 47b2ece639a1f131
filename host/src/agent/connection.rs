//! One session on the agent socket: REGISTER, wait for INIT, then read and write until the
//! socket ends. HEARTBEATs are answered inline by the reader; reports are written in
//! batches (`feed`, then one `flush`) with a per-connection `seq`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::caps::AgentCaps;
use super::dispatcher::{Dispatcher, StopMode};
use super::outbox::Outbox;
use crate::error_chain::ErrorChain;
use crate::protocol::messages::frame_type;
use crate::protocol::{FromAgent, MessageError, Register, ToAgent};
use crate::tls::{ClientTls, explain_certificate_error, server_of};

/// Reports written per batch before the reader gets another turn.
const BATCH: usize = 256;
/// Bytes written per batch (at least one report) before the reader gets another turn, so a
/// HEARTBEAT is answered after at most this much.
const BATCH_BYTES: usize = 1024 * 1024;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// The agent WebSocket URL to dial (`ws(s)://{base}/agi`).
    pub url: Url,
    /// Where the token sent in REGISTER comes from.
    pub credentials: super::Credentials,
    /// This process's session id (the same across reconnects).
    pub session_id: String,
    /// Take the agent over from another live connection.
    pub force: bool,
    /// How long connecting plus waiting for INIT may take.
    pub init_timeout: Duration,
    /// The certificate authorities `wss://` trusts.
    pub tls: ClientTls,
    /// A registered connection without any frame from the server for this long is presumed
    /// dead (the server sends a HEARTBEAT about every 10 s) and is replaced.
    pub silence_timeout: Duration,
    /// The largest frame read ([`AgentCaps::frame_bytes`]) and the longest write stall
    /// ([`AgentCaps::write_stall`]).
    pub caps: AgentCaps,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SessionEnd {
    /// No connection, or it broke.
    Lost(String),
    /// The server closed the socket.
    Closed {
        /// The WebSocket close code the server sent (see `protocol::close`).
        code: u16,
        /// PROTOCOL_ERROR text or close reason.
        reason: String,
        /// Whether INIT had come.
        registered: bool,
    },
    /// BOUNCE: reconnect after this many seconds.
    Bounce(Option<u64>),
    /// KICK: do not reconnect.
    Kick(Option<String>),
    /// Shutting down: everything was flushed and the socket closed cleanly.
    Finished,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs one session, registering with `token`. `registered` is called once INIT arrived;
/// `closing` turning true asks the session to close cleanly once every report is written
/// and acknowledged.
pub(crate) async fn session(
    config: &SocketConfig,
    token: &str,
    dispatcher: &Arc<Dispatcher>,
    outbox: &Outbox,
    closing: &mut watch::Receiver<bool>,
    mut registered: impl FnMut(),
) -> SessionEnd {
    let handshake = async {
        let websocket = WebSocketConfig::default()
            .read_buffer_size(crate::protocol::SOCKET_READ_BUFFER)
            .max_message_size(Some(config.caps.frame_bytes))
            .max_frame_size(Some(config.caps.frame_bytes));
        let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            config.url.as_str(),
            Some(websocket),
            true,
            Some(config.tls.websocket_connector()),
        )
        .await
        .map_err(|error| {
            SessionEnd::Lost(
                match explain_certificate_error(&server_of(&config.url), &error) {
                    Some(explanation) => format!("cannot connect to {}: {explanation}", config.url),
                    None => format!("cannot connect to {}: {error}", config.url),
                },
            )
        })?;
        let register = FromAgent::Register(Register {
            id: None,
            token: token.to_string(),
            session_id: Some(config.session_id.clone()),
            force: config.force,
        });
        socket
            .send(Message::text(register.to_json()))
            .await
            .map_err(|error| SessionEnd::Lost(format!("cannot send REGISTER: {error}")))?;
        let inquiries = wait_for_init(&mut socket).await?;
        Ok::<_, SessionEnd>((socket, inquiries))
    };
    let (socket, inquiries) = match tokio::time::timeout(config.init_timeout, handshake).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(end)) => return end,
        Err(_) => {
            return SessionEnd::Lost(format!(
                "no INIT from {} within {:?}",
                config.url, config.init_timeout
            ));
        }
    };
    registered();
    dispatcher.keep().session_started();
    let resent = outbox.resend_unacked();
    if resent > 0 {
        tracing::info!("resending {resent} unacknowledged terminal report(s)");
    }
    dispatcher.answer_inquiries(&inquiries);
    run(socket, dispatcher, outbox, closing, config).await
}

/// Reads until INIT; a close before it is a refusal.
async fn wait_for_init(socket: &mut Socket) -> Result<Vec<crate::protocol::Inquiry>, SessionEnd> {
    let mut protocol_error = None;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match ToAgent::parse(text.as_str()) {
                Ok(ToAgent::Init {
                    agent, inquiries, ..
                }) => {
                    tracing::info!(%agent, "registered on the agent socket ({} inquiries)", inquiries.len());
                    return Ok(inquiries);
                }
                Ok(ToAgent::ProtocolError { error, .. }) => {
                    tracing::error!("the server reports a protocol error: {error}");
                    protocol_error = Some(error);
                }
                // Only its type: a frame may carry tokens (an ASSIGN's provenance token).
                Ok(_) => tracing::warn!(
                    "ignoring a {} frame before INIT",
                    crate::protocol::messages::frame_type(text.as_str()).unwrap_or_default()
                ),
                Err(error) => tracing::warn!(
                    "ignoring a malformed frame before INIT: {}",
                    ErrorChain(&error)
                ),
            },
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = close_parts(frame);
                return Err(SessionEnd::Closed {
                    code,
                    reason: protocol_error.unwrap_or(reason),
                    registered: false,
                });
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(SessionEnd::Lost(format!("before INIT: {error}"))),
            None => {
                return Err(SessionEnd::Lost(
                    "the server hung up before INIT".to_string(),
                ));
            }
        }
    }
}

fn close_parts(frame: Option<CloseFrame>) -> (u16, String) {
    match frame {
        Some(frame) => (u16::from(frame.code), frame.reason.to_string()),
        None => (u16::from(CloseCode::Status), String::new()),
    }
}

async fn run(
    socket: Socket,
    dispatcher: &Arc<Dispatcher>,
    outbox: &Outbox,
    closing: &mut watch::Receiver<bool>,
    config: &SocketConfig,
) -> SessionEnd {
    let (silence_timeout, write_stall) = (config.silence_timeout, config.caps.write_stall);
    let (mut sink, mut stream) = socket.split();
    let mut seq = 0u64;
    // When the last frame came; the silence timer is re-armed from it lazily, so a frame
    // costs one clock read, not a timer reset.
    let mut last_frame = Instant::now();
    let silence = tokio::time::sleep_until(last_frame + silence_timeout);
    tokio::pin!(silence);
    let mut protocol_error: Option<String> = None;
    let mut closing_open = true;
    // Anything queued while we were away goes out now.
    outbox.wake();
    loop {
        if *closing.borrow() && outbox.is_settled() {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "rekuest-host is shutting down".into(),
                })))
                .await;
            return SessionEnd::Finished;
        }
        let logs_due = outbox.logs_due();
        tokio::select! {
            biased;
            frame = stream.next() => {
                last_frame = Instant::now();
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(bytes))) => {
                        tracing::warn!("ignoring a binary frame of {} bytes from the server", bytes.len());
                        continue;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = close_parts(frame);
                        return SessionEnd::Closed {
                            code,
                            reason: protocol_error.unwrap_or(reason),
                            registered: true,
                        };
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return SessionEnd::Lost(error.to_string()),
                    None => return SessionEnd::Lost("the server hung up".to_string()),
                };
                let message = match ToAgent::parse(text.as_str()) {
                    Ok(message) => message,
                    Err(MessageError::NotJson(error)) => {
                        tracing::warn!("ignoring a frame that is not JSON ({error}): {:.200}", text.as_str());
                        continue;
                    }
                    Err(MessageError::Schema(error)) => {
                        tracing::warn!("ignoring a frame that does not match the protocol ({error}): {:.200}", text.as_str());
                        continue;
                    }
                    Err(MessageError::BadAssign { task, error }) => {
                        dispatcher.refuse(&task, format!("the ASSIGN for this task is malformed: {error}"));
                        continue;
                    }
                };
                match message {
                    ToAgent::Heartbeat { .. } => {
                        let answer = FromAgent::HeartbeatAnswer { id: uuid::Uuid::new_v4().to_string() };
                        match tokio::time::timeout(write_stall, sink.send(Message::text(answer.to_json()))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => return SessionEnd::Lost(error.to_string()),
                            Err(_) => return SessionEnd::Lost(stalled(write_stall)),
                        }
                    }
                    ToAgent::Assign(assign) => dispatcher.assign(*assign, text.len()),
                    ToAgent::Cancel { task, .. } => dispatcher.stop(&task, StopMode::Cancel),
                    ToAgent::Interrupt { task, .. } => dispatcher.stop(&task, StopMode::Interrupt),
                    ToAgent::Pause { task, .. } => dispatcher.pause(&task),
                    ToAgent::Resume { task, step, .. } => dispatcher.resume(&task, step),
                    ToAgent::EventAck { event, .. } => {
                        if !outbox.ack(&event) {
                            tracing::debug!("EVENT_ACK for {event}, which is not retained");
                        }
                    }
                    ToAgent::Init { inquiries, .. } => dispatcher.answer_inquiries(&inquiries),
                    ToAgent::Collect { drawers, .. } => dispatcher.keep().collect(&drawers),
                    ToAgent::Bounce { duration, .. } => {
                        let _ = sink.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "bounced".into(),
                        }))).await;
                        return SessionEnd::Bounce(duration);
                    }
                    ToAgent::Kick { reason, .. } => {
                        let _ = sink.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "kicked".into(),
                        }))).await;
                        return SessionEnd::Kick(reason);
                    }
                    ToAgent::ProtocolError { error, .. } => {
                        tracing::error!("the server reports a protocol error: {error}");
                        protocol_error = Some(error);
                    }
                    ToAgent::Execution(event) => {
                        if !dispatcher.calls().route(&event) {
                            tracing::debug!(task = %event.task, "{} from the server", event.kind);
                        }
                    }
                    ToAgent::AssignResponse { request, task, error, .. } => {
                        dispatcher.calls().answered(&request, task, error);
                    }
                    ToAgent::ControlResponse { task, accepted, error, .. } => {
                        if !accepted {
                            tracing::warn!(
                                task = task.as_deref().unwrap_or_default(),
                                "the server refused to pass a control on to a child task: {}",
                                error.as_deref().unwrap_or("no reason given")
                            );
                        }
                    }
                    ToAgent::Unknown => {
                        tracing::warn!(
                            "ignoring a frame of unknown type {:?}",
                            frame_type(text.as_str()).unwrap_or_default()
                        );
                    }
                }
            }
            () = outbox.ready() => {
                if let Err(end) = write_batch(&mut sink, outbox, &mut seq, write_stall).await {
                    return end;
                }
                if !outbox.is_empty() {
                    outbox.wake();
                }
            }
            () = dispatcher.calls().ready() => {
                let frames = dispatcher.calls().take_outgoing();
                let (unwritten, result) = write_frames(&mut sink, frames, "a call", write_stall).await;
                dispatcher.calls().requeue(unwritten);
                if let Err(end) = result {
                    return end;
                }
            }
            () = dispatcher.keep().ready() => {
                let frames = dispatcher.keep().take_outgoing();
                let (unwritten, result) = write_frames(&mut sink, frames, "a state or lock frame", write_stall).await;
                dispatcher.keep().requeue(unwritten);
                if let Err(end) = result {
                    return end;
                }
            }
            () = sleep_until(logs_due), if logs_due.is_some() => outbox.wake(),
            changed = closing.changed(), if closing_open => closing_open = changed.is_ok(),
            () = &mut silence => {
                let quiet = last_frame.elapsed();
                if quiet >= silence_timeout {
                    return SessionEnd::Lost(format!(
                        "no frame from the server for {quiet:.1?} (not even a HEARTBEAT); the \
                         connection is presumed dead"
                    ));
                }
                silence.as_mut().reset(last_frame + silence_timeout);
            }
        }
    }
}

fn stalled(write_stall: Duration) -> String {
    format!("the server took nothing written for {write_stall:?}: it stopped reading")
}

/// Writes frames that are not reports (calls from running tasks: ASSIGN_REQUEST,
/// CANCEL_REQUEST, ...; states and locks: SESSION_INIT, STATE_PATCH, LOCK, ...); hands back
/// the ones not written, for their queue; a write the server does not take within
/// `write_stall` ends the session.
async fn write_frames<S>(
    sink: &mut S,
    frames: Vec<FromAgent>,
    what: &str,
    write_stall: Duration,
) -> (Vec<FromAgent>, Result<(), SessionEnd>)
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let mut frames: std::collections::VecDeque<FromAgent> = frames.into();
    let write = async {
        while let Some(frame) = frames.front() {
            sink.feed(Message::text(frame.to_json())).await?;
            frames.pop_front();
        }
        sink.flush().await
    };
    let result = tokio::time::timeout(write_stall, write).await;
    let result = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(SessionEnd::Lost(format!("writing {what} failed: {error}"))),
        Err(_) => Err(SessionEnd::Lost(stalled(write_stall))),
    };
    (frames.into(), result)
}

/// Resolves at `due` (never for `None`).
async fn sleep_until(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Writes up to [`BATCH`] reports (about [`BATCH_BYTES`]), stamping `seq`, and flushes once;
/// a batch the server does not take within `write_stall` ends the session. Reports not
/// written go back to the front of the outbox.
async fn write_batch<S>(
    sink: &mut S,
    outbox: &Outbox,
    seq: &mut u64,
    write_stall: Duration,
) -> Result<(), SessionEnd>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let mut batch: std::collections::VecDeque<_> = outbox.take_batch(BATCH, BATCH_BYTES).into();
    let write = async {
        while let Some(queued) = batch.front_mut() {
            *seq += 1;
            queued.report.seq = Some(*seq);
            let text = serde_json::to_string(&queued.report).unwrap_or_default();
            sink.feed(Message::text(text)).await?;
            if let Some(sent) = batch.pop_front() {
                // Kept from here on until confirmed, whether or not the flush succeeds.
                outbox.written(sent);
            }
        }
        sink.flush().await
    };
    let result = tokio::time::timeout(write_stall, write).await;
    // Not written: back to the queue, in order.
    outbox.requeue_front(batch.into_iter());
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(SessionEnd::Lost(format!("writing reports failed: {error}"))),
        Err(_) => Err(SessionEnd::Lost(stalled(write_stall))),
    }
}
