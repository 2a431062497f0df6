//! The noise finder: what differs between copies that agree is noise.
//!
//! While learning is on (for a number of compared answers or a while), a backup whose answer
//! differs from the primary's is not ejected: every difference is recorded instead, per route
//! and per place (a header name, a JSON pointer with array indices generalized, the status, the
//! body), with how often it differed and a few example values. Writes are still replicated in
//! order. [`NoiseReport`] groups what was seen, classifies each place by the shape of its values
//! (an own address, a timestamp, a UUID or random token, a counter, or other) and gives the
//! `compare` rule that would silence it — flagging the places that look like real divergences
//! (a status, values of no minted shape, or a place that differed on only a few of the route's
//! requests). A place whose primary values later come back in requests (a path segment, a query
//! value, a JSON string, an `If-Match`) holds identifiers the service minted: for it the finder
//! proposes a `mint` rule instead, so that each copy's own value is translated.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use lockstep_config::NoiseKind;
use serde::Serialize;

use crate::compare::{CompareContext, Difference};

/// Examples kept per place.
const EXAMPLES: usize = 3;
/// Differing primary values remembered to spot the ones clients send back.
const REMEMBERED: usize = 100_000;

/// How long, or for how many compared backup answers, learning lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnFor {
    Answers(u64),
    Duration(Duration),
}

/// A learning session.
#[derive(Debug)]
pub(crate) struct Learning {
    started: SystemTime,
    started_at: Instant,
    until: LearnFor,
    /// Backup answers compared while learning, per route.
    answers: BTreeMap<String, u64>,
    places: BTreeMap<(String, String), Place>,
    /// Primary values that differed from a backup's, with their (route, place).
    values: std::collections::HashMap<String, (String, String)>,
    stopped: bool,
}

#[derive(Debug, Default)]
struct Place {
    count: u64,
    /// (primary, backup) values.
    examples: Vec<(String, String)>,
    /// The kinds every example so far was wholly of, on both sides.
    kinds: Option<Vec<NoiseKind>>,
    /// Both values were integers every time.
    counter: bool,
    status: bool,
    /// For a text body: the noise kind that made every example equal, if one did.
    body_noise: Option<NoiseKind>,
    header: Option<String>,
    pointer: Option<String>,
    /// Requests that carried one of its primary values back.
    reused: u64,
}

impl Learning {
    pub(crate) fn new(until: LearnFor, now: SystemTime) -> Self {
        Learning {
            started: now,
            started_at: Instant::now(),
            until,
            answers: BTreeMap::new(),
            places: BTreeMap::new(),
            values: std::collections::HashMap::new(),
            stopped: false,
        }
    }

    /// Whether learning is still on.
    pub(crate) fn active(&self) -> bool {
        if self.stopped {
            return false;
        }
        match self.until {
            LearnFor::Answers(n) => self.answers.values().sum::<u64>() < n,
            LearnFor::Duration(d) => self.started_at.elapsed() < d,
        }
    }

    pub(crate) fn stop(&mut self) {
        self.stopped = true;
    }

    /// Counts one compared backup answer to a request of `route`.
    pub(crate) fn saw_answer(&mut self, route: &str) {
        *self.answers.entry(route.to_owned()).or_default() += 1;
    }

    /// Records the differences of one backup's answer to one request of `route`.
    pub(crate) fn record(&mut self, ctx: &CompareContext, route: &str, differences: &[Difference]) {
        for d in differences {
            let (key, primary, backup) = match d {
                Difference::Status { primary, backup } => {
                    ("status".to_owned(), primary.to_string(), backup.to_string())
                }
                Difference::Header {
                    name,
                    primary,
                    backup,
                } => (
                    format!("header {name}"),
                    primary.clone().unwrap_or_else(|| "(absent)".into()),
                    backup.clone().unwrap_or_else(|| "(absent)".into()),
                ),
                Difference::JsonBody {
                    pointer,
                    primary,
                    backup,
                } => (
                    format!("body at {}", crate::compare::generalize_indices(pointer)),
                    primary.clone(),
                    backup.clone(),
                ),
                Difference::Body {
                    excerpts, noise, ..
                } => {
                    let (p, b) = excerpts.clone().unwrap_or_default();
                    let place = self
                        .places
                        .entry((route.to_owned(), "body".to_owned()))
                        .or_default();
                    // A text body the rule's kind would make equal; else no minted shape.
                    place.body_noise = match (place.count, *noise) {
                        (0, n) => n,
                        (_, n) if n == place.body_noise => n,
                        _ => None,
                    };
                    ("body".to_owned(), p, b)
                }
            };
            let place = self
                .places
                .entry((route.to_owned(), key.clone()))
                .or_default();
            place.count += 1;
            place.status = matches!(d, Difference::Status { .. });
            if let Difference::Header { name, .. } = d {
                place.header = Some(name.clone());
            }
            if let Difference::JsonBody { pointer, .. } = d {
                place.pointer = Some(crate::compare::generalize_indices(pointer));
            }
            let unquote =
                |s: &str| serde_json::from_str::<String>(s).unwrap_or_else(|_| s.to_owned());
            let (p, b) = (unquote(&primary), unquote(&backup));
            let kinds = crate::compare::shared_kinds(ctx, &p, &b);
            place.kinds = Some(match place.kinds.take() {
                None => kinds,
                Some(seen) => seen.into_iter().filter(|k| kinds.contains(k)).collect(),
            });
            let integers = p.parse::<i64>().is_ok() && b.parse::<i64>().is_ok();
            place.counter = if place.count == 1 {
                integers
            } else {
                place.counter && integers
            };
            if !place.status && !p.is_empty() && self.values.len() < REMEMBERED {
                self.values
                    .entry(p.clone())
                    .or_insert_with(|| (route.to_owned(), key.clone()));
            }
            if place.examples.len() < EXAMPLES {
                place.examples.push((primary, backup));
            }
        }
    }

