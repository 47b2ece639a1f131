//! Sizes and durations as people write them in the config file and on the command line
//! (`64MiB`, `250ms`): parsing and the memory-limit check that goes with it. How the runtime
//! prints them back is [`crate::runtime::limits::format_bytes`] and `format_duration`.

use std::time::Duration;

use crate::runtime::limits::{check_memory_limit, check_timeout};

/// Parses a size in binary units, `64MiB`, `512KiB`, `1.5GiB`, or bytes (`1048576`, `4096B`).
///
/// Units that could be read as decimal or binary (`64MB`, `512k`, `1g`) are refused with the
/// binary spelling to use, rather than guessed.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text)
        .ok_or_else(|| format!("'{text}' is not a size (try 64MiB, 512KiB, 1GiB)"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        ambiguous @ ("k" | "kb" | "m" | "mb" | "g" | "gb") => {
            let binary = format!("{}iB", ambiguous[..1].to_ascii_uppercase());
            let number = &text[..text.len() - unit.len()];
            return Err(format!(
                "'{text}' is ambiguous (decimal or binary?): did you mean {}{binary}? \
                 Sizes take binary units (KiB, MiB, GiB) or a number of bytes",
                number.trim()
            ));
        }
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}' (use B, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((number * scale as f64) as u64)
}

/// Parses a memory limit ([`parse_bytes`], then [`check_memory_limit`]).
pub fn parse_memory_limit(text: &str) -> Result<u64, String> {
    parse_bytes(text).and_then(check_memory_limit)
}

/// Parses a task timeout ([`parse_duration`], then [`check_timeout`]): what `--timeout` and
/// the config file's `timeout` accept.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_duration(text).and_then(check_timeout)
}

/// Parses `10s`, `250ms`, `2m`, `1.5s`, `30` (seconds) into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_number(text)
        .ok_or_else(|| format!("'{text}' is not a duration (try 10s, 250ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' in '{text}' (use ms, s, m, h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is out of range"))
}

/// Splits `12.5MiB` into the number and its (trimmed) unit; `None` when no number leads.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512kib"), Ok(512 << 10));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("4096B"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn ambiguous_units_are_refused_with_the_binary_spelling() {
        for (text, suggestion) in [
            ("64MB", "did you mean 64MiB?"),
            ("64mb", "did you mean 64MiB?"),
            ("512k", "did you mean 512KiB?"),
            ("1.5 G", "did you mean 1.5GiB?"),
            ("2gb", "did you mean 2GiB?"),
        ] {
            let error = parse_bytes(text).expect_err(text);
            assert!(error.contains(suggestion), "{text}: {error}");
            assert!(parse_memory_limit(text).is_err());
        }
    }

    #[test]
    fn memory_limits_fit_a_32_bit_guest() {
        assert_eq!(parse_memory_limit("4GiB"), Ok(4 << 30));
        assert_eq!(parse_memory_limit("64KiB"), Ok(64 << 10));
        let error = parse_memory_limit("5GiB").expect_err("too large");
        assert!(
            error.contains("more than a 32-bit guest can address"),
            "{error}"
        );
        let error = parse_memory_limit("64").expect_err("64 bytes");
        assert!(error.contains("a bare number counts bytes"), "{error}");
        assert!(check_memory_limit((4 << 30) + 1).is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_timeout("5s"), Ok(Duration::from_secs(5)));
        assert!(parse_timeout("0s").is_err());
    }
}
