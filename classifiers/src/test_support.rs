//! Builds validated `RouteRule`s from the `match` shorthand (`"POST|PUT /accounts/{id}/**"`) for
//! tests, without going through the config crate.

use lockstep_config::{
    CompareRule, IdempotencyRule, LanePart, LaneTemplate, MethodSet, PathPattern, RequestKind,
    RouteRule, Segment,
};

/// `"METHODS PATTERN"` with `*` for any method; the pattern `*` matches everything.
pub(crate) fn route(spec: &str) -> RouteRule {
    let (methods, path) = spec.split_once(' ').expect("`METHODS PATTERN`");
    let methods = if methods == "*" {
        MethodSet::Any
    } else {
        MethodSet::Only(methods.split('|').map(str::to_owned).collect())
    };
    RouteRule {
        source: spec.to_owned(),
        methods,
        pattern: pattern(path),
        kind: None,
        lane: None,
        idempotency: None,
        compare: None,
        transaction_ack: None,
        refusals: None,
    }
}

pub(crate) fn pattern(path: &str) -> PathPattern {
    let segments = if path == "*" {
        vec![Segment::Tail]
    } else {
        let rest = path.strip_prefix('/').expect("a pattern starts with `/`");
        if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/')
                .map(|s| match s {
                    "**" => Segment::Tail,
                    _ => match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => Segment::Param(name.to_owned()),
                        None => Segment::Literal(s.to_owned()),
                    },
                })
                .collect()
        }
    };
    PathPattern {
        source: path.to_owned(),
        segments,
    }
}

/// `"header:X-Tenant"` or a template such as `"acct-{id}"`.
pub(crate) fn lane(spec: &str) -> LaneTemplate {
    if let Some(name) = spec.strip_prefix("header:") {
        return LaneTemplate::Header(name.to_ascii_lowercase());
    }
    let mut parts = Vec::new();
    let mut rest = spec;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(LanePart::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').expect("closed `{`") + open;
        parts.push(LanePart::Param(rest[open + 1..close].to_owned()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(LanePart::Literal(rest.to_owned()));
    }
    LaneTemplate::Template(parts)
}

/// Sets the optional parts of a rule, builder-style.
pub(crate) trait RouteRuleExt: Sized {
    fn kind(self, kind: RequestKind) -> RouteRule;
    fn lane(self, spec: &str) -> RouteRule;
    fn idempotency(self, rule: IdempotencyRule) -> RouteRule;
    fn compare(self, rule: CompareRule) -> RouteRule;
}

impl RouteRuleExt for RouteRule {
    fn kind(mut self, kind: RequestKind) -> RouteRule {
        self.kind = Some(kind);
        self
    }
    fn lane(mut self, spec: &str) -> RouteRule {
        self.lane = Some(lane(spec));
        self
    }
    fn idempotency(mut self, rule: IdempotencyRule) -> RouteRule {
        self.idempotency = Some(rule);
        self
    }
    fn compare(mut self, rule: CompareRule) -> RouteRule {
        self.compare = Some(rule);
        self
    }
}
