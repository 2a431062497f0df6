//! HTTP/1.1 request bytes, built once per request kind and expanded once per logical request.
//!
//! A request whose templates have no placeholder and that carries no idempotency key is built
//! completely up front; sending it is then one write of a ready buffer. Otherwise the literal
//! parts are kept as one template and only the placeholders are filled in.

use std::io::Write as _;

use crate::mix::RequestSpec;
use crate::target::Target;
use crate::template::{Template, Values};

/// One kind of request, ready to put on the wire.
#[derive(Debug, Clone)]
pub(crate) struct WireRequest {
    /// Request line and headers, without `Content-Length` and the blank line.
    head: Template,
    body: Option<Template>,
    /// `Name: ` of the idempotency-key header, when keys are sent.
    key_header: Option<Vec<u8>>,
    /// Send `Content-Length: 0` when there is no body (methods that usually carry one).
    empty_length: bool,
    /// The whole request, when nothing varies.
    prebuilt: Option<Vec<u8>>,
    /// A `HEAD` request: its response has no body whatever its headers say.
    head_only: bool,
}

impl WireRequest {
    /// Builds the request for `spec` against `target`; `key_header` names the idempotency-key
    /// header to add to each logical request. `spec` must have passed the mix checks.
    pub(crate) fn build(
        spec: &RequestSpec,
        target: &Target,
        key_header: Option<&str>,
    ) -> WireRequest {
        let parse = |text: &str| Template::parse(text).expect("checked when the mix was built");
        let path = parse(spec.path.as_deref().unwrap_or(&target.path));
        let mut head = Template::literal(format!("{} ", spec.method).as_bytes());
        head.append(&path);
        head.push_literal(b" HTTP/1.1\r\n");
        let has = |name: &str| {
            spec.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("host") {
            head.push_literal(format!("Host: {}\r\n", target.authority).as_bytes());
        }
        if spec.body.is_some() && !has("content-type") {
            head.push_literal(b"Content-Type: application/json\r\n");
        }
        for (name, value) in &spec.headers {
            head.push_literal(format!("{name}: ").as_bytes());
            head.append(&parse(value));
            head.push_literal(b"\r\n");
        }
        let body = spec.body.as_deref().map(parse);
        let empty_length =
            body.is_none() && matches!(spec.method.as_str(), "POST" | "PUT" | "PATCH");
        let mut request = WireRequest {
            head,
            body,
            key_header: key_header.map(|name| format!("{name}: ").into_bytes()),
            empty_length,
            prebuilt: None,
            head_only: spec.method == "HEAD",
        };
        request.prebuilt = request.build_static();
        request
    }

    fn build_static(&self) -> Option<Vec<u8>> {
        if self.key_header.is_some() {
            return None;
        }
        let head = self.head.as_literal()?;
        let body = match &self.body {
            Some(body) => Some(body.as_literal()?),
            None => None,
        };
        let mut out = head.to_vec();
        self.finish_head(body.map(<[u8]>::len), &mut out);
        out.extend_from_slice(body.unwrap_or_default());
        Some(out)
    }

    fn finish_head(&self, body_len: Option<usize>, out: &mut Vec<u8>) {
        match body_len {
            Some(len) => {
                let _ = write!(out, "Content-Length: {len}\r\n");
            }
            None if self.empty_length => out.extend_from_slice(b"Content-Length: 0\r\n"),
            None => {}
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Whether this is a `HEAD` request.
    pub(crate) fn is_head(&self) -> bool {
        self.head_only
    }

    /// The bytes of one logical request: the prebuilt buffer, or the expansion written into
    /// `out` (with `scratch` holding the body meanwhile). `key` is the idempotency key.
    pub(crate) fn render<'a>(
        &'a self,
        values: &mut Values,
        key: Option<&[u8]>,
        out: &'a mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> &'a [u8] {
        if let Some(prebuilt) = &self.prebuilt {
            return prebuilt;
        }
        values.begin_request();
        out.clear();
        scratch.clear();
        if let Some(body) = &self.body {
            body.render(values, scratch);
        }
        self.head.render(values, out);
        if let (Some(name), Some(key)) = (&self.key_header, key) {
            out.extend_from_slice(name);
            out.extend_from_slice(key);
            out.extend_from_slice(b"\r\n");
        }
        self.finish_head(self.body.as_ref().map(|_| scratch.len()), out);
        out.extend_from_slice(scratch);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;

    fn values() -> Values {
        Values::new(0, 1, Arc::new(AtomicU64::new(7)))
    }

    fn render(request: &WireRequest, key: Option<&[u8]>) -> String {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let bytes = request.render(&mut values(), key, &mut out, &mut scratch);
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn static_get_is_prebuilt() {
        let target = Target::parse("http://127.0.0.1:8080/health").unwrap();
        let spec = RequestSpec::from_flags(None, None, None, &[]).unwrap();
        let request = WireRequest::build(&spec, &target, None);
        assert!(request.prebuilt.is_some());
        assert_eq!(
            render(&request, None),
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
    }

    #[test]
    fn templated_post_gets_its_length_and_key() {
        let target = Target::parse("http://h:1").unwrap();
        let spec = RequestSpec::from_flags(
            None,
            Some("/accounts/{counter}/deposit".into()),
            Some(r#"{"amount": {counter}}"#.into()),
            &["X-Trace: t-{connection}".into()],
        )
        .unwrap();
        let request = WireRequest::build(&spec, &target, Some("Idempotency-Key"));
        assert!(request.prebuilt.is_none());
        assert_eq!(
            render(&request, Some(b"k-1")),
            "POST /accounts/7/deposit HTTP/1.1\r\nHost: h:1\r\n\
             Content-Type: application/json\r\nX-Trace: t-0\r\nIdempotency-Key: k-1\r\n\
             Content-Length: 13\r\n\r\n{\"amount\": 7}"
        );
    }

    #[test]
    fn bodyless_post_says_length_zero_and_host_can_be_overridden() {
        let target = Target::parse("http://h:1/x").unwrap();
        let spec =
            RequestSpec::from_flags(Some("POST".into()), None, None, &["Host: other".into()])
                .unwrap();
        let request = WireRequest::build(&spec, &target, None);
        assert_eq!(
            render(&request, None),
            "POST /x HTTP/1.1\r\nHost: other\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
