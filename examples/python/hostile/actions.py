"""Example actions that attack the sandbox (the Python twin of examples/hostile): each is an
honest attempt at what its name says, for the host's tests to prove that the same limits,
grants and isolation hold for Python components."""

import os
import sys
import time
from typing import Iterator, Optional

from rekuest_guest import ActionError, Context, log, register

# Terminal escape sequences that set the window title, clear the screen, write the clipboard
# (OSC 52), ring the bell, switch to 8-bit controls and reverse text (bidi override).
ESCAPES = (
    "\u001b]0;pwned-title\u0007\u001b[2J\u001b[H\u001b]52;c;cHduZWQ=\u0007\u009b31m\u202edesrever"
)


@register
def spin() -> None:
    """Loop forever without calling the host.

    Only fuel or an epoch deadline can stop it.
    """
    counter = 0
    while True:
        counter += 1


@register
def memory_bomb() -> None:
    """Allocate memory until the allocator gives up.

    Grows a list of 1 MiB chunks forever, writing to every chunk so that the memory is really
    used.
    """
    chunks = []
    while True:
        chunks.append(bytearray(b"\xa5" * (1 << 20)))


def _dive(level: int, depth: int) -> int:
    frame = [level] * 32
    if level >= depth:
        return level
    return max(_dive(level + 1, depth), frame[0])


@register
def recurse(depth: int) -> int:
    """Recurse to a depth.

    Each level keeps a small list alive (Python frames live in linear memory, not on the wasm
    stack); a large depth runs into the memory limit.

    Args:
        depth: how many levels to recurse
    """
    sys.setrecursionlimit(max(depth + 100, 1000))
    return _dive(0, depth)


@register
def read_file(path: str) -> str:
    """Read a file.

    Fails with the operating system's error when the file cannot be read.

    Args:
        path: the file to read
    """
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as error:
        raise ActionError(f"cannot read {path}: {error.strerror or error}") from None


@register
def write_file(path: str, content: str) -> None:
    """Write a file.

    Fails with the operating system's error when the file cannot be written.

    Args:
        path: the file to write
        content: what to write
    """
    try:
        with open(path, "w", encoding="utf-8") as file:
            file.write(content)
    except OSError as error:
        raise ActionError(f"cannot write {path}: {error.strerror or error}") from None


@register
def list_dir(path: str) -> list[str]:
    """List a directory.

    Returns the names of its entries, sorted; fails with the operating system's error when the
    directory cannot be read.

    Args:
        path: the directory to list
    """
    try:
        return sorted(os.listdir(path))
    except OSError as error:
        raise ActionError(f"cannot list {path}: {error.strerror or error}") from None


@register
def read_env(name: str) -> Optional[str]:
    """Read an environment variable.

    Args:
        name: the variable to read
    """
    return os.environ.get(name)


@register
def env_count() -> int:
    """Count the environment variables the action can see."""
    return len(os.environ)


@register
def shout(megabytes: int) -> None:
    """Print to standard output.

    Prints lines of 1 KiB until the given number of MiB is written.

    Args:
        megabytes: how many MiB to print
    """
    line = "A" * 1023
    for _ in range(megabytes * 1024):
        print(line)
    sys.stdout.flush()


@register
def panic(message: str) -> None:
    """Panic with a message.

    Raises an exception that is not an ActionError: a bug, which ends the task as CRITICAL.

    Args:
        message: what to panic with
    """
    raise RuntimeError(message)


@register
def exit(code: int) -> None:
    """Exit the process with a status code.

    Args:
        code: the exit status
    """
    os._exit(code)


@register
def sleep(seconds: float) -> None:
    """Sleep in a blocking host call.

    Args:
        seconds: how long to sleep
    """
    if seconds < 0:
        raise ActionError(f"seconds: cannot sleep {seconds} seconds")
    time.sleep(seconds)


@register
def log_flood(lines: int) -> None:
    """Send many log lines.

    Args:
        lines: how many lines to log
    """
    for line in range(lines):
        log(f"log line {line}", "INFO")


@register
def big_yield(megabytes: int) -> str:
    """Return a huge string.

    Args:
        megabytes: the size of the string in MiB
    """
    return "B" * (megabytes << 20)


@register
def escape_codes(fail: bool, ctx: Context) -> str:
    """Send terminal escape codes through every channel.

    Logs them, prints them to stdout and stderr, puts them in a progress message, and then
    returns them, or fails with them when `fail` is set.

    Args:
        fail: fail with the escapes instead of returning them
    """
    ctx.log(f"log {ESCAPES}", "INFO")
    print(f"stdout {ESCAPES}")
    print(f"stderr {ESCAPES}", file=sys.stderr)
    ctx.progress(50, f"progress {ESCAPES}")
    if fail:
        raise ActionError(f"error {ESCAPES}")
    return f"returned {ESCAPES}"


@register
def forge_log_line(ctx: Context) -> None:
    """Forge log lines of the host.

    Logs one message with a newline in it, and prints a line that returns the cursor to
    overwrite itself, each pretending to be a line of its own.
    """
    ctx.log("an honest line\n[ERROR] forged by the guest", "INFO")
    print("printed\r[CRITICAL] overwritten by the guest")


@register
def yield_flood(count: int, kibibytes: int) -> Iterator[str]:
    """Yield many large strings as fast as possible.

    Each item is its index followed by `kibibytes` KiB of text; a caller that reads slower than
    this generator yields makes it wait.

    Args:
        count: how many items to yield
        kibibytes: the size of each item in KiB
    """
    for index in range(count):
        yield f"{index}:" + "Y" * (kibibytes << 10)


@register
def connect(addr: str) -> str:
    """Open a TCP connection.

    Fails with the operating system's error when the connection cannot be made.

    Args:
        addr: where to connect, `host:port`
    """
    host, _, port = addr.rpartition(":")
    try:
        import socket

        with socket.create_connection((host, int(port)), timeout=5) as stream:
            return f"connected to {stream.getpeername()}"
    except (OSError, ImportError, ValueError) as error:
        raise ActionError(f"cannot connect to {addr}: {error}") from None
