//! Example actions: an agent state (`counter`, streamed to the server as it changes) and a
//! lock that makes concurrent increments take turns.

use rekuest_guest::prelude::*;

/// How often `increment` ran, summed.
#[derive(Model, Clone)]
struct Counter {
    /// The running count.
    count: i64,
}

impl State for Counter {
    const KEY: &'static str = "counter";
}

/// Add to the agent's running count.
///
/// Holds the lock `counter` while it reads and writes the state, so concurrent increments
/// take turns.
///
/// * `by` - how much to add
///
/// # Returns
///
/// The new count.
#[register(state = Counter, lock = "counter")]
fn increment(by: i64, ctx: &Context) -> Result<i64, String> {
    let mut counter: Counter = ctx.state()?;
    counter.count = counter.count.wrapping_add(by);
    ctx.set_state(&counter)?;
    Ok(counter.count)
}

rekuest_guest::export_actions!(increment);
