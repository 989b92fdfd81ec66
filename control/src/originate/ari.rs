//! Asterisk ARI originator: `POST {url}/ari/channels` with the call's id as
//! the channel id, into a dialplan context that connects the answered
//! channel to voxbridge by AudioSocket (or, with `app` set, into a Stasis
//! application that does so itself). The requests follow Asterisk's ARI
//! reference for `POST /channels` (query parameters `endpoint`,
//! `extension`, `context`, `priority`, `app`, `appArgs`, `callerId`,
//! `timeout`, `channelId`; JSON body `{"variables": {...}}`) and
//! `DELETE /channels/{channelId}`, with HTTP basic authentication.
//!
//! The dialplan the default settings expect:
//!
//! ```text
//! [voxbridge-outbound]
//! exten => s,1,Answer()
//!  same => n,AudioSocket(${VOXBRIDGE_CALL_ID},${VOXBRIDGE_AUDIOSOCKET})
//!  same => n,Hangup()
//! ```
//!
//! Busy and no-answer are not reported back (that needs ARI's event
//! WebSocket, not built): a call Asterisk gives up on never connects its
//! media and is ended `noanswer` by the ring timeout.

use super::{DialOutcome, DialRequest, Originator};
use crate::error::{ControlError, Result};
use async_trait::async_trait;
use serde::Deserialize;
use std::time::Duration;

/// `[control.originate.ari]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AriConfig {
    /// ARI base URL (`http://asterisk:8088`; `/ari/...` is appended).
    pub url: String,
    /// ARI user.
    pub username: String,
    /// ARI password.
    pub password: crate::secret::Secret,
    /// Endpoint to dial; `{destination}` is replaced by the target.
    pub endpoint: String,
    /// Dialplan context for the answered channel (unless `app` is set).
    pub context: String,
    /// Extension in `context`.
    pub extension: String,
    /// Priority in `context`.
    pub priority: u32,
    /// A Stasis application instead of the dialplan (gets the call id as `appArgs`).
    pub app: Option<String>,
    /// Seconds Asterisk rings before giving up.
    pub timeout_s: u32,
    /// Address Asterisk connects its AudioSocket to, where the route's
    /// listener address is not reachable from Asterisk.
    pub audiosocket_override: Option<String>,
}

impl Default for AriConfig {
    fn default() -> Self {
        AriConfig {
            url: "http://127.0.0.1:8088".into(),
            username: "voxbridge".into(),
            password: crate::secret::Secret::new(""),
            endpoint: "PJSIP/{destination}@trunk".into(),
            context: "voxbridge-outbound".into(),
            extension: "s".into(),
            priority: 1,
            app: None,
            timeout_s: 30,
            audiosocket_override: None,
        }
    }
}

/// Places calls through ARI.
#[derive(Debug)]
pub struct AriOriginator {
    cfg: AriConfig,
    client: reqwest::Client,
}

impl AriOriginator {
    /// Checks the URL and builds the HTTP client.
    pub fn new(cfg: &AriConfig) -> Result<Self> {
        reqwest::Url::parse(&cfg.url)
            .map_err(|e| ControlError::Config(format!("[control.originate.ari] url {:?}: {e}", cfg.url)))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ControlError::Config(format!("ARI client: {e}")))?;
        Ok(AriOriginator {
            cfg: cfg.clone(),
            client,
        })
    }

    fn base(&self) -> String {
        format!("{}/ari/channels", self.cfg.url.trim_end_matches('/'))
    }

    /// The query of `POST /ari/channels` for `req`, in the order sent.
    pub fn originate_query(&self, req: &DialRequest) -> Vec<(&'static str, String)> {
        let c = &self.cfg;
        let mut q = vec![("endpoint", c.endpoint.replace("{destination}", &req.destination))];
        match &c.app {
            Some(app) => {
                q.push(("app", app.clone()));
                q.push(("appArgs", req.call_id.clone()));
            }
            None => {
                q.push(("extension", c.extension.clone()));
                q.push(("context", c.context.clone()));
                q.push(("priority", c.priority.to_string()));
            }
        }
        if !req.source.is_empty() {
            q.push(("callerId", req.source.clone()));
        }
        q.push(("timeout", c.timeout_s.to_string()));
        q.push(("channelId", req.call_id.clone()));
        q
    }

    /// The JSON body: the channel variables the dialplan reads.
    pub fn originate_body(&self, req: &DialRequest) -> serde_json::Value {
        let mut vars = serde_json::Map::new();
        vars.insert("VOXBRIDGE_CALL_ID".into(), req.call_id.clone().into());
        let media = self
            .cfg
            .audiosocket_override
            .clone()
            .or_else(|| req.audiosocket.map(|a| a.to_string()))
            .unwrap_or_default();
        vars.insert("VOXBRIDGE_AUDIOSOCKET".into(), media.into());
        vars.insert("VOXBRIDGE_ROUTE".into(), req.route.clone().into());
        for (k, v) in &req.vars {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            // Channel variable names: letters, digits and underscores.
            let name: String = k
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            vars.insert(format!("VOXBRIDGE_VAR_{name}"), v.into());
        }
        serde_json::json!({ "variables": vars })
    }
}

#[async_trait]
impl Originator for AriOriginator {
    fn name(&self) -> &'static str {
        "ari"
    }

    async fn originate(&self, req: &DialRequest) -> DialOutcome {
        let r = self
            .client
            .post(self.base())
            .basic_auth(&self.cfg.username, Some(self.cfg.password.expose()))
            .query(&self.originate_query(req))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.originate_body(req).to_string())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => DialOutcome::Accepted,
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let body: String = body.chars().take(200).collect();
                DialOutcome::Failed(format!("ARI answered {status}: {body}"))
            }
            Err(e) => DialOutcome::Failed(format!("ARI request: {e}")),
        }
    }

    async fn cancel(&self, call_id: &str) {
        let url = format!("{}/{call_id}", self.base());
        let r = self
            .client
            .delete(url)
            .basic_auth(&self.cfg.username, Some(self.cfg.password.expose()))
            .query(&[("reason", "normal")])
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() || resp.status() == reqwest::StatusCode::NOT_FOUND => {}
            Ok(resp) => tracing::warn!(call_id, status = %resp.status(), "ARI hangup refused"),
            Err(e) => tracing::warn!(call_id, error = %e, "ARI hangup failed"),
        }
    }
}
