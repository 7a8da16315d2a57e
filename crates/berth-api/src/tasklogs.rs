//! Berth's own read API for task output, used by `berth logs`:
//!
//! ```text
//! GET /berth/v1/tasks/{taskId}/logs?container=NAME&since=SECONDS&follow=true
//! ```
//!
//! SigV4-signed for the service `ecs` (the same credentials as the ECS API).
//! The answer is `200` with `Content-Type: application/x-ndjson`: one JSON
//! object per line, oldest first, merged across containers by timestamp:
//!
//! ```text
//! {"seq":1,"container":"app","stream":"stdout","timestamp":1700000000.123,"message":"hello"}
//! ```
//!
//! * `container`: only this container's lines (default: all of the task's).
//! * `since`: only lines read at or after this instant, in (fractional)
//!   seconds since the epoch, as ECS timestamps are written.
//! * `follow=true`: the response stays open and new lines are streamed as
//!   agents send them, until the task is STOPPED and every line is drained,
//!   or for at most 10 minutes ([`FOLLOW_LIMIT`]); then the body ends.
//!
//! An unknown task is `404` `TaskNotFound`; a malformed parameter `400`
//! `InvalidParameterException` (both `{"__type","message"}`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use berth_control::logs::{LogError, LogQuery, StoredLogEntry};
use berth_core::task::TaskStatus;
use berth_core::Timestamp;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use tokio::sync::mpsc;

use crate::agent::{error_response, query_param, query_params, wire, AgentError};
use crate::server::ApiState;

/// Path prefix of Berth's own API.
pub const PREFIX: &str = "/berth/v1";

/// A follow ends after this long even if the task still runs.
pub const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

/// How often a follow looks for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Lines read per page.
const PAGE: usize = 1000;

/// A response body fed by a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl futures_core::Stream for ChannelBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

fn bad(msg: String) -> Response {
    error_response(StatusCode::BAD_REQUEST, "InvalidParameterException", &msg)
}

fn parse_since(s: &str) -> Option<Timestamp> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let secs: f64 = s.parse().ok()?;
    if !secs.is_finite() || secs > 1e13 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    Some(Timestamp((secs * 1000.0).round() as i64))
}

async fn read(
    state: &Arc<ApiState>,
    task: &str,
    q: &LogQuery,
) -> Result<Vec<StoredLogEntry>, LogError> {
    let logs = state.logs.clone();
    let (task, q) = (task.to_string(), q.clone());
    tokio::task::spawn_blocking(move || logs.read(&task, &q))
        .await
        .map_err(|e| LogError::Io {
            path: "logs".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Serves one authenticated request under [`PREFIX`].
pub async fn handle(
    state: &Arc<ApiState>,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response {
    let parts: Vec<&str> = path
        .strip_prefix(PREFIX)
        .unwrap_or("")
        .trim_start_matches('/')
        .split('/')
        .collect();
    let task = match parts.as_slice() {
        ["tasks", id, "logs"] if !id.is_empty() => (*id).to_string(),
        _ => {
            return error_response(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                &format!("{path} is not a route of the Berth API (GET {PREFIX}/tasks/ID/logs)"),
            )
        }
    };
    if method != Method::GET {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{path} takes GET, not {method}"),
        );
    }
    let params = query_params(query);
    let since = match query_param(&params, "since").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match parse_since(s) {
            Some(t) => Some(t),
            None => {
                return bad(format!(
                    "since {s:?} is not a time in seconds since the epoch (e.g. 1700000000.5)"
                ))
            }
        },
    };
    let follow = match query_param(&params, "follow").unwrap_or("") {
        "" | "false" | "0" => false,
        "true" | "1" => true,
        other => return bad(format!("follow {other:?} is not true or false")),
    };
    let container = query_param(&params, "container")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    if let Err(e) = state.ecs.task_by_id(&task).await {
        let e = AgentError::Control(e);
        let (status, kind) = wire(&e);
        return error_response(status, kind, &e.to_string());
    }
    let q = LogQuery {
        container,
        since,
        after: BTreeMap::new(),
        limit: PAGE,
    };
    // The first page is read here so that a bad parameter is a 400.
    let first = match read(state, &task, &q).await {
        Ok(p) => p,
        Err(e) => {
            let e = AgentError::Logs(e);
            let (status, kind) = wire(&e);
            return error_response(status, kind, &e.to_string());
        }
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(pump(state.clone(), task, q, first, follow, tx));
    let mut r = Response::new(Body::from_stream(ChannelBody(rx)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

/// Streams pages until drained (and, when following, until the task is
/// STOPPED and drained, or the follow limit passes).
async fn pump(
    state: Arc<ApiState>,
    task: String,
    mut q: LogQuery,
    first: Vec<StoredLogEntry>,
    follow: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let deadline = tokio::time::Instant::now() + FOLLOW_LIMIT;
    let mut page = first;
    let mut stopped = false;
    loop {
        if !page.is_empty() {
            let mut buf = Vec::new();
            for e in &page {
                q.after.insert(e.container.clone(), e.seq);
                if serde_json::to_writer(&mut buf, e).is_ok() {
                    buf.push(b'\n');
                }
            }
            if tx.send(Bytes::from(buf)).await.is_err() {
                return; // the client went away
            }
        } else {
            if !follow || stopped || tokio::time::Instant::now() >= deadline {
                return;
            }
            match state.ecs.task_by_id(&task).await {
                Ok((rec, _)) if rec.task.last_status == TaskStatus::Stopped => {
                    // One more look after the agent's last batch had time
                    // to arrive, then the follow ends.
                    stopped = true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(task, error = %e, "log follow ended");
                    return;
                }
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
        page = match read(&state, &task, &q).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(task, error = %e, "log follow ended");
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_epoch_seconds() {
        assert_eq!(
            parse_since("1700000000"),
            Some(Timestamp(1_700_000_000_000))
        );
        assert_eq!(parse_since("1.5"), Some(Timestamp(1500)));
        assert_eq!(parse_since("-1"), None);
        assert_eq!(parse_since("yesterday"), None);
        assert_eq!(parse_since("1e400"), None);
    }
}
