//! Header hygiene between the client and the backends: hop-by-hop headers stay on their hop,
//! and the client's address travels in `X-Forwarded-For` and `Forwarded`.

use std::net::IpAddr;

use bytes::Bytes;
use http::HeaderMap;
use lockstep_journal::Header;

/// Headers that describe one connection (RFC 9110 §7.6.1) or its framing; never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
];

/// Whether a header must not be forwarded, given the names the `Connection` header nominates.
pub(crate) fn is_hop_by_hop(name: &str, nominated: &[String]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || nominated.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Header names listed in `Connection` (lowercased).
pub(crate) fn connection_nominated(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The end-to-end request headers to forward, in client order, followed by the forwarding
/// headers for `client`.
pub(crate) fn forwarded_request_headers(
    headers: &HeaderMap,
    names_in_order: impl Iterator<Item = String>,
    client: Option<IpAddr>,
) -> Vec<Header> {
    let nominated = connection_nominated(headers);
    let mut out = Vec::with_capacity(headers.len() + 2);
    let mut seen: Vec<String> = Vec::new();
    // `names_in_order` carries the client's spelling; values come from the map in order.
    for name in names_in_order {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(&lower, &nominated)
            || lower == "x-forwarded-for"
            || lower == "forwarded"
            || seen.contains(&lower)
        {
            continue;
        }
        for value in headers.get_all(lower.as_str()) {
            out.push(Header::new(
                name.clone(),
                Bytes::copy_from_slice(value.as_bytes()),
            ));
        }
        seen.push(lower);
    }
    if let Some(ip) = client {
        let xff = match joined(headers, "x-forwarded-for") {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        out.push(Header::new("X-Forwarded-For", xff));
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let mut element = format!("for={node};proto=http");
        if let Some(host) = host {
            element.push_str(&format!(";host=\"{}\"", host.replace('"', "")));
        }
        let forwarded = match joined(headers, "forwarded") {
            Some(prior) => format!("{prior}, {element}"),
            None => element,
        };
        out.push(Header::new("Forwarded", forwarded));
    }
    out
}

fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn names(pairs: &[(&str, &str)]) -> impl Iterator<Item = String> {
        pairs
            .iter()
            .map(|(n, _)| n.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn hop_by_hop_and_nominated_headers_are_dropped() {
        let pairs = [
            ("Host", "svc"),
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "3"),
            ("Content-Type", "application/json"),
            ("Keep-Alive", "timeout=5"),
        ];
        let out = forwarded_request_headers(&map(&pairs), names(&pairs), None);
        let got: Vec<&str> = out.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(got, vec!["Host", "Content-Type"]);
    }

    #[test]
    fn repeated_headers_keep_every_value_in_order() {
        let pairs = [("Accept", "a"), ("X-Tag", "1"), ("X-Tag", "2")];
        let out = forwarded_request_headers(&map(&pairs), names(&pairs), None);
        let got: Vec<(&str, &[u8])> = out
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_ref()))
            .collect();
        assert_eq!(
            got,
            vec![("Accept", &b"a"[..]), ("X-Tag", b"1"), ("X-Tag", b"2")]
        );
    }

    #[test]
    fn client_address_is_appended_to_forwarding_headers() {
        let pairs = [("Host", "svc:8080"), ("X-Forwarded-For", "10.0.0.1")];
        let out = forwarded_request_headers(
            &map(&pairs),
            names(&pairs),
            Some("127.0.0.1".parse().unwrap()),
        );
        let get = |n: &str| {
            out.iter()
                .find(|h| h.name == n)
                .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        };
        assert_eq!(
            get("X-Forwarded-For").as_deref(),
            Some("10.0.0.1, 127.0.0.1")
        );
        assert_eq!(
            get("Forwarded").as_deref(),
            Some("for=127.0.0.1;proto=http;host=\"svc:8080\"")
        );
        let v6 = forwarded_request_headers(&map(&[]), names(&[]), Some("::1".parse().unwrap()));
        assert_eq!(
            String::from_utf8_lossy(&v6[1].value),
            "for=\"[::1]\";proto=http"
        );
    }
}
