//! Text from guests and servers, made safe for a terminal.
//!
//! A guest controls its log lines, progress messages, error texts, yields and self-description;
//! a server controls what it sends. Written raw to a terminal, that text could move the cursor,
//! clear the screen, set the window title, write the clipboard (OSC 52), reorder what is shown
//! (Unicode bidi overrides) or forge lines that look like the host's own. Everything printed
//! goes through this module: control characters (C0, DEL, C1) and the bidi and line-separator
//! controls are shown as visible escapes (`\x1b` as `\u{1b}`, `\r` as `\r`).
//!
//! Only the terminal is protected: what goes to the server stays the guest's text.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;

/// Starts every continuation line of a multi-line text ([`Lines`]), so that a newline in a
/// guest's text cannot begin a line that passes for one of the host's.
pub const CONTINUATION: &str = "  | ";

/// Whether `c` must not reach a terminal as it is: control characters (C0, DEL, C1), the bidi
/// controls (marks, embeddings, overrides, isolates) and the Unicode line/paragraph separators.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// Writes `c` as a visible escape: `\n`, `\r`, `\t`, else `\u{..}`.
fn write_escape(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        other => write!(out, "{}", other.escape_unicode()),
    }
}

/// Text for one line of a terminal: every unsafe character (newlines too) escaped.
#[derive(Debug, Clone, Copy)]
pub struct OneLine<'a>(pub &'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.contains(is_unsafe) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            if is_unsafe(c) {
                write_escape(f, c)?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Text that may span lines: newlines and tabs are kept, each continuation line starts with
/// [`CONTINUATION`], every other unsafe character is escaped.
#[derive(Debug, Clone, Copy)]
pub struct Lines<'a>(pub &'a str);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.contains(|c: char| c != '\t' && is_unsafe(c)) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            match c {
                '\n' => {
                    f.write_char('\n')?;
                    f.write_str(CONTINUATION)?;
                }
                '\t' => f.write_char('\t')?,
                c if is_unsafe(c) => write_escape(f, c)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// JSON text made safe for a terminal without changing its value: inside strings, unsafe
/// characters become `\uXXXX` escapes (so the output still parses to the same value); outside
/// strings, whitespace other than spaces and newlines becomes a space.
pub fn json(json: &str) -> Cow<'_, str> {
    if !json.contains(|c: char| is_unsafe(c) && c != '\n') {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            } else if is_unsafe(c) {
                // Every unsafe character is in the Basic Multilingual Plane: one `\uXXXX`.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
                continue;
            }
            out.push(c);
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if is_unsafe(c) && c != '\n' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes whole log records to `W` (the host's own log, e.g. stderr) as [`Lines`]: whatever
/// server or guest text a record quotes, it cannot drive the terminal or forge a record.
/// A record's final newline is kept.
pub struct TerminalWriter<W> {
    inner: W,
}

impl<W: io::Write> TerminalWriter<W> {
    /// Escapes what is written before it reaches `inner`.
    pub fn new(inner: W) -> Self {
        TerminalWriter { inner }
    }
}

impl<W: io::Write> io::Write for TerminalWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        write!(self.inner, "{}{newline}", Lines(body))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn one_line_escapes_terminal_controls() {
        let attacks = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZWNobyBoaQ==\x07\rfake\u{9b}31m\u{202e}txt\n[INFO] forged";
        let shown = OneLine(attacks).to_string();
        assert!(!shown.contains(is_unsafe), "{shown:?}");
        assert_eq!(
            shown,
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{1b}]52;c;ZWNobyBoaQ==\\u{7}\\rfake\\u{9b}31m\\u{202e}txt\\n[INFO] forged"
        );
        assert_eq!(
            OneLine("plain text, ünïcödé, 漢字").to_string(),
            "plain text, ünïcödé, 漢字"
        );
    }

    #[test]
    fn lines_indent_continuations_and_keep_tabs() {
        let shown = Lines("first\n[INFO] forged\tcolumn\x1b[1A").to_string();
        assert_eq!(shown, "first\n  | [INFO] forged\tcolumn\\u{1b}[1A");
        assert!(
            shown
                .lines()
                .skip(1)
                .all(|line| line.starts_with(CONTINUATION))
        );
    }

    #[test]
    fn json_keeps_its_value() {
        let value =
            serde_json::json!({"a": "\u{1b}[2J\u{9b}\u{202e}\u{7f}", "b\u{2028}": [1, "\"\\"]});
        let text = value.to_string();
        let shown = json(&text);
        assert!(!shown.contains(is_unsafe), "{shown}");
        let parsed: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(parsed, value);
        let spaced = json("{\"a\":\r\t1}");
        assert_eq!(spaced, "{\"a\":  1}");
        assert!(matches!(json("{\"a\": \"ok\"}"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_writer_escapes_records_and_keeps_their_end() {
        let mut out = Vec::new();
        let mut writer = TerminalWriter::new(&mut out);
        writer
            .write_all(b"WARN task crashed: \x1b]0;title\x07\n[ERROR] forged\n")
            .expect("written");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "WARN task crashed: \\u{1b}]0;title\\u{7}\n  | [ERROR] forged\n"
        );
    }
}
