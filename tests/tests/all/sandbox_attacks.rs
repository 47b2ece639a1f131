//! Attacks on the sandbox's per-task limits, each ending as the README's security model says:
//! memory summed over every linear memory of a task (multi-memory and many core instances, in
//! hand-written WAT), capped open files and host resources, no symlinks or hard links in grants,
//! yields and error texts no caller could take refused at the source, and arg checking against a
//! description built to be costly that never starves the agent's socket.

use std::path::{Path, PathBuf};

use crate::attacks_support::{GREW, Spread, memory_hog};
use rekuest_host::error_chain::ErrorChain;
use rekuest_host::runtime::{
    ActionComponent, Allocation, ComponentCache, DescriptorBudget, DirGrant, Failure,
    HostResourceCaps, LimitExceeded, Limits, Outcome, OutputCaps, Runtime, RuntimeConfig, Sandbox,
    SandboxPolicy, TaskControl, TaskEvent, TaskRequest,
};
use rekuest_host_tests::tasks::{action_error, run};
use rekuest_host_tests::{component, test_cache_dir, workspace_root};
use serde_json::json;

/// The output caps every task here runs under.
const MAX_ERROR_BYTES: usize = OutputCaps::DEFAULT.error_bytes;
const MAX_YIELD_BYTES: usize = OutputCaps::DEFAULT.yield_bytes;
const MAX_YIELD_DEPTH: usize = OutputCaps::DEFAULT.yield_depth;
use tokio::sync::mpsc;

const MIB: u64 = 1 << 20;

fn runtime(allocation: Allocation) -> Runtime {
    Runtime::new(RuntimeConfig {
        allocation,
        cache: Some(ComponentCache::new(test_cache_dir())),
        fuel: true,
    })
    .expect("runtime starts")
}

/// Both allocators `call`, `dev` and `run` can end up with.
fn runtimes() -> [Runtime; 2] {
    [
        runtime(Allocation::OnDemand),
        runtime(Allocation::Pooling {
            slots: 8,
            max_memory_bytes: 128 * MIB,
        }),
    ]
}

fn with_memory(memory_bytes: u64) -> SandboxPolicy {
    SandboxPolicy {
        limits: Limits {
            memory_bytes,
            ..Limits::default()
        },
        ..SandboxPolicy::default()
    }
}

async fn attacks(runtime: &Runtime, policy: SandboxPolicy) -> ActionComponent {
    runtime
        .load_file(&component("sandbox_attacks"), policy)
        .await
        .expect("sandbox_attacks loads")
}

/// A scratch directory with `data/hello.txt` (granted read-only), `out/` (granted writable,
/// holding a host symlink `out/sub/up -> ../hello.txt` that stays inside it) and `secret.txt`
/// beside them.
fn scratch(name: &str) -> PathBuf {
    let root = workspace_root()
        .join("target")
        .join("test-sandbox-attacks")
        .join(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("data")).expect("data dir");
    std::fs::create_dir_all(root.join("out/sub")).expect("out dir");
    std::fs::write(root.join("data/hello.txt"), "hi").expect("hello");
    std::fs::write(root.join("out/hello.txt"), "hi").expect("hello");
    std::fs::write(root.join("secret.txt"), "do not read").expect("secret");
    std::os::unix::fs::symlink("../hello.txt", root.join("out/sub/up")).expect("symlink");
    root
}

fn grants(root: &Path) -> SandboxPolicy {
    let grant = |dir: &str, guest: &str, writable| DirGrant {
        host: root.join(dir),
        guest: guest.to_string(),
        writable,
    };
    SandboxPolicy {
        dirs: vec![grant("out", "/out", true), grant("data", "/data", false)],
        ..SandboxPolicy::default()
    }
}

/// The host process's resident memory in KiB (`VmRSS`).
fn resident_kib() -> u64 {
    rekuest_host_tests::resident_bytes("self") / 1024
}

/// The host process's open file descriptors.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

