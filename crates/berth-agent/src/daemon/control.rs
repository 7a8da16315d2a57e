//! The agent's side of the agent protocol: SigV4-signed JSON over HTTP.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_core::agent::{
    Assignments, Heartbeat, HostRegistered, HostRegistration, LogBatch, TaskStateReport, PREFIX,
    SIGNING_NAME,
};
use http::{HeaderMap, HeaderValue, Method};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A failed call to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// the server could not be reached or the connection broke
    #[error("control plane {endpoint} unreachable: {reason}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// the server refused the request
    #[error("control plane refused {what}: {status} {kind}: {message}")]
    Refused {
        /// The call.
        what: String,
        /// HTTP status.
        status: u16,
        /// The error's `__type`.
        kind: String,
        /// Its message.
        message: String,
    },
}

impl ControlError {
    /// Whether the server does not know this host (re-register).
    pub fn host_unknown(&self) -> bool {
        matches!(self, Self::Refused { status: 404, kind, .. } if kind == "HostNotFound")
    }

    /// Whether retrying cannot help (a 4xx other than 404 HostNotFound / 429).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Refused { status, .. } if (400..500).contains(status) && *status != 429 && !self.host_unknown())
    }
}

/// Credentials and address of the control plane.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// e.g. `http://127.0.0.1:7480`.
    pub endpoint: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret.
    pub secret_access_key: String,
    /// Region of the credential scope.
    pub region: String,
}

/// A client of the agent protocol.
#[derive(Clone)]
pub struct ControlClient {
    cfg: ControlConfig,
    http: reqwest::Client,
    host: String,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ControlClient {
    /// A client for `cfg`.
    pub fn new(cfg: ControlConfig) -> Result<Self, ControlError> {
        let unreachable = |reason: String| ControlError::Unreachable {
            endpoint: cfg.endpoint.clone(),
            reason,
        };
        let url: reqwest::Url = cfg
            .endpoint
            .parse()
            .map_err(|e| unreachable(format!("bad endpoint: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(unreachable("the endpoint has no host".into())),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self { cfg, http, host })
    }

    /// The control plane's `host:port` (its registry is there too).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The configuration.
    pub fn config(&self) -> &ControlConfig {
        &self.cfg
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ControlError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).unwrap_or_default(),
            None => Vec::new(),
        };
        let mut headers = HeaderMap::new();
        if let Ok(h) = HeaderValue::from_str(&self.host) {
            headers.insert(http::header::HOST, h);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        berth_sigv4::sign(
            method.as_str(),
            path,
            query,
            &mut headers,
            &bytes,
            &self.cfg.access_key_id,
            &self.cfg.secret_access_key,
            &self.cfg.region,
            SIGNING_NAME,
            now_secs(),
        );
        let url = match query {
            Some(q) => format!("{}{path}?{q}", self.cfg.endpoint.trim_end_matches('/')),
            None => format!("{}{path}", self.cfg.endpoint.trim_end_matches('/')),
        };
        let mut req = self.http.request(method, &url).timeout(timeout).body(bytes);
        for (k, v) in &headers {
            if k != http::header::HOST {
                req = req.header(k, v);
            }
        }
        let resp = req.send().await.map_err(|e| ControlError::Unreachable {
            endpoint: self.cfg.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp.bytes().await.map_err(|e| ControlError::Unreachable {
            endpoint: self.cfg.endpoint.clone(),
            reason: e.to_string(),
        })?;
        if !(200..300).contains(&status) {
            let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            return Err(ControlError::Refused {
                what: path.to_string(),
                status,
                kind: v["__type"].as_str().unwrap_or("").to_string(),
                message: v["message"]
                    .as_str()
                    .unwrap_or_else(|| std::str::from_utf8(&text).unwrap_or(""))
                    .to_string(),
            });
        }
        let text = if text.is_empty() {
            &b"{}"[..]
        } else {
            &text[..]
        };
        serde_json::from_slice(text).map_err(|e| ControlError::Refused {
            what: path.to_string(),
            status,
            kind: "BadResponse".into(),
            message: e.to_string(),
        })
    }

    /// Registers (or re-registers) the host.
    pub async fn register(&self, r: &HostRegistration) -> Result<HostRegistered, ControlError> {
        self.call(
            Method::POST,
            &format!("{PREFIX}/register"),
            None,
            Some(r),
            Duration::from_secs(15),
        )
        .await
    }

    /// Heartbeats.
    pub async fn heartbeat(&self, host: &str, hb: &Heartbeat) -> Result<(), ControlError> {
        let _: serde_json::Value = self
            .call(
                Method::POST,
                &format!("{PREFIX}/hosts/{host}/heartbeat"),
                None,
                Some(hb),
                Duration::from_secs(15),
            )
            .await?;
        Ok(())
    }

    /// Long-polls the host's assignments changed after `after`.
    pub async fn assignments(
        &self,
        host: &str,
        after: u64,
        wait: u64,
    ) -> Result<Assignments, ControlError> {
        let q = format!("after={after}&waitSeconds={wait}");
        self.call::<(), _>(
            Method::GET,
            &format!("{PREFIX}/hosts/{host}/assignments"),
            Some(&q),
            None,
            Duration::from_secs(wait + 15),
        )
        .await
    }

    /// Reports a task's state, as the host `host_id` (the control plane
    /// refuses a report for a task placed on another host).
    pub async fn report(
        &self,
        host_id: &str,
        task_id: &str,
        r: &TaskStateReport,
    ) -> Result<(), ControlError> {
        let q = format!("hostId={host_id}");
        let _: serde_json::Value = self
            .call(
                Method::POST,
                &format!("{PREFIX}/tasks/{task_id}/state"),
                Some(&q),
                Some(r),
                Duration::from_secs(15),
            )
            .await?;
        Ok(())
    }

    /// Ships log lines.
    pub async fn logs(&self, task_id: &str, b: &LogBatch) -> Result<(), ControlError> {
        let _: serde_json::Value = self
            .call(
                Method::POST,
                &format!("{PREFIX}/tasks/{task_id}/logs"),
                None,
                Some(b),
                Duration::from_secs(15),
            )
            .await?;
        Ok(())
    }
}
