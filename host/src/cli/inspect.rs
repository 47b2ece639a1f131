//! `rekuest-host inspect`: what a component offers, as a table or as registration JSON.
//!
//! Everything shown comes from the guest: it is escaped for the terminal ([`text`]).

use std::fmt::Write;

use rekuest_host::definition::{Definition, DefinitionInput, Port, PortKind};
use rekuest_host::runtime::ActionComponent;
use rekuest_host::text::{self, OneLine};

/// The exact `DefinitionInput` list that would be registered, pretty-printed.
pub fn render_json(component: &ActionComponent) -> anyhow::Result<String> {
    let inputs: Vec<DefinitionInput<'_>> = component
        .definitions()
        .iter()
        .map(DefinitionInput::from)
        .collect();
    let json = serde_json::to_string_pretty(&inputs)?;
    Ok(text::json(&json).into_owned())
}

/// A readable overview of every action, its ports and docs.
pub fn render_table(component: &ActionComponent) -> String {
    let definitions = component.definitions();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} action{}",
        OneLine(component.name()),
        definitions.len(),
        if definitions.len() == 1 { "" } else { "s" }
    );
    for definition in definitions {
        out.push('\n');
        render_definition(&mut out, definition);
    }
    out
}

fn render_definition(out: &mut String, definition: &Definition) {
    let kind = match definition.kind {
        rekuest_host::definition::ActionKind::Function => "function",
        rekuest_host::definition::ActionKind::Generator => "generator",
    };
    let _ = writeln!(
        out,
        "{}  ({kind}, version {}): {}",
        OneLine(&definition.key),
        OneLine(&definition.version),
        OneLine(&definition.name)
    );
    if let Some(description) = &definition.description {
        for line in description.lines() {
            let _ = writeln!(out, "    {}", OneLine(line));
        }
    }
    for (title, ports) in [("args", &definition.args), ("returns", &definition.returns)] {
        if ports.is_empty() {
            let _ = writeln!(out, "  {title}: none");
            continue;
        }
        let _ = writeln!(out, "  {title}:");
        let mut rows = Vec::new();
        for port in ports {
            port_rows(port, 0, &mut rows);
        }
        let key_width = rows.iter().map(|row| row.0.len()).max().unwrap_or(0);
        let kind_width = rows
            .iter()
            .map(|row| row.1.chars().count())
            .max()
            .unwrap_or(0);
        for (key, kind, note) in rows {
            let line = format!("    {key:key_width$}  {kind:kind_width$}  {note}");
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

/// The rows of `port` (`key, kind, note`) and, indented below it, of its model's fields.
fn port_rows(port: &Port, depth: usize, rows: &mut Vec<(String, String, String)>) {
    let mut kind = kind_text(port);
    if port.nullable {
        kind.push_str(" (optional)");
    }
    let mut note = OneLine(port.description.as_deref().unwrap_or_default()).to_string();
    if let Some(default) = &port.default {
        if !note.is_empty() {
            note.push(' ');
        }
        note.push_str(&format!("[default: {}]", text::json(&default.to_string())));
    }
    let indent = "  ".repeat(depth);
    rows.push((format!("{indent}{}", OneLine(&port.key)), kind, note));
    if let Some(model) = model_of(port) {
        for field in model.children.iter().flatten() {
            port_rows(field, depth + 1, rows);
        }
    }
}

/// What `port` holds, marking inner values that may be null: `LIST of optional FLOAT`.
fn kind_text(port: &Port) -> String {
    match (port.kind, port.children.as_deref()) {
        (PortKind::List | PortKind::Dict, Some([child])) => format!(
            "{} of {}{}",
            port.kind,
            if child.nullable { "optional " } else { "" },
            kind_text(child)
        ),
        _ => OneLine(&port.expected()).to_string(),
    }
}

/// The MODEL port `port` is, or holds as its LIST or DICT items.
fn model_of(port: &Port) -> Option<&Port> {
    match (port.kind, port.children.as_deref()) {
        (PortKind::Model, _) => Some(port),
        (PortKind::List | PortKind::Dict, Some([child])) => model_of(child),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_shows_model_fields_and_inner_nullability() {
        let definition: Definition = serde_json::from_value(json!({
            "key": "f", "version": "1", "name": "F", "kind": "FUNCTION", "returns": [],
            "args": [
                {"key": "values", "kind": "LIST", "nullable": true,
                 "children": [{"key": "...", "kind": "FLOAT", "nullable": true}]},
                {"key": "points", "kind": "DICT", "nullable": false, "children": [
                    {"key": "...", "kind": "MODEL", "nullable": false, "identifier": "Point",
                     "children": [
                        {"key": "x", "kind": "FLOAT", "nullable": false, "description": "across"},
                        {"key": "tags", "kind": "LIST", "nullable": true,
                         "children": [{"key": "...", "kind": "STRING", "nullable": true}]}
                     ]}
                ]}
            ]
        }))
        .expect("valid definition");
        let mut out = String::new();
        render_definition(&mut out, &definition);
        let expected = "\
f  (function, version 1): F
  args:
    values  LIST of optional FLOAT (optional)
    points  DICT of MODEL Point
      x     FLOAT                               across
      tags  LIST of optional STRING (optional)
  returns: none
";
        assert_eq!(out, expected);
    }
}