    /// Looks for values that differed between copies in a request: each one found makes its
    /// place an identifier the clients send back.
    pub(crate) fn saw_request(&mut self, request: &lockstep_journal::RequestRecord) {
        if self.values.is_empty() {
            return;
        }
        let found: std::cell::RefCell<Vec<(String, String)>> = Default::default();
        let values = &self.values;
        let look = |token: &str| -> Option<crate::ids::Found> {
            if let Some(place) = values.get(token) {
                found.borrow_mut().push(place.clone());
            }
            None
        };
        // The translation's own tokenizer: whatever it would translate, it would find here.
        let _ = crate::ids::translate_request(
            &lockstep_config::TranslateRule {
                numbers: true,
                ..Default::default()
            },
            request,
            &look,
        );
        let mut found = found.into_inner();
        found.sort();
        found.dedup();
        for key in found {
            if let Some(place) = self.places.get_mut(&key) {
                place.reused += 1;
            }
        }
    }

    /// What was learned so far.
    pub(crate) fn report(&self) -> NoiseReport {
        let mut routes: BTreeMap<String, Vec<NoisePlace>> = BTreeMap::new();
        for ((route, key), place) in &self.places {
            let answers = self.answers.get(route).copied().unwrap_or(0).max(1);
            let kind = match place.kinds.as_deref() {
                _ if place.status => "status",
                _ if place.reused > 0 && (place.pointer.is_some() || place.header.is_some()) => {
                    "id"
                }
                _ if key == "body" => place.body_noise.map_or("other", NoiseKind::as_str),
                Some([k, ..]) => k.as_str(),
                _ if place.counter => "counter",
                _ => "other",
            };
            let rule = match (kind, &place.header, &place.pointer) {
                ("status", _, _) => None,
                ("id", Some(header), _) => Some(format!("mint = [\"header:{header}\"]")),
                ("id", _, Some(pointer)) => Some(format!("mint = [\"{pointer}\"]")),
                ("timestamp" | "uuid" | "token" | "own-address", _, _) => {
                    Some(format!("compare = {{ noise = [\"{kind}\"] }}"))
                }
                (_, Some(header), _) => {
                    Some(format!("compare = {{ ignore_headers = [\"{header}\"] }}"))
                }
                (_, _, Some(pointer)) => {
                    Some(format!("compare = {{ ignore_json = [\"{pointer}\"] }}"))
                }
                _ => Some("compare = { status_only = true }".to_owned()),
            };
            // Noise differs on (almost) every request; a divergence is an exception.
            let rare = place.count * 2 < answers;
            let suspicious = matches!(kind, "status" | "other" | "counter") || rare;
            routes.entry(route.clone()).or_default().push(NoisePlace {
                place: key.clone(),
                kind,
                count: place.count,
                answers,
                examples: place
                    .examples
                    .iter()
                    .map(|(p, b)| [p.clone(), b.clone()])
                    .collect(),
                rule,
                suspicious,
            });
        }
        NoiseReport {
            learning: self.active(),
            started: humantime::format_rfc3339_seconds(self.started).to_string(),
            answers: self.answers.values().sum(),
            until: match self.until {
                LearnFor::Answers(n) => format!("{n} answers"),
                LearnFor::Duration(d) => humantime::format_duration(d).to_string(),
            },
            routes: routes
                .into_iter()
                .map(|(route, places)| NoiseRoute { route, places })
                .collect(),
        }
    }
}

