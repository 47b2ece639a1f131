//! The endpoints of a deployment, derived from its one base URL.

use reqwest::Url;

/// Why a base URL is unusable.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL.
    #[error("'{url}' is not a URL: {reason}")]
    Invalid {
        /// What was given.
        url: String,
        /// The parser's reason.
        reason: String,
    },
    /// Not http or https.
    #[error(
        "'{url}' must start with http:// or https:// (the agent socket becomes ws:// or wss://)"
    )]
    Scheme {
        /// What was given.
        url: String,
    },
}

/// Where a rekuest server answers, e.g. for base `https://host/rekuest`:
/// `https://host/rekuest/graphql` and `wss://host/rekuest/agi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The base URL, without a trailing slash.
    pub base: Url,
    /// The GraphQL endpoint (`{base}/graphql`): registration and keep mutations are POSTed here.
    pub graphql: Url,
    /// The agent WebSocket (`ws(s)://{base}/agi`): `wss` when the base is `https`.
    pub agent_socket: Url,
}

impl Endpoints {
    /// Derives the endpoints of the deployment at `base` (with or without a path prefix).
    pub fn from_base(base: &str) -> Result<Self, EndpointError> {
        let trimmed = base.trim();
        let mut url = Url::parse(trimmed).map_err(|error| EndpointError::Invalid {
            url: trimmed.to_string(),
            reason: error.to_string(),
        })?;
        let socket_scheme = match url.scheme() {
            "http" => "ws",
            "https" => "wss",
            _ => {
                return Err(EndpointError::Scheme {
                    url: trimmed.to_string(),
                });
            }
        };
        let path = url.path().trim_end_matches('/').to_string();
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        let graphql = url.join_path("graphql");
        let mut agent_socket = url.join_path("agi");
        // http(s) -> ws(s) always succeeds for a URL with a host.
        agent_socket
            .set_scheme(socket_scheme)
            .map_err(|()| EndpointError::Scheme {
                url: trimmed.to_string(),
            })?;
        Ok(Endpoints {
            base: url,
            graphql,
            agent_socket,
        })
    }

    /// `{base}/{path}` with the base's scheme.
    pub fn http(&self, path: &str) -> Url {
        self.base.join_path(path)
    }

    /// The WebSocket URL of `path` under the base (`ws(s)://{base}/{path}`).
    pub fn ws(&self, path: &str) -> Url {
        let mut url = self.agent_socket.clone();
        url.set_path(self.base.path().trim_end_matches('/'));
        url.join_path(path)
    }
}

trait JoinPath {
    fn join_path(&self, segment: &str) -> Url;
}

impl JoinPath for Url {
    fn join_path(&self, segment: &str) -> Url {
        let mut url = self.clone();
        let path = format!("{}/{segment}", self.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_endpoints_with_and_without_prefix() {
        let plain = Endpoints::from_base("http://localhost:8090").expect("valid");
        assert_eq!(plain.graphql.as_str(), "http://localhost:8090/graphql");
        assert_eq!(plain.agent_socket.as_str(), "ws://localhost:8090/agi");
        let prefixed = Endpoints::from_base("https://lab.example/rekuest/").expect("valid");
        assert_eq!(
            prefixed.graphql.as_str(),
            "https://lab.example/rekuest/graphql"
        );
        assert_eq!(
            prefixed.agent_socket.as_str(),
            "wss://lab.example/rekuest/agi"
        );
        assert_eq!(
            prefixed.ws("graphql").as_str(),
            "wss://lab.example/rekuest/graphql"
        );
        assert_eq!(
            prefixed.http("dev/x").as_str(),
            "https://lab.example/rekuest/dev/x"
        );
    }

    #[test]
    fn refuses_other_schemes() {
        assert!(matches!(
            Endpoints::from_base("ftp://x"),
            Err(EndpointError::Scheme { .. })
        ));
        assert!(matches!(
            Endpoints::from_base("localhost:8090"),
            Err(EndpointError::Scheme { .. }) | Err(EndpointError::Invalid { .. })
        ));
        assert!(Endpoints::from_base("not a url").is_err());
    }
}
