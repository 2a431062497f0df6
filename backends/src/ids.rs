//! Identifiers the service mints: learning each copy's local form of the value a client saw, and
//! translating between the two.
//!
//! A route's `mint` places say where its answers carry values the service created (an id, an
//! entity tag, a timestamp it later accepts back). The value the client sees is *canonical*;
//! another copy's value at the same place in its answer to the same request is that copy's
//! *local* one. Each backend keeps an [`IdMap`] of `canonical ↔ local` pairs; requests to it are
//! translated canonical → local and its answers local → canonical, always by whole tokens: a
//! path segment, a query value, a JSON string (or number, where the route says so), a header
//! token. A value in no pair passes unchanged, so a copy whose map is empty sees exactly what
//! the client sent.
//!
//! The pairs are learned where both answers are at hand (the primary's, already canonical, and
//! the copy's own), journaled before the copy's ack, and a pair that contradicts a known one (a
//! canonical value standing for two local ones, or the other way round) is a divergence, never a
//! silent second meaning.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use lockstep_config::{MintPlace, TranslateRule};
use lockstep_journal::{Header, RequestRecord, ResponseRecord, Seq};
use parking_lot::RwLock;

/// Response headers translated local → canonical besides the route's minted ones: those that
/// carry URLs or validators a client acts on.
const RESPONSE_HEADERS: &[&str] = &["location", "content-location", "etag", "link"];

/// One backend's `canonical ↔ local` pairs.
#[derive(Debug, Default)]
pub struct IdMap {
    tables: RwLock<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    /// Canonical → (local, the seq whose answer taught it).
    to_local: HashMap<Arc<str>, (Arc<str>, Seq)>,
    /// Local → canonical.
    to_canonical: HashMap<Arc<str>, Arc<str>>,
    /// Pairs whose two sides differ: while none, translation changes nothing and is skipped.
    differing: usize,
    /// Canonical and local values that were JSON numbers where they were learned: in a JSON
    /// body their translation is written as a number.
    canonical_numbers: std::collections::HashSet<Arc<str>>,
    local_numbers: std::collections::HashSet<Arc<str>>,
}

/// A minted value as found in an answer: its text, and whether it was a JSON number there (a
/// JSON string, a header or a path segment otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Minted {
    pub text: String,
    pub number: bool,
}

impl Minted {
    pub fn string(text: impl Into<String>) -> Self {
        Minted {
            text: text.into(),
            number: false,
        }
    }

    pub fn number(text: impl Into<String>) -> Self {
        Minted {
            text: text.into(),
            number: true,
        }
    }

    /// As the journal keeps it: a JSON scalar (`"abc"`, or `17` for a number).
    pub fn encode(&self) -> String {
        if self.number {
            self.text.clone()
        } else {
            serde_json::to_string(&self.text).expect("a string serializes")
        }
    }

    /// The inverse of [`Minted::encode`]; text that is no JSON scalar is taken as a string.
    pub fn decode(encoded: &str) -> Self {
        if encoded.starts_with('"') {
            if let Ok(text) = serde_json::from_str::<String>(encoded) {
                return Minted::string(text);
            }
        } else if serde_json::from_str::<serde_json::Number>(encoded).is_ok() {
            return Minted::number(encoded);
        }
        Minted::string(encoded)
    }
}

impl From<&str> for Minted {
    fn from(text: &str) -> Self {
        Minted::string(text)
    }
}

/// What a lookup finds: the other side's text, whether it is a JSON number, and whether the
/// side looked up was one (a JSON token of the other type keeps its own).
pub(crate) type Found = (Arc<str>, bool, bool);

/// A learned pair that contradicts one already known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdConflict {
    #[error(
        "the client's {canonical:?} stands for {known:?} on this copy, and its answer now has {local:?} for it"
    )]
    CanonicalTaken {
        canonical: String,
        known: String,
        local: String,
    },
    #[error(
        "{local:?} on this copy already stands for the client's {known:?}, and now for {canonical:?} too"
    )]
    LocalTaken {
        local: String,
        known: String,
        canonical: String,
    },
}

impl IdMap {
    /// Whether translating through this map changes nothing (no pair, or only equal sides).
    pub fn is_identity(&self) -> bool {
        self.tables.read().differing == 0
    }

