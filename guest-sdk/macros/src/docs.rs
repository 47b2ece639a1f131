//! Doc comments → descriptions, and names → titles.

use std::collections::HashMap;

use syn::{Attribute, Expr, ExprLit, Lit, Meta};

/// The lines of an item's doc comments (`///`, `/** */`, `#[doc = "..."]`), dedented.
pub(crate) fn doc_lines(attrs: &[Attribute]) -> Vec<String> {
    let mut lines = Vec::new();
    for attr in attrs {
        if let Meta::NameValue(doc) = &attr.meta
            && doc.path.is_ident("doc")
            && let Expr::Lit(ExprLit {
                lit: Lit::Str(text),
                ..
            }) = &doc.value
        {
            lines.extend(text.value().split('\n').map(str::to_owned));
        }
    }
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .into_iter()
        .map(|line| line.get(indent..).unwrap_or("").trim_end().to_owned())
        .collect()
}

/// What an action's doc comment says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Docs {
    /// Summary and body, without the argument list and the returns section.
    pub(crate) description: Option<String>,
    /// Descriptions of arguments by name.
    pub(crate) args: HashMap<String, String>,
    /// Descriptions of returns in order (`return0`, `return1`, ...).
    pub(crate) returns: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Body,
    Arguments,
    Returns,
}

/// Which description a continuation line extends.
#[derive(Clone, Copy)]
enum Target {
    Arg(usize),
    Return(usize),
}

/// Splits doc lines into the description, per-argument descriptions (bullets like
/// `` * `a` - text `` or `` - `a`: text ``, anywhere or under `# Arguments`) and return
/// descriptions (under `# Returns`: one bullet per return, or a paragraph for `return0`).
pub(crate) fn parse(lines: &[String], params: &[String]) -> Docs {
    let mut section = Section::Body;
    let mut body: Vec<&str> = Vec::new();
    let mut args: Vec<(String, String)> = Vec::new();
    let mut returns: Vec<String> = Vec::new();
    let mut returns_text: Vec<&str> = Vec::new();
    let mut target: Option<Target> = None;
    let mut in_fence = false;

    for line in lines {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            target = None;
        }
        if in_fence || trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            if section == Section::Body {
                body.push(line);
            }
            continue;
        }
        if let Some(heading) = heading(trimmed) {
            target = None;
            section = match heading.to_lowercase().as_str() {
                "arguments" | "args" | "parameters" | "params" => Section::Arguments,
                "returns" | "return" => Section::Returns,
                _ => Section::Body,
            };
            if section == Section::Body {
                body.push(line);
            }
            continue;
        }
        if trimmed.is_empty() {
            target = None;
            match section {
                Section::Body => body.push(""),
                Section::Returns => returns_text.push(""),
                Section::Arguments => {}
            }
            continue;
        }
        if let Some(item) = bullet(trimmed) {
            match (section, item.name) {
                (Section::Arguments, Some(name)) => {
                    args.push((name.to_owned(), item.text.to_owned()));
                    target = Some(Target::Arg(args.len() - 1));
                    continue;
                }
                (Section::Body, Some(name))
                    if item.backticked && params.iter().any(|param| param == name) =>
                {
                    args.push((name.to_owned(), item.text.to_owned()));
                    target = Some(Target::Arg(args.len() - 1));
                    continue;
                }
                (Section::Returns, _) => {
                    returns.push(item.text.to_owned());
                    target = Some(Target::Return(returns.len() - 1));
                    continue;
                }
                _ => {}
            }
        }
        let continues = section != Section::Body || line.starts_with(char::is_whitespace);
        match target {
            Some(Target::Arg(index)) if continues => append(&mut args[index].1, trimmed),
            Some(Target::Return(index)) => append(&mut returns[index], trimmed),
            _ => {
                target = None;
                match section {
                    Section::Body => body.push(line),
                    Section::Returns => returns_text.push(trimmed),
                    // Stray text under `# Arguments` is not part of the description.
                    Section::Arguments => {}
                }
            }
        }
    }

    if returns.is_empty()
        && let Some(paragraph) = paragraphs(&returns_text).into_iter().next()
    {
        returns.push(paragraph);
    }
    Docs {
        description: description(&body),
        args: args
            .into_iter()
            .filter(|(_, text)| !text.is_empty())
            .collect(),
        returns,
    }
}

/// The text of a markdown heading line (`# Arguments` → `Arguments`).
fn heading(line: &str) -> Option<&str> {
    let text = line.trim_start_matches('#');
    (text.len() < line.len() && text.starts_with(' ')).then(|| text.trim())
}

struct Bullet<'a> {
    name: Option<&'a str>,
    backticked: bool,
    text: &'a str,
}

/// Parses `` * `name` - text ``, `- name: text` or `* text`.
fn bullet(line: &str) -> Option<Bullet<'_>> {
    let rest = ["* ", "- ", "+ "]
        .iter()
        .find_map(|marker| line.strip_prefix(marker))?
        .trim_start();
    let (name, backticked, after) = if let Some(quoted) = rest.strip_prefix('`') {
        let end = quoted.find('`')?;
        (&quoted[..end], true, &quoted[end + 1..])
    } else {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (&rest[..end], false, &rest[end..])
    };
    let after = after.trim_start();
    let separated = ["-", ":", "–", "—"]
        .iter()
        .find_map(|separator| after.strip_prefix(separator));
    match separated {
        Some(text) if !name.is_empty() => Some(Bullet {
            name: Some(name),
            backticked,
            text: text.trim(),
        }),
        _ if backticked && after.is_empty() => Some(Bullet {
            name: Some(name),
            backticked,
            text: "",
        }),
        _ => Some(Bullet {
            name: None,
            backticked: false,
            text: rest,
        }),
    }
}

