//! The author's first steps from an empty directory, through the `rekuest-host` binary: `new`,
//! build, inspect and call, as the README's walk-throughs say (run verbatim); and the
//! compiled-component cache (`cache list|clean`, its size cap).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rekuest_host_tests::{
    Sdk, component, host_binary, host_command, test_cache_dir, workspace_root,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An empty directory outside the workspace, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rekuest-host-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lines of the README's `sh` block that starts with `first`.
fn readme_walkthrough(first: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let blocks: Vec<&str> = readme.split("```sh\n").skip(1).collect();
    let block = blocks
        .iter()
        .find(|block| block.starts_with(first))
        .unwrap_or_else(|| panic!("the README has no sh block starting with {first:?}"));
    let block = block.split("```").next().unwrap_or_default();
    block.lines().map(str::to_string).collect()
}

/// Runs the walk-through's lines in `dir` as a user types them (`rekuest-host` on the PATH,
/// `cd` changing the directory of the following lines); a line commented with JSON must print
/// exactly that. `after_new` prepares the new project before it is built.
fn run_walkthrough(lines: &[String], dir: &Path, after_new: impl Fn(&Path)) {
    let bin_dir = host_binary()
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("a PATH");
    let mut cwd = dir.to_path_buf();
    for line in lines {
        let (command, comment) = match line.split_once(" #") {
            Some((command, comment)) => (command.trim(), Some(comment.trim())),
            None => (line.trim(), None),
        };
        if let Some(target) = command.strip_prefix("cd ") {
            cwd = cwd.join(target.trim());
            continue;
        }
        let output = Command::new("sh")
            .args(["-c", command])
            .current_dir(&cwd)
            .env("PATH", &path)
            .env("REKUEST_HOST_CACHE_DIR", test_cache_dir())
            .env("CARGO_NET_OFFLINE", "true")
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("sh runs");
        assert!(
            output.status.success(),
            "`{command}` failed ({}):\n{}{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        if let Some(expected) = comment.filter(|comment| comment.starts_with('{')) {
            assert_eq!(text(&output.stdout).trim(), expected, "`{command}` printed");
        }
        if command.starts_with("rekuest-host new ") {
            after_new(&cwd);
        }
    }
}

