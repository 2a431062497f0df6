//! Comparing a backup's response with the primary's, after the route's normalization.
//!
//! Bodies are compared as JSON values when both parse as JSON (so key order and whitespace do not
//! matter across implementations), else byte for byte. Headers are compared by lowercase name,
//! leaving out the ones that legitimately differ between copies.

use std::fmt;

use lockstep_config::CompareRule;
use lockstep_journal::ResponseRecord;
use serde_json::Value;

/// Headers never compared: they describe the connection or the moment, not the state.
const ALWAYS_IGNORED: &[&str] = &[
    "date",
    "server",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// The first difference found between two responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Status {
        primary: u16,
        backup: u16,
    },
    Header {
        name: String,
        primary: Option<String>,
        backup: Option<String>,
    },
    /// JSON bodies differ at this pointer (`""` for the root).
    JsonBody {
        pointer: String,
        primary: String,
        backup: String,
    },
    /// Non-JSON bodies differ, first at this byte offset.
    Body {
        offset: usize,
        primary_len: usize,
        backup_len: usize,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Status { primary, backup } => {
                write!(f, "status: primary {primary}, backup {backup}")
            }
            Difference::Header {
                name,
                primary,
                backup,
            } => write!(
                f,
                "header {name}: primary {}, backup {}",
                primary.as_deref().unwrap_or("(absent)"),
                backup.as_deref().unwrap_or("(absent)")
            ),
            Difference::JsonBody {
                pointer,
                primary,
                backup,
            } => {
                let at = if pointer.is_empty() {
                    "(root)"
                } else {
                    pointer
                };
                write!(f, "body at {at}: primary {primary}, backup {backup}")
            }
            Difference::Body {
                offset,
                primary_len,
                backup_len,
            } => write!(
                f,
                "body bytes differ from offset {offset} (primary {primary_len} bytes, backup {backup_len} bytes)"
            ),
        }
    }
}

/// Compares `backup` against `primary` under `rule`; `None` means equal.
pub fn compare_responses(
    rule: &CompareRule,
    primary: &ResponseRecord,
    backup: &ResponseRecord,
) -> Option<Difference> {
    if primary.status != backup.status {
        return Some(Difference::Status {
            primary: primary.status,
            backup: backup.status,
        });
    }
    if rule.status_only {
        return None;
    }
    if let Some(d) = compare_headers(rule, primary, backup) {
        return Some(d);
    }
    compare_bodies(&rule.ignore_json, &primary.body, &backup.body)
}

fn compare_headers(
    rule: &CompareRule,
    primary: &ResponseRecord,
    backup: &ResponseRecord,
) -> Option<Difference> {
    let ignored = |name: &str| {
        ALWAYS_IGNORED.iter().any(|h| h.eq_ignore_ascii_case(name))
            || rule
                .ignore_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    };
    let collect = |r: &ResponseRecord| {
        let mut v: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .filter(|h| !ignored(&h.name))
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        v.sort();
        v
    };
    let (p, b) = (collect(primary), collect(backup));
    if p == b {
        return None;
    }
    // Report the first name whose values differ.
    let mut names: Vec<&String> = p.iter().chain(b.iter()).map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    for name in names {
        let pick = |v: &[(String, Vec<u8>)]| {
            let vals: Vec<String> = v
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, val)| String::from_utf8_lossy(val).into_owned())
                .collect();
            if vals.is_empty() {
                None
            } else {
                Some(vals.join(", "))
            }
        };
        let (pv, bv) = (pick(&p), pick(&b));
        if pv != bv {
            return Some(Difference::Header {
                name: name.clone(),
                primary: pv,
                backup: bv,
            });
        }
    }
    None
}

fn compare_bodies(ignore_json: &[String], primary: &[u8], backup: &[u8]) -> Option<Difference> {
    if primary == backup && ignore_json.is_empty() {
        return None;
    }
    match (
        serde_json::from_slice::<Value>(primary),
        serde_json::from_slice::<Value>(backup),
    ) {
        (Ok(mut p), Ok(mut b)) => {
            for pointer in ignore_json {
                remove_pointer(&mut p, pointer);
                remove_pointer(&mut b, pointer);
            }
            first_json_difference(&p, &b, &mut String::new())
        }
        _ if primary == backup => None,
        _ => {
            let offset = primary
                .iter()
                .zip(backup)
                .take_while(|(a, b)| a == b)
                .count();
            Some(Difference::Body {
                offset,
                primary_len: primary.len(),
                backup_len: backup.len(),
            })
        }
    }
}

