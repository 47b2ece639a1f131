//! `rekuest-host assign`: run one action on a rekuest server (a real one, or the local one of
//! `rekuest-host dev`) through its caller GraphQL, the `assign` mutation and the `mytasks`
//! subscription, printing the task's events as they happen and its returns on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use rekuest_host::agent::GraphqlClient;
use rekuest_host::definition::Definition;
use rekuest_host::error_chain::ErrorChain;
use rekuest_host::protocol::Endpoints;
use rekuest_host::text::{self, Lines, OneLine};
use rekuest_host::tls::ClientTls;

use super::args::build_args;
use super::call::HeldCritical;
use super::exit::Exit;
use super::my_tasks::MyTasks;

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
    /// Base URL of the rekuest server (`/graphql` is appended); by default the local server
    /// of `rekuest-host dev`.
    #[arg(long, env = "REKUEST_URL", default_value = "http://127.0.0.1:8090")]
    pub url: String,
    /// The caller's token (sent as `Authorization: Bearer`); the local server accepts any.
    #[arg(
        long,
        env = "REKUEST_TOKEN",
        default_value = "dev",
        hide_env_values = true
    )]
    pub token: String,
    /// Also trust the certificate authorities in this PEM file (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
}

/// What a task's event means for the caller.
pub enum Shown {
    /// More to come.
    Continue,
    /// The task is over; exit with this.
    Done(Exit),
}

/// Prints a task's events as they come: returns on stdout, everything else on stderr.
#[derive(Default)]
pub struct EventPrinter {
    held: HeldCritical,
}

impl EventPrinter {
    /// Prints one event.
    pub fn show(&mut self, kind: &str, fields: &Map<String, Value>) -> Shown {
        let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default();
        // The local server's own events carry `error`; rekuest's task events, `message`.
        let error = || match text("error") {
            "" => text("message"),
            error => error,
        };
        if kind == "CRITICAL" {
            if let Some(line) = std::mem::take(&mut self.held).unless(Some(error())) {
                eprintln!("{line}");
            }
        } else if let Some(line) = self.held.take() {
            eprintln!("{line}");
        }
        match kind {
            // rekuest calls the task bound to its agent BOUND.
            "ASSIGNED" | "BOUND" => {
                eprintln!("ASSIGNED");
                Shown::Continue
            }
            "YIELD" => {
                let returns = fields.get("returns").cloned().unwrap_or(Value::Null);
                println!("{}", text::json(&returns.to_string()));
                Shown::Continue
            }
            "LOG" => {
                // The rekuest subscription carries no log level.
                let level = fields.get("level").and_then(Value::as_str);
                let message = text("message");
                let line = format!("[{}] {}", OneLine(level.unwrap_or("LOG")), Lines(message));
                if HeldCritical::holds(level, message) {
                    self.held.hold(message, line);
                } else {
                    eprintln!("{line}");
                }
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
                Shown::Done(Exit::Completed)
            }
            "FAILED" => {
                eprintln!("FAILED: {}", Lines(error()));
                Shown::Done(Exit::of_failed(error()))
            }
            "CRITICAL" => {
                eprintln!("CRITICAL: {}", Lines(error()));
                Shown::Done(Exit::Crashed)
            }
            "CANCELLED" | "INTERRUPTED" => {
                eprintln!("{kind}");
                Shown::Done(Exit::Cancelled)
            }
            "DISCONNECTED" => {
                eprintln!("DISCONNECTED: the agent went away; the task's fate is unknown");
                Shown::Done(Exit::Crashed)
            }
            other => {
                eprintln!("{}", OneLine(other));
                Shown::Continue
            }
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

/// The definition fields `assign` reads, nested as deep as ports nest in practice.
const PORT_FIELDS: &str = "key kind nullable description label identifier default \
    choices { value label description }";

fn ports_selection() -> String {
    let mut selection = format!("{{ {PORT_FIELDS} }}");
    for _ in 0..4 {
        selection = format!("{{ {PORT_FIELDS} children {selection} }}");
    }
    selection
}

/// The active implementations and their actions' definitions.
fn offered_query() -> String {
    let ports = ports_selection();
    format!(
        "query Offered {{ implementations(filters: {{active: true}}) {{ interface \
         action {{ key version name kind description stateful args {ports} returns {ports} }} }} }}"
    )
}

const ASSIGN: &str = "mutation Assign($input: AssignInput!) { assign(input: $input) { id } }";
const CANCEL: &str = "mutation Cancel($input: CancelInput!) { cancel(input: $input) { id } }";

/// Runs `assign`.
pub async fn run(args: &AssignArgs) -> anyhow::Result<ExitCode> {
    let endpoints = Endpoints::from_base(&args.url)?;
    let tls = ClientTls::new(&args.ca_certs)?;
    let client = GraphqlClient::new(endpoints.graphql.clone(), args.token.clone(), &tls)?;
    let data = client
        .request("listing the offered actions", &offered_query(), json!({}))
        .await?;
    let offered: Vec<Offered> = data["implementations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|implementation| {
            let key = implementation["interface"].as_str()?.to_string();
            Some(offered(key, implementation["action"].clone()))
        })
        .collect();
    let task_args = match args_for(
        &offered,
        &args.action,
        args.args_json.as_deref(),
        &args.args,
    ) {
        Ok(task_args) => task_args,
        Err(error) => {
            eprintln!("error: {}", Lines(&ErrorChain(&*error).to_string()));
            return Ok(Exit::Usage.into());
        }
    };
    // Subscribed before assigning, so no event is missed.
    let mut feed = MyTasks::subscribe(&endpoints.ws("graphql"), &args.token, &tls).await?;
    let input = json!({"input": {
        "interface": args.action,
        "args": task_args,
        "reference": uuid::Uuid::new_v4().to_string(),
        "capture": false,
    }});
    let data = client
        .request("assigning the task (assign)", ASSIGN, input)
        .await?;
    let task = data["assign"]["id"]
        .as_str()
        .context("the server's answer to assign has no task id")?
        .to_string();
    eprintln!("task {} assigned", OneLine(&task));
    let mut interrupts = 0;
    let mut printer = EventPrinter::default();
    loop {
        let event = tokio::select! {
            event = feed.next() => event?,
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts > 1 {
                    return Ok(Exit::Cancelled.into());
                }
                eprintln!("cancelling the task (Ctrl-C again to stop waiting)");
                client
                    .request("cancelling the task (cancel)", CANCEL, json!({"input": {"task": task}}))
                    .await?;
                continue;
            }
        };
        if event.task != task {
            // Another task of the same token.
            continue;
        }
        if let Shown::Done(exit) = printer.show(&event.kind, &event.fields) {
            return Ok(exit.into());
        }
    }
}