/// What the README's walk-through of each SDK starts with and what `new` writes.
fn walkthrough(sdk: Sdk) -> (&'static str, &'static str, [&'static str; 3]) {
    match sdk {
        Sdk::Rust => (
            "rekuest-host new my-actions",
            "my-actions",
            ["Cargo.toml", "src/lib.rs", ".gitignore"],
        ),
        Sdk::Python => (
            "rekuest-host new my_actions --python",
            "my_actions",
            ["actions.py", "test_actions.py", "build.sh"],
        ),
    }
}

/// Runs the README walk-through of `sdk` verbatim in an empty directory, then the test `new`
/// wrote for a Python project.
fn walk_through_the_readme(sdk: Sdk) {
    let (first_line, project_name, files) = walkthrough(sdk);
    let scratch = Scratch::new(&format!("new-{sdk:?}"));
    run_walkthrough(&readme_walkthrough(first_line), &scratch.0, |dir| {
        let project = dir.join(project_name);
        for file in files {
            assert!(project.join(file).is_file(), "{sdk:?}: new wrote {file}");
        }
        if sdk == Sdk::Rust {
            // Only for speed: the workspace's locked versions (no registry look-up) and its
            // target directory (the SDK's dependencies are built there already).
            std::fs::copy(
                workspace_root().join("Cargo.lock"),
                project.join("Cargo.lock"),
            )
            .expect("Cargo.lock copied");
            let target = host_binary()
                .parent()
                .and_then(Path::parent)
                .expect("the target directory")
                .to_path_buf();
            std::os::unix::fs::symlink(target, project.join("target")).expect("target linked");
        }
    });
    if sdk == Sdk::Python {
        // The test `new` wrote passes on a normal Python with the SDK on its path.
        let output = Command::new("python3")
            .args(["-m", "unittest", "discover", "-s", project_name])
            .current_dir(&scratch.0)
            .env("PYTHONPATH", workspace_root().join("guest-sdk/python"))
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(
            text(&output.stderr).contains("Ran 2 tests"),
            "{}",
            text(&output.stderr)
        );
    }
}

// One test per SDK (one body): each walk-through builds a project for a minute, and the two
// run side by side.
#[test]
fn the_readme_rust_walkthrough_works_from_an_empty_directory() {
    walk_through_the_readme(Sdk::Rust);
}

#[test]
fn the_readme_python_walkthrough_works_from_an_empty_directory() {
    walk_through_the_readme(Sdk::Python);
}

#[test]
fn new_refuses_a_bad_name_and_an_existing_directory_with_exit_code_2() {
    let scratch = Scratch::new("new-refused");
    let new = |args: &[&str]| {
        Command::new(host_binary())
            .arg("new")
            .args(args)
            .current_dir(&scratch.0)
            .output()
            .expect("rekuest-host runs")
    };
    let bad = new(&["9lives"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("'9lives' cannot name a project: it must start with a letter"),
        "{}",
        text(&bad.stderr)
    );
    let slash = new(&["a/b"]);
    assert_eq!(slash.status.code(), Some(2));
    assert!(
        text(&slash.stderr).contains("use only letters, digits"),
        "{}",
        text(&slash.stderr)
    );

    std::fs::create_dir(scratch.0.join("taken")).expect("a directory");
    std::fs::write(scratch.0.join("taken/keep.txt"), "mine").expect("a file");
    let taken = new(&["taken", "--python"]);
    assert_eq!(taken.status.code(), Some(2));
    assert!(
        text(&taken.stderr).contains("taken already exists"),
        "{}",
        text(&taken.stderr)
    );
    assert_eq!(
        std::fs::read_dir(scratch.0.join("taken"))
            .expect("still there")
            .count(),
        1,
        "nothing was written into the existing directory"
    );
    let no_sdk = new(&["fresh", "--sdk", "/nonexistent"]);
    assert_eq!(no_sdk.status.code(), Some(2));
    assert!(
        text(&no_sdk.stderr).contains("no rekuest-guest SDK at /nonexistent"),
        "{}",
        text(&no_sdk.stderr)
    );
    assert!(!scratch.0.join("fresh").exists());
}

fn cache_command(cache: &Path, args: &[&str]) -> Output {
    let output = Command::new(host_binary())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env_remove("REKUEST_HOST_CACHE_MAX")
        .output()
        .expect("rekuest-host runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    output
}

#[test]
fn the_cache_lists_evicts_the_least_recently_used_beyond_its_cap_and_cleans() {
    let scratch = Scratch::new("cache");
    let cache = scratch.0.join("cache");
    let math = component("math").display().to_string();
    let text_component = component("text").display().to_string();

    let empty = cache_command(&cache, &["cache", "list"]);
    assert!(
        text(&empty.stdout).starts_with("0 compiled components, 0 B of 2.0 GiB in "),
        "{}",
        text(&empty.stdout)
    );

    cache_command(&cache, &["inspect", &math]);
    let one = text(&cache_command(&cache, &["cache", "list"]).stdout);
    let lines: Vec<&str> = one.lines().collect();
    assert_eq!(lines.len(), 3, "a header, one entry and the total:\n{one}");
    assert!(lines[0].starts_with("COMPONENT"), "{one}");
    assert!(lines[1].starts_with("math "), "{one}");
    assert!(lines[2].starts_with("1 compiled component, "), "{one}");

    // A cap smaller than one entry keeps only the newest: math is evicted when text is stored.
    cache_command(&cache, &["--cache-max", "1KiB", "inspect", &text_component]);
    let after = text(&cache_command(&cache, &["--cache-max", "1KiB", "cache", "list"]).stdout);
    let names: Vec<&str> = after
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| !name.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(names, ["text"], "{after}");
    assert!(after.contains("of 1.0 KiB in "), "{after}");

    let cleaned = text(&cache_command(&cache, &["cache", "clean"]).stdout);
    assert!(
        cleaned.starts_with("removed 1 compiled component ("),
        "{cleaned}"
    );
    let listed = text(&cache_command(&cache, &["cache", "list"]).stdout);
    assert!(listed.starts_with("0 compiled components"), "{listed}");
}

/// The workspace's target directory (where the examples and the SDK are built already).
fn shared_target() -> PathBuf {
    host_binary()
        .parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .to_path_buf()
}

/// Builds each `(name, lib.rs)` as a crate depending on the SDK, in one workspace with the
/// shared target and the workspace's locked versions (only for speed), and returns cargo's
/// output.
fn build_fixtures(scratch: &Path, crates: &[(&str, &str)]) -> String {
    let sdk = workspace_root().join("guest-sdk");
    let members: Vec<String> = crates.iter().map(|(name, _)| format!("{name:?}")).collect();
    std::fs::write(
        scratch.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"3\"\nmembers = [{}]\n\n[profile.wasm]\ninherits = \"release\"\n\
             opt-level = \"s\"\nlto = true\nstrip = true\ncodegen-units = 1\npanic = \"unwind\"\n",
            members.join(", ")
        ),
    )
    .expect("workspace manifest");
    for (name, source) in crates {
        let dir = scratch.join(name);
        std::fs::create_dir_all(dir.join("src")).expect("crate dir");
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = {name:?}\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\n\
                 crate-type = [\"cdylib\"]\n\n[dependencies]\nrekuest-guest = {{ path = {:?} }}\n",
                sdk.display().to_string()
            ),
        )
        .expect("crate manifest");
        std::fs::write(dir.join("src/lib.rs"), source).expect("lib.rs");
    }
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        scratch.join("Cargo.lock"),
    )
    .expect("Cargo.lock copied");
    let output = Command::new("cargo")
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "--keep-going",
            "--offline",
        ])
        .current_dir(scratch)
        .env("CARGO_TARGET_DIR", shared_target())
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .expect("cargo runs");
    assert!(!output.status.success(), "the fixtures must not build");
    text(&output.stderr)
}

