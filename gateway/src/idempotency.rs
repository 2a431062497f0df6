//! Idempotency keys (after the IETF `Idempotency-Key` header draft): validating the client's
//! key, scoping it by the client's credentials, fingerprinting the request, and making sure only
//! one request per scoped key is in flight at a time.

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the {header} header is empty")]
    Empty { header: String },
    #[error("the {header} header is {len} bytes long; at most {MAX_KEY_LEN} are accepted")]
    TooLong { header: String, len: usize },
    #[error("the {header} header may only contain visible ASCII characters")]
    NotVisibleAscii { header: String },
}

/// The key as the client meant it: a bare token, or an RFC 8941 sf-string (`"..."`, where `\"`
/// and `\\` are escapes). Either way it must be 1–255 bytes of visible ASCII (spaces allowed
/// only inside quotes).
pub(crate) fn parse_key(header: &str, raw: &[u8]) -> Result<String, KeyError> {
    let err_ascii = || KeyError::NotVisibleAscii {
        header: header.to_owned(),
    };
    let key = if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
        let mut out = Vec::with_capacity(raw.len());
        let mut escaped = false;
        for &b in &raw[1..raw.len() - 1] {
            match (escaped, b) {
                (false, b'\\') => escaped = true,
                (false, b'"') => return Err(err_ascii()),
                (true, b'"' | b'\\') => {
                    out.push(b);
                    escaped = false;
                }
                (true, _) => return Err(err_ascii()),
                (false, 0x20..=0x7e) => out.push(b),
                (false, _) => return Err(err_ascii()),
            }
        }
        if escaped {
            return Err(err_ascii());
        }
        out
    } else {
        if raw.iter().any(|b| !(0x21..=0x7e).contains(b)) {
            return Err(err_ascii());
        }
        raw.to_vec()
    };
    if key.is_empty() {
        return Err(KeyError::Empty {
            header: header.to_owned(),
        });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong {
            header: header.to_owned(),
            len: key.len(),
        });
    }
    Ok(String::from_utf8(key).expect("ASCII"))
}

/// A digest of the credential headers and the key: the same key sent with other credentials is
/// another key, so no client can ever receive another's stored response.
pub(crate) fn scoped_key(scope_headers: &[String], headers: &HeaderMap, key: &str) -> String {
    let mut h = Sha256::new();
    for name in scope_headers {
        h.update(name.as_bytes());
        h.update([0]);
        for value in headers.get_all(name.as_str()) {
            h.update(value.as_bytes());
            h.update([0]);
        }
        h.update([1]);
    }
    h.update(key.as_bytes());
    hex(&h.finalize())
}

/// A digest of what makes two requests "the same request": method, path and query, body.
pub(crate) fn fingerprint(method: &str, uri: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(uri.as_bytes());
    h.update([0]);
    h.update(body);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Scoped keys with a request in flight.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    keys: DashMap<String, watch::Receiver<()>>,
}

/// The right to process a scoped key; waiters are woken when it is dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    registry: Arc<InFlight>,
    scoped: String,
    _done: watch::Sender<()>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.registry.keys.remove(&self.scoped);
        // Dropping `_done` closes the channel: every waiter's `changed()` returns.
    }
}

impl InFlight {
    /// Claims `scoped`, or returns what to wait on while another request holds it.
    pub(crate) fn claim(self: &Arc<Self>, scoped: &str) -> Result<Claim, watch::Receiver<()>> {
        match self.keys.entry(scoped.to_owned()) {
            MapEntry::Occupied(held) => Err(held.get().clone()),
            MapEntry::Vacant(slot) => {
                let (done, waiting) = watch::channel(());
                slot.insert(waiting);
                Ok(Claim {
                    registry: self.clone(),
                    scoped: scoped.to_owned(),
                    _done: done,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_tokens_or_sf_strings_of_visible_ascii() {
        assert_eq!(parse_key("K", b"abc-123_XYZ"), Ok("abc-123_XYZ".into()));
        assert_eq!(
            parse_key("K", b"\"with space \\\"q\\\"\""),
            Ok("with space \"q\"".into())
        );
        assert!(matches!(parse_key("K", b""), Err(KeyError::Empty { .. })));
        assert!(matches!(
            parse_key("K", b"\"\""),
            Err(KeyError::Empty { .. })
        ));
        assert!(matches!(
            parse_key("K", b"a b"),
            Err(KeyError::NotVisibleAscii { .. })
        ));
        assert!(matches!(
            parse_key("K", b"caf\xc3\xa9"),
            Err(KeyError::NotVisibleAscii { .. })
        ));
        assert!(matches!(
            parse_key("K", b"a\x01"),
            Err(KeyError::NotVisibleAscii { .. })
        ));
        assert!(matches!(
            parse_key("K", b"\"bad\\x\""),
            Err(KeyError::NotVisibleAscii { .. })
        ));
        assert_eq!(
            parse_key("K", "k".repeat(255).as_bytes()).map(|k| k.len()),
            Ok(255)
        );
        assert!(matches!(
            parse_key("K", "k".repeat(256).as_bytes()),
            Err(KeyError::TooLong { len: 256, .. })
        ));
    }

    #[test]
    fn scope_separates_credentials() {
        let scope = vec!["authorization".to_string(), "cookie".to_string()];
        let mut alice = HeaderMap::new();
        alice.insert("authorization", "Bearer alice".parse().unwrap());
        let mut bob = HeaderMap::new();
        bob.insert("authorization", "Bearer bob".parse().unwrap());
        let anonymous = HeaderMap::new();
        let a = scoped_key(&scope, &alice, "k1");
        assert_eq!(a, scoped_key(&scope, &alice, "k1"));
        assert_ne!(a, scoped_key(&scope, &bob, "k1"));
        assert_ne!(a, scoped_key(&scope, &anonymous, "k1"));
        assert_ne!(a, scoped_key(&scope, &alice, "k2"));
        // A value cannot be shifted between headers to forge another scope.
        let mut shifted = HeaderMap::new();
        shifted.insert("cookie", "Bearer alice".parse().unwrap());
        assert_ne!(a, scoped_key(&scope, &shifted, "k1"));
    }

    #[test]
    fn fingerprint_covers_method_path_and_body() {
        let f = fingerprint("POST", "/a", b"{}");
        assert_eq!(f, fingerprint("POST", "/a", b"{}"));
        assert_ne!(f, fingerprint("PUT", "/a", b"{}"));
        assert_ne!(f, fingerprint("POST", "/b", b"{}"));
        assert_ne!(f, fingerprint("POST", "/a", b"{ }"));
    }

    #[tokio::test]
    async fn one_claim_per_key_and_waiters_wake_when_it_ends() {
        let registry = Arc::new(InFlight::default());
        let claim = registry.claim("k").unwrap();
        let mut waiter = registry.claim("k").unwrap_err();
        assert!(registry.claim("other").is_ok());
        drop(claim);
        assert!(
            waiter.changed().await.is_err(),
            "the channel closes when the claim ends"
        );
        assert!(registry.claim("k").is_ok());
    }
}
