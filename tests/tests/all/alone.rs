//! Tests that measure the whole process (its resident memory, its open descriptors) run in a
//! process of their own: in this binary the other tests, running at the same time, would count.

use std::process::Command;

/// Names the one test a child process of this binary runs.
const ALONE: &str = "REKUEST_TESTS_ALONE";

/// Whether the calling test runs its body here. In the child process started for `test` (its
/// path in this binary, `module::name`) it is true; elsewhere it runs `test` in such a child,
/// fails when the child's test failed or did not run, and is false.
pub fn in_own_process(test: &str) -> bool {
    if std::env::var_os(ALONE).is_some_and(|name| name == test) {
        return true;
    }
    let binary = std::env::current_exe().expect("the test binary knows its path");
    let output = Command::new(binary)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, test)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} alone in a process of its own: {}",
        output.status
    );
    false
}
