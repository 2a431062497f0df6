//! Turns a TOML or schema error into [`ConfigError::Syntax`]: 1-based line and column, and the
//! full path of the key the error points at, found by walking the document's spans.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::ConfigError;

#[cfg(test)]
mod tests;

/// Builds the error for `error`, raised while reading `input`.
pub(crate) fn syntax_error(input: &str, error: &toml::de::Error) -> ConfigError {
    let span = error.span();
    let offset = span.as_ref().map_or(0, |s| s.start.min(input.len()));
    let (line, column) = line_column(input, offset);
    ConfigError::Syntax {
        line,
        column,
        key: span.and_then(|s| key_at(input, s)),
        message: error.message().trim_end().to_owned(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(input: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset;
    while !input.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &input[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The path of the innermost key or value whose span holds `span.start`, if the document parses.
fn key_at(input: &str, span: Range<usize>) -> Option<String> {
    let document = DeTable::parse(input).ok()?;
    let mut best: Option<(usize, String)> = None;
    walk_table(document.get_ref(), "", span.start, &mut best);
    best.map(|(_, path)| path)
}

/// Records in `best` the narrowest span holding `offset`. Containers are always searched, since
/// the span of a table assembled from `[header]` sections does not cover all of its keys.
fn walk_table(
    table: &DeTable<'_>,
    prefix: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        consider(key.span(), &path, offset, best);
        walk_value(value, &path, offset, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), path, offset, best);
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, path, offset, best),
        DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                walk_value(item, &format!("{path}[{i}]"), offset, best);
            }
        }
        _ => {}
    }
}

fn consider(span: Range<usize>, path: &str, offset: usize, best: &mut Option<(usize, String)>) {
    // An empty span (a table header's implied parent) says nothing about where the error is.
    if span.is_empty() || !span.contains(&offset) {
        return;
    }
    let len = span.len();
    // Narrower wins; on a tie the deeper path (found later) is the more specific.
    if best.as_ref().is_none_or(|(best_len, _)| len <= *best_len) {
        *best = Some((len, path.to_owned()));
    }
}
