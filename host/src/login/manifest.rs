//! How this host describes itself to a deployment: the fakts manifest, with a node id that
//! stays the same on one machine.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The rekuest requirement every manifest carries.
pub const REKUEST_KEY: &str = "rekuest";
/// The service identifier of rekuest.
pub const REKUEST_SERVICE: &str = "live.arkitekt.rekuest";

/// One service the app needs from the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The key its instance is listed under in the claimed configuration.
    pub key: String,
    /// The service identifier, e.g. `live.arkitekt.rekuest`.
    pub service: String,
    /// Whether the app works without it.
    #[serde(default)]
    pub optional: bool,
    /// What it is needed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The app's self-description (fakts `Manifest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The app's identifier (no `/`).
    pub identifier: String,
    /// The app's version.
    pub version: String,
    /// OAuth2 scopes the client asks for.
    pub scopes: Vec<String>,
    /// Services it needs; always includes rekuest.
    pub requirements: Vec<Requirement>,
    /// This machine, the same across restarts.
    pub node_id: String,
    /// What the app is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Manifest {
    /// The manifest of `identifier` (default `rekuest-host`) at `version` (default this
    /// program's), asking for `scopes` (default `openid`) and rekuest plus `extra` services.
    pub fn new(
        identifier: Option<String>,
        version: Option<String>,
        scopes: Option<Vec<String>>,
        extra: Vec<Requirement>,
        node_id: String,
    ) -> Result<Self, String> {
        let identifier = identifier.unwrap_or_else(|| "rekuest-host".to_string());
        if identifier.is_empty() || identifier.contains('/') {
            return Err(format!(
                "the identifier '{identifier}' must be non-empty and contain no '/'"
            ));
        }
        let mut requirements = vec![Requirement {
            key: REKUEST_KEY.to_string(),
            service: REKUEST_SERVICE.to_string(),
            optional: false,
            description: Some("serves actions as an agent".to_string()),
        }];
        for requirement in extra {
            if requirements
                .iter()
                .any(|known| known.key == requirement.key)
            {
                return Err(format!(
                    "the service key '{}' is listed twice",
                    requirement.key
                ));
            }
            requirements.push(requirement);
        }
        Ok(Manifest {
            identifier,
            version: version.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            scopes: scopes.unwrap_or_else(|| vec!["openid".to_string()]),
            requirements,
            node_id,
            description: Some("Runs rekuest actions as sandboxed WebAssembly components".into()),
        })
    }

    /// A digest of everything the deployment sees: a cache made for another manifest is not
    /// reused.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

/// A stable id of this machine: a digest of `/etc/machine-id` (never the id itself, as
/// systemd asks), else a random id kept in `state_dir/node-id`.
pub fn node_id(state_dir: Option<&Path>) -> String {
    let machine_id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_string())
        .filter(|id| !id.is_empty());
    if let Some(machine_id) = machine_id {
        let digest = Sha256::digest(format!("rekuest-host:{machine_id}"));
        return hex::encode(&digest[..16]);
    }
    let Some(dir) = state_dir else {
        return uuid::Uuid::new_v4().simple().to_string();
    };
    let file = dir.join("node-id");
    if let Ok(text) = std::fs::read_to_string(&file)
        && !text.trim().is_empty()
    {
        return text.trim().to_string();
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    if let Err(error) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&file, &id)) {
        tracing::warn!(
            "cannot keep this machine's node id in {}: {error}; the deployment will see a new \
             node after a restart",
            file.display()
        );
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let manifest = Manifest::new(None, None, None, Vec::new(), "n".into()).expect("valid");
        assert_eq!(manifest.identifier, "rekuest-host");
        assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(manifest.scopes, ["openid"]);
        assert_eq!(manifest.requirements[0].service, REKUEST_SERVICE);
        assert!(Manifest::new(Some("a/b".into()), None, None, Vec::new(), "n".into()).is_err());
        let changed =
            Manifest::new(None, Some("9".into()), None, Vec::new(), "n".into()).expect("valid");
        assert_ne!(manifest.digest(), changed.digest());
    }

    #[test]
    fn the_node_id_is_stable() {
        let dir = std::env::temp_dir().join(format!("rekuest-node-{}", uuid::Uuid::new_v4()));
        assert_eq!(node_id(Some(&dir)), node_id(Some(&dir)));
    }
}
