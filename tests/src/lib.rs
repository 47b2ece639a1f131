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
    cargo_with_env(args, &[]);
}

fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // The variables cargo sets for this test process (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...)
    // would change build-script inputs of the nested build and make it rebuild crates.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR" {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo {} failed", args.join(" "));
}

fn build_all() -> &'static () {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo(&["build-examples"]);
        // Without `-p`, and with a test target (any would do) so that dev-dependencies count:
        // features resolve as in the `cargo test` that runs this, and the binary reuses that
        // build's crates instead of compiling the host a second time.
        cargo(&[
            "build",
            "--profile",
            host_profile(),
            "--bin",
            "rekuest-host",
            "--test",
            "fuzz",
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

/// `count` distinct components with distinct action keys (`add_N`, `scale_N`, `words_N`), built
/// from `examples/fleet` with `FLEET_MEMBER=N` into `target/fleet/fleet_N.wasm`.
pub fn fleet(count: usize) -> Vec<PathBuf> {
    let dir = target_dir().join("fleet");
    std::fs::create_dir_all(&dir).expect("target/fleet can be created");
    let sources = ["examples/fleet/build.rs", "examples/fleet/src/lib.rs"]
        .map(|source| std::fs::metadata(workspace_root().join(source)).and_then(|m| m.modified()));
    (0..count)
        .map(|member| {
            let path = dir.join(format!("fleet_{member}.wasm"));
            let built = std::fs::metadata(&path).and_then(|m| m.modified());
            let fresh = built.as_ref().is_ok_and(|built| {
                sources
                    .iter()
                    .all(|source| source.as_ref().is_ok_and(|source| source < built))
            });
            if !fresh {
                let member_text = member.to_string();
                cargo_with_env(
                    &[
                        "build",
                        "--profile",
                        "wasm",
                        "--target",
                        "wasm32-wasip2",
                        "-p",
                        "fleet",
                    ],
                    &[("FLEET_MEMBER", &member_text)],
                );
                let output = target_dir().join("wasm32-wasip2/wasm/fleet.wasm");
                std::fs::copy(&output, &path).expect("the fleet component was built");
            }
            path
        })
        .collect()
}

/// The resident set size of `process` (`self`, or a process id), from `/proc/PROCESS/status`.
pub fn resident_bytes(process: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status"))
        .expect("/proc/PROCESS/status is readable");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .expect("VmRSS is listed")
}

/// Where the tests and benches keep compiled components: `target/test-component-cache`.
pub fn test_cache_dir() -> PathBuf {
    workspace_root().join("target").join("test-component-cache")
}

/// A command running the `rekuest-host` binary with the compiled components cached in
/// [`test_cache_dir`].
pub fn host_command() -> Command {
    let mut command = Command::new(host_binary());
    command.env("REKUEST_HOST_CACHE_DIR", test_cache_dir());
    command
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

/// The guest SDK an example is written with: every example of `examples/python/` has a Rust twin
/// in `examples/` with the same actions, definitions and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// The Rust SDK (`guest-sdk`), built with `cargo build-examples`.
    Rust,
    /// The Python SDK (`guest-sdk/python`), built with componentize-py.
    Python,
}

impl Sdk {
    /// Both SDKs, Rust first.
    pub const ALL: [Sdk; 2] = [Sdk::Rust, Sdk::Python];

    /// The example component `name` written with this SDK.
    pub fn component(self, name: &str) -> PathBuf {
        match self {
            Sdk::Rust => component(name),
            Sdk::Python => python_component(name),
        }
    }
}

/// Running tasks through the runtime library, as the end-to-end tests and benches do.
pub mod tasks {
    use rekuest_host::runtime::{
        ActionComponent, Allocation, ComponentCache, Failure, LogLevel, Outcome, Runtime,
        RuntimeConfig, TaskControl, TaskEvent, TaskRequest,
    };
    use serde_json::{Value, json};
    use tokio::sync::mpsc;

    /// A pooling runtime with `slots` instance slots, caching compiled components under
    /// `target/test-component-cache`.
    pub fn test_runtime(slots: u32) -> Runtime {
        Runtime::new(RuntimeConfig {
            allocation: Allocation::Pooling {
                slots,
                max_memory_bytes: 64 << 20,
            },
            cache: Some(ComponentCache::new(super::test_cache_dir())),
            fuel: true,
        })
        .expect("runtime starts")
    }

    /// What one task reported: its events (logs, progress, yields) and its outcome.
    pub struct Run {
        /// Log lines with their levels.
        pub logs: Vec<(LogLevel, String)>,
        /// Progress percentages.
        pub progress: Vec<u8>,
        /// Each yield's returns object.
        pub yields: Vec<Value>,
        /// The terminal outcome.
        pub outcome: Outcome,
    }

    impl Run {
        /// The `return0` of a completed function's single yield.
        pub fn single_return(&self) -> &Value {
            assert_eq!(self.outcome, Outcome::Completed, "logs: {:?}", self.logs);
            assert_eq!(self.yields.len(), 1, "a function yields once");
            &self.yields[0]["return0"]
        }

        /// The `return0` of the last yield, or null when nothing was yielded.
        pub fn last_return0(&self) -> Value {
            self.yields
                .last()
                .map_or(Value::Null, |returns| returns["return0"].clone())
        }
    }

    /// Collects a task's events while it runs: hand [`Collector::events`] to the task, then
    /// [`Collector::finish`] with its outcome.
    pub struct Collector {
        /// Where the task sends its events.
        pub events: mpsc::Sender<TaskEvent>,
        collecting: tokio::task::JoinHandle<Run>,
    }

    impl Collector {
        /// Starts collecting.
        pub fn start() -> Self {
            let (events, mut receiver) = mpsc::channel(64);
            let collecting = tokio::spawn(async move {
                let mut run = Run {
                    logs: Vec::new(),
                    progress: Vec::new(),
                    yields: Vec::new(),
                    outcome: Outcome::Completed,
                };
                while let Some(event) = receiver.recv().await {
                    match event {
                        TaskEvent::Log { level, message } => run.logs.push((level, message)),
                        TaskEvent::Progress { percent, .. } => run.progress.push(percent),
                        TaskEvent::Yield(raw) => run
                            .yields
                            .push(serde_json::from_str(raw.get()).expect("yields are JSON")),
                    }
                }
                run
            });
            Collector { events, collecting }
        }

        /// Everything the task reported, once it ended with `outcome` (and dropped its sender).
        pub async fn finish(self, outcome: Outcome) -> Run {
            drop(self.events);
            let mut run = self.collecting.await.expect("collector finishes");
            run.outcome = outcome;
            run
        }
    }

    /// Runs `action` with `args` (a JSON object) under `control`, collecting everything.
    pub async fn run_with(
        component: &ActionComponent,
        action: &str,
        args: Value,
        control: &TaskControl,
    ) -> Run {
        let collector = Collector::start();
        let args = args.as_object().cloned().expect("args are an object");
        let (outcome, sandbox) = component
            .run(
                TaskRequest::new(action, args),
                collector.events.clone(),
                control,
            )
            .await;
        drop(sandbox);
        collector.finish(outcome).await
    }

    /// The message of an action's own failure (FAILED by the action, not by a limit).
    pub fn action_error(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::Failed(Failure::Action(message)) => message,
            other => panic!("expected the action to fail, got {other:?}"),
        }
    }

    /// Runs `action` with `args` to its end.
    pub async fn run(component: &ActionComponent, action: &str, args: Value) -> Run {
        run_with(component, action, args, &TaskControl::new()).await
    }

    /// `@mikro/image` `reference` in the envelope of the official client.
    pub fn image(reference: &str) -> Value {
        json!({"__identifier": "@mikro/image", "object": reference})
    }

    /// Checks the `structures` example (Rust or Python) against the official client's wire:
    /// structure args as bare references or envelopes, MODEL args with `__identifier`, and
    /// every structure return in its envelope, alone and inside lists, dicts and models.
    pub async fn assert_structures_travel_in_envelopes(structures: &ActionComponent) {
        for arg in [
            json!("image:42"),
            image("image:42"),
            json!({"object": "image:42"}),
        ] {
            let cropped = run(structures, "crop", json!({"image": arg, "width": 10})).await;
            assert_eq!(cropped.single_return(), &image("image:42010"), "{arg}");
        }
        let listed = run(structures, "images", json!({"n": 2})).await;
        assert_eq!(
            listed.single_return(),
            &json!([image("image:1"), image("image:2")])
        );
        let newest = run(
            structures,
            "newest",
            json!({"images": ["image:3", image("image:7")]}),
        )
        .await;
        assert_eq!(newest.single_return(), &image("image:7"));
        let none = run(structures, "newest", json!({"images": []})).await;
        assert_eq!(none.single_return(), &Value::Null);

        let labelled = json!([
            {"image": image("image:1"), "label": "a"},
            {"image": image("image:2"), "label": "b"},
        ]);
        let label = run(
            structures,
            "label",
            json!({"images": {"b": image("image:2"), "a": "image:1"}}),
        )
        .await;
        assert_eq!(label.single_return(), &labelled);
        let mut sent = labelled;
        for item in sent.as_array_mut().into_iter().flatten() {
            item["__identifier"] = json!("Labelled");
        }
        let by_label = run(structures, "by_label", json!({ "labelled": sent })).await;
        assert_eq!(
            by_label.single_return(),
            &json!({"a": image("image:1"), "b": image("image:2")})
        );

        let other = run(
            structures,
            "crop",
            json!({"image": {"__identifier": "@mikro/video", "object": "1"}, "width": 10}),
        )
        .await;
        match &other.outcome {
            Outcome::Failed(failure) => assert_eq!(
                failure.to_string(),
                "argument 'image': expected STRUCTURE @mikro/image, got a \
                 reference to @mikro/video"
            ),
            outcome => panic!("expected FAILED, got {outcome:?}"),
        }
    }
}
