//! The dev caller API at `/dev/tasks`: list actions, assign one, stream its events, steer it.
//!
//! JSON text frames. Caller → server: `{"type":"ACTIONS"}`,
//! `{"type":"ASSIGN","action":"add","args":{..},"step":null}`,
//! `{"type":"CANCEL"|"INTERRUPT"|"PAUSE"|"RESUME","task":"1","step":false}`.
//! Server → caller: `{"type":"ACTIONS","actions":[..]}`, `{"type":"ASSIGNED","task":"1"}`,
//! `{"type":"EVENT","task":"1","kind":"YIELD",..}`, `{"type":"ERROR","error":".."}`. The socket
//! closes after the assigned task's terminal event.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::state::{Control, OfferedAction, ServerEvent, Shared};

/// A frame from a dev caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallerRequest {
    /// List the actions agents offer.
    Actions,
    /// Run `action` with `args`.
    Assign {
        /// The action's interface (key).
        action: String,
        /// The args by port key.
        #[serde(default)]
        args: Map<String, Value>,
        /// Start stepping (stop at the first breakpoint).
        #[serde(default)]
        step: Option<bool>,
    },
    /// Cancel a task.
    Cancel {
        /// The task.
        task: String,
    },
    /// Interrupt a task.
    Interrupt {
        /// The task.
        task: String,
    },
    /// Pause a task.
    Pause {
        /// The task.
        task: String,
    },
    /// Resume a task.
    Resume {
        /// The task.
        task: String,
        /// Step to the next breakpoint only.
        #[serde(default)]
        step: bool,
    },
}

/// A frame to a dev caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallerReply {
    /// The offered actions.
    Actions {
        /// Every implementation of every agent.
        actions: Vec<Value>,
    },
    /// The task was created and sent to its agent.
    Assigned {
        /// Its id.
        task: String,
    },
    /// Something happened to the task.
    Event {
        /// The task.
        task: String,
        /// The event, flattened (`kind`, `returns`, `message`, ...).
        #[serde(flatten)]
        event: Map<String, Value>,
    },
    /// A control message was sent to the task's agent.
    Controlled {
        /// The task.
        task: String,
    },
    /// A request was refused.
    Error {
        /// Why.
        error: String,
    },
}

fn offered_json(actions: Vec<OfferedAction>) -> Vec<Value> {
    actions
        .into_iter()
        .filter_map(|action| serde_json::to_value(action).ok())
        .collect()
}

fn event_reply(task: &str, event: &ServerEvent) -> CallerReply {
    let event = match serde_json::to_value(event) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    CallerReply::Event {
        task: task.to_string(),
        event,
    }
}

/// Serves one dev caller until it leaves or its task ends.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    socket: WebSocketStream<S>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = socket.split();
    let mut watching: Option<(String, mpsc::UnboundedReceiver<ServerEvent>)> = None;
    loop {
        let reply = tokio::select! {
            _ = super::stopped(&mut stop) => break,
            event = next_event(&mut watching) => {
                let Some((task, event)) = event else { continue };
                let terminal = event.is_terminal();
                let reply = event_reply(&task, &event);
                if send(&mut sink, &reply).await.is_err() {
                    break;
                }
                if terminal {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
                continue;
            }
            frame = stream.next() => match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<CallerRequest>(text.as_str()) {
                        Ok(request) => answer(&shared, request, &mut watching),
                        Err(error) => CallerReply::Error { error: format!("bad request: {error}") },
                    }
                }
                Some(Ok(_)) => continue,
            },
        };
        let history = match &reply {
            CallerReply::Assigned { task } => match shared.watch(task) {
                Some((history, receiver)) => {
                    watching = Some((task.clone(), receiver));
                    history
                }
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        if send(&mut sink, &reply).await.is_err() {
            break;
        }
        if let CallerReply::Assigned { task } = &reply {
            for event in history {
                if send(&mut sink, &event_reply(task, &event)).await.is_err() {
                    return;
                }
                if event.is_terminal() {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
            }
        }
    }
}

async fn next_event(
    watching: &mut Option<(String, mpsc::UnboundedReceiver<ServerEvent>)>,
) -> Option<(String, ServerEvent)> {
    let Some((task, receiver)) = watching else {
        return std::future::pending().await;
    };
    match receiver.recv().await {
        Some(event) => Some((task.clone(), event)),
        None => {
            *watching = None;
            None
        }
    }
}

fn answer(
    shared: &Shared,
    request: CallerRequest,
    watching: &mut Option<(String, mpsc::UnboundedReceiver<ServerEvent>)>,
) -> CallerReply {
    let controlled = |task: String, control: Control| match shared.control(&task, control) {
        Ok(()) => CallerReply::Controlled { task },
        Err(error) => CallerReply::Error { error },
    };
    match request {
        CallerRequest::Actions => CallerReply::Actions {
            actions: offered_json(shared.actions()),
        },
        CallerRequest::Assign { action, args, step } => {
            if watching.is_some() {
                CallerReply::Error {
                    error: "this connection already follows a task".into(),
                }
            } else {
                match shared.assign(&action, args, step) {
                    Ok(task) => CallerReply::Assigned { task },
                    Err(error) => CallerReply::Error { error },
                }
            }
        }
        CallerRequest::Cancel { task } => controlled(task, Control::Cancel),
        CallerRequest::Interrupt { task } => controlled(task, Control::Interrupt),
        CallerRequest::Pause { task } => controlled(task, Control::Pause),
        CallerRequest::Resume { task, step } => controlled(task, Control::Resume(step)),
    }
}

async fn send<S>(
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    reply: &CallerReply,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = serde_json::to_string(reply).unwrap_or_default();
    sink.send(Message::text(text)).await
}
