//! The one place that knows the agent's token: a fixed token given by the operator, or a
//! logged-in deployment client whose access tokens are renewed. Registration, the agent
//! socket and outbound service calls ask it for the current token; nothing else keeps one.

use std::fmt;
use std::sync::Arc;

use crate::error_chain::ErrorChain;
use crate::login::{LoginError, Service, Session};

/// A cheap, cloneable handle to the agent's token. Its `Debug` never shows a token.
#[derive(Clone)]
pub struct Credentials {
    source: Arc<Source>,
}

enum Source {
    Fixed(String),
    Deployment(Box<Session>),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.source {
            Source::Fixed(_) => f.write_str("Credentials::Fixed(<redacted>)"),
            Source::Deployment(session) => write!(f, "Credentials::Deployment({session:?})"),
        }
    }
}

impl Credentials {
    /// A token given as it is (`--token`); it is never renewed.
    pub fn fixed(token: String) -> Self {
        Credentials {
            source: Arc::new(Source::Fixed(token)),
        }
    }

    /// The access tokens of a logged-in deployment client.
    pub fn deployment(session: Session) -> Self {
        Credentials {
            source: Arc::new(Source::Deployment(Box::new(session))),
        }
    }

    /// The token to send now: fetched or renewed if the last one is about to expire.
    pub async fn current_token(&self) -> Result<String, LoginError> {
        match &*self.source {
            Source::Fixed(token) => Ok(token.clone()),
            Source::Deployment(session) => session.current_token().await,
        }
    }

    /// After `rejected` was refused (HTTP 401/403, `UNAUTHENTICATED`, 3003 on REGISTER): a
    /// different token to try, or `None` when there is none (a fixed token).
    pub async fn renew(&self, rejected: &str) -> Result<Option<String>, LoginError> {
        match &*self.source {
            Source::Fixed(_) => Ok(None),
            Source::Deployment(session) => {
                let token = session.renew(rejected).await?;
                Ok((token != rejected).then_some(token))
            }
        }
    }

    /// The services the deployment gave this client, with their base URLs (empty for a
    /// fixed token): where the agent's token may be sent.
    pub fn services(&self) -> Vec<Service> {
        match &*self.source {
            Source::Fixed(_) => Vec::new(),
            Source::Deployment(session) => session.services(),
        }
    }

    /// The logged-in session, if any.
    pub fn session(&self) -> Option<&Session> {
        match &*self.source {
            Source::Fixed(_) => None,
            Source::Deployment(session) => Some(session),
        }
    }
}

impl From<String> for Credentials {
    fn from(token: String) -> Self {
        Credentials::fixed(token)
    }
}

/// Guests' requests to Arkitekt service origins carry the agent's current access token.
#[async_trait::async_trait]
impl crate::runtime::http::AgentCredentials for Credentials {
    async fn access_token(&self) -> Result<String, String> {
        self.current_token()
            .await
            .map_err(|error| ErrorChain(&error).to_string())
    }
}
