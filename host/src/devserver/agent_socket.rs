//! The server side of `/agi`: REGISTER first, INIT, heartbeats with the 3001 timeout,
//! reports with EVENT_ACK, and the close codes of the real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::state::{Outgoing, Registration, ReportEffect, Shared};
use crate::protocol::{FromAgent, MessageError, ToAgent, close_code};

/// How long a close handshake may take: the peer answering our close, or our answer to its.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Frame types the real server accepts that the local one records nowhere.
const IGNORED_TYPES: [&str; 1] = ["APP_CANCELLED"];

/// Serves one agent connection until it ends.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    socket: WebSocketStream<S>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = shared.new_connection_id();
    // Set when the server goes silent on this connection (a half-open connection).
    let silent = Arc::new(AtomicBool::new(false));
    let writer_silent = Arc::clone(&silent);
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut queue) = mpsc::unbounded_channel::<Outgoing>();
    // Set by the writer when the connection is finished from our side.
    let (ended, mut ended_watch) = watch::channel(None::<bool>);
    let writer_shared = Arc::clone(&shared);
    let mut writer = tokio::spawn(async move {
        while let Some(outgoing) = queue.recv().await {
            if writer_silent.load(Ordering::SeqCst) {
                continue;
            }
            let result = match outgoing {
                // Frames queued together go out in one write.
                Outgoing::Text(text) => sink.feed(Message::text(text)).await,
                Outgoing::Raw(message) => sink.feed(message).await,
                Outgoing::Close(code, reason) => {
                    writer_shared.closed_with(code);
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    let _ = ended.send(Some(true));
                    return;
                }
                Outgoing::CloseReply => {
                    // The peer's close is queued as received; closing the sink sends
                    // the echo tungstenite prepared and flushes it.
                    let _ = sink.close().await;
                    let _ = ended.send(Some(false));
                    return;
                }
                Outgoing::Cut => {
                    let _ = ended.send(Some(false));
                    return;
                }
            };
            if result.is_ok() && queue.is_empty() {
                // Let the tasks that are ready (a caller about to assign the next task) queue
                // their frames first, so they share this write.
                tokio::task::yield_now().await;
            }
            let result = match result {
                Ok(()) if queue.is_empty() => sink.flush().await,
                other => other,
            };
            if result.is_err() {
                let _ = ended.send(Some(false));
                return;
            }
        }
    });

    let answered = Arc::new(Notify::new());
    let mut peer_closed = false;
    let mut reading = shared.reading();
    let mut registered: Option<String> = None;
    let mut heartbeat: Option<tokio::task::JoinHandle<()>> = None;
    let close = |code: u16, reason: &str| {
        let _ = outbox.send(Outgoing::Close(code, reason.to_string()));
    };
    loop {
        // While reading is switched off, frames stay in the socket (a server that stopped
        // reading): the agent's writes stall and heartbeat answers are not seen.
        let paused = !*reading.borrow_and_update();
        let frame = tokio::select! {
            frame = stream.next(), if !paused => frame,
            _ = reading.changed() => continue,
            _ = super::stopped(&mut stop) => break,
            _ = ended_watch.changed() => {
                let graceful = *ended_watch.borrow();
                // A server that stopped reading does not read the close handshake either.
                if graceful == Some(true) && !paused {
                    // Give the peer a moment to answer our close, then hang up.
                    let _ = tokio::time::timeout(CLOSE_LINGER, async {
                        while let Some(Ok(_)) = stream.next().await {}
                    })
                    .await;
                }
                break;
            }
        };
        if silent.load(Ordering::SeqCst) {
            // Half-open: what arrives is never read by anyone.
            match frame {
                None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            }
        }
        let text = match frame {
            None | Some(Err(_)) => break,
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                close(close_code::NOT_JSON, "binary frames are not accepted");
                continue;
            }
            Some(Ok(Message::Close(_))) => {
                // Like the real server: answer the close, so the peer sees a clean close
                // handshake and not "no close frame received".
                let _ = outbox.send(Outgoing::CloseReply);
                peer_closed = true;
                break;
            }
            Some(Ok(_)) => continue,
        };
        let message = match FromAgent::parse(text.as_str()) {
            Ok(message) => message,
            Err(MessageError::NotJson(_)) => {
                close(close_code::NOT_JSON, "not valid JSON");
                continue;
            }
            Err(MessageError::Schema(error) | MessageError::BadAssign { error, .. }) => {
                let frame = ToAgent::ProtocolError {
                    id: uuid::Uuid::new_v4().to_string(),
                    error: error.to_string(),
                };
                let _ = outbox.send(Outgoing::Text(frame.to_json()));
                close(
                    close_code::SCHEMA_MISMATCH,
                    "frame does not match the schema",
                );
                continue;
            }
        };
        let Some(agent) = registered.clone() else {
            let FromAgent::Register(register) = message else {
                close(
                    close_code::SCHEMA_MISMATCH,
                    "the first frame must be REGISTER",
                );
                continue;
            };
            match shared.register(
                connection,
                &register.token,
                register.session_id,
                register.force,
                outbox.clone(),
                Arc::clone(&silent),
            ) {
                Registration::Accepted { agent, init } => {
                    let _ = outbox.send(Outgoing::Text(init.to_json()));
                    heartbeat = Some(tokio::spawn(heartbeats(
                        Arc::clone(&shared),
                        outbox.clone(),
                        Arc::clone(&answered),
                        Arc::clone(&silent),
                    )));
                    registered = Some(agent);
                }
                Registration::Refused(error, code) => {
                    if let Some(error) = error {
                        let frame = ToAgent::ProtocolError {
                            id: uuid::Uuid::new_v4().to_string(),
                            error,
                        };
                        let _ = outbox.send(Outgoing::Text(frame.to_json()));
                    }
                    close(code, "registration refused");
                }
            }
            continue;
        };
        match message {
            FromAgent::HeartbeatAnswer { .. } => {
                shared.heartbeat_answered();
                answered.notify_one();
            }
            FromAgent::Report(report) => match shared.report(&agent, &report) {
                ReportEffect::Recorded { ack } => {
                    if ack {
                        let frame = ToAgent::EventAck {
                            id: uuid::Uuid::new_v4().to_string(),
                            event: report.id.clone(),
                            task: Some(report.task.clone()),
                            seq: report.seq,
                        };
                        let _ = outbox.send(Outgoing::Text(frame.to_json()));
                    }
                }
                ReportEffect::UnknownTask => {
                    close(close_code::SCHEMA_MISMATCH, "YIELD for an unknown task");
                }
                ReportEffect::TooLong(kind) => {
                    tracing::warn!("local server: a {kind} report's text is longer than it stores");
                    close(
                        close_code::SCHEMA_MISMATCH,
                        "the report's text is too long to store",
                    );
                }
            },
            FromAgent::SessionInit(init) => shared.keep.session_init(&agent, &init),
            FromAgent::Keep(frame) => {
                if let Err(error) = shared.keep.frame(&agent, &frame) {
                    tracing::warn!("local server refuses a frame: {error}");
                    let frame = ToAgent::ProtocolError {
                        id: uuid::Uuid::new_v4().to_string(),
                        error,
                    };
                    let _ = outbox.send(Outgoing::Text(frame.to_json()));
                }
            }
            FromAgent::AssignRequest(request) => {
                shared.assign_request(&agent, &request, &outbox);
            }
            FromAgent::ControlRequest { id, control, task } => {
                let answer = shared.control_request(&agent, &id, control, &task);
                let _ = outbox.send(Outgoing::Text(answer.to_json()));
            }
            FromAgent::Register(_) => {
                close(close_code::SCHEMA_MISMATCH, "a second REGISTER");
            }
            FromAgent::Other(kind) if IGNORED_TYPES.contains(&kind.as_str()) => {
                tracing::debug!("local server ignores a {kind} frame");
            }
            FromAgent::Other(kind) => {
                let frame = ToAgent::ProtocolError {
                    id: uuid::Uuid::new_v4().to_string(),
                    error: format!("unknown message type '{kind}'"),
                };
                let _ = outbox.send(Outgoing::Text(frame.to_json()));
                close(close_code::SCHEMA_MISMATCH, "unknown message type");
            }
        }
    }
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    if peer_closed {
        let _ = tokio::time::timeout(CLOSE_LINGER, &mut writer).await;
    }
    writer.abort();
    if let Some(agent) = registered {
        shared.disconnected(&agent, connection, peer_closed);
    }
}

