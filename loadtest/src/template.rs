//! Request templates: text with placeholders filled in once per logical request.
//!
//! This module owns the placeholder syntax, its parsing and its expansion into bytes. It does no
//! I/O and knows nothing of HTTP; `wire` assembles templates into requests.
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{counter}` | a counter shared by all connections; one value per logical request |
//! | `{random:A..B}` | a uniform integer from A to B, both included; drawn at each occurrence |
//! | `{connection}` | the index of the connection sending the request, from 0 |
//! | `{uuid}` | a random version-4 UUID; one value per logical request |
//!
//! Any other `{` is literal text, so JSON bodies need no escaping. `{{` stands for a literal `{`
//! where the text after it would otherwise read as a placeholder.

#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What can go wrong in a template; each message says how to write it instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// `{name}` where `name` is not a placeholder.
    #[error(
        "unknown placeholder `{{{name}}}` at byte {position}; the placeholders are {{counter}}, \
         {{random:A..B}}, {{connection}} and {{uuid}} (write `{{{{` for a literal `{{`)"
    )]
    UnknownPlaceholder {
        /// The name between the braces.
        name: String,
        /// Byte offset of the opening brace.
        position: usize,
    },
    /// A placeholder that opens and never closes.
    #[error("placeholder at byte {position} has no closing `}}`")]
    Unclosed {
        /// Byte offset of the opening brace.
        position: usize,
    },
    /// `{random:…}` whose bounds are not two integers in order.
    #[error(
        "`{{random:{text}}}` at byte {position}: write two integers A..B with A <= B, \
         for example {{random:1..100}}"
    )]
    BadRandom {
        /// The text after `random:`.
        text: String,
        /// Byte offset of the opening brace.
        position: usize,
    },
    /// An argument given to a placeholder that takes none.
    #[error("`{{{name}}}` at byte {position} takes no argument; write `{{{name}}}`")]
    UnexpectedArgument {
        /// The placeholder's name.
        name: String,
        /// Byte offset of the opening brace.
        position: usize,
    },
}

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Counter,
    Random { low: i64, high: i64 },
    Connection,
    Uuid,
}

/// A parsed template: literal bytes and placeholders, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`, checking every placeholder.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let bytes = text.as_bytes();
        let mut template = Template::default();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'{' {
                literal.push(bytes[i]);
                i += 1;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'{') {
                literal.push(b'{');
                i += 2;
                continue;
            }
            let rest = &text[i + 1..];
            let name_len = rest
                .bytes()
                .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
                .count();
            let looks_like_placeholder =
                name_len > 0 && matches!(rest.as_bytes().get(name_len), Some(b'}' | b':') | None);
            if !looks_like_placeholder {
                literal.push(b'{');
                i += 1;
                continue;
            }
            let close = rest
                .find('}')
                .ok_or(TemplateError::Unclosed { position: i })?;
            let piece = parse_placeholder(&rest[..close], i)?;
            template.push_literal(&std::mem::take(&mut literal));
            template.pieces.push(piece);
            i += close + 2;
        }
        template.push_literal(&literal);
        Ok(template)
    }

    /// A template of literal bytes only.
    pub fn literal(bytes: &[u8]) -> Template {
        let mut template = Template::default();
        template.push_literal(bytes);
        template
    }

    /// Appends `other`, merging adjacent literal text.
    pub fn append(&mut self, other: &Template) {
        for piece in &other.pieces {
            match piece {
                Piece::Literal(bytes) => self.push_literal(bytes),
                other => self.pieces.push(other.clone()),
            }
        }
    }

    /// Appends literal bytes.
    pub fn push_literal(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Piece::Literal(last)) = self.pieces.last_mut() {
            last.extend_from_slice(bytes);
        } else {
            self.pieces.push(Piece::Literal(bytes.to_vec()));
        }
    }

    /// The text, when the template has no placeholder.
    pub fn as_literal(&self) -> Option<&[u8]> {
        match self.pieces.as_slice() {
            [] => Some(&[]),
            [Piece::Literal(bytes)] => Some(bytes),
            _ => None,
        }
    }

    /// Appends the expansion to `out`, with the values of the logical request in `values`.
    pub fn render(&self, values: &mut Values, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.extend_from_slice(bytes),
                Piece::Counter => {
                    let n = values.counter();
                    let _ = write!(out, "{n}");
                }
                Piece::Random { low, high } => {
                    let n = values.rng.i64(*low..=*high);
                    let _ = write!(out, "{n}");
                }
                Piece::Connection => {
                    let _ = write!(out, "{}", values.connection);
                }
                Piece::Uuid => {
                    let uuid = values.uuid();
                    out.extend_from_slice(&uuid);
                }
            }
        }
    }

    /// The expansion as a string, for tests and messages.
    pub fn render_to_string(&self, values: &mut Values) -> String {
        let mut out = Vec::new();
        self.render(values, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn parse_placeholder(inner: &str, position: usize) -> Result<Piece, TemplateError> {
    let (name, argument) = match inner.split_once(':') {
        Some((name, argument)) => (name, Some(argument)),
        None => (inner, None),
    };
    let simple = |piece: Piece| match argument {
        None => Ok(piece),
        Some(_) => Err(TemplateError::UnexpectedArgument {
            name: name.to_owned(),
            position,
        }),
    };
    match name {
        "counter" => simple(Piece::Counter),
        "connection" => simple(Piece::Connection),
        "uuid" => simple(Piece::Uuid),
        "random" => {
            let text = argument.unwrap_or("");
            let bad = || TemplateError::BadRandom {
                text: text.to_owned(),
                position,
            };
            let (low, high) = text.split_once("..").ok_or_else(bad)?;
            let low: i64 = low.trim().parse().map_err(|_| bad())?;
            let high: i64 = high.trim().parse().map_err(|_| bad())?;
            if low > high {
                return Err(bad());
            }
            Ok(Piece::Random { low, high })
        }
        _ => Err(TemplateError::UnknownPlaceholder {
            name: name.to_owned(),
            position,
        }),
    }
}

/// The values placeholders take, for one connection.
///
/// `{counter}` and `{uuid}` keep one value for the whole logical request (a path and a body can
/// name the same account); `begin_request` forgets them. Mix choices and `{random:A..B}` come
/// from the seeded generator, so a seed replays them; UUIDs and idempotency keys come from an
/// unseeded one, because a key reused across runs would be answered from the gateway's store.
#[derive(Debug)]
pub struct Values {
    connection: usize,
    counter_source: Arc<AtomicU64>,
    counter: Option<u64>,
    uuid: Option<[u8; 36]>,
    /// Seeded: mix choices and `{random:A..B}`.
    pub(crate) rng: fastrand::Rng,
    unique: fastrand::Rng,
}

impl Values {
    /// Values for connection `connection`, its seeded draws derived from `seed`, `{counter}`
    /// taken from `counter`.
    pub fn new(connection: usize, seed: u64, counter: Arc<AtomicU64>) -> Values {
        // Spread the per-connection seeds so that neighbouring connections do not share streams.
        let stream = seed ^ (connection as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Values {
            connection,
            counter_source: counter,
            counter: None,
            uuid: None,
            rng: fastrand::Rng::with_seed(stream),
            unique: fastrand::Rng::new(),
        }
    }

    /// Forgets the per-request values; the next `{counter}` or `{uuid}` draws anew.
    pub fn begin_request(&mut self) {
        self.counter = None;
        self.uuid = None;
    }

    fn counter(&mut self) -> u64 {
        *self
            .counter
            .get_or_insert_with(|| self.counter_source.fetch_add(1, Ordering::Relaxed))
    }

    fn uuid(&mut self) -> [u8; 36] {
        if let Some(uuid) = self.uuid {
            return uuid;
        }
        let uuid = self.fresh_uuid();
        self.uuid = Some(uuid);
        uuid
    }

    /// A new random UUID, independent of the request's `{uuid}`: used for idempotency keys.
    pub fn fresh_uuid(&mut self) -> [u8; 36] {
        let bits = (u128::from(self.unique.u64(..)) << 64) | u128::from(self.unique.u64(..));
        format_uuid_v4(bits)
    }

    /// The seeded generator: mix choices use it too.
    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }
}

/// Formats 128 random bits as a version-4, variant-1 UUID in lowercase hex.
fn format_uuid_v4(bits: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = (bits & !(0xF << 76)) | (0x4 << 76); // version 4
    let bits = (bits & !(0x3 << 62)) | (0x2 << 62); // variant 10xx
    let mut out = [b'-'; 36];
    let mut nibble = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        let shift = 124 - 4 * nibble;
        *slot = HEX[((bits >> shift) & 0xF) as usize];
        nibble += 1;
    }
    out
}
