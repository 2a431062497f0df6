//! Values that differ between copies that agree: the backends' own addresses, and the shapes a
//! route can declare noise (`compare.noise`): timestamps, UUIDs, random tokens, addresses.
//!
//! Comparison replaces such values in both answers by a placeholder naming their kind before it
//! compares them, so two values at the same place that are both, say, timestamps compare equal
//! while every other difference in the same string still shows.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockstep_config::NoiseKind;
use regex::Regex;

/// What a comparison knows besides the rule.
#[derive(Debug, Clone, Default)]
pub struct CompareContext {
    /// Every backend's own address, in the forms it may appear in an answer
    /// (`http://127.0.0.1:9001`, `127.0.0.1:9001`, `localhost:9001`), longest first. Equal to
    /// one another for comparison, whatever the rule says.
    own_addresses: Vec<String>,
}

impl CompareContext {
    /// A context for these backend URLs (every backend of the pool).
    pub fn for_backends<'a>(urls: impl IntoIterator<Item = &'a url::Url>) -> Self {
        let mut own = Vec::new();
        for url in urls {
            own.extend(address_forms(url));
        }
        own.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        own.dedup();
        CompareContext { own_addresses: own }
    }

    /// `text` with every own address, and every value of the `kinds`, replaced by a placeholder.
    pub(crate) fn neutralize<'t>(&self, text: &'t str, kinds: &[NoiseKind]) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for own in &self.own_addresses {
            if let Some(replaced) = replace_whole(&out, own, OWN_ADDRESS) {
                out = Cow::Owned(replaced);
            }
        }
        for kind in kinds {
            let re = match kind {
                NoiseKind::Timestamp => &*TIMESTAMP,
                NoiseKind::Uuid => &*UUID,
                NoiseKind::Token => &*TOKEN,
                NoiseKind::OwnAddress => &*ADDRESS,
            };
            let placeholder = placeholder(*kind);
            let replaced = match kind {
                NoiseKind::Token => re.replace_all(&out, |c: &regex::Captures<'_>| {
                    if looks_random(&c[0]) {
                        placeholder.to_owned()
                    } else {
                        c[0].to_owned()
                    }
                }),
                _ => re.replace_all(&out, placeholder),
            };
            if let Cow::Owned(s) = replaced {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// Whether two numbers at the same place are both epoch timestamps: seconds or
    /// milliseconds since 1970 that fall between 2000 and a day from now (a replayed answer is
    /// compared with one recorded long ago, so "near the request" cannot be asked).
    pub(crate) fn both_epoch_times(&self, a: f64, b: f64) -> bool {
        both_epoch_times_at(SystemTime::now(), a, b)
    }
}

fn both_epoch_times_at(now: SystemTime, a: f64, b: f64) -> bool {
    const Y2000: f64 = 946_684_800.0;
    let latest = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
        + 86_400.0;
    let epoch = |v: f64| (Y2000..=latest).contains(&v) || (Y2000..=latest).contains(&(v / 1000.0));
    epoch(a) && epoch(b)
}

const OWN_ADDRESS: &str = "{own-address}";

/// `text` with every occurrence of `needle` that stands on its own (not inside a longer host
/// name or port: `127.0.0.1:9001` is not in `127.0.0.10:9001` nor in `127.0.0.1:90011`)
/// replaced; `None` when there is none.
fn replace_whole(text: &str, needle: &str, with: &str) -> Option<String> {
    let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let mut out = String::new();
    let mut found = false;
    let mut at = 0;
    while let Some(i) = text[at..].find(needle).map(|i| at + i) {
        let before = text[..i].chars().last();
        let after = text[i + needle.len()..].chars().next();
        // Not glued to a longer name before it, nor to more digits (or more name, after a
        // name) after it.
        let glued_after = after.is_some_and(|c| {
            c.is_ascii_digit()
                || (needle.ends_with(|e: char| e.is_ascii_alphabetic()) && host_char(c))
        });
        out.push_str(&text[at..i]);
        if before.is_some_and(host_char) || glued_after {
            out.push_str(needle);
        } else {
            out.push_str(with);
            found = true;
        }
        at = i + needle.len();
    }
    out.push_str(&text[at..]);
    found.then_some(out)
}