#[tokio::test]
async fn memory_is_held_to_the_limit_summed_over_every_memory_and_instance() {
    for runtime in runtimes() {
        for spread in [Spread::Memories(3), Spread::Instances(3)] {
            // Three memories of 25 MiB each (plus the main one's 64 KiB): each alone fits in
            // 64 MiB, together they do not.
            let hog = memory_hog(spread, 400);
            let limited = runtime
                .load_bytes("hog".into(), hog.clone(), with_memory(64 * MIB))
                .await
                .expect("the hog loads");
            let ran = run(&limited, "grow", json!({})).await;
            let error = ran.outcome.error().unwrap_or_default();
            assert!(
                matches!(
                    ran.outcome,
                    Outcome::Failed(Failure::Limit(LimitExceeded::Memory { limit, total }))
                        if limit == 64 * MIB && total == 75 * MIB + 64 * 1024
                ),
                "{spread:?} under {:?}: {:?}",
                runtime.allocator(),
                ran.outcome
            );
            assert_eq!(
                error,
                "memory limit of 64 MiB exceeded (the task's linear memories would total 78,708,736 bytes (~75.1 MiB))"
            );
            // With room for all three the same guest gets to the end.
            let roomy = runtime
                .load_bytes("hog".into(), hog, with_memory(128 * MIB))
                .await
                .expect("the hog loads");
            let ran = run(&roomy, "grow", json!({})).await;
            assert_eq!(action_error(&ran.outcome), GREW, "{spread:?}");
        }
    }
}

