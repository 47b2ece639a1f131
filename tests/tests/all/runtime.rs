//! The sandbox runtime driven as a library: every example's results, the same for the Rust and
//! the Python twin of each, and every hostile action ending in its clear error while a normal
//! action in the same process succeeds.

use std::time::{Duration, Instant};

use rekuest_host::runtime::{
    ActionComponent, Allocation, Failure, LimitExceeded, Limits, LogLevel, Outcome, Runtime,
    RuntimeConfig, SandboxPolicy, TaskControl,
};
use rekuest_host_tests::tasks::{
    self, Run, assert_structures_travel_in_envelopes, run, run_with, test_runtime,
};
use rekuest_host_tests::{Sdk, component};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::twins::sdks;

fn runtime() -> Runtime {
    test_runtime(64)
}

/// Loads the `sdk` example `name` with `limits`.
async fn load_twin(runtime: &Runtime, sdk: Sdk, name: &str, limits: Limits) -> ActionComponent {
    /// Loads one at a time: a Python component takes ~20 s to compile when it is not cached
    /// yet, and tests loading it at once would each compile it.
    static LOADING: Mutex<()> = Mutex::const_new(());
    let path = tokio::task::spawn_blocking({
        let name = name.to_owned();
        move || sdk.component(&name)
    })
    .await
    .expect("the examples build");
    let policy = SandboxPolicy {
        limits,
        ..SandboxPolicy::default()
    };
    let _loading = LOADING.lock().await;
    runtime
        .load_file(&path, policy)
        .await
        .unwrap_or_else(|error| panic!("{sdk:?} {name} loads: {error}"))
}

/// Loads the Rust example `name` with `limits`.
async fn load(runtime: &Runtime, name: &str, limits: Limits) -> ActionComponent {
    load_twin(runtime, Sdk::Rust, name, limits).await
}

fn single_return(run: &Run) -> &Value {
    run.single_return()
}

fn action_error(run: &Run) -> &str {
    tasks::action_error(&run.outcome)
}

#[tokio::test]
async fn math_actions_return_their_results() {
    let runtime = runtime();
    for sdk in sdks() {
        let math = load_twin(&runtime, sdk, "math", Limits::default()).await;
        for (action, args, expected) in [
            ("add", json!({"a": 1, "b": 2}), json!(3)),
            ("add", json!({"a": i64::MAX, "b": 1}), json!(i64::MIN)),
            ("divide", json!({"a": 7, "b": 2}), json!(3.5)),
            ("sum", json!({"values": [1, 2.5]}), json!(3.5)),
            ("power", json!({"base": 3}), json!(9.0)),
            ("power", json!({"base": 2, "exponent": 10}), json!(1024.0)),
            ("clamp", json!({"value": 5, "max": 3}), json!(3)),
            ("clamp", json!({"value": 5, "min": null}), json!(5)),
        ] {
            let result = run(&math, action, args.clone()).await;
            assert_eq!(single_return(&result), &expected, "{action} {args}");
        }
        let divmod = run(&math, "divmod", json!({"a": 17, "b": 5})).await;
        assert_eq!(divmod.yields, [json!({"return0": 3, "return1": 2})]);
        let divmod = run(&math, "divmod", json!({"a": -17, "b": 5})).await;
        assert_eq!(divmod.yields, [json!({"return0": -3, "return1": -2})]);
        let by_zero = run(&math, "divide", json!({"a": 1, "b": 0})).await;
        assert_eq!(
            by_zero.outcome,
            Outcome::Failed(Failure::Action("cannot divide by zero".into()))
        );
        assert!(by_zero.yields.is_empty());
        let empty = run(&math, "mean", json!({"values": []})).await;
        assert_eq!(action_error(&empty), "cannot average an empty list");
    }
}

#[tokio::test]
async fn bad_args_fail_naming_the_port_before_the_guest_runs() {
    let runtime = runtime();
    for sdk in sdks() {
        let math = load_twin(&runtime, sdk, "math", Limits::default()).await;
        let wrong_kind = run(&math, "add", json!({"a": "one", "b": 2})).await;
        assert_eq!(
            wrong_kind.outcome,
            Outcome::Failed(Failure::InvalidArgs(
                "argument 'a': expected INT, got string \"one\"".into()
            ))
        );
        let missing = run(&math, "add", json!({"a": 1})).await;
        assert_eq!(
            missing.outcome,
            Outcome::Failed(Failure::InvalidArgs(
                "argument 'b': missing; expected INT".into()
            ))
        );
        let unknown = run(&math, "subtract", json!({})).await;
        assert!(
            matches!(&unknown.outcome, Outcome::Failed(Failure::InvalidArgs(message)) if message.contains("unknown action 'subtract'")),
            "{:?}",
            unknown.outcome
        );
    }
}

