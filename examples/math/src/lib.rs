//! Example actions: arithmetic on integers, floats and lists.

use rekuest_guest::prelude::*;

/// Add two numbers.
///
/// Adds them exactly; overflow wraps around.
///
/// * `a` - the first summand
/// * `b` - the second summand
#[register]
fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// Divide a by b.
///
/// Fails when b is zero.
///
/// * `a` - the dividend
/// * `b` - the divisor
#[register]
fn divide(a: f64, b: f64) -> Result<f64, String> {
    if b == 0.0 {
        Err("cannot divide by zero".into())
    } else {
        Ok(a / b)
    }
}

/// Divide with remainder.
///
/// The quotient is rounded toward zero; the remainder has the sign of a.
///
/// * `a` - the dividend
/// * `b` - the divisor
///
/// # Returns
///
/// * the quotient
/// * the remainder
#[register]
fn divmod(a: i64, b: i64) -> Result<(i64, i64), String> {
    if b == 0 {
        return Err("cannot divide by zero".into());
    }
    match (a.checked_div(b), a.checked_rem(b)) {
        (Some(quotient), Some(remainder)) => Ok((quotient, remainder)),
        _ => Err(format!("{a} / {b} overflows")),
    }
}

/// Sum a list of numbers.
///
/// The sum of an empty list is 0.
///
/// * `values` - the numbers to add up
#[register]
fn sum(values: Vec<f64>) -> f64 {
    values.iter().sum()
}

/// Average a list of numbers.
///
/// Fails for an empty list.
///
/// * `values` - the numbers to average
#[register]
fn mean(values: Vec<f64>) -> Result<f64, String> {
    if values.is_empty() {
        return Err("cannot average an empty list".into());
    }
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

/// Raise a number to a power.
///
/// * `base` - the number to raise
/// * `exponent` - the power; squares by default
#[register]
fn power(base: f64, #[arg(default = 2)] exponent: i32) -> f64 {
    base.powi(exponent)
}

/// Clamp a number into a range.
///
/// Either bound may be left out.
///
/// * `value` - the number to clamp
/// * `min` - the lowest allowed value
/// * `max` - the highest allowed value
#[register]
fn clamp(value: i64, min: Option<i64>, max: Option<i64>) -> Result<i64, String> {
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(format!("min {min} is greater than max {max}"));
    }
    let value = min.map_or(value, |min| value.max(min));
    Ok(max.map_or(value, |max| value.min(max)))
}

rekuest_guest::export_actions!(add, divide, divmod, sum, mean, power, clamp);
