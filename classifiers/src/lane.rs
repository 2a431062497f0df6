//! Lanes: the ordering domain a request belongs to, and how a route's lane template turns a
//! request into a [`LaneKey`].
//!
//! Requests of one lane are processed one after another on every backend; requests of different
//! lanes may run concurrently. Equal keys are the same lane whichever route produced them, so two
//! routes that both say `lane = "{id}"` order their requests for one id together.

use std::fmt;

use http::{HeaderMap, HeaderName};
use lockstep_config::{LanePart, LaneTemplate};

#[cfg(test)]
mod tests;

/// The name of a lane. The empty key is the global lane, where every request that no route puts
/// elsewhere is ordered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LaneKey(String);

impl LaneKey {
    /// The global lane.
    pub fn global() -> Self {
        LaneKey(String::new())
    }

    /// The lane named `key`; the empty string is the global lane.
    pub fn new(key: impl Into<String>) -> Self {
        LaneKey(key.into())
    }

    /// The key as computed; empty for the global lane.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_global(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for LaneKey {
    /// `global` for the global lane, the key otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_global() {
            f.write_str("global")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// A route's lane template, prepared: parameter names resolved to positions in the route's bound
/// parameters, header names parsed, constant templates computed once.
#[derive(Debug, Clone)]
pub(crate) enum LaneSource {
    /// No template: the global lane.
    Global,
    /// A template without parameters.
    Fixed(LaneKey),
    Template(Vec<LanePiece>),
    /// `None`: a name `http` cannot parse, which no request carries.
    Header(Option<HeaderName>),
}

#[derive(Debug, Clone)]
pub(crate) enum LanePiece {
    Literal(Box<str>),
    /// A position in the route's bound parameters; `None` for a name the pattern does not bind
    /// (validation rejects those), which contributes nothing.
    Param(Option<usize>),
}

impl LaneSource {
    /// Prepares `template` for a route whose pattern binds `params`, in this order.
    pub(crate) fn new<'a>(
        template: Option<&LaneTemplate>,
        params: impl Iterator<Item = &'a str> + Clone,
    ) -> Self {
        match template {
            None => LaneSource::Global,
            Some(LaneTemplate::Header(name)) => {
                LaneSource::Header(HeaderName::from_bytes(name.as_bytes()).ok())
            }
            Some(LaneTemplate::Template(parts)) => {
                if parts.iter().all(|p| matches!(p, LanePart::Literal(_))) {
                    let mut key = String::new();
                    for part in parts {
                        if let LanePart::Literal(s) = part {
                            key.push_str(s);
                        }
                    }
                    return LaneSource::Fixed(LaneKey(key));
                }
                let pieces = parts
                    .iter()
                    .map(|part| match part {
                        LanePart::Literal(s) => LanePiece::Literal(s.as_str().into()),
                        LanePart::Param(name) => {
                            LanePiece::Param(params.clone().position(|p| p == name))
                        }
                    })
                    .collect();
                LaneSource::Template(pieces)
            }
        }
    }

    /// The lane of a request whose route bound `params` (as the pattern's `bind` returns them).
    pub(crate) fn key(&self, params: &[(String, String)], headers: &HeaderMap) -> LaneKey {
        match self {
            LaneSource::Global => LaneKey::global(),
            LaneSource::Fixed(key) => key.clone(),
            LaneSource::Template(pieces) => {
                let value = |at: &Option<usize>| {
                    at.and_then(|i| params.get(i))
                        .map_or("", |(_, value)| value.as_str())
                };
                if let [LanePiece::Param(at)] = pieces.as_slice() {
                    return LaneKey(value(at).to_owned());
                }
                let mut key = String::new();
                for piece in pieces {
                    match piece {
                        LanePiece::Literal(s) => key.push_str(s),
                        LanePiece::Param(at) => key.push_str(value(at)),
                    }
                }
                LaneKey(key)
            }
            LaneSource::Header(name) => name
                .as_ref()
                .and_then(|name| headers.get(name))
                .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
                .map_or_else(LaneKey::global, |value| LaneKey(value.to_owned())),
        }
    }
}
