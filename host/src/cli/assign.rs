//! `rekuest-host assign`: run one action through a local server (`rekuest-host dev`), printing
//! the task's events as they happen and its returns on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::Message;

use rekuest_host::definition::Definition;
use rekuest_host::devserver::{CallerReply, CallerRequest};
use rekuest_host::protocol::Endpoints;
use rekuest_host::text::{self, Lines, OneLine};
use rekuest_host::tls::{ClientTls, explain_certificate_error, server_of};

use super::args::build_args;
use super::call::{EXIT_BAD_ARGS, EXIT_CANCELLED, EXIT_CRITICAL, EXIT_FAILED};

/// Arguments of `assign`.
#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The action's key.
    pub action: String,
    /// Arguments as key=value, read by each port's kind (JSON for lists, dicts, models).
    #[arg(value_name = "KEY=VALUE")]
    pub args: Vec<String>,
    /// Arguments as one JSON object (key=value words override its keys).
    #[arg(long, value_name = "JSON")]
    pub args_json: Option<String>,
    /// Base URL of the local server started by `rekuest-host dev`.
    #[arg(long, env = "REKUEST_DEV_URL", default_value = "http://127.0.0.1:8090")]
    pub url: String,
    /// Also trust the certificate authorities in this PEM file (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
}

/// What a task's event means for the caller.
pub enum Shown {
    /// More to come.
    Continue,
    /// The task is over; exit with this.
    Done(ExitCode),
}

/// Prints one event: returns on stdout, everything else on stderr.
pub fn show_event(kind: &str, fields: &Map<String, Value>) -> Shown {
    let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default();
    match kind {
        "YIELD" => {
            let returns = fields.get("returns").cloned().unwrap_or(Value::Null);
            println!("{}", text::json(&returns.to_string()));
            Shown::Continue
        }
        "LOG" => {
            eprintln!("[{}] {}", OneLine(text("level")), Lines(text("message")));
            Shown::Continue
        }
        "PROGRESS" => {
            let progress = fields
                .get("progress")
                .and_then(Value::as_i64)
                .map(|progress| format!("{progress}% "))
                .unwrap_or_default();
            eprintln!("progress {progress}{}", OneLine(text("message")));
            Shown::Continue
        }
        "COMPLETED" => {
            eprintln!("COMPLETED");
            Shown::Done(ExitCode::SUCCESS)
        }
        "FAILED" => {
            eprintln!("FAILED: {}", Lines(text("error")));
            Shown::Done(ExitCode::from(EXIT_FAILED))
        }
        "CRITICAL" => {
            eprintln!("CRITICAL: {}", Lines(text("error")));
            Shown::Done(ExitCode::from(EXIT_CRITICAL))
        }
        "CANCELLED" | "INTERRUPTED" => {
            eprintln!("{kind}");
            Shown::Done(ExitCode::from(EXIT_CANCELLED))
        }
        "DISCONNECTED" => {
            eprintln!("DISCONNECTED: the agent went away; the task's fate is unknown");
            Shown::Done(ExitCode::from(EXIT_CRITICAL))
        }
        other => {
            eprintln!("{}", OneLine(other));
            Shown::Continue
        }
    }
}

/// An action a server offers: its key, and its definition or why that cannot be read.
pub type Offered = (String, Result<Definition, String>);

/// Reads one offered action's definition as the server lists it (tolerating fields this host
/// does not model, e.g. those of the Python agent).
pub fn offered(key: String, definition: Value) -> Offered {
    let definition = Definition::from_server(definition).map_err(|error| error.to_string());
    (key, definition)
}

