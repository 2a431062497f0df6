//! Building JSON responses by hand, so that every body is compact JSON with the declared
//! field order and exactly one `content-type`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A response with `status` and `value` serialized as compact JSON.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        // Only maps with non-string keys fail to serialize; none of the bodies have one.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
