//! Registration over GraphQL: `ensureAgent`, then `implementAgent` only when the stored
//! definition hash differs from ours.

use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::credentials::Credentials;
use crate::definition::{Definition, DefinitionInput, dependency_input};
use crate::login::LoginError;
use crate::tls::{ClientTls, explain_certificate_error, server_of};

/// How long one GraphQL request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests sent with a renewed token after the server refused the previous one.
const AUTH_RETRIES: usize = 2;

const ENSURE_AGENT: &str = "mutation EnsureAgent($input: AgentInput!) { ensureAgent(input: $input) { id hash name connected } }";
const IMPLEMENT_AGENT: &str = "mutation ImplementAgent($input: ImplementAgentInput!) { implementAgent(input: $input) { id hash } }";

/// One action as registered: its interface (the action key) and definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Implementation {
    /// What the server echoes in ASSIGN.
    pub interface: String,
    /// The component's self-described definition.
    pub definition: Definition,
}

/// Why registration failed; each says what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The request did not get an answer.
    #[error("{attempt}: could not reach {url}")]
    Unreachable {
        /// What was being attempted.
        attempt: &'static str,
        /// The GraphQL endpoint.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The server's TLS certificate was refused (the message says why and how to fix it).
    #[error("{attempt}: {explanation}")]
    Tls {
        /// What was being attempted.
        attempt: &'static str,
        /// Which server, why, and the fix.
        explanation: String,
    },
    /// The server answered with an HTTP error.
    #[error("{attempt}: {url} answered HTTP {status}: {body}")]
    Http {
        /// What was being attempted.
        attempt: &'static str,
        /// The GraphQL endpoint.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The server answered with GraphQL errors (shown verbatim).
    #[error("{attempt}: the server answered: {messages}")]
    Graphql {
        /// What was being attempted.
        attempt: &'static str,
        /// The error messages, joined.
        messages: String,
    },
    /// The server refused the token (HTTP 401/403 or GraphQL `UNAUTHENTICATED`), also
    /// after renewing it where it can be renewed.
    #[error("{attempt}: the server refused the token: {messages}")]
    Unauthenticated {
        /// What was being attempted.
        attempt: &'static str,
        /// The server's messages.
        messages: String,
    },
    /// No token could be had from the deployment.
    #[error("{attempt}: no access token")]
    Credentials {
        /// What was being attempted.
        attempt: &'static str,
        /// Why.
        source: LoginError,
    },
    /// The answer was not the expected shape.
    #[error("{attempt}: unexpected answer from the server: {reason}")]
    Response {
        /// What was being attempted.
        attempt: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl RegistrationError {
    /// Whether trying again later may work: the server was unreachable, or answered with a
    /// server-side HTTP error (5xx, 429, 408: down, starting, or overloaded). A refused TLS
    /// certificate is not: it needs the operator.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistrationError::Unreachable { .. } => true,
            RegistrationError::Http { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            RegistrationError::Credentials { source, .. } => source.is_transient(),
            RegistrationError::Tls { .. }
            | RegistrationError::Graphql { .. }
            | RegistrationError::Unauthenticated { .. }
            | RegistrationError::Response { .. } => false,
        }
    }
}

/// The agent as `ensureAgent` returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredAgent {
    /// The agent's id on the server.
    pub id: String,
    /// The definition hash stored on the server (empty: none yet).
    pub hash: String,
    /// Whether the server counts a connection as live for the agent (another host, or a
    /// connection it has not yet noticed is dead).
    pub connected: bool,
}

/// What registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The agent's id on the server.
    pub agent_id: String,
    /// Our definition hash.
    pub hash: String,
    /// Whether implementations were sent (false: the stored hash already matched).
    pub implemented: bool,
}

