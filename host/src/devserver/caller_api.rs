//! The caller GraphQL of the local server, the fields the official `rekuest-next` client
//! uses: the mutations `assign`, `cancel`, `interrupt`, `pause`, `resume`, and the lookups
//! `action`, `actions`, `implementation`, `implementations`, `implementationAt`,
//! `myImplementationAt`, `agent`, `agents`, `task`. (`mytasks` is in `subscriptions`.)

use serde_json::{Map, Value};

use super::graphql::Field;
use super::state::{CallerAssign, Control, Shared};

/// Resolves `field` of a `kind` operation for the caller `token`; `None` if it is not a
/// caller field.
pub(crate) fn resolve(
    shared: &Shared,
    token: &str,
    kind: &str,
    field: &Field,
) -> Option<Result<Value, String>> {
    let arguments = &field.arguments;
    let input = arguments.get("input").unwrap_or(&Value::Null);
    let filters = arguments.get("filters").unwrap_or(&Value::Null);
    Some(match (kind, field.name.as_str()) {
        ("mutation", "assign") => {
            CallerAssign::from_input(input).and_then(|request| shared.caller_assign(token, request))
        }
        ("mutation", "cancel") => shared.caller_control(input, Control::Cancel),
        ("mutation", "interrupt") => shared.caller_control(input, Control::Interrupt),
        ("mutation", "pause") => shared.caller_control(input, Control::Pause),
        ("mutation", "resume") => shared.caller_control(input, Control::Resume(false)),
        ("query", "action") => shared.caller_action(arguments),
        ("query", "actions") => shared.caller_actions(filters),
        ("query", name @ ("implementation" | "implementationAt" | "myImplementationAt")) => {
            shared.caller_implementation(token, name, arguments)
        }
        ("query", "implementations") => shared.caller_implementations(filters),
        ("query", "agents") => shared.caller_agents(None),
        ("query", "agent") => match id(arguments) {
            Some(id) => shared.caller_agents(Some(&id)),
            None => Err("the local server finds agents by id only".into()),
        },
        ("query", "task") => match id(arguments) {
            Some(id) => shared.task_json(&id),
            None => Err("task needs an id".into()),
        },
        _ => return None,
    })
}

fn id(arguments: &Map<String, Value>) -> Option<String> {
    match arguments.get("id")? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}
