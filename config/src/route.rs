//! Parsing of a route's `match` string (`"POST|PUT /accounts/{id}/**"`) and of its `lane`.
//!
//! This module only turns text into [`MethodSet`], [`PathPattern`] and [`LaneTemplate`] values
//! and says precisely what is wrong with the text; matching requests against them belongs to the
//! classifiers.

use http::HeaderName;

use crate::error::ConfigError;
use crate::types::{LanePart, LaneTemplate, MethodSet, PathPattern, Segment};

#[cfg(test)]
mod tests;

/// Parses `"METHODS PATTERN"`: `*` or `|`-separated method tokens, whitespace, a path pattern.
pub(crate) fn parse_match(key: &str, value: &str) -> Result<(MethodSet, PathPattern), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidRoute {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let mut words = value.split_whitespace();
    let (Some(methods), Some(pattern), None) = (words.next(), words.next(), words.next()) else {
        return Err(invalid(
            "write the methods, a space and a path pattern, like \"GET /accounts/{id}\" or \
             \"POST|PUT /accounts/**\""
                .to_owned(),
        ));
    };
    let methods = parse_methods(methods).map_err(&invalid)?;
    let pattern = parse_pattern(pattern).map_err(invalid)?;
    Ok((methods, pattern))
}

fn parse_methods(text: &str) -> Result<MethodSet, String> {
    if text == "*" {
        return Ok(MethodSet::Any);
    }
    let mut methods: Vec<String> = Vec::new();
    for method in text.split('|') {
        check_method(method)?;
        let method = method.to_ascii_uppercase();
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Ok(MethodSet::Only(methods))
}

/// Checks one method token (RFC 9110 `token`, minus `|`, which separates methods here).
pub(crate) fn check_method(method: &str) -> Result<(), String> {
    if method.is_empty() {
        return Err(
            "a method name is empty; separate methods with a single '|', like \"GET|HEAD\", or \
             write '*' for every method"
                .to_owned(),
        );
    }
    if method == "*" {
        return Err("'*' stands for every method and cannot be combined with others".to_owned());
    }
    if let Some(c) = method.chars().find(|&c| !is_token_char(c) || c == '|') {
        return Err(format!(
            "method {method:?} contains {c:?}; a method is letters, digits and \
             !#$%&'*+-.^_`~, like GET or PROPFIND"
        ));
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses a path pattern: `*`, or `/` followed by `/`-separated literals, `{param}`s and a final
/// `**`.
fn parse_pattern(text: &str) -> Result<PathPattern, String> {
    if text == "*" {
        return Ok(PathPattern {
            source: text.to_owned(),
            segments: vec![Segment::Tail],
        });
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!(
            "the pattern {text:?} must start with '/' (or be '*' for every path)"
        ));
    };
    let mut segments = Vec::new();
    // `/` alone is the root: no segment at all.
    if !rest.is_empty() {
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let segment = parse_segment(part, i == last)?;
            if let Segment::Param(name) = &segment
                && segments.contains(&segment)
            {
                return Err(format!(
                    "the parameter {{{name}}} appears twice; give each parameter its own name"
                ));
            }
            if segment == Segment::Tail && i != last {
                return Err(
                    "'**' matches the rest of the path, so it may only be the last segment"
                        .to_owned(),
                );
            }
            segments.push(segment);
        }
    }
    Ok(PathPattern {
        source: text.to_owned(),
        segments,
    })
}

fn parse_segment(part: &str, is_last: bool) -> Result<Segment, String> {
    if part == "**" {
        return Ok(Segment::Tail);
    }
    if part.is_empty() {
        // A trailing slash is a real, empty last segment; a doubled slash is almost surely a typo.
        return if is_last {
            Ok(Segment::Literal(String::new()))
        } else {
            Err("the pattern has an empty segment ('//'); remove the extra '/'".to_owned())
        };
    }
    if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        check_param_name(inner)?;
        return Ok(Segment::Param(inner.to_owned()));
    }
    if part.contains(['{', '}']) {
        return Err(format!(
            "the segment {part:?} mixes text and braces; a parameter is a whole segment, like \
             /accounts/{{id}}"
        ));
    }
    if part.contains('*') {
        return Err(format!(
            "the segment {part:?} contains '*'; write {{name}} to match one segment or a final \
             '**' to match the rest of the path"
        ));
    }
    if let Some(c) = part
        .chars()
        .find(|&c| c == '?' || c == '#' || c.is_control())
    {
        return Err(format!(
            "the segment {part:?} contains {c:?}; a pattern matches the path only, without query \
             or fragment"
        ));
    }
    Ok(Segment::Literal(part.to_owned()))
}

fn check_param_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a parameter has no name ('{}'); write a name, like {id}".to_owned());
    }
    if !is_identifier(name) {
        return Err(format!(
            "the parameter name {name:?} is not an identifier; use letters, digits and '_', not \
             starting with a digit, like {{id}} or {{account_id}}"
        ));
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The names of the parameters a pattern binds, in pattern order.
pub(crate) fn pattern_params(pattern: &PathPattern) -> Vec<String> {
    pattern
        .segments
        .iter()
        .filter_map(|s| match s {
            Segment::Param(name) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Parses a lane: `"header:NAME"`, or a template of text and `{param}`s bound by `pattern`.
pub(crate) fn parse_lane(
    key: &str,
    value: &str,
    pattern: &PathPattern,
) -> Result<LaneTemplate, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidLane {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if let Some(name) = value.strip_prefix("header:") {
        let name = name.trim();
        return match HeaderName::from_bytes(name.as_bytes()) {
            // `HeaderName` lowercases.
            Ok(header) => Ok(LaneTemplate::Header(header.as_str().to_owned())),
            Err(_) => Err(invalid(format!(
                "{name:?} is not a valid HTTP header name; write it like \"header:X-Tenant\""
            ))),
        };
    }
    if value.is_empty() {
        return Err(invalid(
            "it is empty; remove the key to use the global lane, or write a template like \
             \"{id}\" or \"header:X-Tenant\""
                .to_owned(),
        ));
    }
    let parts = parse_template(value).map_err(invalid)?;
    let available = pattern_params(pattern);
    for part in &parts {
        if let LanePart::Param(param) = part
            && !available.contains(param)
        {
            return Err(ConfigError::UnknownLaneParam {
                key: key.to_owned(),
                param: param.clone(),
                available,
            });
        }
    }
    Ok(LaneTemplate::Template(parts))
}

fn parse_template(text: &str) -> Result<Vec<LanePart>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '{' => {
                let Some(end) = rest.find('}') else {
                    return Err("a '{' is never closed; write parameters as {name}".to_owned());
                };
                let name = &rest[1..end];
                if name.contains('{') {
                    return Err("braces cannot nest; write parameters as {name}".to_owned());
                }
                check_param_name(name)?;
                if !literal.is_empty() {
                    parts.push(LanePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(LanePart::Param(name.to_owned()));
                rest = &rest[end + 1..];
            }
            '}' => {
                return Err("a '}' has no matching '{'; write parameters as {name}".to_owned());
            }
            _ => {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !literal.is_empty() {
        parts.push(LanePart::Literal(literal));
    }
    Ok(parts)
}
