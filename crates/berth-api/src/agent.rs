//! The agent protocol server (`berth_core::agent`): how host agents register,
//! heartbeat, learn their tasks and report back, on the API listener.
//!
//! Every request is SigV4-signed for the service `berth-agent` (the admin
//! key today; per-host agent keys can come later). Bodies and answers are
//! plain JSON (`application/json`).
//!
//! ```text
//! POST /agent/v1/register                     HostRegistration → HostRegistered
//! POST /agent/v1/hosts/{hostId}/heartbeat     Heartbeat → {}
//! GET  /agent/v1/hosts/{hostId}/assignments?after=REV&waitSeconds=N
//!                                             → Assignments (long poll)
//! POST /agent/v1/tasks/{taskId}/state[?hostId=H]
//!                                             TaskStateReport → {}
//! POST /agent/v1/tasks/{taskId}/logs          LogBatch → {}
//! ```
//!
//! * **Long poll.** `after` (default 0) is the `revision` of the agent's last
//!   answer. The server answers at once when the host's desired state changed
//!   after it (or `after` is 0), else as soon as it changes, else after
//!   `waitSeconds` (default 25, at most 60) with the current state.
//! * **hostId on reports** (optional): when present, a report about a task
//!   placed on another host is refused with 409 `TaskNotAssigned`.
//! * **Bodies** are at most 1 MiB (`MAX_BODY_BYTES`): agents send logs in
//!   batches below that.
//!
//! Errors are `{"__type": NAME, "message": TEXT}`, mapped in [`wire`] only:
//!
//! | status | `__type` | when |
//! |---|---|---|
//! | 400 | `SerializationException` | the body is not the JSON the route takes |
//! | 400 | `InvalidParameterException` | a value is invalid (bad status, bad container name, bad query) |
//! | 404 | `HostNotFound` | the host id is not registered: register again |
//! | 404 | `TaskNotFound` | the task id does not exist |
//! | 404 | `UnknownOperationException` | no such route |
//! | 405 | `MethodNotAllowed` | the route exists with another method |
//! | 409 | `TaskNotAssigned` | `hostId` names another host than the task's |
//! | 503 | `ServiceUnavailable` | too many concurrent writers; retry |
//! | 500 | `ServerException` | the state store or the disk failed |

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use berth_control::ecs::agent::{DEFAULT_WAIT, MAX_WAIT};
use berth_control::logs::LogError;
use berth_control::EcsError;
use berth_core::agent::{Heartbeat, HostRegistration, LogBatch, TaskStateReport};
use berth_core::Timestamp;
use http::{HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::server::ApiState;

pub use berth_core::agent::{PREFIX, SIGNING_NAME};

/// One route of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRoute {
    /// `POST /agent/v1/register`
    Register,
    /// `POST /agent/v1/hosts/{hostId}/heartbeat`
    Heartbeat(String),
    /// `GET /agent/v1/hosts/{hostId}/assignments`
    Assignments(String),
    /// `POST /agent/v1/tasks/{taskId}/state`
    State(String),
    /// `POST /agent/v1/tasks/{taskId}/logs`
    Logs(String),
}

impl AgentRoute {
    fn method(&self) -> Method {
        match self {
            Self::Assignments(_) => Method::GET,
            _ => Method::POST,
        }
    }
}

