//! The generic HTTP originator: one JSON `POST` per call to an edge that
//! places it and, once answered, connects the call's audio to voxbridge by
//! AudioSocket with the call id as the stream UUID.
//!
//! Request body: `{"call_id", "destination", "source", "route",
//! "audiosocket": "host:port", "attempt", "vars"}`, with
//! `Authorization: Bearer <token>` when a token is set. A 2xx answer
//! accepts the call; its body may say how it ended already:
//! `{"result": "busy" | "no_answer" | "failed"}`. Anything else fails the
//! attempt. `DELETE <url>/<call_id>` cancels an unanswered call.

use super::{DialOutcome, DialRequest, Originator};
use crate::error::{ControlError, Result};
use async_trait::async_trait;
use serde::Deserialize;
use std::time::Duration;

/// `[control.originate.http]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpHookConfig {
    /// Where to `POST`.
    pub url: String,
    /// Sent as a bearer token, if set.
    pub bearer_token: Option<crate::secret::Secret>,
    /// Request timeout, ms.
    pub timeout_ms: u64,
}

impl Default for HttpHookConfig {
    fn default() -> Self {
        HttpHookConfig {
            url: "http://127.0.0.1:8090/originate".into(),
            bearer_token: None,
            timeout_ms: 10_000,
        }
    }
}

/// Places calls through an HTTP hook.
#[derive(Debug)]
pub struct HttpHook {
    cfg: HttpHookConfig,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: Option<String>,
}

impl HttpHook {
    /// Checks the URL and builds the HTTP client.
    pub fn new(cfg: &HttpHookConfig) -> Result<Self> {
        reqwest::Url::parse(&cfg.url)
            .map_err(|e| ControlError::Config(format!("[control.originate.http] url {:?}: {e}", cfg.url)))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(100)))
            .build()
            .map_err(|e| ControlError::Config(format!("HTTP hook client: {e}")))?;
        Ok(HttpHook {
            cfg: cfg.clone(),
            client,
        })
    }

    fn auth(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.bearer_token {
            Some(t) => b.bearer_auth(t.expose()),
            None => b,
        }
    }
}

/// What a 2xx body says (empty or unknown bodies accept the call).
pub fn outcome_of(body: &[u8]) -> DialOutcome {
    let result = serde_json::from_slice::<Answer>(body).ok().and_then(|a| a.result);
    match result.as_deref() {
        Some("busy") => DialOutcome::Busy,
        Some("no_answer") => DialOutcome::NoAnswer,
        Some("failed") => DialOutcome::Failed("the hook reported failure".into()),
        _ => DialOutcome::Accepted,
    }
}

#[async_trait]
impl Originator for HttpHook {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn originate(&self, req: &DialRequest) -> DialOutcome {
        let body = serde_json::json!({
            "call_id": req.call_id,
            "destination": req.destination,
            "source": req.source,
            "route": req.route,
            "audiosocket": req.audiosocket.map(|a| a.to_string()),
            "attempt": req.attempt,
            "vars": req.vars,
        });
        match self
            .auth(self.client.post(&self.cfg.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                Ok(b) => outcome_of(&b),
                Err(e) => DialOutcome::Failed(format!("hook body: {e}")),
            },
            Ok(resp) => DialOutcome::Failed(format!("hook answered {}", resp.status())),
            Err(e) => DialOutcome::Failed(format!("hook request: {e}")),
        }
    }

    async fn cancel(&self, call_id: &str) {
        let url = format!("{}/{call_id}", self.cfg.url.trim_end_matches('/'));
        if let Err(e) = self.auth(self.client.delete(url)).send().await {
            tracing::warn!(call_id, error = %e, "hook cancel failed");
        }
    }
}
