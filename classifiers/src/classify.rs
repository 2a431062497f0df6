//! Classification: a request's method, path and headers in, the decision of the first matching
//! route rule out (or the defaults when none matches).

use http::HeaderMap;
use lockstep_config::{CompareRule, IdempotencyRule, RequestKind, RouteRule};

use crate::lane::{LaneKey, LaneSource};
use crate::method::{MethodIndex, default_kind};
use crate::pattern::{CompiledPattern, RequestPath};

#[cfg(test)]
mod tests;

/// The route rules, prepared once for classifying every request.
#[derive(Debug)]
pub struct Classifier {
    rules: Vec<RouteRule>,
    compiled: Vec<CompiledRoute>,
    methods: MethodIndex,
    default_compare: CompareRule,
}

#[derive(Debug)]
struct CompiledRoute {
    pattern: CompiledPattern,
    lane: LaneSource,
    kind: Option<RequestKind>,
    idempotency: IdempotencyRule,
}

/// What classification decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub kind: RequestKind,
    /// [`LaneKey::global()`] when no lane applies. Computed for reads too, though only logical
    /// requests are ordered by it.
    pub lane: LaneKey,
    /// [`IdempotencyRule::Optional`] when the route does not say, or no route matched.
    pub idempotency: IdempotencyRule,
    /// The rule that matched; `None` when the method defaults decided.
    pub route: Option<RouteMatch>,
}

/// Which route rule matched a request, and what its pattern bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The rule's position in [`Classifier::rules`] (config order).
    pub index: usize,
    /// `(name, segment)` for each `{param}` of the pattern, in pattern order; segments are raw, as
    /// the client sent them (not percent-decoded).
    pub params: Vec<(String, String)>,
}

impl RouteMatch {
    /// The segment bound to `{name}`, if the pattern has that parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Classifier {
    /// Prepares `routes`, in config order: the first rule that matches a request wins. The rules
    /// are taken as validated (parameters used by lanes exist, `**` only last).
    pub fn new(routes: Vec<RouteRule>) -> Self {
        let compiled = routes
            .iter()
            .map(|rule| {
                let pattern = CompiledPattern::new(&rule.pattern);
                let lane = LaneSource::new(rule.lane.as_ref(), pattern.param_names());
                CompiledRoute {
                    pattern,
                    lane,
                    kind: rule.kind,
                    idempotency: rule.idempotency.unwrap_or(IdempotencyRule::Optional),
                }
            })
            .collect();
        Classifier {
            methods: MethodIndex::new(routes.iter().map(|rule| &rule.methods)),
            rules: routes,
            compiled,
            default_compare: CompareRule::default(),
        }
    }

    /// Classifies a request. `path_and_query` is the request target as received (origin-form
    /// `/path?query`, or `*`); pass `uri.path_and_query()`, not a full absolute URI, or only the
    /// match-everything patterns can match it.
    pub fn classify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Classification {
        let path = RequestPath::parse(path_and_query);
        for &index in self.methods.candidates(method) {
            let route = &self.compiled[index];
            if !route.pattern.matches(path) {
                continue;
            }
            let params = route.pattern.bind(path);
            return Classification {
                kind: route.kind.unwrap_or_else(|| default_kind(method)),
                lane: route.lane.key(&params, headers),
                idempotency: route.idempotency,
                route: Some(RouteMatch { index, params }),
            };
        }
        Classification {
            kind: default_kind(method),
            lane: LaneKey::global(),
            idempotency: IdempotencyRule::Optional,
            route: None,
        }
    }

    /// Sets the comparison of requests that no rule with a `compare` matched (the default rule
    /// carries `[replication] refusals`).
    pub fn with_default_compare(mut self, rule: CompareRule) -> Self {
        self.default_compare = rule;
        self
    }

    /// How to compare backups' responses for a request classified as `c`: the matched rule's
    /// `compare`, or the default comparison when it has none or no rule matched.
    pub fn compare_rule(&self, c: &Classification) -> &CompareRule {
        c.route
            .as_ref()
            .and_then(|m| self.rules.get(m.index))
            .and_then(|rule| rule.compare.as_ref())
            .unwrap_or(&self.default_compare)
    }

    /// The rules, in config order; [`RouteMatch::index`] points into this.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }
}
