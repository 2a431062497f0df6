//! Path matching: a route's [`PathPattern`] against the path of a request.
//!
//! The query string is not part of the path. The path is split on `/` after its leading `/`, and
//! segments are compared raw, exactly as the client sent them: no percent-decoding, no case
//! folding, no dot-segment removal. `/` alone is the root, with no segment; a trailing slash
//! (`/a/`) gives a trailing empty segment, which only `**` matches. `{param}` matches exactly one
//! non-empty segment. A request target that does not start with `/` (`*` for `OPTIONS *`, an
//! absolute-form URI) only matches the pattern that matches everything.
//!
//! Matching allocates nothing; only binding the parameters of the rule that won does.

use lockstep_config::{PathPattern, Segment};

#[cfg(test)]
mod tests;

/// A request target as matching sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RequestPath<'a> {
    /// An origin-form path: what follows the leading `/` (query removed), and how many segments
    /// that is.
    Origin { rest: &'a str, len: usize },
    /// `*`, an absolute-form URI, or anything else that is not a path.
    Opaque,
}

impl<'a> RequestPath<'a> {
    pub(crate) fn parse(path_and_query: &'a str) -> Self {
        let path = match path_and_query.find('?') {
            Some(q) => &path_and_query[..q],
            None => path_and_query,
        };
        match path.strip_prefix('/') {
            Some("") => RequestPath::Origin { rest: "", len: 0 },
            Some(rest) => RequestPath::Origin {
                rest,
                len: rest.bytes().filter(|&b| b == b'/').count() + 1,
            },
            None => RequestPath::Opaque,
        }
    }
}

/// A [`PathPattern`] prepared for matching.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPattern {
    /// The segments before a `**`, if any.
    fixed: Vec<Piece>,
    /// Ends in `**`.
    tail: bool,
    /// `(segment position, name)` of every parameter, by position.
    params: Vec<(usize, String)>,
}

#[derive(Debug, Clone)]
enum Piece {
    Literal(Box<str>),
    Param,
}

impl CompiledPattern {
    pub(crate) fn new(pattern: &PathPattern) -> Self {
        let mut compiled = CompiledPattern {
            fixed: Vec::new(),
            tail: false,
            params: Vec::new(),
        };
        // The root `/` may come as no segment or as one empty literal; both mean the root.
        if let [Segment::Literal(s)] = pattern.segments.as_slice()
            && s.is_empty()
        {
            return compiled;
        }
        for (i, segment) in pattern.segments.iter().enumerate() {
            match segment {
                Segment::Literal(s) => compiled.fixed.push(Piece::Literal(s.as_str().into())),
                Segment::Param(name) => {
                    compiled.params.push((i, name.clone()));
                    compiled.fixed.push(Piece::Param);
                }
                // Validation puts `**` last; anything after it would be unreachable anyway.
                Segment::Tail => {
                    compiled.tail = true;
                    break;
                }
            }
        }
        compiled
    }

    /// Matches every request target, paths or not (`*`, `/**`).
    fn matches_everything(&self) -> bool {
        self.tail && self.fixed.is_empty()
    }

    /// The names of the parameters this pattern binds, in the order [`Self::bind`] returns them.
    pub(crate) fn param_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.params.iter().map(|(_, name)| name.as_str())
    }

    pub(crate) fn matches(&self, path: RequestPath<'_>) -> bool {
        let (rest, len) = match path {
            RequestPath::Origin { rest, len } => (rest, len),
            RequestPath::Opaque => return self.matches_everything(),
        };
        let fits = if self.tail {
            len >= self.fixed.len()
        } else {
            len == self.fixed.len()
        };
        fits && rest
            .split('/')
            .zip(&self.fixed)
            .all(|(segment, piece)| match piece {
                Piece::Literal(literal) => segment == &**literal,
                Piece::Param => !segment.is_empty(),
            })
    }

    /// The parameters bound by a path this pattern [matches](Self::matches), as
    /// `(name, segment)` in pattern order. Allocates nothing when the pattern has no parameter.
    pub(crate) fn bind(&self, path: RequestPath<'_>) -> Vec<(String, String)> {
        let RequestPath::Origin { rest, .. } = path else {
            return Vec::new();
        };
        if self.params.is_empty() {
            return Vec::new();
        }
        let mut bound = Vec::with_capacity(self.params.len());
        let mut params = self.params.iter().peekable();
        for (i, segment) in rest.split('/').enumerate() {
            match params.peek() {
                None => break,
                Some((at, name)) if *at == i => {
                    bound.push((name.clone(), segment.to_owned()));
                    params.next();
                }
                Some(_) => {}
            }
        }
        bound
    }
}
