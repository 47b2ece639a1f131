//! Example actions: composition. Each calls other actions through a declared dependency
//! slot; the server picks the implementation and the host runs the callee as a child task.
//! Serve it together with the actions it calls:
//! `rekuest-host dev math.wasm pipeline.wasm --assign double_sum a=1 b=2` prints 6.

use rekuest_guest::prelude::*;
use serde_json::json;

/// Double a sum.
///
/// Adds a and b with the `add` action, then adds the sum to itself with a second call.
///
/// * `a` - the first summand
/// * `b` - the second summand
#[register(dependency = "add")]
fn double_sum(a: i64, b: i64, ctx: &Context) -> Result<i64, String> {
    let sum: i64 = ctx
        .call_as("add", json!({"a": a, "b": b}))
        .map_err(|error| error.to_string())?;
    ctx.call_as("add", json!({"a": sum, "b": sum}))
        .map_err(|error| error.to_string())
}

/// Divide, and say so when it cannot.
///
/// Calls the `divide` action and turns its failure into a sentence instead of failing.
///
/// * `a` - the dividend
/// * `b` - the divisor
#[register(dependency = "divide")]
fn safe_divide(a: f64, b: f64, ctx: &Context) -> String {
    match ctx.call_as::<f64>("divide", json!({"a": a, "b": b})) {
        Ok(quotient) => format!("{a} / {b} = {quotient}"),
        Err(CallError::Failed(error)) => format!("{a} / {b} is undefined: {error}"),
        Err(error) => format!("{a} / {b} could not be computed: {error}"),
    }
}

/// Sum what the `count` generator yields.
///
/// Iterates the generator item by item as the child yields them.
///
/// * `n` - count from 1 to n
#[register(dependency = "count")]
fn sum_count(n: i64, ctx: &Context) -> Result<i64, String> {
    let mut total = 0i64;
    for returns in ctx
        .iterate("count", json!({"n": n}))
        .map_err(|error| error.to_string())?
    {
        let returns = returns.map_err(|error| error.to_string())?;
        let item = returns["return0"]
            .as_i64()
            .ok_or("count yielded something that is not an integer")?;
        total = total.wrapping_add(item);
    }
    Ok(total)
}

/// Wait for a child that sleeps.
///
/// Calls the `sleep` action and waits for it; cancelling this task cancels the sleeping child.
///
/// * `seconds` - how long the child sleeps
#[register(dependency = "sleep")]
fn wait_for(seconds: f64, ctx: &Context) -> Result<String, String> {
    let started = std::time::Instant::now();
    ctx.call("sleep", json!({"seconds": seconds}))
        .map_err(|error| error.to_string())?;
    Ok(format!("the child slept for {:.1?}", started.elapsed()))
}

/// Call itself, deeper and deeper.
///
/// Never ends by itself: the host's call depth cap stops it with an error that every level
/// passes up.
///
/// * `depth` - how deep this call is
#[register(dependency = "nest")]
fn nest(depth: i64, ctx: &Context) -> Result<i64, String> {
    ctx.call_as("nest", json!({"depth": depth + 1}))
        .map_err(|error| format!("at depth {depth}: {error}"))
}

rekuest_guest::export_actions!(double_sum, safe_divide, sum_count, wait_for, nest);
