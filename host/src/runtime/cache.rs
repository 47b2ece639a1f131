//! On-disk cache of compiled components, keyed by the component's bytes and the engine's
//! compilation settings, so a restart skips compiling.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `<key>.cwasm` files.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentCache { dir: dir.into() }
    }

    /// The default location: `$XDG_CACHE_HOME/rekuest-host` or `~/.cache/rekuest-host`.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .map(|base| base.join("rekuest-host"))
    }

    fn path_for(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let mut settings = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut settings);
        let mut digest = Sha256::new();
        digest.update(wasm);
        digest.update(settings.finish().to_le_bytes());
        digest.update(env!("CARGO_PKG_VERSION").as_bytes());
        self.dir
            .join(format!("{}.cwasm", hex::encode(digest.finalize())))
    }

    /// The compiled component for `wasm`: from the cache, or compiled and stored.
    ///
    /// A missing, stale or corrupt entry is recompiled; a cache that cannot be written is
    /// logged and skipped.
    pub fn load_or_compile(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
        let path = self.path_for(engine, wasm);
        if path.is_file() {
            // SAFETY: the file was written by `Component::serialize` into our own cache
            // directory under a key that covers the source bytes and the engine settings;
            // wasmtime also checks the artifact's header against this engine.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unusable cache entry")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = self.store(&path, &component) {
            tracing::warn!(dir = %self.dir.display(), %error, "could not write the component cache");
        }
        Ok(component)
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), String> {
        let bytes = component.serialize().map_err(|error| error.to_string())?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&temporary, bytes))
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|error| error.to_string())
    }
}