/// Removes the value at an RFC 6901 pointer; a pointer that matches nothing is a no-op. A
/// `*` reference token matches every element of an array or every member of an object, so
/// `/items/*/updated_at` ignores a field in each item.
fn remove_pointer(value: &mut Value, pointer: &str) {
    if pointer.is_empty() {
        *value = Value::Null;
        return;
    }
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    remove_tokens(value, &tokens);
}

fn remove_tokens(value: &mut Value, tokens: &[String]) {
    let Some((head, rest)) = tokens.split_first() else {
        return;
    };
    if rest.is_empty() {
        match value {
            Value::Object(map) if head == "*" => map.clear(),
            Value::Object(map) => {
                map.remove(head);
            }
            Value::Array(items) if head == "*" => items.clear(),
            Value::Array(items) => {
                if let Ok(i) = head.parse::<usize>() {
                    if i < items.len() {
                        items[i] = Value::Null;
                    }
                }
            }
            _ => {}
        }
        return;
    }
    match value {
        Value::Object(map) if head == "*" => map.values_mut().for_each(|v| remove_tokens(v, rest)),
        Value::Object(map) => {
            if let Some(v) = map.get_mut(head) {
                remove_tokens(v, rest);
            }
        }
        Value::Array(items) if head == "*" => items.iter_mut().for_each(|v| remove_tokens(v, rest)),
        Value::Array(items) => {
            if let Some(v) = head.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                remove_tokens(v, rest);
            }
        }
        _ => {}
    }
}

fn first_json_difference(p: &Value, b: &Value, at: &mut String) -> Option<Difference> {
    let mut found = Vec::new();
    json_differences(p, b, at, &mut found, 1);
    found.pop()
}

/// Collects differences between `p` and `b` (at most `limit`), in key and index order.
fn json_differences(
    p: &Value,
    b: &Value,
    at: &mut String,
    found: &mut Vec<Difference>,
    limit: usize,
) {
    match (p, b) {
        (Value::Object(pm), Value::Object(bm)) => {
            let mut keys: Vec<&String> = pm.keys().chain(bm.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if found.len() >= limit {
                    return;
                }
                let len = at.len();
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                match (pm.get(k), bm.get(k)) {
                    (Some(pv), Some(bv)) => json_differences(pv, bv, at, found, limit),
                    (pv, bv) => found.push(json_diff(at, pv, bv)),
                }
                at.truncate(len);
            }
        }
        (Value::Array(pa), Value::Array(ba)) => {
            for i in 0..pa.len().max(ba.len()) {
                if found.len() >= limit {
                    return;
                }
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                match (pa.get(i), ba.get(i)) {
                    (Some(pv), Some(bv)) => json_differences(pv, bv, at, found, limit),
                    (pv, bv) => found.push(json_diff(at, pv, bv)),
                }
                at.truncate(len);
            }
        }
        _ if p == b => {}
        _ => found.push(json_diff(at, Some(p), Some(b))),
    }
}

/// Every difference between `backup` and `primary` under `rule`, at most `limit` (for reports
/// such as `lockstep verify`; the pipeline only needs [`compare_responses`]). A status
/// difference is reported alone.
pub fn response_differences(
    rule: &CompareRule,
    primary: &ResponseRecord,
    backup: &ResponseRecord,
    limit: usize,
) -> Vec<Difference> {
    let Some(first) = compare_responses(rule, primary, backup) else {
        return Vec::new();
    };
    if matches!(first, Difference::Status { .. }) || limit <= 1 {
        return vec![first];
    }
    let mut found = Vec::new();
    if let Some(d) = compare_headers(rule, primary, backup) {
        found.push(d);
    }
    match (
        serde_json::from_slice::<Value>(&primary.body),
        serde_json::from_slice::<Value>(&backup.body),
    ) {
        (Ok(mut p), Ok(mut b)) => {
            for pointer in &rule.ignore_json {
                remove_pointer(&mut p, pointer);
                remove_pointer(&mut b, pointer);
            }
            json_differences(&p, &b, &mut String::new(), &mut found, limit);
        }
        _ => found.extend(compare_bodies(
            &rule.ignore_json,
            &primary.body,
            &backup.body,
        )),
    }
    found.truncate(limit);
    found
}

fn json_diff(at: &str, p: Option<&Value>, b: Option<&Value>) -> Difference {
    let show = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_string(), Value::to_string);
    Difference::JsonBody {
        pointer: at.to_string(),
        primary: show(p),
        backup: show(b),
    }
}

#[cfg(test)]
mod tests;
