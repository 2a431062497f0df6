//! The request mix: which requests a run sends and how often, from command-line flags or from a
//! TOML file of `[[request]]` entries.
//!
//! This module checks what a user wrote (methods, header syntax, template syntax, weights) and
//! picks entries by weight; it does no I/O beyond handing file text to the parser, and builds no
//! wire bytes (`wire` does).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::template::{Template, TemplateError};

/// One kind of request as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// The method, upper case as written.
    pub method: String,
    /// The request target (path and query), a template; `None` uses the URL's path.
    pub path: Option<String>,
    /// The body, a template.
    pub body: Option<String>,
    /// Extra headers, values are templates.
    pub headers: Vec<(String, String)>,
    /// Relative frequency, at least 1.
    pub weight: u32,
}

impl RequestSpec {
    /// A request from flags: the method defaults to `POST` when there is a body, else `GET`.
    pub fn from_flags(
        method: Option<String>,
        path: Option<String>,
        body: Option<String>,
        headers: &[String],
    ) -> Result<RequestSpec, MixError> {
        let headers = headers
            .iter()
            .map(|line| parse_header_line(line))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = RequestSpec {
            method: method.unwrap_or_else(|| default_method(body.is_some()).to_owned()),
            path,
            body,
            headers,
            weight: 1,
        };
        spec.check().map_err(|problem| MixError::Flag { problem })?;
        Ok(spec)
    }

    /// Checks everything that can be checked without the target: method, headers, templates.
    fn check(&self) -> Result<(), Problem> {
        if self.method.is_empty() || !self.method.bytes().all(is_token_byte) {
            return Err(Problem::Method(self.method.clone()));
        }
        if let Some(path) = &self.path {
            if !(path.starts_with('/') || path == "*") || path.bytes().any(|b| b <= b' ') {
                return Err(Problem::Path(path.clone()));
            }
            Template::parse(path).map_err(|source| Problem::Template {
                field: "path",
                source,
            })?;
        }
        if let Some(body) = &self.body {
            Template::parse(body).map_err(|source| Problem::Template {
                field: "body",
                source,
            })?;
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
            Template::parse(value).map_err(|source| Problem::Template {
                field: "header value",
                source,
            })?;
        }
        if self.weight == 0 {
            return Err(Problem::ZeroWeight);
        }
        Ok(())
    }
}

/// The method used when none is given.
fn default_method(has_body: bool) -> &'static str {
    if has_body { "POST" } else { "GET" }
}

/// Parses `Name: value`.
pub fn parse_header_line(line: &str) -> Result<(String, String), MixError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| MixError::HeaderSyntax(line.to_owned()))?;
    let header = (name.trim().to_owned(), value.trim().to_owned());
    check_header(&header.0, &header.1).map_err(|problem| MixError::Flag { problem })?;
    Ok(header)
}

fn check_header(name: &str, value: &str) -> Result<(), Problem> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(Problem::HeaderName(name.to_owned()));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Problem::HeaderValue(name.to_owned()));
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(Problem::FramingHeader(name.to_owned()));
    }
    Ok(())
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What is wrong with one request definition.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// Not a method token.
    #[error("method `{0}` is not an HTTP method token; write e.g. GET or POST")]
    Method(String),
    /// Not an origin-form request target.
    #[error("path `{0}` must start with `/` and contain no spaces (percent-encode them)")]
    Path(String),
    /// Not a header field name.
    #[error("header name `{0}` is not a token; write `Name: value`")]
    HeaderName(String),
    /// A header value with a line break.
    #[error("header `{0}` has a line break or NUL in its value")]
    HeaderValue(String),
    /// Framing is the tool's job.
    #[error("header `{0}` is set by lockstep-load from the body; remove it")]
    FramingHeader(String),
    /// A weight of zero.
    #[error("`weight` must be at least 1; remove the entry to never send it")]
    ZeroWeight,
    /// A template that does not parse.
    #[error("{field}: {source}")]
    Template {
        /// Which part of the request.
        field: &'static str,
        /// The template's complaint.
        source: TemplateError,
    },
}

/// Why a mix could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    /// A `--header` argument without a colon.
    #[error("header `{0}` is not of the form `Name: value`")]
    HeaderSyntax(String),
    /// A problem in a request given with flags.
    #[error("{problem}")]
    Flag {
        /// What is wrong.
        problem: Problem,
    },
    /// TOML that does not parse or has unknown keys (the message shows line and column).
    #[error("mix file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A mix file without entries.
    #[error("mix file has no `[[request]]` entry; add at least one with a `path`")]
    Empty,
    /// A problem in the n-th `[[request]]` entry.
    #[error("mix file, `[[request]]` number {number}: {problem}")]
    Entry {
        /// 1-based position in the file.
        number: usize,
        /// What is wrong.
        problem: Problem,
    },
}

/// A mix file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    #[serde(default)]
    request: Vec<RawRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: Option<String>,
    path: Option<String>,
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_weight")]
    weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// The requests of a run and their weights.
#[derive(Debug, Clone)]
pub struct Mix {
    requests: Vec<RequestSpec>,
    /// Running sums of the weights, for picking by binary search.
    cumulative: Vec<u64>,
}

impl Mix {
    /// A mix of the given requests; each must have passed its checks.
    fn new(requests: Vec<RequestSpec>) -> Mix {
        let cumulative = requests
            .iter()
            .scan(0u64, |sum, r| {
                *sum += u64::from(r.weight);
                Some(*sum)
            })
            .collect();
        Mix {
            requests,
            cumulative,
        }
    }

    /// A mix of one request.
    pub fn single(request: RequestSpec) -> Mix {
        Mix::new(vec![request])
    }

    /// Parses a mix file; `extra_headers` (from `--header`) are added to every entry.
    pub fn from_toml(text: &str, extra_headers: &[String]) -> Result<Mix, MixError> {
        let raw: RawMix = toml::from_str(text)?;
        if raw.request.is_empty() {
            return Err(MixError::Empty);
        }
        let extra = extra_headers
            .iter()
            .map(|line| parse_header_line(line))
            .collect::<Result<Vec<_>, _>>()?;
        let mut requests = Vec::with_capacity(raw.request.len());
        for (i, entry) in raw.request.into_iter().enumerate() {
            let mut headers: Vec<(String, String)> = entry.headers.into_iter().collect();
            headers.extend(extra.iter().cloned());
            let spec = RequestSpec {
                method: entry
                    .method
                    .unwrap_or_else(|| default_method(entry.body.is_some()).to_owned()),
                path: entry.path,
                body: entry.body,
                headers,
                weight: entry.weight,
            };
            spec.check().map_err(|problem| MixError::Entry {
                number: i + 1,
                problem,
            })?;
            requests.push(spec);
        }
        Ok(Mix::new(requests))
    }

    /// The requests, in the order given.
    pub fn requests(&self) -> &[RequestSpec] {
        &self.requests
    }

    /// Picks the index of the next request, in proportion to the weights.
    pub fn choose(&self, rng: &mut fastrand::Rng) -> usize {
        if self.requests.len() == 1 {
            return 0;
        }
        let total = *self.cumulative.last().expect("a mix is never empty");
        let x = rng.u64(0..total);
        self.cumulative.partition_point(|&sum| sum <= x)
    }
}
