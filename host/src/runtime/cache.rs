//! On-disk cache of compiled components, keyed by the component's bytes and the engine's
//! compilation settings, so a restart skips compiling. Bounded in size: after each write the
//! least recently used entries are removed until the cache fits its cap.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The default size cap of the cache: 2 GiB (about 50 compiled Python components).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

const ENTRY_EXTENSION: &str = "cwasm";
const NAME_EXTENSION: &str = "name";

/// A directory of `<key>.cwasm` files (each with a `<key>.name` naming its component), at
/// most `max_bytes` together.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// One compiled component in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The compiled file.
    pub path: PathBuf,
    /// The name of the component it was compiled from (its file stem), if recorded.
    pub component: Option<String>,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was last written or loaded.
    pub last_used: SystemTime,
}

/// What [`ComponentCache::clean`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Compiled components removed.
    pub entries: usize,
    /// Their size on disk, in bytes.
    pub bytes: u64,
}

impl ComponentCache {
    /// A cache in `dir` (created on first write) capped at [`DEFAULT_CACHE_MAX_BYTES`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentCache {
            dir: dir.into(),
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
        }
    }

    /// The same cache capped at `max_bytes` (the newest entry is kept even if larger).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The directory the cache keeps compiled components in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size cap in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
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
        self.dir.join(format!(
            "{}.{ENTRY_EXTENSION}",
            hex::encode(digest.finalize())
        ))
    }

    /// The compiled component `name` for `wasm`: from the cache (marking the entry used), or
    /// compiled, stored and the least recently used entries evicted beyond the cap.
    ///
    /// A missing, stale or corrupt entry is recompiled; a cache that cannot be written is
    /// logged and skipped.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        name: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.path_for(engine, wasm);
        if path.is_file() {
            // SAFETY: `deserialize_file` asks for two things. (1) The bytes are trusted
            // compiled code: only `store` below writes this directory, from
            // `Component::serialize`, under a key that covers the source bytes and the engine
            // settings (wasmtime also checks the artifact's header against this engine); the
            // directory is the operator's, and whoever can write it can already replace the
            // host binary's inputs. (2) The file is not modified while it is mapped: entries
            // are never written in place (a new entry goes to a temporary file renamed over the
            // key) and eviction only unlinks, which leaves a mapping intact.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    mark_used(&path);
                    return Ok(component);
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unusable cache entry")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        match self.store(&path, name, &component) {
            Ok(()) => self.evict(&path),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "could not write the component cache")
            }
        }
        Ok(component)
    }

    fn store(&self, path: &Path, name: &str, component: &Component) -> Result<(), String> {
        let bytes = component.serialize().map_err(|error| error.to_string())?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(path.with_extension(NAME_EXTENSION), name))
            .and_then(|()| std::fs::write(&temporary, bytes))
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|error| error.to_string())
    }

    /// Removes the least recently used entries until the cache fits its cap; `keep` (just
    /// written) stays.
    fn evict(&self, keep: &Path) {
        let entries = match self.entries() {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "could not list the component cache");
                return;
            }
        };
        let mut total: u64 = entries.iter().map(|entry| entry.bytes).sum();
        for entry in entries.iter().rev() {
            if total <= self.max_bytes {
                break;
            }
            if entry.path == keep {
                continue;
            }
            match remove_entry(&entry.path) {
                Ok(()) => {
                    total = total.saturating_sub(entry.bytes);
                    tracing::debug!(
                        path = %entry.path.display(),
                        bytes = entry.bytes,
                        "evicted the least recently used compiled component"
                    );
                }
                Err(error) => {
                    tracing::warn!(path = %entry.path.display(), %error, "could not evict a cache entry")
                }
            }
        }
    }

    /// The cached components, most recently used first (none if the directory is missing).
    pub fn entries(&self) -> std::io::Result<Vec<CacheEntry>> {
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut entries = Vec::new();
        for item in listing {
            let path = item?.path();
            if path.extension().is_none_or(|ext| ext != ENTRY_EXTENSION) {
                continue;
            }
            // An entry removed meanwhile (another host evicting) is simply not listed.
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let component = std::fs::read_to_string(path.with_extension(NAME_EXTENSION)).ok();
            entries.push(CacheEntry {
                component,
                bytes: metadata.len(),
                last_used: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
            });
        }
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.last_used));
        Ok(entries)
    }

    /// Removes every cached component.
    pub fn clean(&self) -> std::io::Result<Removed> {
        let mut removed = Removed::default();
        for entry in self.entries()? {
            remove_entry(&entry.path)?;
            removed.entries += 1;
            removed.bytes += entry.bytes;
        }
        Ok(removed)
    }
}

/// Marks an entry as just used (its modification time), for least-recently-used eviction.
fn mark_used(path: &Path) {
    let now = SystemTime::now();
    if let Err(error) = std::fs::File::open(path).and_then(|file| file.set_modified(now)) {
        tracing::debug!(path = %path.display(), %error, "could not mark a cache entry used");
    }
}

fn remove_entry(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path.with_extension(NAME_EXTENSION)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An empty component carrying `tag` in a custom section (distinct bytes, distinct key).
    fn component(tag: u8) -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
        bytes.extend_from_slice(&[0x00, 0x03, 0x01, b't', tag]);
        bytes
    }

    fn names(cache: &ComponentCache) -> Vec<String> {
        cache
            .entries()
            .expect("listed")
            .into_iter()
            .map(|entry| entry.component.unwrap_or_default())
            .collect()
    }

    fn age(cache: &ComponentCache, name: &str, seconds: u64) {
        let entry = cache
            .entries()
            .expect("listed")
            .into_iter()
            .find(|entry| entry.component.as_deref() == Some(name))
            .expect("cached");
        let then = SystemTime::now() - Duration::from_secs(seconds);
        std::fs::File::open(&entry.path)
            .and_then(|file| file.set_modified(then))
            .expect("aged");
    }

    #[test]
    fn evicts_the_least_recently_used_beyond_the_cap() {
        let dir = std::env::temp_dir().join(format!("rekuest-cache-lru-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Engine::default();
        let probe = ComponentCache::new(&dir);
        probe
            .load_or_compile(&engine, "a", &component(1))
            .expect("a");
        let entry_bytes = probe.entries().expect("listed")[0].bytes;

        // Room for two entries.
        let cache = ComponentCache::new(&dir).with_max_bytes(entry_bytes * 2 + entry_bytes / 2);
        cache
            .load_or_compile(&engine, "b", &component(2))
            .expect("b");
        age(&cache, "a", 200);
        age(&cache, "b", 100);
        // Loading a (a cache hit) makes it the most recently used: b goes when c arrives.
        cache
            .load_or_compile(&engine, "a", &component(1))
            .expect("a again");
        assert_eq!(names(&cache), ["a", "b"]);
        cache
            .load_or_compile(&engine, "c", &component(3))
            .expect("c");
        // a (used by the hit) stays, b (least recently used) went; the listing order of two
        // entries touched within the same instant is not part of the contract.
        let mut kept = names(&cache);
        kept.sort();
        assert_eq!(kept, ["a", "c"]);

        let removed = cache.clean().expect("cleaned");
        assert_eq!(removed.entries, 2);
        assert_eq!(
            std::fs::read_dir(&dir).expect("dir").count(),
            0,
            "no entry or name file is left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_directory_lists_nothing() {
        let cache = ComponentCache::new("/nonexistent/rekuest-host-cache");
        assert!(cache.entries().expect("listed").is_empty());
        assert_eq!(cache.clean().expect("cleaned"), Removed::default());
    }
}