#[tokio::test]
async fn components_with_more_memories_or_instances_than_a_task_may_have_are_refused() {
    for runtime in runtimes() {
        for spread in [Spread::Memories(15), Spread::Instances(40)] {
            let error = runtime
                .load_bytes(
                    "hog".into(),
                    memory_hog(spread, 1),
                    SandboxPolicy::default(),
                )
                .await
                .err()
                .unwrap_or_else(|| panic!("{spread:?} loaded under {:?}", runtime.allocator()));
            let error = ErrorChain(&error).to_string();
            assert!(error.starts_with("hog "), "{error}");
            assert!(
                error.contains("memor") || error.contains("instance"),
                "{spread:?}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn open_files_are_capped_per_task_with_an_error_the_guest_can_handle() {
    if !crate::alone::in_own_process(
        "sandbox_attacks::open_files_are_capped_per_task_with_an_error_the_guest_can_handle",
    ) {
        return;
    }
    let root = scratch("open-files");
    let runtime = runtime(Allocation::OnDemand);
    let guest = attacks(&runtime, grants(&root)).await;
    let before = open_descriptors();
    for _ in 0..2 {
        // Directly through wasi:filesystem: open-at fails with an error code, the task goes on.
        let raw = run(&guest, "open_raw", json!({"count": 5000})).await;
        assert_eq!(raw.outcome, Outcome::Completed, "{:?}", raw.outcome);
        let held = raw.yields[0]["return0"].as_u64().unwrap_or_default();
        assert!((250..=256).contains(&held), "{held} directories held");
        let code = raw.yields[0]["return1"].as_str().unwrap_or_default();
        assert!(names_code(code, "insufficient-memory"), "{code}");
        // Through Rust's std (wasi-libc): `File::open` returns an error.
        let through_std = run(
            &guest,
            "hold_files",
            json!({"path": "/data/hello.txt", "count": 5000}),
        )
        .await;
        assert_eq!(
            through_std.outcome,
            Outcome::Completed,
            "{:?}",
            through_std.outcome
        );
        let held = through_std.yields[0]["return0"]
            .as_u64()
            .unwrap_or_default();
        assert!((250..=256).contains(&held), "{held} files held");
        let error = through_std.yields[0]["return1"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains("memory"), "{error}");
    }
    // Each task's descriptors were closed with it. The runtime holds a few descriptors of its
    // own; a leak of these tasks would be 250 or more.
    let after = open_descriptors();
    assert!(
        after <= before + 64,
        "{before} host descriptors before, {after} after"
    );
}

#[tokio::test]
async fn a_components_own_caps_on_open_files_and_host_resources_hold() {
    let root = scratch("own-caps");
    let runtime = runtime(Allocation::OnDemand);
    let mut policy = grants(&root);
    policy.resources = HostResourceCaps {
        open_files: 10,
        host_resources: 200,
    };
    let guest = attacks(&runtime, policy).await;
    let raw = run(&guest, "open_raw", json!({"count": 5000})).await;
    assert_eq!(raw.outcome, Outcome::Completed, "{:?}", raw.outcome);
    // Ten descriptors, the grants' preopens the guest holds among them.
    let held = raw.yields[0]["return0"].as_u64().unwrap_or_default();
    assert!((8..=9).contains(&held), "{held} directories held");
    let many = run(&guest, "hold_streams", json!({"count": 1000})).await;
    assert_eq!(
        many.outcome,
        Outcome::Failed(Failure::Limit(LimitExceeded::HostResources { limit: 200 }))
    );
}

/// Runs `open_raw` (opening up to `count` directories) and keeps the task's store, and so
/// its descriptors, until the returned sandbox drops; returns how many it opened.
async fn open_and_keep(guest: &ActionComponent, count: u64) -> (u64, Sandbox) {
    let (events, mut receiver) = mpsc::channel(64);
    let args = json!({ "count": count })
        .as_object()
        .cloned()
        .unwrap_or_default();
    let (outcome, sandbox) = guest
        .run(
            TaskRequest::new("open_raw", args),
            events,
            &TaskControl::new(),
        )
        .await;
    assert_eq!(outcome, Outcome::Completed, "{outcome:?}");
    let mut opened = None;
    while let Ok(event) = receiver.try_recv() {
        if let TaskEvent::Yield(raw) = event {
            let returns: serde_json::Value = serde_json::from_str(raw.get()).expect("JSON");
            opened = returns["return0"].as_u64();
        }
    }
    (opened.expect("open_raw yields its count"), sandbox)
}

#[tokio::test]
async fn all_tasks_together_stay_within_the_process_descriptor_budget() {
    let root = scratch("descriptor-budget");
    let runtime = Runtime::with_descriptor_budget(
        RuntimeConfig {
            allocation: Allocation::OnDemand,
            cache: Some(ComponentCache::new(test_cache_dir())),
            fuel: true,
        },
        DescriptorBudget::with_limit(50),
    )
    .expect("runtime starts");
    let guest = attacks(&runtime, grants(&root)).await;
    // The first task takes all of the budget but the preopens it holds.
    let (first, first_sandbox) = open_and_keep(&guest, 5000).await;
    assert!((48..=49).contains(&first), "{first} opened");
    // While it holds them, a second task (under its own cap of 256) gets nothing more...
    let (second, second_sandbox) = open_and_keep(&guest, 5000).await;
    assert_eq!(second, 0);
    // ...and once both are gone, the budget is whole again.
    drop((first_sandbox, second_sandbox));
    let (third, _third_sandbox) = open_and_keep(&guest, 5000).await;
    assert_eq!(third, first);
    assert!(runtime.descriptor_budget().limit() == 50);
    let process = Runtime::new(RuntimeConfig {
        allocation: Allocation::OnDemand,
        cache: None,
        fuel: false,
    })
    .expect("runtime starts");
    assert!(
        process.descriptor_budget().limit() >= 256,
        "the process's own budget leaves guests room: {}",
        process.descriptor_budget().limit()
    );
}

#[tokio::test]
async fn host_resources_are_capped_per_task_with_a_message_naming_the_limit() {
    let runtime = runtime(Allocation::OnDemand);
    let guest = attacks(&runtime, SandboxPolicy::default()).await;
    let few = run(&guest, "hold_streams", json!({"count": 100})).await;
    assert_eq!(few.single_return(), &json!(100));
    let many = run(&guest, "hold_streams", json!({"count": 100_000})).await;
    assert_eq!(
        many.outcome,
        Outcome::Failed(Failure::Limit(LimitExceeded::HostResources { limit: 1024 }))
    );
    assert_eq!(
        many.outcome.error().as_deref(),
        Some(
            "host resource limit of 1024 exceeded (open files, directories, streams and \
             pollables held at once)"
        )
    );
}

/// Whether a guest's error text names the WASI error `code` (however the guest's bindings
/// spell it: `not-permitted`, `NotPermitted`, ...).
fn names_code(text: &str, code: &str) -> bool {
    let fold = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    fold(text).contains(&fold(code))
}

#[tokio::test]
async fn symlinks_and_hard_links_cannot_be_planted_in_a_grant() {
    let root = scratch("links");
    let runtime = runtime(Allocation::OnDemand);
    let guest = attacks(&runtime, grants(&root)).await;

    // Directly through wasi:filesystem, and through wasi-libc as C or Rust code would.
    let raw = run(
        &guest,
        "symlink",
        json!({"target": "../../../etc", "link": "escape"}),
    )
    .await;
    assert!(names_code(action_error(&raw.outcome), "not-permitted"));
    let inside = run(
        &guest,
        "symlink",
        json!({"target": "hello.txt", "link": "alias"}),
    )
    .await;
    assert!(names_code(action_error(&inside.outcome), "not-permitted"));
    let libc = run(
        &guest,
        "libc_symlink",
        json!({"target": "../../../etc", "link": "/out/escape"}),
    )
    .await;
    assert!(
        action_error(&libc.outcome).contains("Operation not permitted"),
        "{:?}",
        libc.outcome
    );
    for link in ["out/escape", "out/alias"] {
        assert!(
            std::fs::symlink_metadata(root.join(link)).is_err(),
            "{link} was created"
        );
    }

    // Hard links are refused too: linking the host's harmless `sub/up -> ../hello.txt` one
    // level up would make it point out of the grant.
    for (from_grant, from, to) in [
        (0, "hello.txt", "copy.txt"),
        (0, "sub/up", "up"),
        (1, "hello.txt", "from-read-only.txt"),
        (0, "../secret.txt", "secret.txt"),
    ] {
        let link = run(
            &guest,
            "hard_link",
            json!({"from_grant": from_grant, "from": from, "to_grant": 0, "to": to}),
        )
        .await;
        assert!(
            names_code(action_error(&link.outcome), "not-permitted"),
            "{from} -> {to}: {:?}",
            link.outcome
        );
        assert!(
            std::fs::symlink_metadata(root.join("out").join(to)).is_err(),
            "{to}"
        );
    }
}

#[tokio::test]
async fn yields_no_client_can_parse_fail_their_task_cleanly() {
    let runtime = runtime(Allocation::OnDemand);
    let guest = attacks(&runtime, SandboxPolicy::default()).await;
    let deep = format!(
        "{{\"return0\": {}1{}}}",
        "[".repeat(MAX_YIELD_DEPTH),
        "]".repeat(MAX_YIELD_DEPTH)
    );
    for (json, reason) in [
        (
            r#"{"return0": 1e999999}"#.to_string(),
            "number out of range",
        ),
        (r#"{"return0": -1e400}"#.to_string(), "number out of range"),
        (r#"{"return0": "\ud800"}"#.to_string(), "lone surrogate"),
        (r#"{"return0": "x\udfff"}"#.to_string(), "surrogate"),
        (deep, "nesting deeper than the limit of 64 levels"),
        ("[1]".to_string(), "returns must be a JSON object"),
    ] {
        let ran = run(&guest, "yield_raw", json!({ "json": json })).await;
        match &ran.outcome {
            Outcome::Failed(Failure::RefusedOutput(message)) => {
                assert!(
                    message.starts_with("the action's returns were refused: ")
                        && message.contains(reason),
                    "{message}"
                );
            }
            other => panic!("{json}: {other:?}"),
        }
        assert!(ran.yields.is_empty());
    }
    let fine = run(
        &guest,
        "yield_raw",
        json!({"json": r#"{"return0": [1e300, "\ud83d\ude00"]}"#}),
    )
    .await;
    assert_eq!(fine.single_return(), &json!([1e300, "😀"]));
    let big = format!("{{\"return0\": \"{}\"}}", "x".repeat(MAX_YIELD_BYTES));
    let ran = run(&guest, "yield_raw", json!({ "json": big })).await;
    assert!(
        matches!(ran.outcome, Outcome::Failed(Failure::Limit(LimitExceeded::Output { limit, .. })) if limit == 512 * 1024),
        "{:?}",
        ran.outcome
    );
}

#[tokio::test]
async fn error_texts_are_cut_at_the_source() {
    let runtime = runtime(Allocation::OnDemand);
    let guest = attacks(&runtime, SandboxPolicy::default()).await;
    let ran = run(&guest, "fail_with", json!({"bytes": 20 << 20})).await;
    let error = action_error(&ran.outcome);
    assert!(error.len() <= MAX_ERROR_BYTES + 64, "{} bytes", error.len());
    let cut = (20 << 20) - MAX_ERROR_BYTES;
    assert!(
        error.ends_with(&format!("E… [{cut} bytes cut]")),
        "{}",
        &error[error.len() - 40..]
    );
    let short = run(&guest, "fail_with", json!({"bytes": 10})).await;
    assert_eq!(action_error(&short.outcome), "EEEEEEEEEE");
}

mod served {
    use serde_json::json;

    use super::{
        Allocation, MAX_ERROR_BYTES, MIB, Spread, memory_hog, open_descriptors, resident_kib,
        with_memory,
    };
    use crate::serve_support::*;

    /// Every attack above through a served agent, next to a normal action that keeps
    /// answering, while the server's heartbeats (every 100 ms, 1 s to answer) keep being
    /// answered and the host's descriptors and memory stay bounded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attacks_end_as_the_security_model_says_while_the_agent_keeps_serving() {
        if !crate::alone::in_own_process(
            "sandbox_attacks::served::attacks_end_as_the_security_model_says_while_the_agent_keeps_serving",
        ) {
            return;
        }
        let server = rekuest_host::devserver::DevServer::start(fast_server())
            .await
            .expect("server");
        let mut served = components(&["math", "sandbox_attacks"]).await;
        let runtime = super::runtime(Allocation::OnDemand);
        let hog = runtime
            .load_bytes(
                "hog".into(),
                memory_hog(Spread::Instances(3), 400),
                with_memory(64 * MIB),
            )
            .await
            .expect("hog loads");
        served.push(rekuest_host::agent::ServedComponent {
            component: std::sync::Arc::new(hog),
            concurrency: None,
            action_concurrency: Default::default(),
        });
        let serving = Serving::start(fast_agent(&server.url()), served).await;
        until("the agent to connect", || server.is_connected(TOKEN)).await;
        let baseline_fds = open_descriptors();
        let baseline_rss = resident_kib();

        // Checking 200,000 items against a UNION of 32 ENUMs takes a while: off the socket.
        let items = vec![json!("c31_30"); 200_000];
        let heartbeats = server.heartbeats_answered();
        let wide = server
            .assign("wide_check", args(json!({ "xs": items })))
            .expect("assigns");
        for _ in 0..3 {
            let events = run(&server, "add", json!({"a": 2, "b": 3})).await;
            assert_eq!(yields(&events), [return0(json!(5))]);
        }
        let events = finish(&server, &wide).await;
        assert_eq!(
            yields(&events),
            [return0(json!(200_000))],
            "{:?}",
            kinds(&events)
        );
        let bad_item = server
            .assign("wide_check", args(json!({ "xs": [ "c0_0", "nope" ] })))
            .expect("assigns");
        let events = finish(&server, &bad_item).await;
        assert_eq!(terminal(&events).kind, "FAILED");
        assert!(error(terminal(&events)).starts_with("argument 'xs[1]': expected UNION"));

        let cases = [
            (
                "grow",
                json!({}),
                "memory limit of 64 MiB exceeded (the task's linear memories would total 78,708,736 bytes (~75.1 MiB))",
            ),
            (
                "yield_raw",
                json!({"json": r#"{"return0": 1e999999}"#}),
                "the action's returns were refused: number out of range",
            ),
            (
                "yield_raw",
                json!({"json": r#"{"return0": "\ud800"}"#}),
                "the action's returns were refused: a string holds a lone surrogate",
            ),
            (
                "hold_streams",
                json!({"count": 100_000}),
                "host resource limit of 1024 exceeded",
            ),
        ];
        for (action, task_args, expected) in cases {
            let events = run(&server, action, task_args).await;
            let end = terminal(&events);
            assert_eq!(end.kind, "FAILED", "{action}: {:?}", end.fields);
            assert!(error(end).starts_with(expected), "{action}: {}", error(end));
            let events = run(&server, "add", json!({"a": 1, "b": 1})).await;
            assert_eq!(yields(&events), [return0(json!(2))]);
        }
        let events = run(&server, "fail_with", json!({"bytes": 20 << 20})).await;
        let text = error(terminal(&events));
        assert!(text.len() <= MAX_ERROR_BYTES + 64 && text.ends_with("bytes cut]"));

        assert!(
            server.heartbeats_answered() > heartbeats,
            "heartbeats were answered while the attacks ran"
        );
        assert!(
            server.close_codes().is_empty(),
            "{:?}",
            server.close_codes()
        );
        assert_eq!(server.registrations(), 1);
        assert!(server.is_connected(TOKEN));
        let fds = open_descriptors();
        assert!(
            fds <= baseline_fds + 16,
            "{baseline_fds} descriptors before, {fds} after"
        );
        let rss = resident_kib();
        assert!(
            rss <= baseline_rss + 256 * 1024,
            "host RSS grew from {baseline_rss} KiB to {rss} KiB"
        );
        serving.shutdown().await.expect("clean shutdown");
    }
}