/// Sends HEARTBEAT every interval and closes with 3001 when one is not answered in time.
async fn heartbeats(
    shared: Arc<Shared>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    answered: Arc<Notify>,
    silent: Arc<AtomicBool>,
) {
    let (interval, timeout) = shared.heartbeat_timing();
    loop {
        tokio::time::sleep(interval).await;
        if silent.load(Ordering::SeqCst) {
            return;
        }
        let frame = ToAgent::Heartbeat {
            id: uuid::Uuid::new_v4().to_string(),
        };
        let waiting = answered.notified();
        if outbox.send(Outgoing::Text(frame.to_json())).is_err() {
            return;
        }
        if tokio::time::timeout(timeout, waiting).await.is_err() {
            tracing::warn!("local server: a heartbeat was not answered in {timeout:?}");
            let _ = outbox.send(Outgoing::Close(
                close_code::HEARTBEAT_NOT_RESPONDED,
                "heartbeat not answered".into(),
            ));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devserver::DevServerConfig;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A client closing first gets the close echoed (the Python agent logs "no close frame
    /// received" otherwise), and the connection ends.
    #[tokio::test]
    async fn answers_a_peers_close() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let shared = Shared::new(DevServerConfig::default());
        let (_stop, stopped) = watch::channel(false);
        let server_socket = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let served = tokio::spawn(serve(shared, server_socket, stopped));
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        client
            .send(Message::Close(Some(frame)))
            .await
            .expect("the close goes out");
        let answer = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("the server answers in time");
        match answer {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected the close echoed, got {other:?}"),
        }
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the connection ends")
            .expect("serve did not panic");
    }
}