    /// How many pairs it holds.
    pub fn len(&self) -> usize {
        self.tables.read().to_local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many pairs have two different sides.
    pub fn differing(&self) -> usize {
        self.tables.read().differing
    }

    /// The local form of a canonical value, if one was learned.
    pub fn local(&self, canonical: &str) -> Option<Arc<str>> {
        self.tables
            .read()
            .to_local
            .get(canonical)
            .map(|(l, _)| l.clone())
    }

    /// The canonical form of a local value, if one was learned.
    pub fn canonical(&self, local: &str) -> Option<Arc<str>> {
        self.tables.read().to_canonical.get(local).cloned()
    }

    /// Adds the pairs `seq`'s answer taught, all or none: an error names the first one that
    /// contradicts a known pair. Returns the pairs that were new, as the journal keeps them
    /// ([`Minted::encode`]).
    pub fn learn(
        &self,
        seq: Seq,
        pairs: &[(Minted, Minted)],
    ) -> Result<Vec<(String, String)>, IdConflict> {
        let mut tables = self.tables.write();
        let mut new: Vec<&(Minted, Minted)> = Vec::new();
        for pair in pairs {
            let (canonical, local) = (&pair.0.text, &pair.1.text);
            if let Some((known, _)) = tables.to_local.get(canonical.as_str()) {
                if **known != **local {
                    return Err(IdConflict::CanonicalTaken {
                        canonical: canonical.clone(),
                        known: known.to_string(),
                        local: local.clone(),
                    });
                }
                continue;
            }
            if let Some(known) = tables.to_canonical.get(local.as_str()) {
                if **known != **canonical {
                    return Err(IdConflict::LocalTaken {
                        local: local.clone(),
                        known: known.to_string(),
                        canonical: canonical.clone(),
                    });
                }
                continue;
            }
            // Within one answer, the same pair may come twice; two meanings may not.
            if let Some((_, l)) = new.iter().find(|(c, _)| c.text == *canonical) {
                if l.text != *local {
                    return Err(IdConflict::CanonicalTaken {
                        canonical: canonical.clone(),
                        known: l.text.clone(),
                        local: local.clone(),
                    });
                }
                continue;
            }
            if let Some((c, _)) = new.iter().find(|(_, l)| l.text == *local) {
                return Err(IdConflict::LocalTaken {
                    local: local.clone(),
                    known: c.text.clone(),
                    canonical: canonical.clone(),
                });
            }
            new.push(pair);
        }
        for (canonical, local) in &new {
            tables.insert(seq, canonical, local);
        }
        Ok(new
            .into_iter()
            .map(|(c, l)| (c.encode(), l.encode()))
            .collect())
    }

    /// Adds recovered pairs as they were journaled (a later pair for the same value replaces the
    /// earlier one, as the journal's order says).
    pub fn restore(&self, seq: Seq, pairs: &[(String, String)]) {
        let mut tables = self.tables.write();
        for (canonical, local) in pairs {
            let (canonical, local) = (Minted::decode(canonical), Minted::decode(local));
            tables.remove_canonical(&canonical.text);
            if let Some(c) = tables.to_canonical.get(local.text.as_str()).cloned() {
                tables.remove_canonical(&c);
            }
            tables.insert(seq, &canonical, &local);
        }
    }

    /// Forgets the pairs learned from answers after `after` (0: all): the copy is back at the
    /// state of `after`, and a replay relearns the rest.
    pub fn forget_after(&self, after: Seq) {
        let mut tables = self.tables.write();
        let stale: Vec<Arc<str>> = tables
            .to_local
            .iter()
            .filter(|(_, (_, seq))| *seq > after)
            .map(|(c, _)| c.clone())
            .collect();
        for c in stale {
            tables.remove_canonical(&c);
        }
    }

    /// The pairs learned from answers up to `through`, grouped by seq, oldest first (what a
    /// checkpoint of this copy at `through` carries).
    pub fn pairs_through(&self, through: Seq) -> Vec<(Seq, Vec<(String, String)>)> {
        let tables = self.tables.read();
        let mut by_seq: std::collections::BTreeMap<Seq, Vec<(String, String)>> = Default::default();
        for (c, (l, seq)) in &tables.to_local {
            if *seq <= through {
                let c = Minted {
                    text: c.to_string(),
                    number: tables.canonical_numbers.contains(c),
                };
                let l = Minted {
                    text: l.to_string(),
                    number: tables.local_numbers.contains(l),
                };
                by_seq
                    .entry(*seq)
                    .or_default()
                    .push((c.encode(), l.encode()));
            }
        }
        by_seq.into_iter().collect()
    }

    /// Replaces every pair with `pairs` (a copy loaded from another's checkpoint).
    pub fn replace(&self, pairs: &[(Seq, Vec<(String, String)>)]) {
        *self.tables.write() = Tables::default();
        for (seq, group) in pairs {
            self.restore(*seq, group);
        }
    }

    /// A value in a request to this copy: its local form, when it differs.
    pub(crate) fn to_local_of(&self, value: &str) -> Option<Found> {
        let tables = self.tables.read();
        let (l, _) = tables.to_local.get(value)?;
        (**l != *value).then(|| {
            (
                l.clone(),
                tables.local_numbers.contains(l),
                tables.canonical_numbers.contains(value),
            )
        })
    }

    /// A value in this copy's answer: its canonical form, when it differs.
    pub(crate) fn to_canonical_of(&self, value: &str) -> Option<Found> {
        let tables = self.tables.read();
        let c = tables.to_canonical.get(value)?;
        (**c != *value).then(|| {
            (
                c.clone(),
                tables.canonical_numbers.contains(c),
                tables.local_numbers.contains(value),
            )
        })
    }

    /// `request` as this copy must receive it, or `None` when nothing in it changes.
    pub fn request_to_local(
        &self,
        rule: &TranslateRule,
        request: &RequestRecord,
    ) -> Option<RequestRecord> {
        if self.is_identity() {
            return None;
        }
        translate_request(rule, request, &|v| self.to_local_of(v))
    }

    /// `response` (this copy's answer) as the client must see it, or `None` when nothing in it
    /// changes. `minted`: the route's `mint` places (their headers are translated too).
    pub fn response_to_canonical(
        &self,
        rule: &TranslateRule,
        minted: &[MintPlace],
        response: &ResponseRecord,
    ) -> Option<ResponseRecord> {
        if self.is_identity() {
            return None;
        }
        translate_response(rule, minted, response, &|v| self.to_canonical_of(v))
    }
}

impl Tables {
    fn insert(&mut self, seq: Seq, canonical: &Minted, local: &Minted) {
        let (c, l): (Arc<str>, Arc<str>) = if canonical.text == local.text {
            let shared: Arc<str> = canonical.text.as_str().into();
            (shared.clone(), shared)
        } else {
            (canonical.text.as_str().into(), local.text.as_str().into())
        };
        // Equal texts of different JSON types still differ in a body.
        if c != l || canonical.number != local.number {
            self.differing += 1;
        }
        if canonical.number {
            self.canonical_numbers.insert(c.clone());
        }
        if local.number {
            self.local_numbers.insert(l.clone());
        }
        self.to_canonical.insert(l.clone(), c.clone());
        self.to_local.insert(c, (l, seq));
    }