/// Finds `action` among the offered ones and builds its args from the words.
pub fn args_for(
    offered: &[Offered],
    action: &str,
    json: Option<&str>,
    words: &[String],
) -> anyhow::Result<Map<String, Value>> {
    let Some((_, definition)) = offered.iter().find(|(key, _)| key == action) else {
        let mut known: Vec<&str> = offered.iter().map(|(key, _)| key.as_str()).collect();
        known.sort_unstable();
        bail!(
            "no connected agent offers '{action}'; offered: {}",
            if known.is_empty() {
                "(nothing yet: is `rekuest-host dev` running?)".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    match definition {
        Ok(definition) => build_args(definition, json, words),
        Err(reason) => bail!("the server's definition of '{action}' cannot be read: {reason}"),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn request(socket: &mut Socket, request: &CallerRequest) -> anyhow::Result<()> {
    socket
        .send(Message::text(serde_json::to_string(request)?))
        .await
        .context("the local server went away")
}

async fn reply(socket: &mut Socket) -> anyhow::Result<Option<CallerReply>> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .map(Some)
                    .context("the local server sent something unexpected");
            }
            Some(Ok(Message::Close(_))) | None => return Ok(None),
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                return Err(error).context("the connection to the local server broke");
            }
        }
    }
}

/// Runs `assign`.
pub async fn run(args: &AssignArgs) -> anyhow::Result<ExitCode> {
    let endpoints = Endpoints::from_base(&args.url)?;
    let url = endpoints.ws("dev/tasks");
    let tls = ClientTls::new(&args.ca_certs)?;
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        None,
        true,
        Some(tls.websocket_connector()),
    );
    let (mut socket, _) = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Err(_) => bail!("{url} did not answer within 10s"),
        Ok(Ok(connected)) => connected,
        Ok(Err(error)) => match explain_certificate_error(&server_of(&url), &error) {
            Some(explanation) => bail!("cannot connect to {url}: {explanation}"),
            None => {
                return Err(error).with_context(|| {
                    format!(
                        "cannot reach a local server at {url}; start one with \
                         `rekuest-host dev COMPONENT...`"
                    )
                });
            }
        },
    };
    request(&mut socket, &CallerRequest::Actions).await?;
    let offered = match reply(&mut socket).await? {
        Some(CallerReply::Actions { actions }) => actions
            .into_iter()
            .filter(|action| action["connected"] == Value::Bool(true))
            .filter_map(|mut action| {
                let key = action["interface"].as_str()?.to_string();
                Some(offered(key, action["definition"].take()))
            })
            .collect::<Vec<Offered>>(),
        other => bail!("the local server answered {other:?} to a request for its actions"),
    };
    let task_args = match args_for(
        &offered,
        &args.action,
        args.args_json.as_deref(),
        &args.args,
    ) {
        Ok(task_args) => task_args,
        Err(error) => {
            eprintln!("error: {}", Lines(&format!("{error:#}")));
            return Ok(ExitCode::from(EXIT_BAD_ARGS));
        }
    };
    request(
        &mut socket,
        &CallerRequest::Assign {
            action: args.action.clone(),
            args: task_args,
            step: None,
        },
    )
    .await?;
    let mut task = None;
    let mut interrupts = 0;
    loop {
        let next = tokio::select! {
            next = reply(&mut socket) => next?,
            _ = tokio::signal::ctrl_c(), if task.is_some() => {
                interrupts += 1;
                if interrupts > 1 {
                    return Ok(ExitCode::from(EXIT_CANCELLED));
                }
                eprintln!("cancelling the task (Ctrl-C again to stop waiting)");
                if let Some(task) = &task {
                    request(&mut socket, &CallerRequest::Cancel { task: String::clone(task) }).await?;
                }
                continue;
            }
        };
        match next {
            None => bail!("the local server closed the connection before the task ended"),
            Some(CallerReply::Assigned { task: id }) => {
                eprintln!("task {} assigned", OneLine(&id));
                task = Some(id);
            }
            Some(CallerReply::Event { event, .. }) => {
                let kind = event
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if let Shown::Done(code) = show_event(&kind, &event) {
                    return Ok(code);
                }
            }
            Some(CallerReply::Error { error }) => bail!("{error}"),
            Some(CallerReply::Controlled { .. }) | Some(CallerReply::Actions { .. }) => {}
        }
    }
}
