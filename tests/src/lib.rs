//! Support for the end-to-end tests: the example components and the `rekuest-host` binary,
//! built once per test process with the same profile as the tests themselves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `release` when the tests were built with `--release`, else `dev`.
fn host_profile() -> &'static str {
    let exe = std::env::current_exe().unwrap_or_default();
    if exe.components().any(|part| part.as_os_str() == "release") {
        "release"
    } else {
        "dev"
    }
}

fn cargo(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo {} failed", args.join(" "));
}

fn build_all() -> &'static () {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo(&["build-examples"]);
        cargo(&[
            "build",
            "--profile",
            host_profile(),
            "-p",
            "rekuest-host",
            "--bin",
            "rekuest-host",
        ]);
    })
}

/// The example component `name` (`math`, `text`, `generator`, `structures`, `hostile`).
pub fn component(name: &str) -> PathBuf {
    build_all();
    let path = target_dir()
        .join("wasm32-wasip2")
        .join("wasm")
        .join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The `rekuest-host` binary.
pub fn host_binary() -> PathBuf {
    build_all();
    let dir = if host_profile() == "release" {
        "release"
    } else {
        "debug"
    };
    target_dir().join(dir).join("rekuest-host")
}

/// The Python example component `name` (`math`, `generator`, `text`, `structures`,
/// `hostile`: `examples/python/<name>/actions.py`), built once per test process with
/// `guest-sdk/python/build.sh` (componentize-py; a component newer than its sources is kept).
pub fn python_component(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(workspace_root().join("guest-sdk/python/build.sh"))
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(workspace_root())
            .status()
            .expect("bash runs");
        assert!(
            status.success(),
            "guest-sdk/python/build.sh failed (componentize-py missing? \
             python3 -m pip install componentize-py==0.25.1)"
        );
    });
    let path = target_dir()
        .join("python-components")
        .join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
