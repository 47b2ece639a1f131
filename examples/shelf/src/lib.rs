//! Example actions: a value kept on the agent (a memory shelf). `make_numbers` returns a list
//! that stays on the agent; the caller gets a reference, and `sum_numbers` takes it back.

use rekuest_guest::prelude::*;

/// Make the numbers 0 to n-1 and keep them on the agent.
///
/// The caller gets a reference (a MEMORY_STRUCTURE); pass it to `sum_numbers`.
///
/// * `n` - how many numbers
#[register]
fn make_numbers(n: i64) -> Result<Shelved<Vec<i64>>, String> {
    if n < 0 {
        return Err(format!("n must not be negative, got {n}"));
    }
    Ok(Shelved((0..n).collect()))
}

/// Sum numbers kept on the agent.
///
/// * `numbers` - a reference `make_numbers` returned
#[register]
fn sum_numbers(numbers: Shelved<Vec<i64>>) -> i64 {
    numbers.iter().copied().fold(0, i64::wrapping_add)
}

rekuest_guest::export_actions!(make_numbers, sum_numbers);