/// Why a request could not be served, before it reaches the control plane.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// no route has this path
    #[error("{0} is not a route of the agent protocol ({PREFIX}/register, {PREFIX}/hosts/ID/heartbeat, {PREFIX}/hosts/ID/assignments, {PREFIX}/tasks/ID/state, {PREFIX}/tasks/ID/logs)")]
    UnknownRoute(String),
    /// the route takes another method
    #[error("{path} takes {expected}, not {got}")]
    WrongMethod {
        /// The path.
        path: String,
        /// The method it takes.
        expected: Method,
        /// The method sent.
        got: Method,
    },
    /// the body is not the route's JSON
    #[error("the request body is not valid: {0}")]
    Serialization(String),
    /// a query parameter is invalid
    #[error("{0}")]
    Query(String),
    /// the control plane refused or failed
    #[error(transparent)]
    Control(#[from] EcsError),
    /// the log sink refused or failed
    #[error(transparent)]
    Logs(#[from] LogError),
}

/// The status and `__type` of a failure: the one place the protocol's wire
/// errors are chosen.
pub fn wire(e: &AgentError) -> (StatusCode, &'static str) {
    match e {
        AgentError::UnknownRoute(_) => (StatusCode::NOT_FOUND, "UnknownOperationException"),
        AgentError::WrongMethod { .. } => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        AgentError::Serialization(_) => (StatusCode::BAD_REQUEST, "SerializationException"),
        AgentError::Query(_) => (StatusCode::BAD_REQUEST, "InvalidParameterException"),
        AgentError::Control(c) => match c {
            EcsError::HostNotFound(_) => (StatusCode::NOT_FOUND, "HostNotFound"),
            EcsError::TaskNotFound(_) => (StatusCode::NOT_FOUND, "TaskNotFound"),
            EcsError::NotAssigned { .. } => (StatusCode::CONFLICT, "TaskNotAssigned"),
            EcsError::Contention(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            EcsError::Validation(_)
            | EcsError::ClusterNotFound(_)
            | EcsError::ResourceNotFound(_)
            | EcsError::Conflict { .. }
            | EcsError::ClusterContainsTasks(_)
            | EcsError::ClusterContainsServices(_)
            | EcsError::ServiceNotFound(_)
            | EcsError::ServiceNotActive(_) => {
                (StatusCode::BAD_REQUEST, "InvalidParameterException")
            }
            EcsError::Store(_) | EcsError::Corrupt { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "ServerException")
            }
        },
        AgentError::Logs(l) => match l {
            LogError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "ServerException"),
            _ => (StatusCode::BAD_REQUEST, "InvalidParameterException"),
        },
    }
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON error answer.
pub(crate) fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut r = json_response(status, &json!({"__type": kind, "message": message}));
    if let Ok(v) = HeaderValue::from_str(kind) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}

/// Splits a path under [`PREFIX`] into a route.
pub fn route(method: &Method, path: &str) -> Result<AgentRoute, AgentError> {
    let unknown = || AgentError::UnknownRoute(path.to_string());
    let rest = path.strip_prefix(PREFIX).ok_or_else(unknown)?;
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let ok_id = |s: &str| !s.is_empty() && s.len() <= 128;
    let r = match parts.as_slice() {
        ["register"] => AgentRoute::Register,
        ["hosts", id, "heartbeat"] if ok_id(id) => AgentRoute::Heartbeat((*id).to_string()),
        ["hosts", id, "assignments"] if ok_id(id) => AgentRoute::Assignments((*id).to_string()),
        ["tasks", id, "state"] if ok_id(id) => AgentRoute::State((*id).to_string()),
        ["tasks", id, "logs"] if ok_id(id) => AgentRoute::Logs((*id).to_string()),
        _ => return Err(unknown()),
    };
    if *method != r.method() {
        return Err(AgentError::WrongMethod {
            path: path.to_string(),
            expected: r.method(),
            got: method.clone(),
        });
    }
    Ok(r)
}

fn body<T: DeserializeOwned>(raw: &[u8], empty: Option<T>) -> Result<T, AgentError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        if let Some(v) = empty {
            return Ok(v);
        }
    }
    serde_json::from_slice(raw).map_err(|e| AgentError::Serialization(e.to_string()))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `name=value` pairs of a query string.
pub(crate) fn query_params(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The value of one query parameter.
pub(crate) fn query_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn number(params: &[(String, String)], name: &str) -> Result<Option<u64>, AgentError> {
    match query_param(params, name) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            AgentError::Query(format!("{name} {v:?} is not a non-negative whole number"))
        }),
    }
}

