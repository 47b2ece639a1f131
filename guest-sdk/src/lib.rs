//! Write [rekuest](https://github.com/arkitektio) actions as plain Rust functions and compile
//! them to a WebAssembly component that `rekuest-host` runs in a sandbox.
//!
//! ```
//! use rekuest_guest::prelude::*;
//!
//! /// Add two numbers.
//! ///
//! /// Adds them exactly; overflow wraps.
//! ///
//! /// * `a` - the first summand
//! /// * `b` - the second summand
//! #[register]
//! fn add(a: i64, b: i64) -> i64 {
//!     a.wrapping_add(b)
//! }
//!
//! /// Divide a by b.
//! #[register]
//! fn divide(a: f64, b: f64) -> Result<f64, String> {
//!     if b == 0.0 {
//!         Err("cannot divide by zero".into())
//!     } else {
//!         Ok(a / b)
//!     }
//! }
//!
//! /// Greet someone.
//! ///
//! /// * `name` - who to greet
//! #[register]
//! fn greet(name: String, #[arg(default = "Hello")] greeting: String) -> String {
//!     format!("{greeting}, {name}!")
//! }
//!
//! /// Count from 1 to n, one item at a time.
//! #[register]
//! fn count(n: i64, ctx: Context) -> impl Iterator<Item = i64> {
//!     (1..=n).inspect(move |i| ctx.progress(i * 100 / n.max(1), format!("at {i}")))
//! }
//!
//! rekuest_guest::export_actions!(add, divide, greet, count);
//! # fn main() {}
//! ```
//!
//! Build the crate as a `cdylib` for `wasm32-wasip2`
//! (`cargo build --profile wasm --target wasm32-wasip2`); the `.wasm` it produces is the
//! component. The functions stay ordinary Rust functions, callable from your own tests.
//!
//! # Actions: `#[register]`
//!
//! [`register`] turns a free function into an action; [`export_actions!`] (once per crate)
//! lists the registered functions and implements the component's exports. The definition
//! `describe` returns for each is a rekuest `DefinitionInput`:
//!
//! * `key`: the function name; `version`: `"1"` (`#[register(version = "2")]`);
//! * `name`: the function name in Title Case, `add_numbers` → `Add Numbers`
//!   (`#[register(name = "Add them")]`);
//! * `description`: the doc comment's summary (first paragraph) and body, joined by a blank
//!   line, without argument bullets and the `# Arguments` / `# Returns` sections;
//!   `"No Description"` without a doc comment;
//! * `kind`: `GENERATOR` for a function returning `impl Iterator<Item = T>` (or
//!   `Result<impl Iterator<Item = T>, E>`), otherwise `FUNCTION`; `stateful`: false;
//!   `collections`: empty;
//! * `args`: one port per parameter, keyed by its name. Its description comes from a doc
//!   bullet `` * `a` - text `` or `` - `a`: text `` (anywhere, or under a `# Arguments`
//!   heading, where the backticks are optional) or from `#[arg(description = "...")]`;
//!   `#[arg(label = "...")]` sets a label. `#[arg(default = 3)]` (a JSON literal: number,
//!   string, bool, array, `null`) gives the port that `default` and makes it nullable; a
//!   missing or null arg then takes it. A missing or null `Option<T>` arg is `None`;
//! * `returns`: keyed `return0`, `return1`, ...: one port for a plain return type, one per
//!   element of a tuple, none for `()`. `Result<T, E>` has `T`'s ports; for a generator the
//!   item type's (items may be `Result<T, E>` too). Descriptions come from a `# Returns`
//!   section: one bullet per return, or a paragraph for `return0`.
//!
//! A [`Context`] parameter (by value or `&Context`, anywhere) is not a port: it gives
//! [logs](Context::log), [progress](Context::progress) and
//! [cancellation](Context::is_cancelled).
//!
//! # Cancellation
//!
//! A CANCEL is cooperative first: the action keeps running for its cancel grace (3 s by
//! default, `cancel_grace` in the host's config), during which [`Context::is_cancelled`]
//! returns true. A generator's items stop after the current one: the SDK checks after each
//! item and drops the iterator (so a `Drop` of it runs). A long-running function should check
//! `ctx.is_cancelled()` and return. However the action ends after a cancel, the task ends
//! CANCELLED; one still running when the grace ends is stopped where it is. An INTERRUPT
//! stops it at once.
//!
//! # Mistakes caught at build time
//!
//! * a literal `#[arg(default = ...)]` that does not fit the port's type (a string on an
//!   integer, a float on an integer, `null` on a non-`Option`, ...) is a compile error naming
//!   the parameter and its type;
//! * `#[register]` on a method fails with "goes on a free function, not a method";
//! * a type that is no port (e.g. `char`) fails once per parameter: "`char` cannot be a
//!   rekuest port", listing the port types;
//! * a function in [`export_actions!`] without `#[register]` fails at its entry in the list:
//!   "`add` is not an action: put #[register] on it";
//! * a `#[register]` function missing from [`export_actions!`] fails at its name:
//!   "`add` has #[register] but is not listed in export_actions!". (`#[register]` defines a
//!   hidden type of the function's name beside it, through which the list finds the action.)
//!
//! # Calling other actions
//!
//! Declare what an action calls with `#[register(dependency = "add")]`, then call it through
//! the slot: `ctx.call_as::<i64>("add", json!({"a": 1, "b": 2}))` (one return, typed),
//! `ctx.call(...)` (the returns object) or `ctx.iterate(...)` (a generator's yields). The
//! call blocks until the child answers; a child that fails is an `Err` ([`CallError`]).
//! [`Target`] also names an action by hash or by key on a given agent.
//!
//! # Keeping things between tasks
//!
//! Every task runs in a fresh sandbox; what must outlive it, the host keeps (bounded per
//! agent). Return a [`Shelved<T>`](Shelved) to keep a value on the agent: the caller gets a
//! reference, and a later task taking a `Shelved<T>` arg gets the value back. Declare an agent
//! state, a [`Model`] implementing [`State`], with `#[register(state = Counter)]`; read it with
//! [`Context::state`] and replace it with [`Context::set_state`] (the host streams every change
//! to the server). `#[register(lock = "stage")]` makes tasks sharing the lock take turns.
//!
//! ```
//! use rekuest_guest::prelude::*;
//!
//! /// The running count.
//! #[derive(Model, Clone)]
//! struct Counter {
//!     /// How far it got.
//!     count: i64,
//! }
//!
//! impl State for Counter {
//!     const KEY: &'static str = "counter";
//! }
//!
//! /// Add to the count.
//! #[register(state = Counter, lock = "counter")]
//! fn increment(by: i64, ctx: &Context) -> Result<i64, String> {
//!     let mut counter: Counter = ctx.state()?;
//!     counter.count += by;
//!     ctx.set_state(&counter)?;
//!     Ok(counter.count)
//! }
//!
//! /// Keep 0..n on the agent.
//! #[register]
//! fn make_numbers(n: i64) -> Shelved<Vec<i64>> {
//!     Shelved((0..n).collect())
//! }
//!
//! rekuest_guest::export_actions!(increment, make_numbers);
//! # fn main() {}
//! ```
//!
//! # Ports
//!
//! | Rust type | port |
//! |---|---|
//! | `i8` ... `i64`, `isize`, `u8` ... `u64`, `usize` | `INT` (range-checked: 300 is no `u8`) |
//! | `f32`, `f64` | `FLOAT` (JSON integers accepted) |
//! | `String` | `STRING` |
//! | `bool` | `BOOL` |
//! | `Vec<T>` | `LIST`, one child `...` |
//! | `HashMap<String, T>`, `BTreeMap<String, T>` | `DICT`, one child `...` |
//! | `Option<T>` | `T`'s port, `nullable: true` |
//! | `#[derive(Enum)]` fieldless enum | `ENUM`, `identifier` = type name, choices = variant names |
//! | `#[derive(Model)]` struct with named fields | `MODEL`, `identifier` = type name, one child per field |
//! | any [`Structure`] | `STRUCTURE` with its [`IDENTIFIER`](Structure::IDENTIFIER) |
//! | [`Shelved<T>`](Shelved) | `MEMORY_STRUCTURE` `@rekuest-host/shelved` (the value stays on the agent) |
//!
//! An enum's wire value is the variant name (`Case::Upper` ↔ `"Upper"`); a model's is a JSON
//! object of its fields; a structure's is its reference string. Doc comments on the enum,
//! its variants, the model and its fields become descriptions. Implement [`Port`] yourself for
//! anything else.
//!
//! ```
//! use rekuest_guest::prelude::*;
//!
//! /// How to change the case of text.
//! #[derive(Enum)]
//! enum Case {
//!     /// ALL CAPITALS
//!     Upper,
//!     /// all small
//!     Lower,
//! }
//!
//! /// Counts of a text.
//! #[derive(Model)]
//! struct Stats {
//!     /// The number of words.
//!     words: i64,
//!     /// The number of characters.
//!     chars: i64,
//! }
//!
//! /// An image in mikro, e.g. `image:42`.
//! struct Image(u64);
//!
//! // Implementing Structure is all it takes to make Image a STRUCTURE port.
//! impl Structure for Image {
//!     const IDENTIFIER: &'static str = "@mikro/image";
//!
//!     fn shrink(&self) -> String {
//!         format!("image:{}", self.0)
//!     }
//!
//!     fn expand(reference: &str) -> Result<Self, String> {
//!         reference
//!             .strip_prefix("image:")
//!             .and_then(|id| id.parse().ok())
//!             .map(Image)
//!             .ok_or_else(|| format!("expected image:<id>, got {reference:?}"))
//!     }
//! }
//! ```
//!
//! # Running, errors and panics
//!
//! `run` parses the args JSON once and decodes each arg into its parameter; unknown keys are
//! ignored. A missing non-nullable arg or a value of the wrong kind fails the task (FAILED)
//! with a message naming the port and the expected kind:
//! `argument 'points[2].x': expected FLOAT, got string "x"`; so do invalid JSON, an unknown
//! action key and a structure reference that does not [expand](Structure::expand). The
//! returns leave through the host's `yield-returns` as a JSON object keyed `return0`, ...:
//! once for a function (`{}` without return ports), once per item for a generator, which
//! stops early when the caller cancels (checked after each item). An `Err(e)` (of the
//! function or of an item) fails the task with `e.to_string()`.
//!
//! A panic is a bug: CRITICAL. wasm32-wasip2 cannot unwind (its standard library aborts on
//! panic, whatever the profile's `panic` setting), so the SDK installs a panic hook that
//! sends `panicked at src/lib.rs:10:5: <message>` to the host as a CRITICAL log line; the
//! panic then aborts, which the host sees as a trap. Where panics do unwind (native tests,
//! or a wasm build with exception handling), `run` also catches the panic and returns
//! `critical(<message>)`.
#![deny(missing_docs)]

