//! AWS JSON 1.1 framing: `POST /`, `X-Amz-Target: Prefix.Operation`,
//! `Content-Type: application/x-amz-json-1.1`, errors as
//! `{"__type": "Name", "message": "..."}`.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

/// The content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A random request id in UUID form, for `x-amzn-RequestId`.
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    // A failing RNG leaves zeros: the id is only for correlation.
    let _ = getrandom::fill(&mut b);
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn response(status: StatusCode, body: &Value, request_id: &str) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-RequestId", v);
    }
    r
}

/// A successful reply.
pub fn ok(body: &Value, request_id: &str) -> Response {
    response(StatusCode::OK, body, request_id)
}

/// An error reply. `error_type` is the model's error shape name.
pub fn error(status: StatusCode, error_type: &str, message: &str, request_id: &str) -> Response {
    let mut r = response(
        status,
        &json!({"__type": error_type, "message": message}),
        request_id,
    );
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}
