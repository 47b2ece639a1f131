//! The Rust and the Python twin of each example, for tests that check both with one body:
//! each SDK is announced in the test's output, so that a failure names the twin it is in.

use std::sync::{Mutex, PoisonError};

use rekuest_host_tests::{Sdk, host_command};

/// Both SDKs, Rust first, each announced as it is checked.
pub fn sdks() -> impl Iterator<Item = Sdk> {
    Sdk::ALL
        .into_iter()
        .inspect(|sdk| println!("checking the {sdk:?} twin"))
}

/// The path of the `sdk` example `name`; a Python one compiled into the test cache (the one of
/// [`host_command`]) first, by one test at a time: a Python component takes ~20 s to compile,
/// and tests starting at once would each compile it.
pub fn cached_example(sdk: Sdk, name: &str) -> String {
    static WARM: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let path = sdk.component(name).display().to_string();
    let mut warm = WARM.lock().unwrap_or_else(PoisonError::into_inner);
    if sdk == Sdk::Python && !warm.contains(&path) {
        let output = host_command()
            .args(["inspect", &path])
            .output()
            .expect("rekuest-host runs");
        assert!(
            output.status.success(),
            "{sdk:?} {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        warm.push(path.clone());
    }
    path
}
