//! `--fuel`, `--memory`, `--timeout`, `--dir` and `--env`: limits and grants from the command
//! line, shared by `call`, `dev` and `run` and checked like the config file's.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use rekuest_host::config::{self, ComponentSettings};
use rekuest_host::config::{parse_memory_limit, parse_timeout};
use rekuest_host::runtime::{DirGrant, SandboxPolicy};

/// Limits and grants given as flags: on `dev` and `run` they apply to every component and
/// action, over the config file's (the defaults below are those without either).
#[derive(Debug, Args, Default)]
pub struct GrantArgs {
    /// Fuel budget of a task (about one unit per wasm instruction) [default: unmetered].
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Memory limit of a task in binary units (64MiB, 512KiB, 1GiB) or a number of bytes;
    /// 64KiB to 4GiB [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
    pub memory: Option<u64>,
    /// Wall-clock limit of a task, e.g. 10s, 250ms, 2m; a bare number is seconds
    /// [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// Grant a host directory: HOST:GUEST for read-only, HOST:GUEST:rw for read-write.
    #[arg(long = "dir", value_name = "HOST:GUEST[:rw]", value_parser = parse_dir_grant)]
    pub dirs: Vec<DirGrant>,
    /// Let the guest read an environment variable: NAME=VALUE, or NAME to pass the host's.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
}

impl GrantArgs {
    /// Puts the flags' limits on every action of `policy` and adds their grants (an `--env`
    /// replaces a variable of the same name).
    pub fn apply(&self, policy: &mut SandboxPolicy) {
        for limits in std::iter::once(&mut policy.limits).chain(policy.action_limits.values_mut()) {
            if let Some(fuel) = self.fuel {
                limits.fuel = Some(fuel);
            }
            if let Some(memory) = self.memory {
                limits.memory_bytes = memory;
            }
            if let Some(timeout) = self.timeout {
                limits.timeout = timeout;
            }
        }
        policy.dirs.extend(self.dirs.iter().cloned());
        for (name, value) in &self.env {
            policy.env.retain(|(existing, _)| existing != name);
            policy.env.push((name.clone(), value.clone()));
        }
    }

    /// [`apply`](Self::apply) to every component.
    pub fn apply_all(&self, components: &mut [ComponentSettings]) {
        for component in components {
            self.apply(&mut component.policy);
        }
    }
}

fn parse_dir_grant(text: &str) -> Result<DirGrant, String> {
    let (rest, writable) = match text.strip_suffix(":rw") {
        Some(rest) => (rest, true),
        None => (text.strip_suffix(":ro").unwrap_or(text), false),
    };
    let Some((host, guest)) = rest.rsplit_once(':') else {
        return Err(format!("'{text}' is not HOST:GUEST or HOST:GUEST:rw"));
    };
    config::dir_grant(PathBuf::from(host), guest, writable).map_err(|(_, reason)| reason)
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, value.to_string()),
        None => (text, config::host_env(text)?),
    };
    if name.is_empty() {
        return Err(format!(
            "'{text}' has no variable name (NAME=VALUE or NAME)"
        ));
    }
    Ok((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_grants_name_the_path_or_variable() {
        let missing = parse_dir_grant("/nonexistent/h13:/data").expect_err("missing");
        assert_eq!(missing, "/nonexistent/h13 does not exist");
        let file = std::env::current_exe().expect("exe").display().to_string();
        let not_dir = parse_dir_grant(&format!("{file}:/data")).expect_err("a file");
        assert_eq!(not_dir, format!("{file} is not a directory"));
        assert!(
            parse_dir_grant("/tmp:data")
                .expect_err("relative")
                .contains("'data'")
        );
        let grant = parse_dir_grant("/tmp:/scratch:rw").expect("valid");
        assert!(grant.writable && grant.guest == "/scratch");
        assert_eq!(
            parse_env("REKUEST_H13_SURELY_UNSET").expect_err("unset"),
            "REKUEST_H13_SURELY_UNSET is not set in this environment"
        );
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_timeout("0s").is_err());
    }

    #[test]
    fn flags_override_every_action_and_replace_env_by_name() {
        let mut policy = SandboxPolicy {
            env: vec![("MODE".into(), "slow".into())],
            ..SandboxPolicy::default()
        };
        policy.action_limits.insert("add".into(), policy.limits);
        let flags = GrantArgs {
            timeout: Some(Duration::from_secs(5)),
            memory: Some(1 << 20),
            env: vec![("MODE".into(), "fast".into())],
            ..GrantArgs::default()
        };
        flags.apply(&mut policy);
        for limits in [&policy.limits, policy.limits_for("add")] {
            assert_eq!(limits.timeout, Duration::from_secs(5));
            assert_eq!(limits.memory_bytes, 1 << 20);
            assert_eq!(limits.fuel, None);
        }
        assert_eq!(policy.env, vec![("MODE".to_string(), "fast".to_string())]);
    }
}