fn placeholder(kind: NoiseKind) -> &'static str {
    match kind {
        NoiseKind::Timestamp => "{timestamp}",
        NoiseKind::Uuid => "{uuid}",
        NoiseKind::Token => "{token}",
        NoiseKind::OwnAddress => OWN_ADDRESS,
    }
}

/// The forms a backend's address takes in its answers: the URL's origin (`http://host:port`),
/// the authority alone when it carries a port, the same with the address the host resolves to,
/// and `localhost` for a loopback address.
fn address_forms(url: &url::Url) -> Vec<String> {
    let Some(host) = url.host_str() else {
        return Vec::new();
    };
    let port = url.port_or_known_default();
    let mut hosts = vec![host.to_owned()];
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        if ip.is_loopback() {
            hosts.push("localhost".to_owned());
            hosts.push(if ip.is_ipv4() { "127.0.0.1" } else { "[::1]" }.to_owned());
        }
    } else if host == "localhost" {
        hosts.push("127.0.0.1".to_owned());
        hosts.push("[::1]".to_owned());
    }
    let mut forms = Vec::new();
    for h in hosts {
        let authority = match (url.port(), port) {
            (Some(p), _) => format!("{h}:{p}"),
            (None, _) => h.clone(),
        };
        forms.push(format!("{}://{authority}", url.scheme()));
        if let Some(p) = port {
            // A bare authority only with an explicit port: a host name alone is too common a
            // word to replace.
            forms.push(format!("{h}:{p}"));
        }
    }
    forms
}

/// RFC 3339 / ISO 8601 date-times and HTTP dates (IMF-fixdate).
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?\b|\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT\b",
    )
    .expect("a valid timestamp pattern")
});

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
        .expect("a valid UUID pattern")
});

static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9_-]{16,}").expect("a valid token pattern"));

/// `scheme://host:port` or `host:port` (an IPv4 address, `localhost`, a bracketed IPv6 address
/// or a dotted name).
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(\b[a-z][a-z0-9+.-]*://)?(\b\d{1,3}(\.\d{1,3}){3}|\blocalhost|\[[0-9a-fA-F:]+\]|\b[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+):\d{1,5}\b",
    )
    .expect("a valid address pattern")
});

/// Whether a token looks minted rather than written: letters and digits mixed, and not one
/// word repeated.
fn looks_random(token: &str) -> bool {
    let letters = token.chars().filter(char::is_ascii_alphabetic).count();
    let digits = token.chars().filter(char::is_ascii_digit).count();
    letters > 0 && digits > 0 && digits * 8 >= token.len()
}

