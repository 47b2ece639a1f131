//! The host's own log: `REKUEST_HOST_LOG` filters it, `--log-format` (or `[agent] log_format`)
//! chooses text for people or one JSON object a line for machines.

use rekuest_host::config::LogFormat;
use rekuest_host::text::TerminalWriter;
use tracing_subscriber::EnvFilter;

/// Starts logging to stderr in `format`; `default_filter` applies unless `REKUEST_HOST_LOG`
/// is set.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_env("REKUEST_HOST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // Records quote server and guest text: escaped on the way out, so no colours either.
        LogFormat::Text => builder
            .with_ansi(false)
            .with_writer(|| TerminalWriter::new(std::io::stderr()))
            .init(),
        // JSON escapes control characters itself; the task span's fields (task, action)
        // travel in `span`, the event's at the top level.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .init(),
    }
}
