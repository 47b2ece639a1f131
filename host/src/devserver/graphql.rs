//! Just enough GraphQL for the local server: parse a document (operations, fragments,
//! aliases, arguments with variables), pick the operation, and shape an answer to exactly the
//! fields a query selects, `__typename` included.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

/// Most nesting of selections or values accepted (keeps hostile documents cheap).
const MAX_DEPTH: usize = 64;
/// Longest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why a document was refused; the text goes to the client as a GraphQL error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GraphqlError(pub String);

fn error(message: impl Into<String>) -> GraphqlError {
    GraphqlError(message.into())
}

/// One selected field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The response key, if renamed.
    pub alias: Option<String>,
    /// The field name.
    pub name: String,
    /// Arguments, variables already substituted.
    pub arguments: Map<String, Value>,
    /// The sub-selection (empty for a leaf).
    pub selection: Vec<Selection>,
}

impl Field {
    /// The key this field has in the response.
    pub fn response_key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// An entry of a selection set.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// A field, possibly aliased, with arguments and a sub-selection.
    Field(Field),
    /// A fragment spread (`...Name`), by the fragment's name.
    Spread(String),
    /// `... on Type { ... }` or `... { ... }`.
    Inline {
        /// The type after `on`; the local server's schema ignores it.
        type_condition: Option<String>,
        /// The fields the fragment selects.
        selection: Vec<Selection>,
    },
}

/// The operation to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `query`, `mutation` or `subscription`.
    pub kind: String,
    /// Its top-level fields.
    pub fields: Vec<Field>,
    fragments: HashMap<String, (String, Vec<Selection>)>,
}

impl Operation {
    /// Shapes `data` (objects carry their `__typename`) to `selection`.
    pub fn project(&self, data: &Value, selection: &[Selection]) -> Value {
        if selection.is_empty() {
            return data.clone();
        }
        match data {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.project(item, selection))
                    .collect(),
            ),
            Value::Object(object) => {
                let mut out = Map::new();
                self.project_into(object, selection, &mut out, 0);
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    fn project_into(
        &self,
        object: &Map<String, Value>,
        selection: &[Selection],
        out: &mut Map<String, Value>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let typename = object.get("__typename").and_then(Value::as_str);
        for entry in selection {
            match entry {
                Selection::Field(field) => {
                    let value = object.get(&field.name).unwrap_or(&Value::Null);
                    out.insert(
                        field.response_key().to_string(),
                        self.project(value, &field.selection),
                    );
                }
                Selection::Spread(name) => {
                    if let Some((condition, selection)) = self.fragments.get(name)
                        && typename.is_none_or(|typename| typename == condition)
                    {
                        self.project_into(object, selection, out, depth + 1);
                    }
                }
                Selection::Inline {
                    type_condition,
                    selection,
                } => {
                    let applies = match (type_condition, typename) {
                        (Some(condition), Some(typename)) => condition == typename,
                        _ => true,
                    };
                    if applies {
                        self.project_into(object, selection, out, depth + 1);
                    }
                }
            }
        }
    }
}

/// Parses `document` and picks the operation (`operation_name`, or the only one).
pub fn parse(
    document: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Value>,
) -> Result<Operation, GraphqlError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(error("the document is too large"));
    }
    let tokens = lex(document)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        variables,
    };
    let mut operations = Vec::new();
    let mut fragments = HashMap::new();
    while parser.peek().is_some() {
        match parser.peek() {
            Some(Token::Name(word)) if word == "fragment" => {
                parser.next();
                let name = parser.name()?;
                parser.expect_name("on")?;
                let condition = parser.name()?;
                parser.skip_directives()?;
                let selection = parser.selection_set(0)?;
                fragments.insert(name, (condition, selection));
            }
            Some(Token::Punct('{')) => {
                let fields = parser.selection_set(0)?;
                operations.push((None, "query".to_string(), fields));
            }
            Some(Token::Name(word))
                if matches!(word.as_str(), "query" | "mutation" | "subscription") =>
            {
                let kind = word.clone();
                parser.next();
                let name = match parser.peek() {
                    Some(Token::Name(_)) => Some(parser.name()?),
                    _ => None,
                };
                if parser.eat('(') {
                    parser.skip_balanced('(', ')')?;
                }
                parser.skip_directives()?;
                let fields = parser.selection_set(0)?;
                operations.push((name, kind, fields));
            }
            _ => return Err(error("expected an operation or a fragment")),
        }
    }
    let chosen = match operation_name {
        Some(wanted) => operations
            .into_iter()
            .find(|(name, _, _)| name.as_deref() == Some(wanted))
            .ok_or_else(|| error(format!("Unknown operation named \"{wanted}\".")))?,
        None => {
            if operations.len() != 1 {
                return Err(error(
                    "Must provide operation name if query contains multiple operations.",
                ));
            }
            operations.remove(0)
        }
    };
    let (_, kind, selection) = chosen;
    let mut fields = Vec::new();
    flatten_top_level(selection, &fragments, &mut fields, 0)?;
    Ok(Operation {
        kind,
        fields,
        fragments,
    })
}

