//! A backend's own address in its answers, rewritten to the address clients use, as nginx's
//! `proxy_redirect default` does.
//!
//! Services often build absolute URLs from the address they listen on: a `Location` of
//! `http://127.0.0.1:9001/d1/f1.txt`. Every copy has its own address, so the copies' answers
//! differ where they agree, and the client is handed an address it should never see. In the
//! headers that carry URLs for the client ([`REWRITTEN`]) a URL whose origin is the answering
//! backend's own — as configured (with its path prefix), or with the loopback address it
//! resolves to — gets the client-facing origin instead: `[gateway] public_url`, or the request's
//! `Host` over `http`. Anything else, a foreign URL that merely looks similar included, is left
//! as it is.

/// The response headers whose URLs are rewritten.
pub(crate) const REWRITTEN: &[&str] = &["location", "content-location", "refresh", "link"];

/// The forms a backend's own origin takes in the URLs it answers with, longest first:
/// `http://host:port/prefix`, the same without an explicit default port, and with `localhost`
/// and the loopback address interchanged.
pub(crate) fn own_origins(url: &url::Url) -> Vec<String> {
    let Some(host) = url.host_str() else {
        return Vec::new();
    };
    let prefix = crate::transport::path_prefix(url);
    let mut hosts = vec![host.to_owned()];
    match host {
        "localhost" => hosts.extend(["127.0.0.1".to_owned(), "[::1]".to_owned()]),
        "127.0.0.1" | "[::1]" => hosts.push("localhost".to_owned()),
        _ => {}
    }
    let port = url.port_or_known_default();
    let mut forms = Vec::new();
    for h in hosts {
        if let Some(p) = port {
            forms.push(format!("{}://{h}:{p}{prefix}", url.scheme()));
        }
        if url.port().is_none() {
            forms.push(format!("{}://{h}{prefix}", url.scheme()));
        }
    }
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// The origin clients use for a request: `public_url` when configured, else `http://` and the
/// request's `Host`; `None` without either (nothing is rewritten then).
pub(crate) fn client_origin(public_url: Option<&url::Url>, host: Option<&str>) -> Option<String> {
    if let Some(url) = public_url {
        return Some(url.as_str().trim_end_matches('/').to_owned());
    }
    let host = host?.trim();
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    valid.then(|| format!("http://{host}"))
}

/// `value` with every own origin that stands alone (followed by the end, `/`, `?`, `#` or a
/// delimiter, never by more of a host name or port) replaced by `client`; `None` when nothing
/// was.
pub(crate) fn rewrite(value: &str, own: &[String], client: &str) -> Option<String> {
    let boundary = |c: Option<char>| {
        c.is_none_or(|c| {
            matches!(c, '/' | '?' | '#' | '>' | '"' | '\'' | ';' | ',') || c.is_whitespace()
        })
    };
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut changed = false;
    'scan: while !rest.is_empty() {
        for origin in own {
            if rest.len() >= origin.len()
                && rest.as_bytes()[..origin.len()].eq_ignore_ascii_case(origin.as_bytes())
                && boundary(rest[origin.len()..].chars().next())
                && !out.ends_with(|c: char| c.is_ascii_alphanumeric())
            {
                out.push_str(client);
                rest = &rest[origin.len()..];
                changed = true;
                continue 'scan;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    changed.then_some(out)
}

/// Rewrites `backend`'s own origin in the [`REWRITTEN`] headers of `response`.
pub(crate) fn rewrite_response(
    response: &mut lockstep_journal::ResponseRecord,
    backend: &url::Url,
    public_url: Option<&url::Url>,
    host: Option<&str>,
) {
    let rewritable = |name: &str| REWRITTEN.iter().any(|h| h.eq_ignore_ascii_case(name));
    if !response.headers.iter().any(|h| rewritable(&h.name)) {
        return;
    }
    let Some(client) = client_origin(public_url, host) else {
        return;
    };
    let own = own_origins(backend);
    for header in response.headers.iter_mut().filter(|h| rewritable(&h.name)) {
        let Ok(value) = std::str::from_utf8(&header.value) else {
            continue;
        };
        if let Some(new) = rewrite(value, &own, &client) {
            header.value = bytes::Bytes::from(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(url: &str) -> Vec<String> {
        own_origins(&url.parse().unwrap())
    }

    #[test]
    fn the_backends_own_origin_becomes_the_clients() {
        let o = own("http://127.0.0.1:33183");
        assert_eq!(
            rewrite(
                "http://127.0.0.1:33183/d1/f1.txt",
                &o,
                "http://gw.example:8080"
            )
            .as_deref(),
            Some("http://gw.example:8080/d1/f1.txt")
        );
        assert_eq!(
            rewrite("http://localhost:33183", &o, "http://gw").as_deref(),
            Some("http://gw")
        );
        // Link and Refresh carry URLs inside other syntax.
        assert_eq!(
            rewrite(
                "<http://127.0.0.1:33183/page/2>; rel=\"next\", <http://127.0.0.1:33183/page/9>; rel=\"last\"",
                &o,
                "https://api"
            )
            .as_deref(),
            Some("<https://api/page/2>; rel=\"next\", <https://api/page/9>; rel=\"last\"")
        );
        assert_eq!(
            rewrite("5; url=http://127.0.0.1:33183/x", &o, "http://gw").as_deref(),
            Some("5; url=http://gw/x")
        );
    }

    #[test]
    fn default_ports_ipv6_and_path_prefixes() {
        let o = own("http://svc.internal/api/");
        assert_eq!(
            rewrite("http://svc.internal/api/items/1", &o, "https://pub").as_deref(),
            Some("https://pub/items/1")
        );
        assert_eq!(
            rewrite("http://svc.internal:80/api/items/1", &o, "https://pub").as_deref(),
            Some("https://pub/items/1")
        );
        // Outside the prefix it is not the backend's URL space.
        assert_eq!(
            rewrite("http://svc.internal/apix/1", &o, "https://pub"),
            None
        );
        let o = own("http://[::1]:9001");
        assert_eq!(
            rewrite("http://[::1]:9001/x", &o, "http://gw").as_deref(),
            Some("http://gw/x")
        );
    }

    #[test]
    fn a_foreign_url_that_looks_similar_is_left_alone() {
        let o = own("http://127.0.0.1:9001");
        for foreign in [
            "http://127.0.0.1:90011/x",
            "http://127.0.0.10:9001/x",
            "https://127.0.0.1:9001/x",
            "http://example.com/?next=http://127.0.0.1:90012",
            "/relative/path",
            "xhttp://127.0.0.1:9001/",
        ] {
            assert_eq!(rewrite(foreign, &o, "http://gw"), None, "{foreign}");
        }
    }

    #[test]
    fn the_client_origin_comes_from_the_public_url_or_the_host() {
        let public: url::Url = "https://api.example.com".parse().unwrap();
        assert_eq!(
            client_origin(Some(&public), Some("ignored")).as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(
            client_origin(None, Some("127.0.0.1:8080")).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(client_origin(None, None), None);
        assert_eq!(client_origin(None, Some("bad host/x")), None);
    }

    proptest::proptest! {
        /// Whatever follows, a rewrite only ever swaps own origins: the rest of the value is
        /// kept byte for byte, and a value without the origin is never touched.
        #[test]
        fn rewriting_keeps_everything_else(tail in "[ -~]{0,40}", port in 1u16..) {
            let o = own("http://127.0.0.1:9001");
            let value = format!("http://127.0.0.1:9001/{tail}");
            let rewritten = rewrite(&value, &o, "http://gw").unwrap();
            proptest::prop_assert!(rewritten.starts_with("http://gw/"));
            let other = format!("http://127.0.0.1:{port}0/{tail}");
            if !tail.contains("127.0.0.1:9001") && !tail.contains("localhost:9001") {
                proptest::prop_assert_eq!(rewrite(&other, &o, "http://gw"), None);
            }
        }
    }
}
