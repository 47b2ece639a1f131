//! Example actions: generators, which yield their returns item by item.

use std::time::Duration;

use rekuest_guest::prelude::*;

/// Count from 1 to n.
///
/// Yields each number as it is reached, reporting progress and logging each step.
///
/// * `n` - the number to count to
#[register]
fn count(n: i64, ctx: Context) -> impl Iterator<Item = i64> {
    (1..=n).inspect(move |&i| {
        ctx.progress(i.saturating_mul(100) / n, format!("{i} of {n}"));
        ctx.info(format!("counted {i}"));
    })
}

/// The Fibonacci numbers.
///
/// Yields the first n numbers of the sequence 0, 1, 1, 2, 3, 5, ...; fails once the next one
/// does not fit in 64 bits (after 94 numbers).
///
/// * `n` - how many numbers to yield
#[register]
fn fibonacci(n: u32) -> impl Iterator<Item = Result<u64, String>> {
    // The current and the following number; `None` once a number no longer fits.
    let mut state = (Some(0u64), Some(1u64));
    (0..n).map(move |index| {
        let (current, following) = state;
        let current =
            current.ok_or_else(|| format!("Fibonacci number {index} does not fit in 64 bits"))?;
        state = (
            following,
            following.and_then(|next| next.checked_add(current)),
        );
        Ok(current)
    })
}

/// Yield a number every so often.
///
/// Sleeps before each item, so that a caller can watch, pause or cancel it.
///
/// * `n` - how many numbers to yield
/// * `seconds` - how long to wait before each
#[register]
fn ticks(n: u32, #[arg(default = 1.0)] seconds: f64) -> Result<impl Iterator<Item = u32>, String> {
    let interval =
        Duration::try_from_secs_f64(seconds).map_err(|error| format!("seconds: {error}"))?;
    Ok((1..=n).inspect(move |_| std::thread::sleep(interval)))
}

/// Yield a number every so often until the caller cancels.
///
/// Sleeps before each item; once cancelled it stops and logs that it cleaned up.
///
/// * `seconds` - how long to wait before each
#[register]
fn until_cancelled(
    #[arg(default = 0.05)] seconds: f64,
    ctx: Context,
) -> Result<impl Iterator<Item = u32>, String> {
    let interval =
        Duration::try_from_secs_f64(seconds).map_err(|error| format!("seconds: {error}"))?;
    Ok(Ticker {
        ctx,
        interval,
        count: 0,
    })
}

/// The items of `until_cancelled`; its cleanup runs when the SDK drops it after a cancel.
struct Ticker {
    ctx: Context,
    interval: Duration,
    count: u32,
}

impl Iterator for Ticker {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        std::thread::sleep(self.interval);
        self.count += 1;
        Some(self.count)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if self.ctx.is_cancelled() {
            self.ctx
                .info(format!("cancelled after {} items: cleaned up", self.count));
        }
    }
}

/// The words of a text with their positions.
///
/// * `text` - the text to split
///
/// # Returns
///
/// * the position of the word, from 0
/// * the word
#[register]
fn enumerate_words(text: String) -> impl Iterator<Item = (i64, String)> {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    (0..).zip(words)
}

rekuest_guest::export_actions!(count, fibonacci, ticks, until_cancelled, enumerate_words);
