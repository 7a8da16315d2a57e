//! The HTTP front door: bounded body reads, authentication, routing by
//! protocol, and a typed 4xx for everything that cannot be routed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use berth_control::Ecs;
use berth_core::Timestamp;
use http::{Method, StatusCode};

use crate::auth::KeyRing;
use crate::ecs::{self, EcsAction, ParseError};
use crate::json11;
use crate::sigv4::{AuthError, RequestParts};

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The SigV4 service names Berth accepts in a credential scope.
pub const SIGNING_NAMES: &[&str] = &[ecs::SIGNING_NAME];

/// What the API server needs.
pub struct ApiState {
    /// The ECS control plane.
    pub ecs: Ecs,
    /// The access keys accepted.
    pub keys: KeyRing,
}

/// The router serving every protocol on one listener.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn handle(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    let request_id = json11::request_id();
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return json11::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                &format!("the request body is larger than the {MAX_BODY_BYTES}-byte limit"),
                &request_id,
            )
        }
    };

    let now = now_millis();
    let path = parts.uri.path();
    let request = RequestParts {
        method: parts.method.as_str(),
        path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &bytes,
    };
    let (caller, verified) = match state.keys.authenticate(
        &request,
        now.div_euclid(1000),
        &state.ecs.scope().region,
        SIGNING_NAMES,
    ) {
        Ok(v) => v,
        Err(e) => return auth_error(&e, &request_id),
    };

    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((prefix, operation)) = target.split_once('.') else {
        return json11::error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "the request has no X-Amz-Target header naming an operation (e.g. AmazonEC2ContainerServiceV20141113.ListClusters)",
            &request_id,
        );
    };
    if prefix != ecs::TARGET_PREFIX {
        return json11::error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("X-Amz-Target prefix {prefix:?} is not a service this endpoint serves"),
            &request_id,
        );
    }
    if parts.method != Method::POST || path != "/" {
        return json11::error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "ECS operations are sent as POST /",
            &request_id,
        );
    }
    if verified.service != ecs::SIGNING_NAME {
        return auth_error(
            &AuthError::WrongScope(format!(
                "Credential should be scoped to correct service: '{}'.",
                ecs::SIGNING_NAME
            )),
            &request_id,
        );
    }

    let action = match EcsAction::parse(operation, &bytes) {
        Ok(a) => a,
        Err(e @ ParseError::UnknownOperation(_)) => {
            return json11::error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                &e.to_string(),
                &request_id,
            )
        }
        Err(e @ ParseError::Serialization { .. }) => {
            return json11::error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &e.to_string(),
                &request_id,
            )
        }
    };
    tracing::debug!(operation, caller = %caller.arn, "ecs request");
    match ecs::dispatch(&state.ecs, action, &caller, Timestamp(now)).await {
        Ok(v) => json11::ok(&v, &request_id),
        Err(e) => {
            let (status, kind) = ecs::error::wire(&e);
            if status.is_server_error() {
                tracing::error!(operation, error = %e, "ecs request failed");
            }
            json11::error(status, kind, &e.to_string(), &request_id)
        }
    }
}

fn auth_error(e: &AuthError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut r = json11::error(status, e.aws_error_type(), &e.to_string(), request_id);
    if matches!(e, AuthError::Missing) {
        *r.body_mut() = Body::from(
            serde_json::json!({"__type": e.aws_error_type(), "message": "Missing Authentication Token"}).to_string(),
        );
    }
    r
}
