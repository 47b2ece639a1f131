//! Example actions that attack the sandbox: each is an honest attempt at what its name says,
//! for the host's tests to prove that limits, grants and isolation hold.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use rekuest_guest::prelude::*;

/// Loop forever without calling the host.
///
/// Only fuel or an epoch deadline can stop it.
#[register]
fn spin() {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocate memory until the allocator gives up.
///
/// Grows a list of 1 MiB chunks forever, writing to every chunk so that the memory is really
/// used.
#[register]
fn memory_bomb() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let chunk = vec![0xA5u8; 1 << 20];
        chunks.push(black_box(chunk));
    }
}

#[inline(never)]
fn dive(level: u64, depth: u64) -> u64 {
    // A frame with a buffer the optimizer must keep, and work after the call, so that the
    // recursion cannot become a loop.
    let mut frame = [0u8; 256];
    frame[usize::from(level.to_le_bytes()[0])] = 1;
    let frame = black_box(frame);
    if black_box(level) >= depth {
        return level;
    }
    let deepest = dive(black_box(level + 1), depth);
    deepest.max(u64::from(frame[0]))
}

/// Recurse to a depth.
///
/// Each level keeps a 256-byte frame on the stack; a large depth overflows it.
///
/// * `depth` - how many levels to recurse
#[register]
fn recurse(depth: u64) -> u64 {
    dive(0, depth)
}

/// Read a file.
///
/// Fails with the operating system's error when the file cannot be read.
///
/// * `path` - the file to read
#[register]
fn read_file(path: String) -> Result<String, String> {
    std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))
}

/// Write a file.
///
/// Fails with the operating system's error when the file cannot be written.
///
/// * `path` - the file to write
/// * `content` - what to write
#[register]
fn write_file(path: String, content: String) -> Result<(), String> {
    std::fs::write(&path, content).map_err(|error| format!("cannot write {path}: {error}"))
}

/// List a directory.
///
/// Returns the names of its entries, sorted; fails with the operating system's error when the
/// directory cannot be read.
///
/// * `path` - the directory to list
#[register]
fn list_dir(path: String) -> Result<Vec<String>, String> {
    let fail = |error: std::io::Error| format!("cannot list {path}: {error}");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&path).map_err(fail)? {
        names.push(
            entry
                .map_err(fail)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok(names)
}

/// Read an environment variable.
///
/// * `name` - the variable to read
#[register]
fn read_env(name: String) -> Option<String> {
    std::env::var(name).ok()
}

/// Count the environment variables the action can see.
#[register]
fn env_count() -> i64 {
    i64::try_from(std::env::vars_os().count()).unwrap_or(i64::MAX)
}

/// Print to standard output.
///
/// Prints lines of 1 KiB until the given number of MiB is written.
///
/// * `megabytes` - how many MiB to print
#[register]
fn shout(megabytes: u32) -> Result<(), String> {
    let line = format!("{}\n", "A".repeat(1023));
    let mut stdout = std::io::stdout().lock();
    for _ in 0..u64::from(megabytes) * 1024 {
        stdout
            .write_all(line.as_bytes())
            .map_err(|error| format!("cannot print: {error}"))?;
    }
    stdout
        .flush()
        .map_err(|error| format!("cannot print: {error}"))
}

/// Panic with a message.
///
/// * `message` - what to panic with
#[register]
fn panic(message: String) {
    panic!("{message}");
}

/// Exit the process with a status code.
///
/// * `code` - the exit status
#[register]
fn exit(code: i32) {
    std::process::exit(code);
}

/// Sleep in a blocking host call.
///
/// * `seconds` - how long to sleep
#[register]
fn sleep(seconds: f64) -> Result<(), String> {
    let duration =
        Duration::try_from_secs_f64(seconds).map_err(|error| format!("seconds: {error}"))?;
    std::thread::sleep(duration);
    Ok(())
}

/// Send many log lines.
///
/// * `lines` - how many lines to log
#[register]
fn log_flood(lines: u32, ctx: &Context) {
    for line in 0..lines {
        ctx.info(format!("log line {line}"));
    }
}

/// Return a huge string.
///
/// * `megabytes` - the size of the string in MiB
#[register]
fn big_yield(megabytes: u32) -> String {
    "B".repeat(
        usize::try_from(megabytes)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20),
    )
}

/// Terminal escape sequences that set the window title, clear the screen, write the clipboard
/// (OSC 52), ring the bell, switch to 8-bit controls and reverse text (bidi override).
const ESCAPES: &str =
    "\u{1b}]0;pwned-title\u{7}\u{1b}[2J\u{1b}[H\u{1b}]52;c;cHduZWQ=\u{7}\u{9b}31m\u{202e}desrever";

/// Send terminal escape codes through every channel.
///
/// Logs them, prints them to stdout and stderr, puts them in a progress message, and then
/// returns them, or fails with them when `fail` is set.
///
/// * `fail` - fail with the escapes instead of returning them
#[register]
fn escape_codes(fail: bool, ctx: &Context) -> Result<String, String> {
    ctx.info(format!("log {ESCAPES}"));
    println!("stdout {ESCAPES}");
    eprintln!("stderr {ESCAPES}");
    ctx.progress(50, format!("progress {ESCAPES}"));
    if fail {
        Err(format!("error {ESCAPES}"))
    } else {
        Ok(format!("returned {ESCAPES}"))
    }
}

/// Forge log lines of the host.
///
/// Logs one message with a newline in it, and prints a line that returns the cursor to
/// overwrite itself, each pretending to be a line of its own.
#[register]
fn forge_log_line(ctx: &Context) {
    ctx.info("an honest line\n[ERROR] forged by the guest");
    println!("printed\r[CRITICAL] overwritten by the guest");
}

/// Yield many large strings as fast as possible.
///
/// Each item is its index followed by `kibibytes` KiB of text; a caller that reads slower than
/// this generator yields makes it wait.
///
/// * `count` - how many items to yield
/// * `kibibytes` - the size of each item in KiB
#[register]
fn yield_flood(count: u32, kibibytes: u32) -> impl Iterator<Item = String> {
    let size = usize::try_from(kibibytes)
        .unwrap_or(usize::MAX)
        .saturating_mul(1 << 10);
    (0..count).map(move |index| format!("{index}:{}", "Y".repeat(size)))
}

/// Open a TCP connection.
///
/// Fails with the operating system's error when the connection cannot be made.
///
/// * `addr` - where to connect, `host:port`
#[register]
fn connect(addr: String) -> Result<String, String> {
    let stream = std::net::TcpStream::connect(&addr)
        .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
    Ok(match stream.peer_addr() {
        Ok(peer) => format!("connected to {peer}"),
        Err(_) => format!("connected to {addr}"),
    })
}

rekuest_guest::export_actions!(
    spin,
    memory_bomb,
    recurse,
    read_file,
    write_file,
    list_dir,
    read_env,
    env_count,
    shout,
    panic,
    exit,
    sleep,
    log_flood,
    big_yield,
    escape_codes,
    forge_log_line,
    yield_flood,
    connect,
);