/// The error lines (`error: ...`, `error[E...]: ...`) cargo printed for crate `name`'s source.
fn errors_of<'a>(output: &'a str, name: &str) -> Vec<&'a str> {
    let mut errors = Vec::new();
    let mut current: Option<&str> = None;
    for line in output.lines() {
        if line.starts_with("error") {
            current = Some(line);
        } else if let Some(error) = current
            && line.trim_start().starts_with("-->")
        {
            if line.contains(&format!("{name}/src/lib.rs")) {
                errors.push(error);
            }
            current = None;
        }
    }
    errors
}

#[test]
fn sdk_mistakes_fail_the_build_once_with_what_to_do() {
    let scratch = Scratch::new("sdk-mistakes");
    let output = build_fixtures(
        &scratch.0,
        &[
            (
                "bad_default",
                "use rekuest_guest::prelude::*;\n\
                 #[register]\n\
                 fn pick(#[arg(default = \"abc\")] n: i64, #[arg(default = 2.5)] count: u32, \
                 #[arg(default = 1)] scale: f64, #[arg(default = null)] tag: Option<String>) -> i64 {\n\
                 \x20   let _ = (count, scale, tag);\n    n\n}\n\
                 rekuest_guest::export_actions!(pick);\n",
            ),
            (
                "unregistered",
                "use rekuest_guest::prelude::*;\n\
                 /// Not an action: no #[register].\n\
                 fn add(a: i64) -> i64 { a }\n\
                 mod ops {\n\
                 \x20   pub fn mul(a: i64) -> i64 { a }\n}\n\
                 #[register]\nfn one() -> i64 { 1 }\n\
                 rekuest_guest::export_actions!(one, add, ops::mul);\n",
            ),
            (
                "unexported",
                "use rekuest_guest::prelude::*;\n\
                 #[register]\nfn one() -> i64 { 1 }\n\
                 #[register]\nfn forgotten() -> i64 { 2 }\n\
                 rekuest_guest::export_actions!(one);\n",
            ),
            (
                "method",
                "use rekuest_guest::prelude::*;\n\
                 struct Counter;\n\
                 impl Counter {\n\
                 \x20   #[register]\n    fn get(&self) -> i64 { 1 }\n}\n\
                 #[register]\nfn one() -> i64 { 1 }\n\
                 rekuest_guest::export_actions!(one);\n",
            ),
            (
                "char_port",
                "use rekuest_guest::prelude::*;\n\
                 #[register]\nfn initial(letter: char) -> char { letter }\n\
                 rekuest_guest::export_actions!(initial);\n",
            ),
        ],
    );

    let bad_default = errors_of(&output, "bad_default");
    assert_eq!(bad_default.len(), 2, "{output}");
    assert!(
        output.contains(
            "`#[arg(default = \"abc\")]` does not fit `n: i64`: that port takes no string default"
        ),
        "{output}"
    );
    assert!(
        output.contains(
            "`#[arg(default = 2.5)]` does not fit `count: u32`: that port takes no float default"
        ),
        "{output}"
    );

    // Each listed function without #[register] is named, at its entry in the list.
    let unregistered = errors_of(&output, "unregistered");
    assert_eq!(unregistered.len(), 2, "{output}");
    assert!(
        unregistered[0].contains("`add` is not an action: put #[register] on it"),
        "{output}"
    );
    assert!(
        unregistered[1].contains("`ops::mul` is not an action: put #[register] on it"),
        "{output}"
    );
    assert!(
        output.contains("export_actions!(one, add, ops::mul);")
            && output.contains("`add` has no #[register]"),
        "the error points at the entry: {output}"
    );

    // A registered function left out of the list fails the build, named.
    let unexported = errors_of(&output, "unexported");
    assert_eq!(unexported.len(), 1, "{output}");
    assert!(
        unexported[0].contains("`forgotten` has #[register] but is not listed in export_actions!"),
        "{output}"
    );

    let method = errors_of(&output, "method");
    assert_eq!(method.len(), 1, "{output}");
    assert!(
        method[0].contains("`#[register]` goes on a free function, not a method"),
        "{output}"
    );

    // One error per place the type is used (the arg and the return), none suggesting to
    // implement `Structure` for `char`.
    let char_port = errors_of(&output, "char_port");
    assert_eq!(char_port.len(), 2, "{output}");
    for error in char_port {
        assert!(
            error.contains("`char` cannot be a rekuest port"),
            "{output}"
        );
    }
    assert!(
        !output.contains("Structure` is not implemented"),
        "{output}"
    );
}

#[test]
fn ctrl_c_on_call_cancels_cooperatively_and_the_action_cleans_up() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = host_command()
        .args([
            "call",
            &component("generator").display().to_string(),
            "until_cancelled",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rekuest-host runs");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a first yield");
    assert_eq!(first.trim(), r#"{"return0":1}"#);
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let output = child.wait_with_output().expect("rekuest-host ends");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("cancelling the task (Ctrl-C again to stop it at once)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("items: cleaned up"),
        "the action's cleanup ran:\n{stderr}"
    );
}