    fn remove_canonical(&mut self, canonical: &str) {
        if let Some((local, _)) = self.to_local.remove(canonical) {
            let c_number = self.canonical_numbers.remove(canonical);
            let l_number = self.local_numbers.remove(&*local);
            if *local != *canonical || c_number != l_number {
                self.differing -= 1;
            }
            self.to_canonical.remove(&*local);
        }
    }
}

/// The `(canonical, local)` pairs one answer teaches: the values at the route's `mint` places
/// in `canonical` (the primary's answer, as the client sees it) and in `local` (the copy's own),
/// place by place. A place only one answer has teaches nothing (the comparison then reports the
/// difference). URL-valued headers pair their path segments that differ.
pub fn minted_pairs(
    places: &[MintPlace],
    canonical: &ResponseRecord,
    local: &ResponseRecord,
) -> Vec<(Minted, Minted)> {
    let mut pairs = Vec::new();
    if places.is_empty() {
        return pairs;
    }
    let json = |r: &ResponseRecord| serde_json::from_slice::<serde_json::Value>(&r.body).ok();
    let (cj, lj) = if places.iter().any(|p| matches!(p, MintPlace::Json(_))) {
        (json(canonical), json(local))
    } else {
        (None, None)
    };
    for place in places {
        match place {
            MintPlace::Json(tokens) => {
                let (Some(cj), Some(lj)) = (&cj, &lj) else {
                    continue;
                };
                let mut cv = Vec::new();
                values_at(cj, tokens, String::new(), &mut cv);
                let mut lv = Vec::new();
                values_at(lj, tokens, String::new(), &mut lv);
                let local_at: HashMap<&str, &Minted> =
                    lv.iter().map(|(p, v)| (p.as_str(), v)).collect();
                for (pointer, c) in &cv {
                    if let Some(l) = local_at.get(pointer.as_str()) {
                        pairs.push((c.clone(), (*l).clone()));
                    }
                }
            }
            MintPlace::Header(name) => {
                let (Some(c), Some(l)) = (canonical.header(name), local.header(name)) else {
                    continue;
                };
                let (Ok(c), Ok(l)) = (std::str::from_utf8(c), std::str::from_utf8(l)) else {
                    continue;
                };
                header_pairs(c.trim(), l.trim(), &mut pairs);
            }
        }
    }
    pairs
}

/// Pairs from one minted header: a URL's differing path segments, or the whole value (an entity
/// tag without its quotes).
fn header_pairs(c: &str, l: &str, pairs: &mut Vec<(Minted, Minted)>) {
    if let (Some(cp), Some(lp)) = (url_path(c), url_path(l)) {
        let cs: Vec<String> = cp.split('/').map(decode_segment).collect();
        let ls: Vec<String> = lp.split('/').map(decode_segment).collect();
        if cs.len() == ls.len() {
            pairs.extend(
                cs.into_iter()
                    .zip(ls)
                    .filter(|(c, l)| c != l && !c.is_empty() && !l.is_empty())
                    .map(|(c, l)| (Minted::string(c), Minted::string(l))),
            );
        }
        return;
    }
    let (c, l) = (unquote(c).1, unquote(l).1);
    if !c.is_empty() && !l.is_empty() {
        pairs.push((Minted::string(c), Minted::string(l)));
    }
}

/// The values (strings, and numbers as written) at `tokens` under `value`, with the concrete
/// pointer of each.
fn values_at(
    value: &serde_json::Value,
    tokens: &[String],
    at: String,
    out: &mut Vec<(String, Minted)>,
) {
    let Some((first, rest)) = tokens.split_first() else {
        match value {
            serde_json::Value::String(s) => out.push((at, Minted::string(s.clone()))),
            serde_json::Value::Number(n) => out.push((at, Minted::number(n.to_string()))),
            _ => {}
        }
        return;
    };
    let escape = |t: &str| t.replace('~', "~0").replace('/', "~1");
    match value {
        serde_json::Value::Object(map) if first == "*" => {
            for (k, v) in map {
                values_at(v, rest, format!("{at}/{}", escape(k)), out);
            }
        }
        serde_json::Value::Object(map) => {
            if let Some(v) = map.get(first.as_str()) {
                values_at(v, rest, format!("{at}/{}", escape(first)), out);
            }
        }
        serde_json::Value::Array(items) if first == "*" => {
            for (i, v) in items.iter().enumerate() {
                values_at(v, rest, format!("{at}/{i}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            if let Some(v) = first.parse::<usize>().ok().and_then(|i| items.get(i)) {
                values_at(v, rest, format!("{at}/{first}"), out);
            }
        }
        _ => {}
    }
}

type Lookup<'a> = dyn Fn(&str) -> Option<Found> + 'a;

/// `request` with every whole token `f` knows replaced, or `None` when none is.
pub fn translate_request(
    rule: &TranslateRule,
    request: &RequestRecord,
    f: &Lookup<'_>,
) -> Option<RequestRecord> {
    let uri = translate_uri(&request.uri, f);
    let headers = translate_headers(&request.headers, f, |name| {
        rule.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    });
    let body = translate_body(&request.headers, &request.body, rule.numbers, f);
    if uri.is_none() && headers.is_none() && body.is_none() {
        return None;
    }
    Some(RequestRecord {
        method: request.method.clone(),
        uri: uri.unwrap_or_else(|| request.uri.clone()),
        headers: headers.unwrap_or_else(|| request.headers.clone()),
        body: body.unwrap_or_else(|| request.body.clone()),
    })
}

/// `response` with every whole token `f` knows replaced, or `None` when none is.
pub fn translate_response(
    rule: &TranslateRule,
    minted: &[MintPlace],
    response: &ResponseRecord,
    f: &Lookup<'_>,
) -> Option<ResponseRecord> {
    let headers = translate_headers(&response.headers, f, |name| {
        RESPONSE_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
            || minted
                .iter()
                .any(|p| matches!(p, MintPlace::Header(h) if h.eq_ignore_ascii_case(name)))
    });
    let body = translate_body(&response.headers, &response.body, rule.numbers, f);
    if headers.is_none() && body.is_none() {
        return None;
    }
    Some(ResponseRecord {
        status: response.status,
        headers: headers.unwrap_or_else(|| response.headers.clone()),
        body: body.unwrap_or_else(|| response.body.clone()),
    })
}

/// The headers with the values `translated` names rewritten, or `None` when none changes (no
/// copy is made then).
fn translate_headers(
    headers: &[Header],
    f: &Lookup<'_>,
    translated: impl Fn(&str) -> bool,
) -> Option<Vec<Header>> {
    let mut out: Option<Vec<Header>> = None;
    for (i, h) in headers.iter().enumerate() {
        let new = translated(&h.name)
            .then(|| std::str::from_utf8(&h.value).ok())
            .flatten()
            .and_then(|v| translate_header_value(v, f));
        match (new, &mut out) {
            (Some(v), None) => {
                let mut copy = headers[..i].to_vec();
                copy.push(Header::new(h.name.clone(), v));
                out = Some(copy);
            }
            (Some(v), Some(copy)) => copy.push(Header::new(h.name.clone(), v)),
            (None, Some(copy)) => copy.push(h.clone()),
            (None, None) => {}
        }
    }
    out
}

/// One header value: a `<URL>` list (`Link`), a comma-separated list of tokens (entity tags), a
/// URL or path, or one token.
pub(crate) fn translate_header_value(value: &str, f: &Lookup<'_>) -> Option<String> {
    if value.contains('<') {
        // `<url>; rel="next", <url2>; ...`: the URLs inside the angle brackets.
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        let mut changed = false;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>').map(|i| open + i) else {
                break;
            };
            out.push_str(&rest[..=open]);
            let inner = &rest[open + 1..close];
            match translate_url(inner, f) {
                Some(t) => {
                    changed = true;
                    out.push_str(&t);
                }
                None => out.push_str(inner),
            }
            rest = &rest[close..];
        }
        out.push_str(rest);
        return changed.then_some(out);
    }
    if let Some(t) = translate_url(value.trim(), f) {
        return Some(t);
    }
    let mut changed = false;
    let items: Vec<String> = value
        .split(',')
        .map(|item| {
            let trimmed = item.trim();
            let (prefix, inner, suffix) = unquote(trimmed);
            match f(inner) {
                Some((new, ..)) if !inner.is_empty() => {
                    changed = true;
                    let lead = &item[..item.len() - item.trim_start().len()];
                    format!("{lead}{prefix}{new}{suffix}")
                }
                _ => item.to_owned(),
            }
        })
        .collect();
    changed.then(|| items.join(","))
}

/// `W/"abc"` → (`W/"`, `abc`, `"`); `"abc"` → (`"`, `abc`, `"`); `abc` → (``, `abc`, ``).
fn unquote(value: &str) -> (&str, &str, &str) {
    let (weak, rest) = match value.strip_prefix("W/") {
        Some(rest) => ("W/\"", rest),
        None => ("\"", value),
    };
    match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => (weak, inner, "\""),
        None => ("", value, ""),
    }
}