fn flatten_top_level(
    selection: Vec<Selection>,
    fragments: &HashMap<String, (String, Vec<Selection>)>,
    out: &mut Vec<Field>,
    depth: usize,
) -> Result<(), GraphqlError> {
    if depth > MAX_DEPTH {
        return Err(error("fragments nest too deeply"));
    }
    for entry in selection {
        match entry {
            Selection::Field(field) => out.push(field),
            Selection::Spread(name) => {
                let (_, selection) = fragments
                    .get(&name)
                    .ok_or_else(|| error(format!("Unknown fragment \"{name}\".")))?;
                flatten_top_level(selection.clone(), fragments, out, depth + 1)?;
            }
            Selection::Inline { selection, .. } => {
                flatten_top_level(selection, fragments, out, depth + 1)?
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Punct(char),
    Spread,
    Name(String),
    Int(String),
    Float(String),
    Str(String),
}

fn lex(text: &str) -> Result<Vec<Token>, GraphqlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '!' | '$' | '&' | '(' | ')' | ':' | '=' | '@' | '[' | ']' | '{' | '|' | '}' => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
            '.' => {
                if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
                    tokens.push(Token::Spread);
                    i += 3;
                } else {
                    return Err(error("unexpected '.'"));
                }
            }
            '"' => {
                if chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') {
                    let start = i + 3;
                    let mut end = start;
                    while end + 2 < chars.len()
                        && !(chars[end] == '"' && chars[end + 1] == '"' && chars[end + 2] == '"')
                    {
                        end += 1;
                    }
                    if end + 2 >= chars.len() {
                        return Err(error("unterminated block string"));
                    }
                    tokens.push(Token::Str(chars[start..end].iter().collect()));
                    i = end + 3;
                } else {
                    let mut value = String::new();
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None | Some('\n') => return Err(error("unterminated string")),
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some('\\') => {
                                let escaped = chars.get(i + 1).copied();
                                i += 2;
                                match escaped {
                                    Some('n') => value.push('\n'),
                                    Some('t') => value.push('\t'),
                                    Some('r') => value.push('\r'),
                                    Some('b') => value.push('\u{8}'),
                                    Some('f') => value.push('\u{c}'),
                                    Some('u') => {
                                        let hex: String = chars.iter().skip(i).take(4).collect();
                                        let code = u32::from_str_radix(&hex, 16)
                                            .ok()
                                            .and_then(char::from_u32)
                                            .ok_or_else(|| error("bad \\u escape"))?;
                                        value.push(code);
                                        i += 4;
                                    }
                                    Some(other) => value.push(other),
                                    None => return Err(error("unterminated string")),
                                }
                            }
                            Some(&other) => {
                                value.push(other);
                                i += 1;
                            }
                        }
                    }
                    tokens.push(Token::Str(value));
                }
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                let mut float = false;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    float |= matches!(chars[i], '.' | 'e' | 'E');
                    i += 1;
                }
                let number: String = chars[start..i].iter().collect();
                tokens.push(if float {
                    Token::Float(number)
                } else {
                    Token::Int(number)
                });
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                tokens.push(Token::Name(chars[start..i].iter().collect()));
            }
            other => return Err(error(format!("unexpected character '{other}'"))),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    variables: &'a Map<String, Value>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn eat(&mut self, punct: char) -> bool {
        if self.peek() == Some(&Token::Punct(punct)) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: char) -> Result<(), GraphqlError> {
        if self.eat(punct) {
            Ok(())
        } else {
            Err(error(format!("expected '{punct}'")))
        }
    }

    fn name(&mut self) -> Result<String, GraphqlError> {
        match self.next() {
            Some(Token::Name(name)) => Ok(name),
            _ => Err(error("expected a name")),
        }
    }

    fn expect_name(&mut self, wanted: &str) -> Result<(), GraphqlError> {
        match self.next() {
            Some(Token::Name(name)) if name == wanted => Ok(()),
            _ => Err(error(format!("expected '{wanted}'"))),
        }
    }

    /// Skips to after the `close` matching an already consumed `open`.
    fn skip_balanced(&mut self, open: char, close: char) -> Result<(), GraphqlError> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next() {
                None => return Err(error(format!("expected '{close}'"))),
                Some(Token::Punct(c)) if c == open => depth += 1,
                Some(Token::Punct(c)) if c == close => depth -= 1,
                _ => {}
            }
        }
        Ok(())
    }

    fn skip_directives(&mut self) -> Result<(), GraphqlError> {
        while self.eat('@') {
            self.name()?;
            if self.eat('(') {
                self.skip_balanced('(', ')')?;
            }
        }
        Ok(())
    }

    fn selection_set(&mut self, depth: usize) -> Result<Vec<Selection>, GraphqlError> {
        if depth > MAX_DEPTH {
            return Err(error("selections nest too deeply"));
        }
        self.expect('{')?;
        let mut selection = Vec::new();
        while !self.eat('}') {
            if self.peek() == Some(&Token::Spread) {
                self.next();
                match self.peek() {
                    Some(Token::Name(word)) if word == "on" => {
                        self.next();
                        let condition = self.name()?;
                        self.skip_directives()?;
                        selection.push(Selection::Inline {
                            type_condition: Some(condition),
                            selection: self.selection_set(depth + 1)?,
                        });
                    }
                    Some(Token::Name(_)) => {
                        let name = self.name()?;
                        self.skip_directives()?;
                        selection.push(Selection::Spread(name));
                    }
                    _ => {
                        self.skip_directives()?;
                        selection.push(Selection::Inline {
                            type_condition: None,
                            selection: self.selection_set(depth + 1)?,
                        });
                    }
                }
                continue;
            }
            let first = self.name()?;
            let (alias, name) = if self.eat(':') {
                (Some(first), self.name()?)
            } else {
                (None, first)
            };
            let mut arguments = Map::new();
            if self.eat('(') {
                while !self.eat(')') {
                    let key = self.name()?;
                    self.expect(':')?;
                    let value = self.value(depth + 1)?;
                    arguments.insert(key, value);
                }
            }
            self.skip_directives()?;
            let sub = if self.peek() == Some(&Token::Punct('{')) {
                self.selection_set(depth + 1)?
            } else {
                Vec::new()
            };
            selection.push(Selection::Field(Field {
                alias,
                name,
                arguments,
                selection: sub,
            }));
        }
        Ok(selection)
    }

    fn value(&mut self, depth: usize) -> Result<Value, GraphqlError> {
        if depth > MAX_DEPTH {
            return Err(error("values nest too deeply"));
        }
        match self.next() {
            Some(Token::Punct('$')) => {
                let name = self.name()?;
                Ok(self.variables.get(&name).cloned().unwrap_or(Value::Null))
            }
            Some(Token::Int(text)) => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| error(format!("bad integer {text}"))),
            Some(Token::Float(text)) => text
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| error(format!("bad number {text}"))),
            Some(Token::Str(text)) => Ok(Value::String(text)),
            Some(Token::Name(name)) => Ok(match name.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(name),
            }),
            Some(Token::Punct('[')) => {
                let mut items = Vec::new();
                while !self.eat(']') {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            Some(Token::Punct('{')) => {
                let mut object = Map::new();
                while !self.eat('}') {
                    let key = self.name()?;
                    self.expect(':')?;
                    object.insert(key, self.value(depth + 1)?);
                }
                Ok(Value::Object(object))
            }
            _ => Err(error("expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The document the Python client `rekuest-next` sends to ensure its agent.
    const PYTHON_ENSURE: &str = "fragment Agent on Agent {\n  id\n  hash\n  client {\n    id\n    __typename\n  }\n  user {\n    sub\n    __typename\n  }\n  memoryShelve {\n    id\n    __typename\n  }\n  __typename\n}\n\nmutation EnsureAgent($input: AgentInput!) {\n  ensureAgent(input: $input) {\n    ...Agent\n    __typename\n  }\n}";

    #[test]
    fn answers_the_python_clients_fragment_query() {
        let variables = json!({"input": {"name": "scope"}});
        let operation = parse(
            PYTHON_ENSURE,
            Some("EnsureAgent"),
            variables.as_object().expect("object"),
        )
        .expect("parses");
        assert_eq!(operation.kind, "mutation");
        assert_eq!(operation.fields.len(), 1);
        let field = &operation.fields[0];
        assert_eq!(field.name, "ensureAgent");
        assert_eq!(field.arguments["input"], json!({"name": "scope"}));
        let data = json!({
            "__typename": "Agent", "id": "1", "hash": "", "name": "scope", "extra": 5,
            "client": {"__typename": "App", "id": "c"},
            "user": {"__typename": "User", "sub": "u"},
            "memoryShelve": {"__typename": "MemoryShelve", "id": "m"}
        });
        assert_eq!(
            operation.project(&data, &field.selection),
            json!({
                "id": "1", "hash": "",
                "client": {"id": "c", "__typename": "App"},
                "user": {"sub": "u", "__typename": "User"},
                "memoryShelve": {"id": "m", "__typename": "MemoryShelve"},
                "__typename": "Agent"
            })
        );
    }

    #[test]
    fn handles_literals_aliases_and_inline_fragments() {
        let document = r#"
            # a comment
            query First { a }
            mutation Second {
              renamed: ensureAgent(input: {name: "x\ty", tags: [1, 2.5, true, null, FOO]}) @skip(if: false) {
                ... on Agent { id }
                ... on Other { hash }
              }
            }"#;
        let operation = parse(document, Some("Second"), &Map::new()).expect("parses");
        let field = &operation.fields[0];
        assert_eq!(field.response_key(), "renamed");
        assert_eq!(
            field.arguments["input"],
            json!({"name": "x\ty", "tags": [1, 2.5, true, null, "FOO"]})
        );
        let data = json!({"__typename": "Agent", "id": "1", "hash": "h"});
        assert_eq!(
            operation.project(&data, &field.selection),
            json!({"id": "1"})
        );
        assert!(parse(document, None, &Map::new()).is_err());
        assert!(parse(document, Some("Third"), &Map::new()).is_err());
    }

    #[test]
    fn refuses_broken_documents() {
        for document in [
            "mutation {",
            "mutation { a(b: ) }",
            "{ a(b: \"open) }",
            "fragment F on T { ...F } { ...F }",
            "%",
        ] {
            assert!(parse(document, None, &Map::new()).is_err(), "{document}");
        }
        let deep = format!("{}{}", "{ a ".repeat(100), "}".repeat(100));
        assert!(parse(&deep, None, &Map::new()).is_err());
    }
}
