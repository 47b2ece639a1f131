//! Example actions: CPU-bound work, with no host calls until the result.

use rekuest_guest::prelude::*;

/// Count the primes below a bound.
///
/// Trial division, on purpose: the work grows with the bound and touches almost no memory.
///
/// * `below` - count the primes smaller than this
#[register]
fn count_primes(below: i64) -> i64 {
    let mut count = 0;
    for candidate in 2..below.max(2) {
        let mut divisor = 2;
        let mut prime = true;
        while divisor * divisor <= candidate {
            if candidate % divisor == 0 {
                prime = false;
                break;
            }
            divisor += 1;
        }
        if prime {
            count += 1;
        }
    }
    count
}

/// Sum the Collatz sequence lengths of the numbers up to a bound.
///
/// * `up_to` - the largest starting number
#[register]
fn collatz_steps(up_to: u32) -> u64 {
    let mut total = 0u64;
    for start in 1..=u64::from(up_to) {
        let mut value = start;
        while value != 1 {
            value = if value % 2 == 0 {
                value / 2
            } else {
                3 * value + 1
            };
            total += 1;
        }
    }
    total
}

rekuest_guest::export_actions!(count_primes, collatz_steps);
