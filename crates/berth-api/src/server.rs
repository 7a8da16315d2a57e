//! The HTTP front door: bounded body reads, authentication, routing by
//! protocol, and a typed 4xx for everything that cannot be routed.
//!
//! After authentication a request is routed by path: `/agent/v1/...` to the
//! agent protocol ([`crate::agent`], credential scope `berth-agent`),
//! `/berth/v1/...` to Berth's own API ([`crate::tasklogs`], scope `ecs`),
//! requests to `/` without `X-Amz-Target` that are signed for
//! `elasticloadbalancing` or carry form data (`Action=...`) to the ELBv2
//! Query API ([`crate::elbv2`]), everything else by `X-Amz-Target` to ECS
//! or ECR.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use berth_control::logs::LogSink;
use berth_control::{Ecr, Ecs, Elb, IdSource};
use berth_core::Timestamp;
use http::{Method, StatusCode};

use crate::agent;
use crate::auth::{KeyRing, TokenAuthority};
use crate::ecr::{self, EcrAction, EcrContext};
use crate::ecs::{self, EcsAction, ParseError};
use crate::elbv2;
use crate::json11;
use crate::sigv4::{AuthError, RequestParts};
use crate::tasklogs;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The SigV4 service names Berth accepts in a credential scope.
pub const SIGNING_NAMES: &[&str] = &[
    ecs::SIGNING_NAME,
    ecr::SIGNING_NAME,
    agent::SIGNING_NAME,
    elbv2::SIGNING_NAME,
];

/// What the API server needs.
pub struct ApiState {
    /// The ECS control plane.
    pub ecs: Ecs,
    /// The registry metadata (ECR).
    pub ecr: Ecr,
    /// The load balancers (ELBv2).
    pub elb: Elb,
    /// The access keys accepted.
    pub keys: KeyRing,
    /// Issues and checks registry tokens.
    pub tokens: TokenAuthority,
    /// `host:port` where the registry is reached (repositoryUri).
    pub registry_host: String,
    /// Where new task and host ids come from ([`RandomIds`] in production).
    pub ids: Arc<dyn IdSource>,
    /// Where container output is kept.
    pub logs: Arc<dyn LogSink>,
}

