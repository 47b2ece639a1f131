//! `rekuest-host inspect`: what a component offers, as a table or as registration JSON.

use std::fmt::Write;

use rekuest_host::definition::{Definition, Port, expected};
use rekuest_host::runtime::ActionComponent;

/// The exact `DefinitionInput` list that would be registered, pretty-printed.
pub fn render_json(component: &ActionComponent) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(component.definitions())?)
}

/// A readable overview of every action, its ports and docs.
pub fn render_table(component: &ActionComponent) -> String {
    let definitions = component.definitions();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} action{}",
        component.name(),
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
        definition.key, definition.version, definition.name
    );
    if let Some(description) = &definition.description {
        for line in description.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    for (title, ports) in [("args", &definition.args), ("returns", &definition.returns)] {
        if ports.is_empty() {
            let _ = writeln!(out, "  {title}: none");
            continue;
        }
        let _ = writeln!(out, "  {title}:");
        let rows: Vec<(String, String, String)> = ports.iter().map(port_row).collect();
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

fn port_row(port: &Port) -> (String, String, String) {
    let mut kind = expected(port);
    if port.nullable {
        kind.push_str(" (optional)");
    }
    let mut note = port.description.clone().unwrap_or_default();
    if let Some(default) = &port.default {
        if !note.is_empty() {
            note.push(' ');
        }
        note.push_str(&format!("[default: {default}]"));
    }
    (port.key.clone(), kind, note)
}