/// The kinds both `a` and `b` are wholly of (each value one such value): for suggesting a rule.
pub(crate) fn shared_kinds(ctx: &CompareContext, a: &str, b: &str) -> Vec<NoiseKind> {
    // An entity tag's quotes (and weakness mark) are syntax around the value.
    let bare = |v: &str| {
        let v = v.strip_prefix("W/").unwrap_or(v);
        v.strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v)
            .to_owned()
    };
    let (a, b) = (bare(a), bare(b));
    let (a, b) = (a.as_str(), b.as_str());
    NoiseKind::ALL
        .into_iter()
        .filter(|kind| {
            let p = placeholder(*kind);
            ctx.neutralize(a, &[*kind]) == p && ctx.neutralize(b, &[*kind]) == p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CompareContext {
        let urls: Vec<url::Url> = ["http://127.0.0.1:9001", "http://localhost:9002/prefix"]
            .iter()
            .map(|u| u.parse().unwrap())
            .collect();
        CompareContext::for_backends(&urls)
    }

    #[test]
    fn own_addresses_of_every_backend_are_one_value() {
        let c = ctx();
        let a = c.neutralize("see http://127.0.0.1:9001/d1/f1.txt", &[]);
        let b = c.neutralize("see http://localhost:9002/d1/f1.txt", &[]);
        assert_eq!(a, b);
        // The resolved form and the bare authority too.
        assert_eq!(
            c.neutralize("127.0.0.1:9002", &[]),
            c.neutralize("localhost:9001", &[])
        );
        // The path that follows still counts.
        assert_ne!(
            c.neutralize("http://127.0.0.1:9001/a", &[]),
            c.neutralize("http://127.0.0.1:9002/b", &[])
        );
    }

    #[test]
    fn a_foreign_address_that_merely_looks_similar_is_not_an_own_address() {
        let c = ctx();
        assert_eq!(
            c.neutralize("http://127.0.0.1:90011/", &[]),
            "http://127.0.0.1:90011/"
        );
        assert_eq!(
            c.neutralize("http://127.0.0.10:9001/", &[]),
            "http://127.0.0.10:9001/"
        );
        assert_eq!(
            c.neutralize("https://example.com:9001/", &[]),
            "https://example.com:9001/"
        );
    }

    #[test]
    fn shapes_are_recognized_as_whole_values_and_inside_text() {
        let c = CompareContext::default();
        let kinds = [NoiseKind::Timestamp, NoiseKind::Uuid];
        assert_eq!(
            c.neutralize(
                "made 2026-11-28T10:00:00.120Z by 123e4567-e89b-12d3-a456-426614174000",
                &kinds
            ),
            "made {timestamp} by {uuid}"
        );
        assert_eq!(
            c.neutralize("Sat, 28 Nov 2026 00:37:56 GMT", &kinds),
            "{timestamp}"
        );
        assert_eq!(
            c.neutralize("token 9f8e7d6c5b4a39281706f5e4", &[NoiseKind::Token]),
            "token {token}"
        );
        // A long word is not a token.
        assert_eq!(
            c.neutralize("internationalization", &[NoiseKind::Token]),
            "internationalization"
        );
        assert_eq!(
            c.neutralize("served by 10.1.2.3:8080", &[NoiseKind::OwnAddress]),
            "served by {own-address}"
        );
    }

    #[test]
    fn epoch_times_are_recognized_between_2000_and_tomorrow() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(both_epoch_times_at(now, 1_800_000_003.0, 1_700_000_001.0));
        assert!(both_epoch_times_at(
            now,
            1_800_000_003_000.0,
            1_800_000_001_500.0
        ));
        assert!(!both_epoch_times_at(now, 41.0, 42.0));
        assert!(!both_epoch_times_at(now, 1_900_000_000.0, 1_800_000_000.0));
    }

    #[test]
    fn shared_kinds_name_what_both_values_wholly_are() {
        let c = ctx();
        assert_eq!(
            shared_kinds(&c, "2026-11-28T10:00:00Z", "2026-11-28T10:00:01Z"),
            [NoiseKind::Timestamp]
        );
        assert!(shared_kinds(&c, "100", "101").is_empty());
    }

    proptest::proptest! {
        /// Any other port, or any other address, is never taken for an own address.
        #[test]
        fn only_exact_own_addresses_are_replaced(port in 1u16.., a in 0u8.., b in 0u8..) {
            let c = ctx();
            let text = format!("http://10.{a}.{b}.1:{port}/x");
            proptest::prop_assert_eq!(c.neutralize(&text, &[]), text.as_str());
            let other = format!("http://127.0.0.1:{port}/x");
            let expected = if port == 9001 || port == 9002 {
                "{own-address}/x".to_owned()
            } else {
                other.clone()
            };
            proptest::prop_assert_eq!(c.neutralize(&other, &[]), expected);
        }
    }
}