/// Ids from the operating system's random generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_u128(&self) -> u128 {
        let mut b = [0u8; 16];
        if getrandom::fill(&mut b).is_err() {
            // No OS randomness (never seen on Linux): fall back to the clock
            // and a process counter, still unique within this process.
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            return (t << 32) ^ u128::from(n);
        }
        u128::from_le_bytes(b)
    }
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
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // A Query-protocol (ELBv2) request is answered in XML, its auth
    // failures too, so that its clients can read them.
    let query_protocol = target.is_empty()
        && path == "/"
        && elbv2::looks_like_query(&parts.headers, parts.uri.query());
    let (caller, verified) = match state.keys.authenticate(
        &request,
        now.div_euclid(1000),
        &state.ecs.scope().region,
        SIGNING_NAMES,
    ) {
        Ok(v) => v,
        Err(e) if query_protocol => return query_auth_error(&e, &request_id),
        Err(e) => return auth_error(&e, &request_id),
    };

    if path == agent::PREFIX || path.starts_with(&format!("{}/", agent::PREFIX)) {
        if verified.service != agent::SIGNING_NAME {
            return auth_error(&wrong_service(agent::SIGNING_NAME), &request_id);
        }
        return agent::handle(
            &state,
            &parts.method,
            path,
            parts.uri.query(),
            &bytes,
            Timestamp(now),
        )
        .await;
    }
    if path == tasklogs::PREFIX || path.starts_with(&format!("{}/", tasklogs::PREFIX)) {
        if verified.service != ecs::SIGNING_NAME {
            return auth_error(&wrong_service(ecs::SIGNING_NAME), &request_id);
        }
        return tasklogs::handle(&state, &parts.method, path, parts.uri.query()).await;
    }

    if target.is_empty()
        && path == "/"
        && (query_protocol || verified.service == elbv2::SIGNING_NAME)
    {
        if verified.service != elbv2::SIGNING_NAME {
            return query_auth_error(&wrong_service(elbv2::SIGNING_NAME), &request_id);
        }
        if parts.method != Method::POST && parts.method != Method::GET {
            return elbv2::xml::error(
                StatusCode::BAD_REQUEST,
                elbv2::error::INVALID_ACTION,
                "ELBv2 requests are sent as POST / (form body) or GET /?Action=...",
                &request_id,
            );
        }
        tracing::debug!(caller = %caller.arn, "elbv2 request");
        return elbv2::handle(
            &state.elb,
            &*state.ids,
            &parts.method,
            parts.uri.query(),
            &bytes,
            Timestamp(now),
            &request_id,
        )
        .await;
    }
    let Some((prefix, operation)) = target.split_once('.') else {
        return json11::error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "the request has no X-Amz-Target header naming an operation (e.g. AmazonEC2ContainerServiceV20141113.ListClusters)",
            &request_id,
        );
    };
    if parts.method != Method::POST || path != "/" {
        return json11::error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "AWS JSON operations are sent as POST /",
            &request_id,
        );
    }
    let expected_service = match prefix {
        ecs::TARGET_PREFIX => ecs::SIGNING_NAME,
        ecr::TARGET_PREFIX => ecr::SIGNING_NAME,
        other => {
            return json11::error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                &format!("X-Amz-Target prefix {other:?} is not a service this endpoint serves"),
                &request_id,
            )
        }
    };
    if !verified.signed_headers.iter().any(|h| h == "x-amz-target") {
        return auth_error(
            &AuthError::Incomplete(
                "the signature must cover the X-Amz-Target header (add it to SignedHeaders)".into(),
            ),
            &request_id,
        );
    }
    if verified.service != expected_service {
        return auth_error(&wrong_service(expected_service), &request_id);
    }
    let parse_error = |e: ParseError| match e {
        e @ ParseError::UnknownOperation(_) => json11::error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &e.to_string(),
            &request_id,
        ),
        e @ ParseError::Serialization { .. } => json11::error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            &e.to_string(),
            &request_id,
        ),
    };
    tracing::debug!(target = prefix, operation, caller = %caller.arn, "api request");
    let (result, error_wire) = if prefix == ecs::TARGET_PREFIX {
        let action = match EcsAction::parse(operation, &bytes) {
            Ok(a) => a,
            Err(e) => return parse_error(e),
        };
        match ecs::dispatch(&state.ecs, &*state.ids, action, &caller, Timestamp(now)).await {
            Ok(v) => (Ok(v), None),
            Err(e) => (Err(e.to_string()), Some(ecs::error::wire(&e))),
        }
    } else {
        let action = match EcrAction::parse(operation, &bytes) {
            Ok(a) => a,
            Err(e) => return parse_error(e),
        };
        let cx = EcrContext {
            ecr: &state.ecr,
            tokens: &state.tokens,
            registry_host: &state.registry_host,
        };
        match ecr::dispatch(
            &cx,
            action,
            &caller,
            &verified.access_key_id,
            Timestamp(now),
        )
        .await
        {
            Ok(v) => (Ok(v), None),
            Err(e) => (Err(e.to_string()), Some(ecr::error::wire(&e))),
        }
    };
    match (result, error_wire) {
        (Ok(v), _) => json11::ok(&v, &request_id),
        (Err(message), Some((status, kind))) => {
            if status.is_server_error() {
                tracing::error!(operation, error = %message, "api request failed");
            }
            json11::error(status, kind, &message, &request_id)
        }
        (Err(message), None) => json11::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            &message,
            &request_id,
        ),
    }
}

fn wrong_service(expected: &str) -> AuthError {
    AuthError::WrongScope(format!(
        "Credential should be scoped to correct service: '{expected}'."
    ))
}

/// An authentication failure in the Query protocol's terms (XML, the codes
/// Query services use).
fn query_auth_error(e: &AuthError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    let code = match e {
        AuthError::Missing => "MissingAuthenticationToken",
        AuthError::Incomplete(_) => "IncompleteSignature",
        AuthError::UnknownKey => "InvalidClientTokenId",
        AuthError::BadSignature | AuthError::Expired(_) | AuthError::WrongScope(_) => {
            "SignatureDoesNotMatch"
        }
    };
    elbv2::xml::error(status, code, &e.to_string(), request_id)
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
