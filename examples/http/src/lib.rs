//! Example actions: outbound HTTP through `wasi:http`, allowed only to granted origins
//! (`rekuest-host call http.wasm fetch_text url=... --http ORIGIN`).

use rekuest_guest::http;
use rekuest_guest::prelude::*;

/// Fetch a URL as text.
///
/// * `url` - an http:// or https:// URL on a granted origin
///
/// # Returns
///
/// The response body.
#[register]
fn fetch_text(url: String) -> Result<String, String> {
    http::get(url).text().map_err(|error| error.to_string())
}

/// Fetch a URL and report its status and length, whatever the status.
///
/// * `url` - an http:// or https:// URL on a granted origin
///
/// # Returns
///
/// `<status> <bytes>`, e.g. `200 1024`.
#[register]
fn fetch_status(url: String) -> Result<String, String> {
    let response = http::get(url).send().map_err(|error| error.to_string())?;
    Ok(format!("{} {}", response.status(), response.body().len()))
}

/// Post a text and return the answer.
///
/// * `url` - an http:// or https:// URL on a granted origin
/// * `body` - the text to send
///
/// # Returns
///
/// The response body.
#[register]
fn post_text(url: String, body: String) -> Result<String, String> {
    http::post(url)
        .header("content-type", "text/plain")
        .body(body)
        .text()
        .map_err(|error| error.to_string())
}

/// Fetch a URL several times in one task.
///
/// * `url` - an http:// or https:// URL on a granted origin
/// * `times` - how often
///
/// # Returns
///
/// The bytes received in all.
#[register]
fn fetch_repeatedly(url: String, times: u32) -> Result<u64, String> {
    let mut total = 0;
    for _ in 0..times {
        total += http::get(&url)
            .bytes()
            .map_err(|error| error.to_string())?
            .len() as u64;
    }
    Ok(total)
}

/// The task's provenance token, as the SDK's `Context` offers it.
///
/// # Returns
///
/// The token, or an empty string when the task has none.
#[register]
fn task_token(ctx: &Context) -> String {
    ctx.task_token().unwrap_or_default()
}

export_actions!(
    fetch_text,
    fetch_status,
    post_text,
    fetch_repeatedly,
    task_token
);
