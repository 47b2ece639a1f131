//! An error with its causes, as one line of text.
//!
//! The library's errors follow thiserror's convention: an error's `Display` says what failed,
//! its [`source`](std::error::Error::source) says why. Wherever an error is shown (the command
//! line, the host's log, a reason sent to a server) it goes through [`ErrorChain`], so every
//! cause is said, and said once.

use std::error::Error;
use std::fmt;

/// `error` and each of its causes, joined by `": "`. A cause whose text is already said (a
/// third-party error that quotes its own source) is not repeated.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !said.contains(&text) {
                f.write_str(": ")?;
                f.write_str(&text)?;
                said.push_str(&text);
            }
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot load the component")]
    struct Load(#[source] Read);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read math.wasm")]
    struct Read(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn says_every_cause_in_order() {
        let error = Load(Read(std::io::Error::other("permission denied")));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "cannot load the component: cannot read math.wasm: permission denied"
        );
    }

    #[test]
    fn a_cause_already_quoted_is_said_once() {
        let error = Quoting(std::io::Error::other("address in use"));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "cannot start: address in use"
        );
    }

    #[test]
    fn an_error_without_a_cause_is_its_text() {
        let error = std::io::Error::other("timed out");
        assert_eq!(ErrorChain(&error).to_string(), "timed out");
    }
}