/// A stable digest of the implementations: sha256 of their canonical JSON (keys sorted,
/// implementations ordered by interface).
pub fn definition_hash(implementations: &[Implementation]) -> String {
    let mut sorted: Vec<&Implementation> = implementations.iter().collect();
    sorted.sort_by(|a, b| a.interface.cmp(&b.interface));
    let mut canonical = String::new();
    canonical.push('[');
    for (index, implementation) in sorted.iter().enumerate() {
        if index > 0 {
            canonical.push(',');
        }
        let mut value = json!({
            "interface": implementation.interface,
            "definition": DefinitionInput::from(&implementation.definition),
        });
        // Only when declared, so hashes of actions without any stay as they were.
        if !implementation.definition.dependencies.is_empty() {
            value["dependencies"] = json!(implementation.definition.dependencies);
        }
        if !implementation.definition.locks.is_empty() {
            value["locks"] = json!(implementation.definition.locks);
        }
        if !implementation.definition.states.is_empty() {
            value["states"] = json!(implementation.definition.states);
        }
        write_canonical(&value, &mut canonical);
    }
    canonical.push(']');
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(&object[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Speaks GraphQL to one deployment with the agent's current token.
#[derive(Debug, Clone)]
pub struct GraphqlClient {
    http: reqwest::Client,
    url: Url,
    credentials: Credentials,
}

impl GraphqlClient {
    /// A client for the endpoint `url`, authorized by `credentials` (a fixed token or a
    /// deployment login), trusting what `tls` trusts.
    pub fn new(
        url: Url,
        credentials: impl Into<Credentials>,
        tls: &ClientTls,
    ) -> Result<Self, RegistrationError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.rustls_config())
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("rekuest-host/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RegistrationError::Unreachable {
                attempt: "setting up the HTTP client",
                url: url.to_string(),
                source,
            })?;
        Ok(GraphqlClient {
            http,
            url,
            credentials: credentials.into(),
        })
    }

    /// A request that got no answer; a refused certificate is explained.
    fn unreachable(&self, attempt: &'static str, source: reqwest::Error) -> RegistrationError {
        match explain_certificate_error(&server_of(&self.url), &source) {
            Some(explanation) => RegistrationError::Tls {
                attempt,
                explanation,
            },
            None => RegistrationError::Unreachable {
                attempt,
                url: self.url.to_string(),
                source,
            },
        }
    }

    /// Runs `query` with `variables`; returns `data`. A refused token is renewed and the
    /// request sent again (a few times at most).
    pub async fn request(
        &self,
        attempt: &'static str,
        query: &str,
        variables: Value,
    ) -> Result<Value, RegistrationError> {
        let credentials_error = |source| RegistrationError::Credentials { attempt, source };
        let mut token = self
            .credentials
            .current_token()
            .await
            .map_err(credentials_error)?;
        let mut retries = 0;
        loop {
            match self.request_with(attempt, query, &variables, &token).await {
                Err(RegistrationError::Unauthenticated { messages, .. })
                    if retries < AUTH_RETRIES =>
                {
                    match self
                        .credentials
                        .renew(&token)
                        .await
                        .map_err(credentials_error)?
                    {
                        Some(renewed) => token = renewed,
                        None => {
                            return Err(RegistrationError::Unauthenticated { attempt, messages });
                        }
                    }
                    retries += 1;
                }
                other => return other,
            }
        }
    }

    async fn request_with(
        &self,
        attempt: &'static str,
        query: &str,
        variables: &Value,
        token: &str,
    ) -> Result<Value, RegistrationError> {
        let response = self
            .http
            .post(self.url.clone())
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|source| self.unreachable(attempt, source))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| RegistrationError::Unreachable {
                attempt,
                url: self.url.to_string(),
                source,
            })?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let errors = body
            .as_ref()
            .and_then(|body| body.get("errors"))
            .and_then(Value::as_array)
            .filter(|errors| !errors.is_empty());
        let unauthenticated = errors.is_some_and(|errors| {
            errors.iter().any(|error| {
                error.pointer("/extensions/code").and_then(Value::as_str) == Some("UNAUTHENTICATED")
            })
        });
        if status.as_u16() == 401 || status.as_u16() == 403 || unauthenticated {
            let messages = match errors {
                Some(errors) => messages(errors),
                None => format!("HTTP {status}"),
            };
            return Err(RegistrationError::Unauthenticated { attempt, messages });
        }
        if let Some(errors) = errors {
            return Err(RegistrationError::Graphql {
                attempt,
                messages: messages(errors),
            });
        }
        if !status.is_success() {
            return Err(RegistrationError::Http {
                attempt,
                url: self.url.to_string(),
                status: status.as_u16(),
                body: text.chars().take(500).collect(),
            });
        }
        body.and_then(|mut body| body.get_mut("data").map(Value::take))
            .filter(|data| !data.is_null())
            .ok_or_else(|| RegistrationError::Response {
                attempt,
                reason: format!("no data in {}", text.chars().take(200).collect::<String>()),
            })
    }

    /// `ensureAgent`: the token's agent, created on first use. The agent is the token's
    /// client; `name` only labels it.
    pub async fn ensure(&self, name: &str) -> Result<EnsuredAgent, RegistrationError> {
        let attempt = "ensuring the agent (ensureAgent)";
        let data = self
            .request(attempt, ENSURE_AGENT, json!({"input": {"name": name}}))
            .await?;
        let agent = &data["ensureAgent"];
        Ok(EnsuredAgent {
            id: string_field(agent, "id", attempt)?,
            hash: agent
                .get("hash")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            connected: agent
                .get("connected")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// `implementAgent` unless the hash `agent` has stored is already ours.
    pub async fn implement(
        &self,
        agent: &EnsuredAgent,
        name: &str,
        implementations: &[Implementation],
    ) -> Result<Registered, RegistrationError> {
        let hash = definition_hash(implementations);
        if agent.hash == hash {
            tracing::info!(agent = %agent.id, "definitions unchanged (hash {hash}); nothing to register");
            return Ok(Registered {
                agent_id: agent.id.clone(),
                hash,
                implemented: false,
            });
        }
        let attempt = "registering the actions (implementAgent)";
        let count = implementations.len();
        let input = implement_input(name, &hash, implementations);
        let data = self
            .request(attempt, IMPLEMENT_AGENT, json!({ "input": input }))
            .await?;
        let agent_id = string_field(&data["implementAgent"], "id", attempt)?;
        tracing::info!(agent = %agent_id, "registered {count} action(s) (hash {hash})");
        Ok(Registered {
            agent_id,
            hash,
            implemented: true,
        })
    }
}

/// `implementAgent`'s input: every action's interface, its definition as the server stores it,
/// its dependency slots and (when it holds any) its locks; the agent's states and locks.
fn implement_input(name: &str, hash: &str, implementations: &[Implementation]) -> Value {
    let (states, locks) = super::keep::declared(implementations);
    let implementations: Vec<Value> = implementations
        .iter()
        .map(|implementation| {
            let mut value = json!({
                "interface": implementation.interface,
                "definition": DefinitionInput::from(&implementation.definition),
                "dependencies": implementation
                    .definition
                    .dependencies
                    .iter()
                    .map(dependency_input)
                    .collect::<Vec<_>>(),
            });
            if !implementation.definition.locks.is_empty() {
                value["locks"] = json!(implementation.definition.locks);
            }
            value
        })
        .collect();
    let mut input = json!({"name": name, "hash": hash, "implementations": implementations});
    if !states.is_empty() {
        input["states"] = Value::Array(states);
    }
    if !locks.is_empty() {
        input["locks"] = Value::Array(locks);
    }
    input
}

/// The `message`s of GraphQL errors, joined.
fn messages(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|error| match error.get("message").and_then(Value::as_str) {
            Some(message) => message.to_string(),
            None => error.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn string_field(
    object: &Value,
    field: &str,
    attempt: &'static str,
) -> Result<String, RegistrationError> {
    match object.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        _ => Err(RegistrationError::Response {
            attempt,
            reason: format!("no `{field}` in {object}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn implementation(key: &str, description: &str) -> Implementation {
        Implementation {
            interface: key.to_string(),
            definition: serde_json::from_value(json!({
                "key": key, "version": "1", "name": key, "kind": "FUNCTION",
                "description": description,
                "args": [{"key": "a", "kind": "INT", "nullable": false, "default": {"z": 1, "a": 2}}],
                "returns": []
            }))
            .expect("definition"),
        }
    }

    #[test]
    fn the_hash_is_stable_and_order_independent() {
        let a = implementation("add", "adds");
        let b = implementation("sub", "subtracts");
        let first = definition_hash(&[a.clone(), b.clone()]);
        assert_eq!(first, definition_hash(&[b, a.clone()]));
        assert_eq!(first.len(), 64);
        let changed = definition_hash(&[a, implementation("sub", "subtracts!")]);
        assert_ne!(first, changed);
    }

    /// The registration of the guest SDK's pinned self-description (its own tests pin the bytes
    /// `describe` returns, with dependencies, locks and a state): the definition hash and
    /// `implementAgent`'s input stay exactly as they were, so an unchanged component
    /// re-registers as unchanged.
    #[test]
    fn the_registration_of_the_pinned_description_is_pinned() {
        let described = include_str!("../../../guest-sdk/tests/describe.json");
        let implementations: Vec<Implementation> = crate::definition::parse_definitions(described)
            .expect("the SDK's description is valid")
            .into_iter()
            .map(|definition| Implementation {
                interface: definition.key.clone(),
                definition,
            })
            .collect();
        let hash = definition_hash(&implementations);
        let input = implement_input("pinned", &hash, &implementations);
        let input = serde_json::to_string_pretty(&input).expect("JSON");
        assert_eq!(
            hash,
            "bf741082b083542b56815798735edd82a15f91722c647e74196cd415163cd5e1"
        );
        assert_eq!(
            input,
            include_str!("../../tests/implement_agent.json").trim_end()
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut out = String::new();
        write_canonical(
            &json!({"b": [1, {"d": null, "c": "x"}], "a": true}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":true,"b":[1,{"c":"x","d":null}]}"#);
    }
}