/// The path-and-query part of an absolute URL or of a path, when `value` is one.
fn url_path(value: &str) -> Option<&str> {
    if value.starts_with('/') {
        return Some(value.split(['?', '#']).next().unwrap_or(value));
    }
    let after = value.split_once("://")?.1;
    let path = &after[after.find('/')?..];
    Some(path.split(['?', '#']).next().unwrap_or(path))
}

/// An absolute URL or a path with its segments and query values translated.
fn translate_url(value: &str, f: &Lookup<'_>) -> Option<String> {
    if value.starts_with('/') {
        return translate_uri(value, f);
    }
    let (scheme, after) = value.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let slash = after.find('/')?;
    let (authority, path) = after.split_at(slash);
    translate_uri(path, f).map(|p| format!("{scheme}://{authority}{p}"))
}

/// A request target (path and query): whole path segments and whole query values (or each
/// element of a comma-separated value).
pub(crate) fn translate_uri(uri: &str, f: &Lookup<'_>) -> Option<String> {
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    let mut changed = false;
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| {
            if segment.is_empty() {
                return String::new();
            }
            match f(&decode_segment(segment)) {
                Some((new, ..)) => {
                    changed = true;
                    encode_segment(&new)
                }
                None => segment.to_owned(),
            }
        })
        .collect();
    let query = query.map(|q| match translate_form(q, f) {
        Some(t) => {
            changed = true;
            t
        }
        None => q.to_owned(),
    });
    changed.then(|| match query {
        Some(q) => format!("{}?{q}", segments.join("/")),
        None => segments.join("/"),
    })
}