fn append(text: &mut String, more: &str) {
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(more);
}

/// Paragraphs of plain lines, each joined into one line.
fn paragraphs(lines: &[&str]) -> Vec<String> {
    lines
        .split(|line| line.trim().is_empty())
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| {
            paragraph
                .iter()
                .map(|line| line.trim())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The summary (first paragraph, on one line) and the rest of the body, joined by a blank
/// line; `None` without a summary.
fn description(body: &[&str]) -> Option<String> {
    let mut lines: Vec<&str> = Vec::new();
    for line in body {
        let blank = line.trim().is_empty();
        if blank && lines.last().is_none_or(|last| last.trim().is_empty()) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|line| line.trim().is_empty()) {
        lines.pop();
    }
    let split = lines
        .iter()
        .position(|line| line.trim().is_empty())
        .unwrap_or(lines.len());
    let summary = lines[..split]
        .iter()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join(" ");
    if summary.is_empty() {
        return None;
    }
    let rest = lines.get(split + 1..).unwrap_or_default().join("\n");
    Some(if rest.is_empty() {
        summary
    } else {
        format!("{summary}\n\n{rest}")
    })
}

/// The whole doc text of a field or variant, as one description.
pub(crate) fn item_description(attrs: &[Attribute]) -> Option<String> {
    parse(&doc_lines(attrs), &[]).description
}

/// `add_numbers` → `Add Numbers`, like the Python SDK's `snake_to_title_case`.
pub(crate) fn title_case(name: &str) -> String {
    name.split('_')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str, params: &[&str]) -> Docs {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let params: Vec<String> = params.iter().map(|param| (*param).to_owned()).collect();
        parse(&lines, &params)
    }

    fn arg<'a>(docs: &'a Docs, name: &str) -> Option<&'a str> {
        docs.args.get(name).map(String::as_str)
    }

    #[test]
    fn title_cases_snake_names() {
        assert_eq!(title_case("add"), "Add");
        assert_eq!(title_case("add_numbers"), "Add Numbers");
        assert_eq!(title_case("read_env_VAR"), "Read Env Var");
        assert_eq!(title_case("_private__thing_"), "Private Thing");
        assert_eq!(title_case("crop_2d"), "Crop 2d");
    }

    #[test]
    fn summary_and_body_without_argument_bullets() {
        let parsed = docs(
            "Add two numbers.\n\nAdds them exactly; overflow wraps.\n\n\
             * `a` - the first summand\n* `b` - the second summand",
            &["a", "b"],
        );
        assert_eq!(
            parsed.description.as_deref(),
            Some("Add two numbers.\n\nAdds them exactly; overflow wraps.")
        );
        assert_eq!(arg(&parsed, "a"), Some("the first summand"));
        assert_eq!(arg(&parsed, "b"), Some("the second summand"));
        assert!(parsed.returns.is_empty());
    }

    #[test]
    fn a_multi_line_summary_is_one_line() {
        let parsed = docs("Add two\nnumbers.\n\nMore\ntext.", &[]);
        assert_eq!(
            parsed.description.as_deref(),
            Some("Add two numbers.\n\nMore\ntext.")
        );
    }

    #[test]
    fn arguments_and_returns_sections() {
        let parsed = docs(
            "Divide with remainder.\n\n# Arguments\n\n- `a`: the dividend,\n  \
             any integer\n- b: the divisor\n\n# Returns\n\n* `quotient` - rounded toward zero\n\
             * the remainder\n\n# Errors\n\nFails when `b` is zero.",
            &["a", "b"],
        );
        assert_eq!(
            parsed.description.as_deref(),
            Some("Divide with remainder.\n\n# Errors\n\nFails when `b` is zero.")
        );
        assert_eq!(arg(&parsed, "a"), Some("the dividend, any integer"));
        assert_eq!(arg(&parsed, "b"), Some("the divisor"));
        assert_eq!(parsed.returns, ["rounded toward zero", "the remainder"]);
    }

    #[test]
    fn a_returns_paragraph_describes_return0() {
        let parsed = docs("Count.\n\n# Returns\n\nThe number of\nwords.", &[]);
        assert_eq!(parsed.description.as_deref(), Some("Count."));
        assert_eq!(parsed.returns, ["The number of words."]);
    }

    #[test]
    fn other_bullets_and_code_stay_in_the_body() {
        let parsed = docs(
            "Greet.\n\n* `other` - not a parameter\n* plain bullet\n\n```\n# hidden\n* `name` - x\n```",
            &["name"],
        );
        assert_eq!(
            parsed.description.as_deref(),
            Some(
                "Greet.\n\n* `other` - not a parameter\n* plain bullet\n\n```\n# hidden\n* `name` - x\n```"
            )
        );
        assert!(parsed.args.is_empty());
    }

    #[test]
    fn no_docs_no_description() {
        assert_eq!(docs("", &[]), Docs::default());
        assert_eq!(docs("\n# Arguments\n* `a` - x", &["a"]).description, None);
    }

    #[test]
    fn doc_attributes_are_dedented() {
        let item: syn::ItemFn = syn::parse_quote! {
            /// Add.
            ///
            ///   indented
            fn add() {}
        };
        assert_eq!(doc_lines(&item.attrs), ["Add.", "", "  indented"]);
        let block: syn::ItemFn = syn::parse_quote! {
            /**
               Block.
                 more
            */
            fn add() {}
        };
        assert_eq!(
            item_description(&block.attrs).as_deref(),
            Some("Block. more")
        );
    }
}