#[tokio::test]
async fn text_actions_use_defaults_options_and_enums() {
    let runtime = runtime();
    for sdk in sdks() {
        let text = load_twin(&runtime, sdk, "text", Limits::default()).await;
        let greeting = run(&text, "greet", json!({"name": "Ada"})).await;
        assert_eq!(single_return(&greeting), &json!("Hello, Ada!"));
        let custom = run(
            &text,
            "greet",
            json!({"name": "Ada", "greeting": "Hi", "punctuation": "?"}),
        )
        .await;
        assert_eq!(single_return(&custom), &json!("Hi, Ada?"));
        let upper = run(
            &text,
            "change_case",
            json!({"text": "hello world", "case": "Upper"}),
        )
        .await;
        assert_eq!(single_return(&upper), &json!("HELLO WORLD"));
        let title = run(
            &text,
            "change_case",
            json!({"text": "hello wORLD", "case": "Title"}),
        )
        .await;
        assert_eq!(single_return(&title), &json!("Hello World"));
        let bad_choice = run(
            &text,
            "change_case",
            json!({"text": "x", "case": "SIDEWAYS"}),
        )
        .await;
        assert!(matches!(
            bad_choice.outcome,
            Outcome::Failed(Failure::InvalidArgs(_))
        ));
        let counts = run(&text, "count_words", json!({"text": "The cat, the hat."})).await;
        assert_eq!(
            single_return(&counts),
            &json!({"the": 2, "cat": 1, "hat": 1})
        );
        let stats = run(&text, "stats", json!({"text": "one two\nthree"})).await;
        assert_eq!(
            single_return(&stats),
            &json!({"words": 3, "chars": 13, "lines": 2})
        );
        let summary = run(
            &text,
            "summarize",
            json!({"stats": {"words": 3, "chars": 13, "lines": 2}}),
        )
        .await;
        assert_eq!(
            single_return(&summary),
            &json!("3 words, 13 characters, 2 lines")
        );
        let repeated = run(&text, "repeat", json!({"text": "ab", "times": 3})).await;
        assert_eq!(single_return(&repeated), &json!("ababab"));
    }
}

#[tokio::test]
async fn generators_yield_each_item_with_progress_and_logs() {
    let runtime = runtime();
    for sdk in sdks() {
        let generator = load_twin(&runtime, sdk, "generator", Limits::default()).await;
        let counted = run(&generator, "count", json!({"n": 5})).await;
        assert_eq!(counted.outcome, Outcome::Completed);
        let values: Vec<&Value> = counted
            .yields
            .iter()
            .map(|returns| &returns["return0"])
            .collect();
        assert_eq!(
            values,
            [&json!(1), &json!(2), &json!(3), &json!(4), &json!(5)]
        );
        assert_eq!(counted.progress, [20, 40, 60, 80, 100]);
        assert!(
            counted
                .logs
                .contains(&(LogLevel::Info, "counted 5".to_owned())),
            "{:?}",
            counted.logs
        );

        let words = run(&generator, "enumerate_words", json!({"text": "to be"})).await;
        assert_eq!(
            words.yields,
            [
                json!({"return0": 0, "return1": "to"}),
                json!({"return0": 1, "return1": "be"})
            ]
        );

        // An error after some items: the items already yielded stay, the task fails.
        let fibonacci = run(&generator, "fibonacci", json!({"n": 100})).await;
        assert_eq!(fibonacci.yields.len(), 94);
        assert_eq!(
            fibonacci.yields[93]["return0"],
            json!(12_200_160_415_121_876_738_u64)
        );
        assert_eq!(
            action_error(&fibonacci),
            "Fibonacci number 94 does not fit in 64 bits"
        );

        // Cancelled while it sleeps between items.
        let control = TaskControl::new();
        let stopper = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            stopper.cancel();
        });
        let started = Instant::now();
        let ticks = run_with(
            &generator,
            "ticks",
            json!({"n": 100, "seconds": 0.2}),
            &control,
        )
        .await;
        assert_eq!(ticks.outcome, Outcome::Cancelled);
        assert!(!ticks.yields.is_empty() && ticks.yields.len() < 100);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn structures_arrive_expanded_and_leave_shrunk_in_envelopes() {
    let runtime = runtime();
    for sdk in sdks() {
        let structures = load_twin(&runtime, sdk, "structures", Limits::default()).await;
        assert_structures_travel_in_envelopes(&structures).await;
        let malformed = run(
            &structures,
            "crop",
            json!({"image": "not-an-image", "width": 10}),
        )
        .await;
        assert_eq!(
            action_error(&malformed),
            "argument 'image': cannot expand STRUCTURE @mikro/image from \"not-an-image\": \
             an image reference starts with \"image:\""
        );
    }
}