/// What the noise finder saw (`GET /noise`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NoiseReport {
    /// Whether learning is still on.
    pub learning: bool,
    pub started: String,
    /// Backup answers compared while learning.
    pub answers: u64,
    /// How long learning lasts: `500 answers`, `10m`.
    pub until: String,
    pub routes: Vec<NoiseRoute>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NoiseRoute {
    /// The route's `match`, or `(default)`.
    pub route: String,
    pub places: Vec<NoisePlace>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NoisePlace {
    /// `header etag`, `body at /items/*/at`, `status`, `body`.
    pub place: String,
    /// `id` (a value the service minted that clients send back: declare it with `mint`),
    /// `own-address`, `timestamp`, `uuid`, `token`, `counter`, `other` or `status`.
    pub kind: &'static str,
    /// Answers that differed here.
    pub count: u64,
    /// Backup answers to the route's requests compared while learning.
    pub answers: u64,
    /// Up to three `[primary, backup]` value pairs.
    pub examples: Vec<[String; 2]>,
    /// The route rule that silences it (`compare = {...}`, or `mint = [...]` for an id); none
    /// for a status.
    pub rule: Option<String>,
    /// Looks like a real divergence rather than noise.
    pub suspicious: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(pointer: &str, p: &str, b: &str) -> Difference {
        Difference::JsonBody {
            pointer: pointer.into(),
            primary: p.into(),
            backup: b.into(),
        }
    }

    #[test]
    fn places_are_grouped_classified_and_given_a_rule() {
        let ctx = CompareContext::default();
        let mut l = Learning::new(LearnFor::Answers(100), SystemTime::now());
        for i in 0..10 {
            l.saw_answer("POST /items");
            let mut diffs = vec![
                json(
                    &format!("/items/{i}/at"),
                    &format!("\"2026-11-28T10:00:0{i}Z\""),
                    &format!("\"2026-11-28T10:00:0{i}.5Z\""),
                ),
                Difference::Header {
                    name: "x-version".into(),
                    primary: Some(format!("v{i}")),
                    backup: Some(format!("w{i}")),
                },
            ];
            if i == 3 {
                // Once: the balance differs. That is no noise.
                diffs.push(json("/balance", "100", "101"));
            }
            l.record(&ctx, "POST /items", &diffs);
        }
        let report = l.report();
        assert!(report.learning);
        assert_eq!(report.answers, 10);
        let places = &report.routes[0].places;
        let find = |p: &str| places.iter().find(|x| x.place == p).unwrap();
        let at = find("body at /items/*/at");
        assert_eq!((at.kind, at.count, at.suspicious), ("timestamp", 10, false));
        assert_eq!(
            at.rule.as_deref(),
            Some("compare = { noise = [\"timestamp\"] }")
        );
        let version = find("header x-version");
        assert_eq!(version.kind, "other");
        assert!(version.suspicious, "values of no minted shape");
        assert_eq!(
            version.rule.as_deref(),
            Some("compare = { ignore_headers = [\"x-version\"] }")
        );
        let balance = find("body at /balance");
        assert_eq!((balance.kind, balance.count), ("counter", 1));
        assert!(balance.suspicious, "rare");
        assert_eq!(balance.examples, [["100".to_owned(), "101".to_owned()]]);
    }

    #[test]
    fn values_clients_send_back_are_proposed_as_minted() {
        let ctx = CompareContext::default();
        let mut l = Learning::new(LearnFor::Answers(100), SystemTime::now());
        for i in 0..4 {
            l.saw_answer("POST /posts");
            l.record(
                &ctx,
                "POST /posts",
                &[
                    json("/id", &format!("\"p{i}xq7Za\""), &format!("\"b{i}Kk31Q\"")),
                    json("/title", "\"a\"", "\"b\""),
                ],
            );
        }
        // A later request names the first post by the id the client got.
        l.saw_request(&lockstep_journal::RequestRecord {
            method: "PATCH".into(),
            uri: "/posts/p0xq7Za".into(),
            headers: vec![],
            body: bytes::Bytes::new(),
        });
        let report = l.report();
        let places = &report.routes[0].places;
        let id = places.iter().find(|p| p.place == "body at /id").unwrap();
        assert_eq!(id.kind, "id");
        assert_eq!(id.rule.as_deref(), Some("mint = [\"/id\"]"));
        assert!(!id.suspicious);
        let title = places.iter().find(|p| p.place == "body at /title").unwrap();
        assert_eq!(title.kind, "other", "never sent back: no id");
        assert!(title.suspicious);
    }

    #[test]
    fn learning_ends_after_its_requests_or_when_stopped() {
        let mut l = Learning::new(LearnFor::Answers(2), SystemTime::now());
        assert!(l.active());
        l.saw_answer("(default)");
        l.saw_answer("(default)");
        assert!(!l.active());
        let mut l = Learning::new(
            LearnFor::Duration(Duration::from_secs(60)),
            SystemTime::now(),
        );
        l.stop();
        assert!(!l.active());
    }
}
