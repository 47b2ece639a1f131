//! `rekuest-host cache list|clean`: the compiled-component cache as an operator sees it.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Subcommand;

use rekuest_host::runtime::ComponentCache;
use rekuest_host::text::OneLine;

/// What to do with the cache.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the compiled components, most recently used first, and the total against the cap.
    List,
    /// Remove every compiled component (they are compiled again on their next load).
    Clean,
}

/// Runs a cache command on `cache` (`None`: no place for a cache is known).
pub fn run(command: &CacheCommand, cache: Option<ComponentCache>) -> anyhow::Result<ExitCode> {
    let cache = cache
        .context("no cache directory: neither HOME nor XDG_CACHE_HOME is set; pass --cache-dir")?;
    let dir = cache.dir().display();
    match command {
        CacheCommand::List => {
            let entries = cache
                .entries()
                .with_context(|| format!("cannot list the component cache {dir}"))?;
            let now = SystemTime::now();
            let width = entries
                .iter()
                .map(|entry| name(entry.component.as_deref()).len())
                .max()
                .unwrap_or(0)
                .max("COMPONENT".len());
            if !entries.is_empty() {
                println!("{:width$}  {:>10}  LAST USED", "COMPONENT", "SIZE");
            }
            for entry in &entries {
                let age = now.duration_since(entry.last_used).unwrap_or_default();
                println!(
                    "{:width$}  {:>10}  {} ago",
                    name(entry.component.as_deref()),
                    approx_size(entry.bytes),
                    approx_age(age.as_secs())
                );
            }
            let total: u64 = entries.iter().map(|entry| entry.bytes).sum();
            println!(
                "{} compiled component{}, {} of {} in {dir}",
                entries.len(),
                if entries.len() == 1 { "" } else { "s" },
                approx_size(total),
                approx_size(cache.max_bytes())
            );
        }
        CacheCommand::Clean => {
            let removed = cache
                .clean()
                .with_context(|| format!("cannot clean the component cache {dir}"))?;
            println!(
                "removed {} compiled component{} ({}) from {dir}",
                removed.entries,
                if removed.entries == 1 { "" } else { "s" },
                approx_size(removed.bytes)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn name(component: Option<&str>) -> String {
    component.map_or_else(|| "(unnamed)".to_string(), |name| OneLine(name).to_string())
}

/// `40.2 MiB`: one decimal, for a listing (not a limit, so rounding is fine).
fn approx_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// `42s`, `5m`, `3h`, `2d`.
fn approx_age(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}
