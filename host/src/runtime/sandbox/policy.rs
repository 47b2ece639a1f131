//! What a component's guests may touch: limits per action, granted directories, environment.
//! Nothing is granted unless listed here.

use std::collections::HashMap;
use std::path::PathBuf;

use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use crate::runtime::http::HttpPolicy;
use crate::runtime::limits::{HostResourceCaps, Limits};
use crate::runtime::output::{Stdio, TaskOutput};
use crate::runtime::stdio::GuestStdio;

/// A host directory made visible to guests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it (e.g. `/data`).
    pub guest: String,
    /// Whether the guest may create, change and delete files in it.
    pub writable: bool,
}

/// The sandbox settings of one component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxPolicy {
    /// Limits of every action without an override.
    pub limits: Limits,
    /// Limits of single actions, by action key.
    pub action_limits: HashMap<String, Limits>,
    /// Directories the guest can see.
    pub dirs: Vec<DirGrant>,
    /// Environment variables the guest can read.
    pub env: Vec<(String, String)>,
    /// Host resources each task may hold.
    pub resources: HostResourceCaps,
    /// Origins the guest may reach over HTTP, and how.
    pub http: HttpPolicy,
}

impl SandboxPolicy {
    /// The limits of `action`.
    pub fn limits_for(&self, action: &str) -> &Limits {
        self.action_limits.get(action).unwrap_or(&self.limits)
    }

    /// Whether any of its limits is a fuel budget.
    pub fn uses_fuel(&self) -> bool {
        self.limits.fuel.is_some() || self.action_limits.values().any(|l| l.fuel.is_some())
    }

    /// A WASI context granting exactly this policy, with stdio feeding `output`.
    pub(crate) fn wasi_ctx(&self, output: &TaskOutput) -> Result<WasiCtx, wasmtime::Error> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(GuestStdio::new(output.clone(), Stdio::Stdout))
            .stderr(GuestStdio::new(output.clone(), Stdio::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .allow_blocking_current_thread(false);
        for (name, value) in &self.env {
            builder.env(name, value);
        }
        for grant in &self.dirs {
            let perms = if grant.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder.preopened_dir(&grant.host, &grant.guest, perms)?;
        }
        Ok(builder.build())
    }
}
