//! The service under load: its address, the `Host` header to send, and the default path.
//!
//! URLs are split by hand rather than with a URL library, because a library would
//! percent-encode the braces of a templated path.

use std::net::SocketAddr;

/// Why a URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Only plain HTTP is spoken.
    #[error(
        "`{0}`: lockstep-load speaks plain HTTP/1.1 only; use the gateway's plaintext listener \
         (http://HOST:PORT)"
    )]
    Scheme(String),
    /// No host.
    #[error("`{0}` has no host; write e.g. http://127.0.0.1:8080/")]
    NoHost(String),
    /// The path part does not start with `/`.
    #[error("`{0}`: the path must start with `/`")]
    Path(String),
    /// Name resolution failed or found nothing.
    #[error("cannot resolve `{host}`: {detail}")]
    Resolve {
        /// The `host:port` looked up.
        host: String,
        /// What the resolver said.
        detail: String,
    },
}

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]` as written: the `Host` header.
    pub authority: String,
    /// `host:port`, the port filled in: what is resolved.
    pub host_port: String,
    /// Path and query, `/` when the URL has none.
    pub path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]`; the scheme may be left out.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(TargetError::Scheme(url.to_owned())),
            None => url,
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(TargetError::NoHost(url.to_owned()));
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if path.bytes().any(|b| b <= b' ') {
            return Err(TargetError::Path(url.to_owned()));
        }
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        let host_port = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            authority: authority.to_owned(),
            host_port,
            path,
        })
    }

    /// Resolves the host to its first address.
    pub async fn resolve(&self) -> Result<SocketAddr, TargetError> {
        let resolve_error = |detail: String| TargetError::Resolve {
            host: self.host_port.clone(),
            detail,
        };
        tokio::net::lookup_host(&self.host_port)
            .await
            .map_err(|e| resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_error("no address".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_authority_and_path() {
        let t = Target::parse("http://127.0.0.1:8080/accounts?x=1").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.host_port, "127.0.0.1:8080");
        assert_eq!(t.path, "/accounts?x=1");
    }

    #[test]
    fn fills_in_port_and_path() {
        let t = Target::parse("localhost").unwrap();
        assert_eq!(t.host_port, "localhost:80");
        assert_eq!(t.path, "/");
        let t = Target::parse("http://[::1]/").unwrap();
        assert_eq!(t.host_port, "[::1]:80");
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!(t.host_port, "[::1]:9000");
    }

    #[test]
    fn keeps_template_braces() {
        let t = Target::parse("http://h:1/accounts/{counter}").unwrap();
        assert_eq!(t.path, "/accounts/{counter}");
    }

    #[test]
    fn rejects_https() {
        assert!(matches!(
            Target::parse("https://example.test/"),
            Err(TargetError::Scheme(_))
        ));
    }

    #[test]
    fn rejects_missing_host() {
        assert!(matches!(
            Target::parse("http:///x"),
            Err(TargetError::NoHost(_))
        ));
    }
}