/// Serves one authenticated agent request.
pub async fn handle(
    state: &Arc<ApiState>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    raw: &[u8],
    now: Timestamp,
) -> Response {
    match serve(state, method, path, query, raw, now).await {
        Ok(r) => r,
        Err(e) => {
            let (status, kind) = wire(&e);
            if status.is_server_error() {
                tracing::error!(path, error = %e, "agent request failed");
            } else {
                tracing::debug!(path, error = %e, "agent request refused");
            }
            error_response(status, kind, &e.to_string())
        }
    }
}

async fn serve(
    state: &Arc<ApiState>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    raw: &[u8],
    now: Timestamp,
) -> Result<Response, AgentError> {
    let params = query_params(query);
    match route(method, path)? {
        AgentRoute::Register => {
            let reg: HostRegistration = body(raw, None)?;
            let out = state.ecs.register_host(reg, &*state.ids, now).await?;
            tracing::info!(host = %out.host_id, subnet = %out.subnet, "host registered");
            ok(&out)
        }
        AgentRoute::Heartbeat(host) => {
            // Lenient: `{}` (no runningTasks) is a heartbeat too.
            let hb: LenientHeartbeat = body(raw, Some(LenientHeartbeat::default()))?;
            let hb = Heartbeat {
                running_tasks: hb.running_tasks,
            };
            state.ecs.heartbeat(&host, hb, now).await?;
            ok(&json!({}))
        }
        AgentRoute::Assignments(host) => {
            let after = number(&params, "after")?.unwrap_or(0);
            let wait = match number(&params, "waitSeconds")? {
                Some(s) => Duration::from_secs(s).min(MAX_WAIT),
                None => DEFAULT_WAIT,
            };
            let out = state.ecs.wait_assignments(&host, after, wait).await?;
            ok(&out)
        }
        AgentRoute::State(task) => {
            let report: TaskStateReport = body(raw, None)?;
            let host = query_param(&params, "hostId").filter(|h| !h.is_empty());
            state.ecs.report_state(host, &task, &report, now).await?;
            ok(&json!({}))
        }
        AgentRoute::Logs(task) => {
            let batch: LogBatch = body(raw, None)?;
            state.ecs.task_by_id(&task).await?;
            let logs = state.logs.clone();
            tokio::task::spawn_blocking(move || logs.append(&task, &batch))
                .await
                .map_err(|e| {
                    AgentError::Logs(LogError::Io {
                        path: "logs".into(),
                        source: std::io::Error::other(e.to_string()),
                    })
                })??;
            ok(&json!({}))
        }
    }
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LenientHeartbeat {
    #[serde(default)]
    running_tasks: Vec<String>,
}

fn ok<T: Serialize>(v: &T) -> Result<Response, AgentError> {
    Ok(json_response(StatusCode::OK, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let post = Method::POST;
        assert_eq!(
            route(&post, "/agent/v1/register").unwrap(),
            AgentRoute::Register
        );
        assert_eq!(
            route(&Method::GET, "/agent/v1/hosts/h1/assignments").unwrap(),
            AgentRoute::Assignments("h1".into())
        );
        assert_eq!(
            route(&post, "/agent/v1/tasks/t/state").unwrap(),
            AgentRoute::State("t".into())
        );
        assert!(matches!(
            route(&post, "/agent/v1/hosts/h1/assignments"),
            Err(AgentError::WrongMethod { .. })
        ));
        assert!(matches!(
            route(&post, "/agent/v1/hosts//heartbeat"),
            Err(AgentError::UnknownRoute(_))
        ));
        assert!(matches!(
            route(&post, "/agent/v1/nope"),
            Err(AgentError::UnknownRoute(_))
        ));
    }

    #[test]
    fn queries_decode() {
        let p = query_params(Some("after=12&waitSeconds=3&hostId=a%2Fb&x=%zz&c=a+b"));
        assert_eq!(query_param(&p, "after"), Some("12"));
        assert_eq!(query_param(&p, "hostId"), Some("a/b"));
        assert_eq!(query_param(&p, "x"), Some("%zz"));
        assert_eq!(query_param(&p, "c"), Some("a b"));
        assert!(number(&p, "x").is_err());
        assert_eq!(number(&p, "after").unwrap(), Some(12));
        assert_eq!(number(&p, "none").unwrap(), None);
    }
}
