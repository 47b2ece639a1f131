//! The login kept on disk, so a restart does not redeem again: one file per deployment,
//! readable by the owner only, and ignored when made for another deployment or manifest.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::LoginError;
use super::fakts::ClaimedConfig;

/// What is kept about one deployment.
#[derive(Clone, Serialize, Deserialize)]
pub struct CachedLogin {
    /// The deployment URL it was made for.
    pub deployment: String,
    /// [`super::Manifest::digest`] of the manifest it was made with.
    pub manifest: String,
    /// The fakts base, for claiming again.
    pub base_url: String,
    /// The claim token (long-lived).
    pub claim_token: String,
    /// The claimed configuration.
    pub config: ClaimedConfig,
}

impl fmt::Debug for CachedLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedLogin")
            .field("deployment", &self.deployment)
            .field("manifest", &self.manifest)
            .field("base_url", &self.base_url)
            .field("claim_token", &"<redacted>")
            .field("config", &self.config)
            .finish()
    }
}

/// `$XDG_CONFIG_HOME/rekuest-host/logins` (else `~/.config/rekuest-host/logins`).
pub fn default_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .map(|base| base.join("rekuest-host").join("logins"))
}

/// The file in `dir` for the deployment at `deployment` (a normalized URL).
pub fn file_for(dir: &Path, deployment: &str) -> PathBuf {
    let digest = hex::encode(&Sha256::digest(deployment.as_bytes())[..8]);
    let host = deployment
        .split("://")
        .nth(1)
        .unwrap_or(deployment)
        .split(['/', ':'])
        .next()
        .unwrap_or("deployment")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    dir.join(format!("{host}-{digest}.json"))
}

fn cache_error(
    path: &Path,
    doing: impl Into<String>,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> LoginError {
    LoginError::Cache {
        path: path.to_path_buf(),
        doing: doing.into(),
        source: source.into(),
    }
}

/// The login in `path` if it was made for `deployment` with the manifest `manifest`; a
/// missing file, or one for something else, is `None` (the latter is said in the log).
pub fn load(
    path: &Path,
    deployment: &str,
    manifest: &str,
) -> Result<Option<CachedLogin>, LoginError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(cache_error(path, "cannot read it", error)),
    };
    let cached: CachedLogin = match serde_json::from_str(&text) {
        Ok(cached) => cached,
        Err(error) => {
            tracing::warn!(
                "ignoring the login cache {}: it is not readable ({error}); logging in afresh",
                path.display()
            );
            return Ok(None);
        }
    };
    if cached.deployment != deployment {
        tracing::warn!(
            "ignoring the login cache {}: it was made for {}, not {deployment}",
            path.display(),
            cached.deployment
        );
        return Ok(None);
    }
    if cached.manifest != manifest {
        tracing::warn!(
            "ignoring the login cache {}: it was made with another manifest (identifier, \
             version, scopes or services changed); logging in afresh",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(cached))
}

/// Writes `login` to `path` atomically, readable and writable by the owner only (the
/// directory too).
pub fn store(path: &Path, login: &CachedLogin) -> Result<(), LoginError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)
        .map_err(|error| cache_error(path, format!("cannot create {}", dir.display()), error))?;
    let text = serde_json::to_vec_pretty(login)
        .map_err(|error| cache_error(path, "cannot encode it", error))?;
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    written.map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        cache_error(path, "cannot write it", error)
    })
}

/// Deletes the login in `path`; `false` if there was none.
pub fn forget(path: &Path) -> Result<bool, LoginError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(cache_error(path, "cannot delete it", error)),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::super::fakts::AuthConfig;
    use super::*;

    fn login(deployment: &str) -> CachedLogin {
        CachedLogin {
            deployment: deployment.into(),
            manifest: "m1".into(),
            base_url: "http://x/f/".into(),
            claim_token: "secret-claim".into(),
            config: ClaimedConfig {
                auth: AuthConfig {
                    client_id: "c".into(),
                    client_secret: "secret-client".into(),
                    token_url: "http://x/o/token/".into(),
                    scopes: vec![],
                },
                instances: Default::default(),
            },
        }
    }

    #[test]
    fn is_private_and_only_reused_for_the_same_deployment_and_manifest() {
        let dir = std::env::temp_dir().join(format!("rekuest-login-{}", uuid::Uuid::new_v4()));
        let path = file_for(&dir, "http://lab.example/");
        store(&path, &login("http://lab.example/")).expect("stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert!(
            load(&path, "http://lab.example/", "m1")
                .expect("read")
                .is_some()
        );
        assert!(
            load(&path, "http://other.example/", "m1")
                .expect("read")
                .is_none()
        );
        assert!(
            load(&path, "http://lab.example/", "m2")
                .expect("read")
                .is_none()
        );
        let shown = format!("{:?}", login("x"));
        assert!(
            !shown.contains("secret-claim") && !shown.contains("secret-client"),
            "{shown}"
        );
        assert!(forget(&path).expect("deleted"));
        assert!(
            load(&path, "http://lab.example/", "m1")
                .expect("read")
                .is_none()
        );
    }
}
