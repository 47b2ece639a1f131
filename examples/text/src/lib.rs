//! Example actions: text, with defaults, optional args, an enum, a dict and a model.

use std::collections::HashMap;

use rekuest_guest::prelude::*;

/// Greet someone.
///
/// Puts the greeting, the name and the punctuation together.
///
/// * `name` - who to greet
/// * `greeting` - how to greet
/// * `punctuation` - what ends the greeting; "!" when left out
#[register]
fn greet(
    name: String,
    #[arg(default = "Hello")] greeting: String,
    punctuation: Option<String>,
) -> String {
    let punctuation = punctuation.unwrap_or_else(|| "!".to_owned());
    format!("{greeting}, {name}{punctuation}")
}

/// How to change the case of text.
#[derive(Enum)]
enum Case {
    /// ALL CAPITAL LETTERS
    Upper,
    /// all small letters
    Lower,
    /// The First Letter Of Each Word Capital
    Title,
}

/// Change the case of a text.
///
/// * `text` - the text to change
/// * `case` - the case to change it to
#[register]
fn change_case(text: String, case: Case) -> String {
    match case {
        Case::Upper => text.to_uppercase(),
        Case::Lower => text.to_lowercase(),
        Case::Title => title_case(&text),
    }
}

fn title_case(text: &str) -> String {
    let mut result = String::with_capacity(text.len());
    let mut start_of_word = true;
    for c in text.chars() {
        if start_of_word {
            result.extend(c.to_uppercase());
        } else {
            result.extend(c.to_lowercase());
        }
        start_of_word = c.is_whitespace();
    }
    result
}

/// The words of a text, lower-cased, without surrounding punctuation.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace()
        .map(|word| {
            word.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|word| !word.is_empty())
}

/// Count how often each word occurs.
///
/// Words are compared case-insensitively, without surrounding punctuation.
///
/// * `text` - the text to count the words of
#[register]
fn count_words(text: String) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for word in words(&text) {
        *counts.entry(word).or_insert(0) += 1;
    }
    counts
}

/// Counts of a text.
#[derive(Model)]
struct Stats {
    /// The number of words.
    words: i64,
    /// The number of characters.
    chars: i64,
    /// The number of lines.
    lines: i64,
}

/// Count the words, characters and lines of a text.
///
/// * `text` - the text to count
#[register]
fn stats(text: String) -> Stats {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    Stats {
        words: count(words(&text).count()),
        chars: count(text.chars().count()),
        lines: count(text.lines().count()),
    }
}

/// Describe counts of a text in words.
///
/// * `stats` - the counts, as `stats` returns them
#[register]
fn summarize(stats: Stats) -> String {
    format!(
        "{} words, {} characters, {} lines",
        stats.words, stats.chars, stats.lines
    )
}

/// Repeat a text.
///
/// * `text` - the text to repeat
/// * `times` - how often, at most 255
/// * `separator` - what goes between the repetitions
#[register]
fn repeat(
    text: String,
    #[arg(default = 2)] times: u8,
    #[arg(default = "")] separator: String,
) -> String {
    vec![text; usize::from(times)].join(&separator)
}

rekuest_guest::export_actions!(greet, change_case, count_words, stats, summarize, repeat);
