//! Reloading the served components of `run` (SIGHUP) and `dev --watch` (a component file
//! changed): the new set is loaded in full and checked before the agent serves it; anything
//! wrong refuses the whole reload with the reason, and the old set keeps serving.

#[cfg(feature = "devserver")]
use std::path::PathBuf;
#[cfg(feature = "devserver")]
use std::time::{Duration, SystemTime};

use anyhow::bail;

use rekuest_host::agent::{Agent, RuntimeShape, load_component};
use rekuest_host::config::ComponentSettings;
use rekuest_host::error_chain::ErrorChain;
use rekuest_host::runtime::Runtime;
use rekuest_host::runtime::limits::format_bytes;
use rekuest_host::text::Lines;

#[cfg(feature = "devserver")]
/// How often `dev --watch` looks at the component files.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Loads `components` (every one must load) and serves them on `agent`; logs what changed,
/// or why nothing did. `cause` says what asked for the reload.
pub async fn reload(
    agent: &Agent,
    runtime: &Runtime,
    shape: RuntimeShape,
    components: anyhow::Result<Vec<ComponentSettings>>,
    cause: &str,
) {
    let outcome = async {
        let components = components?;
        let wanted = RuntimeShape::of(&components);
        if wanted.max_memory_bytes > shape.max_memory_bytes {
            bail!(
                "a memory limit of {} is more than the {} this process reserved per task at start; \
                 restart to raise it",
                format_bytes(wanted.max_memory_bytes),
                format_bytes(shape.max_memory_bytes)
            );
        }
        if wanted.fuel && !shape.fuel {
            bail!(
                "a fuel budget needs fuel metering, which this process started without; restart \
                 to use it"
            );
        }
        if components.is_empty() {
            bail!("no components to serve");
        }
        let mut served = Vec::with_capacity(components.len());
        for settings in &components {
            served.push(load_component(runtime, settings).await?);
        }
        Ok(agent.reload(served).await?)
    };
    match outcome.await {
        Ok(reloaded) => tracing::info!(
            "reloaded ({cause}): serving {} action(s){}; running tasks finish on the previous \
             components",
            reloaded.actions,
            if reloaded.registered {
                ", new definitions registered"
            } else {
                ", definitions unchanged"
            }
        ),
        Err(error) => tracing::error!(
            "reload ({cause}) refused: {}; still serving the previous components",
            Lines(&ErrorChain(&*error).to_string())
        ),
    }
}

#[cfg(feature = "devserver")]
/// The size and modification time of each watched file (`None`: unreadable right now).
fn stamps(paths: &[PathBuf]) -> Vec<Option<(u64, SystemTime)>> {
    paths
        .iter()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.len(), metadata.modified().ok()?))
        })
        .collect()
}

#[cfg(feature = "devserver")]
/// Watches files for changes by polling their size and modification time (no watcher
/// daemon or extra dependency; a rebuild rewrites the file, which this sees).
pub struct FileWatch {
    paths: Vec<PathBuf>,
    seen: Vec<Option<(u64, SystemTime)>>,
}

#[cfg(feature = "devserver")]
impl FileWatch {
    /// Watches `paths` from their current state.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let seen = stamps(&paths);
        FileWatch { paths, seen }
    }

    /// Resolves once a file changed and then stayed the same for one interval (a build that
    /// is still writing it is waited for).
    pub async fn changed(&mut self) {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let now = stamps(&self.paths);
            if now == self.seen {
                continue;
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
            let settled = stamps(&self.paths);
            if settled == now && settled.iter().all(Option::is_some) {
                self.seen = settled;
                return;
            }
        }
    }
}

/// Resolves at every SIGHUP (never where there are no such signals).
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Starts listening for SIGHUP; from now on it no longer ends the process.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|error| {
                    tracing::warn!("cannot listen for SIGHUP ({error}); reloading is off")
                })
                .ok();
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    /// The next SIGHUP.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}