fn assert_limit(run: &Run, check: impl Fn(&LimitExceeded) -> bool) {
    match &run.outcome {
        Outcome::Failed(Failure::Limit(limit)) if check(limit) => {}
        other => panic!("expected a limit failure, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_guests_end_in_clear_errors_while_a_normal_task_succeeds() {
    let runtime = runtime();
    for sdk in sdks() {
        // Python needs room for the interpreter's start, and for its memory bomb and deep
        // recursion to reach 32 MiB on a loaded machine.
        let (timeout, promptly) = match sdk {
            Sdk::Rust => (Duration::from_secs(2), Duration::from_secs(10)),
            Sdk::Python => (Duration::from_secs(6), Duration::from_secs(15)),
        };
        let limits = Limits {
            fuel: None,
            memory_bytes: 32 << 20,
            timeout,
            ..Limits::default()
        };
        let hostile = load_twin(&runtime, sdk, "hostile", limits).await;
        let math = load_twin(&runtime, sdk, "math", Limits::default()).await;

        let started = Instant::now();
        let (spin, bomb, recurse, panic, sleep, passwd, env, connect, exit, add) = tokio::join!(
            run(&hostile, "spin", json!({})),
            run(&hostile, "memory_bomb", json!({})),
            run(&hostile, "recurse", json!({"depth": 100_000_000})),
            run(&hostile, "panic", json!({"message": "the guest gave up"})),
            run(&hostile, "sleep", json!({"seconds": 600.0})),
            run(&hostile, "read_file", json!({"path": "/etc/passwd"})),
            run(&hostile, "env_count", json!({})),
            run(&hostile, "connect", json!({"addr": "127.0.0.1:9"})),
            run(&hostile, "exit", json!({"code": 3})),
            async {
                // Runs while the hostile tasks are busy.
                tokio::time::sleep(Duration::from_millis(200)).await;
                run(&math, "add", json!({"a": 20, "b": 22})).await
            },
        );
        assert_eq!(single_return(&add), &json!(42));
        assert_limit(&spin, |limit| {
            matches!(limit, LimitExceeded::Timeout { .. })
        });
        assert_limit(&sleep, |limit| {
            matches!(limit, LimitExceeded::Timeout { .. })
        });
        assert_limit(
            &bomb,
            |limit| matches!(limit, LimitExceeded::Memory { limit, .. } if *limit == 32 << 20),
        );
        match sdk {
            Sdk::Rust => assert!(
                matches!(&recurse.outcome, Outcome::Critical(message) if message.contains("stack overflow")),
                "{:?}",
                recurse.outcome
            ),
            // Python frames live in linear memory: deep recursion runs into the memory limit.
            Sdk::Python => assert_limit(&recurse, |limit| {
                matches!(limit, LimitExceeded::Memory { .. })
            }),
        }
        assert!(
            matches!(&panic.outcome, Outcome::Critical(message) if message.contains("the guest gave up")),
            "{:?}",
            panic.outcome
        );
        assert!(
            action_error(&passwd).contains("No such file"),
            "{:?}",
            passwd.outcome
        );
        assert_eq!(single_return(&env), &json!(0));
        assert!(
            action_error(&connect).starts_with("cannot connect to 127.0.0.1:9"),
            "{:?}",
            connect.outcome
        );
        assert!(
            matches!(&exit.outcome, Outcome::Critical(message) if message.contains("exit()")),
            "{:?}",
            exit.outcome
        );
        assert!(
            started.elapsed() < promptly,
            "limits end hostile tasks promptly: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn python_exceptions_are_critical_with_the_traceback_logged() {
    let runtime = runtime();
    let hostile = load_twin(&runtime, Sdk::Python, "hostile", Limits::default()).await;
    let panic = run(&hostile, "panic", json!({"message": "the guest gave up"})).await;
    assert_eq!(
        panic.outcome,
        Outcome::Critical("RuntimeError: the guest gave up".into())
    );
    let (level, traceback) = panic.logs.last().expect("the traceback is logged");
    assert_eq!(*level, LogLevel::Critical);
    assert!(traceback.starts_with("Traceback"), "{traceback}");
    assert!(traceback.contains("in panic"), "{traceback}");
}

#[tokio::test]
async fn fuel_budget_stops_a_spinning_guest_before_its_timeout() {
    let runtime = runtime();
    for sdk in sdks() {
        // The Python interpreter's start alone burns some tens of millions.
        let (budget, memory_bytes, promptly) = match sdk {
            Sdk::Rust => (50_000_000, 32 << 20, Duration::from_secs(5)),
            Sdk::Python => (200_000_000, 64 << 20, Duration::from_secs(10)),
        };
        let limits = Limits {
            fuel: Some(budget),
            memory_bytes,
            timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let hostile = load_twin(&runtime, sdk, "hostile", limits).await;
        let started = Instant::now();
        let spin = run(&hostile, "spin", json!({})).await;
        assert_limit(&spin, |limit| *limit == LimitExceeded::Fuel { budget });
        assert!(started.elapsed() < promptly, "{:?}", started.elapsed());
        assert_eq!(
            spin.outcome.error(),
            Some(format!("fuel budget of {budget} exhausted"))
        );
    }
}

#[tokio::test]
async fn without_fuel_metering_timeouts_still_hold_and_fuel_limits_are_refused() {
    let runtime = Runtime::new(RuntimeConfig {
        allocation: Allocation::OnDemand,
        cache: None,
        fuel: false,
    })
    .expect("runtime starts");
    let limits = Limits {
        fuel: None,
        memory_bytes: 32 << 20,
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let hostile = load(&runtime, "hostile", limits).await;
    let started = Instant::now();
    let spin = run(&hostile, "spin", json!({})).await;
    assert_limit(&spin, |limit| {
        matches!(limit, LimitExceeded::Timeout { .. })
    });
    assert!(started.elapsed() < Duration::from_secs(5));
    let math = load(&runtime, "math", Limits::default()).await;
    assert_eq!(
        single_return(&run(&math, "add", json!({"a": 2, "b": 3})).await),
        &json!(5)
    );

    let fueled = SandboxPolicy {
        limits: Limits {
            fuel: Some(1_000),
            ..Limits::default()
        },
        ..SandboxPolicy::default()
    };
    let refused = runtime
        .load_file(&component("math"), fueled)
        .await
        .err()
        .expect("a fuel limit needs fuel metering");
    assert!(
        refused
            .to_string()
            .contains("has a fuel limit, but the runtime was created without fuel metering"),
        "{refused}"
    );
}

#[tokio::test]
async fn output_floods_are_truncated_not_buffered() {
    let runtime = runtime();
    let hostile = load(&runtime, "hostile", Limits::default()).await;
    let shout = run(&hostile, "shout", json!({"megabytes": 8})).await;
    assert_eq!(shout.outcome, Outcome::Completed);
    // The guest's own text is capped; the host's markers ("[… dropped …]", "[… truncated …]")
    // come on top, one per rate-limit window, so a slow machine sees more of them.
    let is_marker = |line: &str| line.starts_with('[');
    let text: usize = shout
        .logs
        .iter()
        .map(|(_, line)| line.as_str())
        .filter(|line| !is_marker(line))
        .map(str::len)
        .sum();
    assert!(
        text <= rekuest_host::runtime::OutputCaps::DEFAULT.log_bytes,
        "{text} bytes of guest logs"
    );
    assert!(
        shout.logs.len()
            <= rekuest_host::runtime::OutputCaps::DEFAULT.log_lines_per_second as usize * 3,
        "{} lines",
        shout.logs.len()
    );
    let last = &shout.logs.last().expect("some lines get through").1;
    assert!(
        last.contains("dropped") || last.contains("truncated"),
        "{last}"
    );
    for sdk in sdks() {
        let hostile = load_twin(&runtime, sdk, "hostile", Limits::default()).await;
        let lines = match sdk {
            Sdk::Rust => 100_000,
            // As many as a slow interpreter logs in a second or two.
            Sdk::Python => 20_000,
        };
        let flood = run(&hostile, "log_flood", json!({ "lines": lines })).await;
        assert_eq!(flood.outcome, Outcome::Completed);
        assert!(flood.logs.len() < 5_000, "{} lines", flood.logs.len());
        let big = run(&hostile, "big_yield", json!({"megabytes": 8})).await;
        assert_limit(&big, |limit| matches!(limit, LimitExceeded::Output { .. }));
    }
}

/// Runs `action` and calls `stop` on its control once it has yielded or logged (or after
/// `delay` for a guest that says nothing); returns the run and how long it took after `stop`.
async fn stopped_after(
    component: &ActionComponent,
    action: &str,
    delay: Duration,
    stop: fn(&TaskControl),
) -> (Run, Duration) {
    let control = TaskControl::new();
    let stopper = control.clone();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(None));
    let asked_at = std::sync::Arc::clone(&asked);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        *asked_at.lock().expect("lock") = Some(Instant::now());
        stop(&stopper);
    });
    let run = run_with(component, action, json!({}), &control).await;
    let asked = asked.lock().expect("lock").expect("the stop was sent");
    (run, asked.elapsed())
}

#[tokio::test]
async fn a_cancelled_generator_sees_is_cancelled_and_cleans_up_within_its_grace() {
    let runtime = runtime();
    for sdk in sdks() {
        // A grace far longer than the test: ending early proves the guest ended by itself
        // (the Rust iterator's `Drop`, the Python generator's `finally`).
        let generator = load_twin(
            &runtime,
            sdk,
            "generator",
            Limits {
                cancel_grace: Duration::from_secs(60),
                ..Limits::default()
            },
        )
        .await;
        let (run, took) = stopped_after(
            &generator,
            "until_cancelled",
            Duration::from_millis(300),
            TaskControl::cancel,
        )
        .await;
        assert_eq!(run.outcome, Outcome::Cancelled, "{:?}", run.logs);
        assert!(!run.yields.is_empty());
        let (level, message) = run.logs.last().expect("the cleanup logged");
        assert_eq!(*level, LogLevel::Info);
        assert_eq!(
            message,
            &format!("cancelled after {} items: cleaned up", run.yields.len())
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}

#[tokio::test]
async fn a_guest_ignoring_a_cancel_is_stopped_after_its_grace_and_interrupt_is_immediate() {
    let runtime = runtime();
    for sdk in sdks() {
        stopping_a_spinning_guest(&runtime, sdk).await;
    }
}

/// Cancel, interrupt, and an interrupt during a cancel's grace, on the `sdk` twin's `spin`.
async fn stopping_a_spinning_guest(runtime: &Runtime, sdk: Sdk) {
    let grace = Duration::from_millis(800);
    let hostile = load_twin(
        runtime,
        sdk,
        "hostile",
        Limits {
            cancel_grace: grace,
            ..Limits::default()
        },
    )
    .await;
    let (spin, took) = stopped_after(
        &hostile,
        "spin",
        Duration::from_millis(200),
        TaskControl::cancel,
    )
    .await;
    assert_eq!(spin.outcome, Outcome::Cancelled);
    assert!(took >= grace, "stopped before its grace ended: {took:?}");
    assert!(took < grace + Duration::from_secs(5), "{took:?}");

    let patient = load_twin(
        runtime,
        sdk,
        "hostile",
        Limits {
            cancel_grace: Duration::from_secs(60),
            ..Limits::default()
        },
    )
    .await;
    let (spin, took) = stopped_after(
        &patient,
        "spin",
        Duration::from_millis(200),
        TaskControl::interrupt,
    )
    .await;
    assert_eq!(spin.outcome, Outcome::Interrupted);
    assert!(took < Duration::from_secs(2), "{took:?}");

    // An interrupt during a cancel's grace stops the guest at once.
    let control = TaskControl::new();
    let stopper = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.interrupt();
    });
    let started = Instant::now();
    let spin = run_with(&patient, "spin", json!({}), &control).await;
    assert_eq!(spin.outcome, Outcome::Interrupted);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn pause_parks_a_guest_and_resume_continues_it() {
    let runtime = runtime();
    let generator = load(&runtime, "generator", Limits::default()).await;
    let control = TaskControl::new();
    control.pause();
    let paused = control.clone();
    let task = tokio::spawn({
        let control = control.clone();
        async move { run_with(&generator, "count", json!({"n": 3}), &control).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "a paused task does not finish");
    paused.resume();
    let counted = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("resumed task finishes")
        .expect("task joins");
    assert_eq!(counted.outcome, Outcome::Completed);
    assert_eq!(counted.yields.len(), 3);
}

#[tokio::test]
async fn paused_time_does_not_count_against_the_timeout() {
    let runtime = runtime();
    let limits = Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let hostile = load(&runtime, "hostile", limits).await;
    let control = TaskControl::new();
    let steering = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        steering.pause();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        steering.resume();
    });
    let started = Instant::now();
    let spin = run_with(&hostile, "spin", json!({}), &control).await;
    assert_limit(&spin, |limit| {
        matches!(limit, LimitExceeded::Timeout { .. })
    });
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2400),
        "paused time counted: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}
