//! Panics: the hook that reports them, and the message of a caught one.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// The message of the last panic, with its location, as the hook formatted it.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that formats `panicked at file:line:column: message`,
/// remembers it for [`message`] and passes it to `report` before the panic proceeds.
pub(crate) fn install_hook(report: fn(&str)) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(move |info| {
            let text = info.payload_as_str().unwrap_or("Box<dyn Any>");
            let message = match info.location() {
                Some(location) => format!("panicked at {location}: {text}"),
                None => format!("panicked: {text}"),
            };
            report(&message);
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(message));
        }));
    });
}

/// The message of a caught panic: the hook's, else the payload's text.
pub(crate) fn message(payload: Box<dyn Any + Send>) -> String {
    if let Some(message) = LAST_PANIC.with(|last| last.borrow_mut().take()) {
        return message;
    }
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Ok(text) = payload.downcast::<String>() {
        *text
    } else {
        "panicked with a non-text payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_text_is_the_message_without_a_hook() {
        assert_eq!(message(Box::new("boom")), "boom");
        assert_eq!(message(Box::new(String::from("bang"))), "bang");
        assert_eq!(message(Box::new(3)), "panicked with a non-text payload");
    }
}
