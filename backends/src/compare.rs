//! Comparing a backup's response with the primary's, after the route's normalization.
//!
//! The comparison follows meaning, not bytes: the status; the body as JSON values when both
//! parse as JSON (key order, whitespace and number spelling do not matter across
//! implementations), else byte for byte; and only the headers that tell a client something
//! ([`COMPARED_HEADERS`], plus `compare.headers`, minus `compare.ignore_headers`). In all of them
//! the backends' own addresses count as one value, and so do values of the route's noise kinds
//! (see [`noise`]).

use std::fmt;

use lockstep_config::{CompareRule, NoiseKind};
use lockstep_journal::ResponseRecord;
use serde_json::Value;

mod noise;

pub use noise::CompareContext;
pub(crate) use noise::shared_kinds;

/// The headers compared by default: those that carry meaning for a client. Left out, because
/// they differ between copies that agree: `Date`, `Expires`, `Age` (the moment); `Server`,
/// `Via`, `X-Powered-By` (the software, which may differ on purpose); `ETag` and
/// `Last-Modified` (each copy's own validators; `compare.headers` adds them back for services
/// whose validators are deterministic); `Set-Cookie` (session values); request ids and
/// `Server-Timing` (per request); `Content-Length` and the hop-by-hop headers (framing; the
/// body is compared itself); `Retry-After` (a moment). Any other header a service invents
/// (`X-Total-Count`, ...) is compared when `compare.headers` names it.
pub const COMPARED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-language",
    "content-location",
    "content-range",
    "content-disposition",
    "location",
    "refresh",
    "link",
    "allow",
    "accept-patch",
    "accept-post",
    "accept-ranges",
    "vary",
    "cache-control",
    "www-authenticate",
    "proxy-authenticate",
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
    /// Non-JSON bodies differ, first at this byte offset (of the bodies as compared: own
    /// addresses and the rule's noise replaced by placeholders).
    Body {
        offset: usize,
        primary_len: usize,
        backup_len: usize,
        /// For text bodies, the text of each around the offset (as compared), to show what
        /// differs: `("…made 18:48:50.368417…", "…made 18:48:50.369273…")`.
        excerpts: Option<(String, String)>,
        /// For text bodies, a kind of noise under which they would compare equal (the rule to
        /// suggest), if one does.
        noise: Option<NoiseKind>,
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
                excerpts,
                ..
            } => {
                write!(
                    f,
                    "body bytes differ from offset {offset} (primary {primary_len} bytes, backup {backup_len} bytes)"
                )?;
                match excerpts {
                    Some((p, b)) => write!(f, ": primary {p:?}, backup {b:?}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Difference {
    /// The rule that would silence this difference if it is noise, as a `compare = { ... }`
    /// table for the route; `None` for a status difference, which is never noise.
    pub fn silencing_rule(&self, ctx: &CompareContext) -> Option<String> {
        match self {
            Difference::Status { .. } => None,
            Difference::Header {
                name,
                primary,
                backup,
            } => {
                let kinds = match (primary, backup) {
                    (Some(p), Some(b)) => noise::shared_kinds(ctx, p, b),
                    _ => Vec::new(),
                };
                Some(match kinds.first() {
                    Some(kind) => format!("compare = {{ noise = [\"{}\"] }}", kind.as_str()),
                    None => format!("compare = {{ ignore_headers = [\"{name}\"] }}"),
                })
            }
            Difference::JsonBody {
                pointer,
                primary,
                backup,
            } => {
                let unquote = |s: &str| serde_json::from_str::<String>(s).unwrap_or(s.to_owned());
                let kinds = noise::shared_kinds(ctx, &unquote(primary), &unquote(backup));
                Some(match kinds.first() {
                    Some(kind) => format!("compare = {{ noise = [\"{}\"] }}", kind.as_str()),
                    None => format!(
                        "compare = {{ ignore_json = [\"{}\"] }}",
                        generalize_indices(pointer)
                    ),
                })
            }
            Difference::Body {
                noise: Some(kind), ..
            } => Some(format!("compare = {{ noise = [\"{}\"] }}", kind.as_str())),
            Difference::Body { .. } => Some("compare = { status_only = true }".to_owned()),
        }
    }
}

/// `/items/3/updated_at` as `/items/*/updated_at`: the same place in every element.
pub(crate) fn generalize_indices(pointer: &str) -> String {
    pointer
        .split('/')
        .map(|t| {
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Compares `backup` against `primary` under `rule`, without knowing the backends' addresses;
/// `None` means equal.
pub fn compare_responses(
    rule: &CompareRule,
    primary: &ResponseRecord,
    backup: &ResponseRecord,
) -> Option<Difference> {
    compare_in(&CompareContext::default(), rule, primary, backup)
}

/// Compares `backup` against `primary` under `rule`, with the backends' own addresses and the
/// request's time from `ctx`; `None` means equal.
pub fn compare_in(
    ctx: &CompareContext,
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
    if let Some(d) = compare_headers(ctx, rule, primary, backup) {
        return Some(d);
    }
    let mut found = Vec::new();
    body_differences(ctx, rule, &primary.body, &backup.body, &mut found, 1);
    found.pop()
}

/// Whether `name` is compared under `rule`.
fn compared(rule: &CompareRule, name: &str) -> bool {
    let listed = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(name));
    (COMPARED_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
        || listed(&rule.headers))
        && !listed(&rule.ignore_headers)
}

/// A header value as compared: media types without case or spacing differences, own addresses
/// and noise neutralized.
fn header_value(ctx: &CompareContext, rule: &CompareRule, name: &str, value: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(value) else {
        return value.to_vec();
    };
    let text = if name == "content-type" {
        text.split(';')
            .map(|part| part.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(";")
    } else {
        text.to_owned()
    };
    ctx.neutralize(&text, &rule.noise).into_owned().into_bytes()
}

fn compare_headers(
    ctx: &CompareContext,
    rule: &CompareRule,
    primary: &ResponseRecord,
    backup: &ResponseRecord,
) -> Option<Difference> {
    let mut found = Vec::new();
    header_differences(ctx, rule, primary, backup, &mut found, 1);
    found.pop()
}

/// Collects the compared headers whose values differ (at most `limit`), by name.
fn header_differences(
    ctx: &CompareContext,
    rule: &CompareRule,
    primary: &ResponseRecord,
    backup: &ResponseRecord,
    found: &mut Vec<Difference>,
    limit: usize,
) {
    let collect = |r: &ResponseRecord| {
        let mut v: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .filter(|h| compared(rule, &h.name))
            .map(|h| {
                let name = h.name.to_ascii_lowercase();
                let value = header_value(ctx, rule, &name, &h.value);
                (name, value)
            })
            .collect();
        v.sort();
        v
    };
    let (p, b) = (collect(primary), collect(backup));
    if p == b {
        return;
    }
    let mut names: Vec<&String> = p.iter().chain(b.iter()).map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    for name in names {
        if found.len() >= limit {
            return;
        }
        let pick = |v: &[(String, Vec<u8>)], original: &ResponseRecord| {
            let normalized: Vec<Vec<u8>> = v
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, val)| val.clone())
                .collect();
            // Shown as received, not as compared.
            let shown: Vec<String> = original
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(&h.value).into_owned())
                .collect();
            (normalized, (!shown.is_empty()).then(|| shown.join(", ")))
        };
        let ((pn, pv), (bn, bv)) = (pick(&p, primary), pick(&b, backup));
        if pn != bn {
            found.push(Difference::Header {
                name: name.clone(),
                primary: pv,
                backup: bv,
            });
        }
    }
}

/// Collects the differences between two bodies (at most `limit`): as JSON values when both
/// parse, else as bytes, with own addresses and noise neutralized in text.
fn body_differences(
    ctx: &CompareContext,
    rule: &CompareRule,
    primary: &[u8],
    backup: &[u8],
    found: &mut Vec<Difference>,
    limit: usize,
) {
    if primary == backup {
        return;
    }
    match (
        serde_json::from_slice::<Value>(primary),
        serde_json::from_slice::<Value>(backup),
    ) {
        (Ok(mut p), Ok(mut b)) => {
            for pointer in &rule.ignore_json {
                remove_pointer(&mut p, pointer);
                remove_pointer(&mut b, pointer);
            }
            let leaves = Leaves { ctx, rule };
            leaves.differences(&p, &b, &mut String::new(), found, limit);
        }
        _ => {
            let text = |body: &[u8]| {
                std::str::from_utf8(body)
                    .ok()
                    .map(|t| ctx.neutralize(t, &rule.noise).into_owned().into_bytes())
            };
            let (p, b) = match (text(primary), text(backup)) {
                (Some(p), Some(b)) => (p, b),
                _ => (primary.to_vec(), backup.to_vec()),
            };
            if p == b {
                return;
            }
            let offset = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let texts = std::str::from_utf8(primary)
                .ok()
                .zip(std::str::from_utf8(backup).ok());
            let (excerpts, noise) = match texts {
                Some((pt, bt)) => (
                    Some((excerpt(&p, offset), excerpt(&b, offset))),
                    silencing_noise(ctx, rule, pt, bt),
                ),
                None => (None, None),
            };
            found.push(Difference::Body {
                offset,
                primary_len: primary.len(),
                backup_len: backup.len(),
                excerpts,
                noise,
            });
        }
    }
}

/// Up to 24 characters of `text` before `offset` and 40 from it, marked with `…` where cut.
fn excerpt(text: &[u8], offset: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let boundary = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (start, end) = (boundary(offset.saturating_sub(24)), boundary(offset + 40));
    format!(
        "{}{}{}",
        if start > 0 { "…" } else { "" },
        &text[start..end],
        if end < text.len() { "…" } else { "" }
    )
}

/// The first kind of noise, beyond the rule's, under which two text bodies compare equal.
fn silencing_noise(
    ctx: &CompareContext,
    rule: &CompareRule,
    primary: &str,
    backup: &str,
) -> Option<NoiseKind> {
    NoiseKind::ALL
        .into_iter()
        .filter(|kind| !rule.noise.contains(kind))
        .find(|kind| {
            let mut kinds = rule.noise.clone();
            kinds.push(*kind);
            ctx.neutralize(primary, &kinds) == ctx.neutralize(backup, &kinds)
        })
}

/// How two JSON leaves compare: strings after neutralizing own addresses and noise, numbers by
/// value (`1`, `1.0` and `1e0` are one number), epoch timestamps as noise when the route says.
struct Leaves<'a> {
    ctx: &'a CompareContext,
    rule: &'a CompareRule,
}

impl Leaves<'_> {
    fn equal(&self, p: &Value, b: &Value) -> bool {
        match (p, b) {
            (Value::String(p), Value::String(b)) => {
                p == b
                    || self.ctx.neutralize(p, &self.rule.noise)
                        == self.ctx.neutralize(b, &self.rule.noise)
            }
            (Value::Number(p), Value::Number(b)) => {
                let same = match (p.as_i64(), b.as_i64(), p.as_u64(), b.as_u64()) {
                    (Some(x), Some(y), _, _) => x == y,
                    (_, _, Some(x), Some(y)) => x == y,
                    _ => p.as_f64() == b.as_f64(),
                };
                same || (self.rule.noise.contains(&NoiseKind::Timestamp)
                    && matches!((p.as_f64(), b.as_f64()), (Some(x), Some(y)) if self.ctx.both_epoch_times(x, y)))
            }
            _ => p == b,
        }
    }

    /// Collects differences between `p` and `b` (at most `limit`), in key and index order.
    fn differences(
        &self,
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
                        (Some(pv), Some(bv)) => self.differences(pv, bv, at, found, limit),
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
                        (Some(pv), Some(bv)) => self.differences(pv, bv, at, found, limit),
                        (pv, bv) => found.push(json_diff(at, pv, bv)),
                    }
                    at.truncate(len);
                }
            }
            _ if self.equal(p, b) => {}
            _ => found.push(json_diff(at, Some(p), Some(b))),
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

/// Every difference between `backup` and `primary` under `rule`, at most `limit` (for reports
/// such as `lockstep verify`; the pipeline only needs [`compare_responses`]). A status
/// difference is reported alone.
pub fn response_differences(
    ctx: &CompareContext,
    rule: &CompareRule,
    primary: &ResponseRecord,
    backup: &ResponseRecord,
    limit: usize,
) -> Vec<Difference> {
    let Some(first) = compare_in(ctx, rule, primary, backup) else {
        return Vec::new();
    };
    if matches!(first, Difference::Status { .. }) || limit <= 1 {
        return vec![first];
    }
    let mut found = Vec::new();
    header_differences(ctx, rule, primary, backup, &mut found, limit);
    body_differences(ctx, rule, &primary.body, &backup.body, &mut found, limit);
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