/// `a=1&b=x,y`: each value, or each element of a comma-separated value, as a whole token.
fn translate_form(form: &str, f: &Lookup<'_>) -> Option<String> {
    let mut changed = false;
    let parts: Vec<String> = form
        .split('&')
        .map(|pair| {
            let Some((name, value)) = pair.split_once('=') else {
                return pair.to_owned();
            };
            let decoded = decode_form(value);
            if let Some((new, ..)) = f(&decoded) {
                changed = true;
                return format!("{name}={}", encode_form(&new));
            }
            if decoded.contains(',') {
                let mut any = false;
                let items: Vec<String> = decoded
                    .split(',')
                    .map(|item| match f(item) {
                        Some((new, ..)) => {
                            any = true;
                            new.to_string()
                        }
                        None => item.to_owned(),
                    })
                    .collect();
                if any {
                    changed = true;
                    return format!("{name}={}", encode_form(&items.join(",")));
                }
            }
            pair.to_owned()
        })
        .collect();
    changed.then(|| parts.join("&"))
}

fn decode_segment(segment: &str) -> String {
    percent_decode(segment.as_bytes(), false)
}

fn decode_form(value: &str) -> String {
    percent_decode(value.as_bytes(), true)
}

fn percent_decode(bytes: &[u8], plus_is_space: bool) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path segment: unreserved characters, sub-delimiters, `:` and `@` stay; the rest is
/// percent-encoded.
fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_form(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A body with its whole tokens translated: JSON strings (and numbers, when `numbers`) in a JSON
/// body, values in a form body. Anything else is left alone.
fn translate_body(
    headers: &[Header],
    body: &Bytes,
    numbers: bool,
    f: &Lookup<'_>,
) -> Option<Bytes> {
    if body.is_empty() {
        return None;
    }
    let content_type = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value.as_ref());
    let starts_with = |t: &[u8], prefix: &[u8]| {
        t.len() >= prefix.len() && t[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    match content_type {
        Some(t) if starts_with(t, b"application/x-www-form-urlencoded") => {
            let text = std::str::from_utf8(body).ok()?;
            translate_form(text, f).map(Bytes::from)
        }
        Some(t) if !t.windows(4).any(|w| w.eq_ignore_ascii_case(b"json")) => None,
        // JSON by its type, or untyped: only if it parses as JSON.
        _ => translate_json(body, numbers, f).map(Bytes::from),
    }
}

/// Rewrites the string (and, when `numbers`, number) tokens of a JSON text that `f` knows, in
/// place: the rest of the text — member order, spacing — is kept byte for byte. `None` when the
/// text is not JSON or nothing changes.
pub fn translate_json(text: &[u8], numbers: bool, f: &Lookup<'_>) -> Option<Vec<u8>> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err() {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                let start = i;
                i += 1;
                let mut escaped = false;
                while i < text.len() && text[i] != b'"' {
                    if text[i] == b'\\' {
                        escaped = true;
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                let token = &text[start..i.min(text.len())];
                let value: Option<std::borrow::Cow<'_, str>> = if escaped {
                    serde_json::from_slice::<String>(token).ok().map(Into::into)
                } else {
                    std::str::from_utf8(&token[1..token.len() - 1])
                        .ok()
                        .map(Into::into)
                };
                if let Some(new) = value.as_deref().and_then(f) {
                    let out = out.get_or_insert_with(|| Vec::with_capacity(text.len() + 16));
                    out.extend_from_slice(&text[copied..start]);
                    write_scalar(out, &new, false);
                    copied = i;
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if numbers {
                    let token = std::str::from_utf8(&text[start..i]).unwrap_or_default();
                    if let Some(new) = f(token) {
                        let out = out.get_or_insert_with(|| Vec::with_capacity(text.len() + 16));
                        out.extend_from_slice(&text[copied..start]);
                        write_scalar(out, &new, true);
                        copied = i;
                    }
                }
            }
            _ => i += 1,
        }
    }
    out.map(|mut out| {
        out.extend_from_slice(&text[copied..]);
        out
    })
}

/// A translated value in a JSON text: a number where the other side is one and the token had
/// the type of the side it was found on (a number for a number), else a string.
fn write_scalar(out: &mut Vec<u8>, (text, number, from_number): &Found, token_number: bool) {
    if *number
        && token_number == *from_number
        && serde_json::from_str::<serde_json::Number>(text).is_ok()
    {
        out.extend_from_slice(text.as_bytes());
    } else {
        out.extend_from_slice(
            serde_json::to_string(&**text)
                .expect("a string serializes")
                .as_bytes(),
        );
    }
}

#[cfg(test)]
mod tests;