mod call;
mod context;
mod definition;
mod dispatch;
mod export;
pub mod http;
mod keep;
mod panic;
pub mod port;
mod structure;
#[cfg(test)]
mod tests;

// Lets the macros' `::rekuest_guest` paths resolve in this crate's own tests.
#[cfg(test)]
extern crate self as rekuest_guest;

pub use call::{CallError, Target, Yields};
pub use context::{Context, LogLevel, Percent, ProgressMessage};
pub use keep::{SHELVED_IDENTIFIER, Shelved, State, StateSchema};
pub use port::Port;
pub use structure::Structure;

/// Registers a plain function as an action: see the [crate docs](crate#actions-register).
///
/// Options: `#[register(name = "...", version = "...")]`; dependency slots for
/// [`Context::call`]: `dependency = "add"` (a slot named after the action key `add`) or
/// `dependency(key = "slot", action = "key" | hash = "...", optional)`, repeatable; agent states
/// and locks (see [Keeping things](crate#keeping-things-between-tasks)): `state = Counter`,
/// `lock = "stage"`, repeatable; on parameters
/// `#[arg(default = <JSON literal>, description = "...", label = "...")]`.
pub use rekuest_guest_macros::register;

/// Implements the component's exports for the listed `#[register]` functions:
/// `export_actions!(add, divide, ops::mul)`. Use it once per crate, listing every
/// `#[register]` function exactly once (anything else fails the build, naming the function).
pub use rekuest_guest_macros::export_actions;

/// Makes a fieldless enum an ENUM port whose choices are the variant names.
pub use rekuest_guest_macros::Enum;

/// Makes a struct with named fields a MODEL port (a JSON object, one child port per field).
pub use rekuest_guest_macros::Model;

/// Everything an action crate needs: `use rekuest_guest::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CallError, Context, Enum, LogLevel, Model, Port, Shelved, State, Structure, Target,
        export_actions, register,
    };
}

/// The WIT bindings of the `action-component` world; used by [`export_actions!`].
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "action-component",
        pub_export_macro: true,
        export_macro_name: "__export_component",
    });
}

/// What the macros' generated code uses; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::exports::arkitekt::rekuest::actions::{
        Guest, RunError as WitRunError,
    };
    pub use crate::context::Context;
    pub use crate::definition::{ActionKind, Definition, Dependency, port};
    pub use crate::dispatch::{
        Action, Exported, PortFns, Registered, Returns, RunError, arg, exported, failed, field,
        port_fns, yield_each,
    };
    pub use crate::export::{describe, run};
    pub use crate::keep::state_schema;
    pub use crate::port::{Choice, Path, PortError, PortKind, PortSpec, default_kinds};
    pub use serde_json::{self, Map, Value};
}
