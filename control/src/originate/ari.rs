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
//! In this mode busy and no-answer are not reported back: a call Asterisk
//! gives up on never connects its media and is ended `noanswer` by the
//! ring timeout. With `media = "websocket"` the media goes over Asterisk's
//! WebSocket channel instead, with no dialplan, and ARI's events report
//! busy and no-answer (see [`super::ari_media`]).

use super::ari_media::AriMedia;
use super::{DialOutcome, DialRequest, Originator};
use crate::error::{ControlError, Result};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use voxbridge_contract::commands::CallCommands;

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
    /// How the answered callee's audio reaches voxbridge: `audiosocket`
    /// (the dialplan or the Stasis application connects it) or `websocket`
    /// (voxbridge bridges the callee with an `externalMedia` WebSocket
    /// channel in server mode and connects to it; needs ARI events and
    /// the media plane in this process).
    pub media: AriMediaKind,
    /// Base of Asterisk's media WebSocket URL (`ws://asterisk:8088`;
    /// default: `url` with `http` -> `ws`, `https` -> `wss`).
    pub media_url: Option<String>,
    /// `externalMedia` format (`slin16`, `ulaw`, `alaw`, `slin`, `slin24`, `slin48`).
    pub format: String,
}

/// `[control.originate.ari] media`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AriMediaKind {
    /// AudioSocket, connected by the dialplan or the Stasis application.
    #[default]
    Audiosocket,
    /// Asterisk's WebSocket channel, server mode, dialled by voxbridge.
    Websocket,
}

impl AriConfig {
    /// The Stasis application (`app`, else `voxbridge`).
    pub fn app_name(&self) -> &str {
        self.app.as_deref().unwrap_or("voxbridge")
    }
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
            media: AriMediaKind::Audiosocket,
            media_url: None,
            format: "slin16".into(),
        }
    }
}

/// Places calls through ARI.
#[derive(Debug)]
pub struct AriOriginator {
    rest: AriRest,
    media: Option<Arc<AriMedia>>,
}

impl std::fmt::Debug for AriMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AriMedia")
    }
}

/// ARI's REST requests, as Asterisk documents them.
#[derive(Debug, Clone)]
pub(crate) struct AriRest {
    pub(crate) cfg: AriConfig,
    client: reqwest::Client,
}

const FORMATS: [&str; 6] = ["ulaw", "alaw", "slin", "slin16", "slin24", "slin48"];

impl AriOriginator {
    /// Checks the URL and builds the HTTP client.
    pub fn new(cfg: &AriConfig) -> Result<Self> {
        let bad = |what: String| ControlError::Config(format!("[control.originate.ari] {what}"));
        reqwest::Url::parse(&cfg.url).map_err(|e| bad(format!("url {:?}: {e}", cfg.url)))?;
        if let Some(m) = &cfg.media_url {
            if !(m.starts_with("ws://") || m.starts_with("wss://")) {
                return Err(bad(format!("media_url {m:?}: use ws:// or wss://")));
            }
        }
        if !FORMATS.contains(&cfg.format.as_str()) {
            return Err(bad(format!("format {:?}: use one of {FORMATS:?}", cfg.format)));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ControlError::Config(format!("ARI client: {e}")))?;
        let rest = AriRest {
            cfg: cfg.clone(),
            client,
        };
        if cfg.media == AriMediaKind::Websocket {
            rest.events_request().map_err(bad)?;
        }
        let media = (cfg.media == AriMediaKind::Websocket).then(|| AriMedia::new(rest.clone()));
        Ok(AriOriginator { rest, media })
    }

    /// The query of `POST /ari/channels` for `req`, in the order sent.
    pub fn originate_query(&self, req: &DialRequest) -> Vec<(&'static str, String)> {
        self.rest.originate_query(req)
    }

    /// The JSON body: the channel variables the dialplan reads.
    pub fn originate_body(&self, req: &DialRequest) -> serde_json::Value {
        self.rest.originate_body(req)
    }
}

impl AriRest {
    fn base(&self) -> String {
        self.cfg.url.trim_end_matches('/').to_owned()
    }

    fn channels(&self) -> String {
        format!("{}/ari/channels", self.base())
    }

    /// `ws(s)://host:port`, where `/media/<connection id>` is served.
    pub(crate) fn media_base(&self) -> String {
        match &self.cfg.media_url {
            Some(m) => m.trim_end_matches('/').to_owned(),
            None => {
                let b = self.base();
                match b.strip_prefix("https://") {
                    Some(rest) => format!("wss://{rest}"),
                    None => format!("ws://{}", b.strip_prefix("http://").unwrap_or(&b)),
                }
            }
        }
    }

    /// The events WebSocket of the application. The credentials go in an
    /// `Authorization: Basic` header ([`Self::events_request`]), never in
    /// the URL, where proxies and access logs would keep them.
    pub(crate) fn events_url(&self) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("app", self.cfg.app_name())
            .finish();
        format!("{}/ari/events?{query}", self.media_base())
    }

    /// The events WebSocket's upgrade request, with the ARI user's HTTP
    /// Basic credentials (res_ari checks them before `api_key`).
    pub(crate) fn events_request(
        &self,
    ) -> std::result::Result<tokio_tungstenite::tungstenite::handshake::client::Request, String> {
        use base64::Engine as _;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut req = self
            .events_url()
            .into_client_request()
            .map_err(|e| format!("ARI events URL: {e}"))?;
        let pair = format!("{}:{}", self.cfg.username, self.cfg.password.expose());
        let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
        let value = value
            .parse()
            .map_err(|_| "ARI credentials do not fit an HTTP header".to_owned())?;
        req.headers_mut().insert("authorization", value);
        Ok(req)
    }

    /// The query of `POST /ari/channels` for `req`, in the order sent.
    pub(crate) fn originate_query(&self, req: &DialRequest) -> Vec<(&'static str, String)> {
        let c = &self.cfg;
        let mut q = vec![("endpoint", c.endpoint.replace("{destination}", &req.destination))];
        match (&c.app, c.media) {
            (_, AriMediaKind::Websocket) | (Some(_), _) => {
                q.push(("app", c.app_name().to_owned()));
                q.push(("appArgs", req.call_id.clone()));
            }
            (None, AriMediaKind::Audiosocket) => {
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
    pub(crate) fn originate_body(&self, req: &DialRequest) -> serde_json::Value {
        let mut vars = serde_json::Map::new();
        vars.insert("VOXBRIDGE_CALL_ID".into(), req.call_id.clone().into());
        if self.cfg.media == AriMediaKind::Audiosocket {
            let media = self
                .cfg
                .audiosocket_override
                .clone()
                .or_else(|| req.audiosocket.map(|a| a.to_string()))
                .unwrap_or_default();
            vars.insert("VOXBRIDGE_AUDIOSOCKET".into(), media.into());
        }
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

    /// A request with the ARI credentials; `Ok(body)` on a 2xx answer.
    async fn send(&self, rb: reqwest::RequestBuilder, what: &str) -> std::result::Result<String, String> {
        let r = rb
            .basic_auth(&self.cfg.username, Some(self.cfg.password.expose()))
            .send()
            .await
            .map_err(|e| format!("ARI {what}: {e}"))?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            let body: String = body.chars().take(200).collect();
            Err(format!("ARI {what} answered {status}: {body}"))
        }
    }

    /// `POST /ari/channels`.
    pub(crate) async fn originate(&self, req: &DialRequest) -> std::result::Result<(), String> {
        let rb = self
            .client
            .post(self.channels())
            .query(&self.originate_query(req))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.originate_body(req).to_string());
        self.send(rb, "originate").await.map(drop)
    }

    /// `POST /ari/bridges?type=mixing&bridgeId=<id>`.
    pub(crate) async fn create_bridge(&self, id: &str) -> std::result::Result<(), String> {
        let rb = self.client.post(format!("{}/ari/bridges", self.base())).query(&[
            ("type", "mixing"),
            ("bridgeId", id),
            ("name", &format!("voxbridge-{id}")),
        ]);
        self.send(rb, "bridge").await.map(drop)
    }

    /// `POST /ari/channels/externalMedia` (WebSocket, server mode); the
    /// channel's `MEDIA_WEBSOCKET_CONNECTION_ID`.
    pub(crate) async fn external_media(
        &self,
        call_id: &str,
        channel_id: &str,
    ) -> std::result::Result<String, String> {
        let rb = self
            .client
            .post(format!("{}/externalMedia", self.channels()))
            .query(&[
                ("app", self.cfg.app_name()),
                ("channelId", channel_id),
                ("external_host", "INCOMING"),
                ("transport", "websocket"),
                ("encapsulation", "none"),
                ("connection_type", "server"),
                ("format", &self.cfg.format),
                ("direction", "both"),
            ])
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({"variables": {"VOXBRIDGE_CALL_ID": call_id}}).to_string());
        let body = self.send(rb, "externalMedia").await?;
        super::ari_media::connection_id_of(&body)
    }

    /// `POST /ari/bridges/<id>/addChannel?channel=a,b`.
    pub(crate) async fn add_to_bridge(&self, id: &str, channels: &[&str]) -> std::result::Result<(), String> {
        let rb = self
            .client
            .post(format!("{}/ari/bridges/{id}/addChannel", self.base()))
            .query(&[("channel", channels.join(","))]);
        self.send(rb, "addChannel").await.map(drop)
    }

    /// `GET /ari/channels`: the ids of the channels that exist now.
    pub(crate) async fn channel_ids(&self) -> std::result::Result<std::collections::HashSet<String>, String> {
        let body = self
            .send(self.client.get(self.channels()), "channel list")
            .await?;
        super::ari_media::channel_ids_of(&body)
    }

    /// `DELETE /ari/channels/<id>` (gone already is fine).
    pub(crate) async fn delete_channel(&self, id: &str) {
        let rb = self
            .client
            .delete(format!("{}/{id}", self.channels()))
            .query(&[("reason", "normal")]);
        if let Err(e) = self.send(rb, "hangup").await {
            if !e.contains("404") {
                tracing::warn!(channel = id, error = %e, "ARI hangup failed");
            }
        }
    }

    /// `DELETE /ari/bridges/<id>` (gone already is fine).
    pub(crate) async fn delete_bridge(&self, id: &str) {
        let rb = self.client.delete(format!("{}/ari/bridges/{id}", self.base()));
        if let Err(e) = self.send(rb, "bridge removal").await {
            if !e.contains("404") {
                tracing::warn!(bridge = id, error = %e, "ARI bridge removal failed");
            }
        }
    }
}

#[async_trait]
impl Originator for AriOriginator {
    fn name(&self) -> &'static str {
        "ari"
    }

    fn needs_audiosocket(&self) -> bool {
        self.media.is_none()
    }

    fn ingress(&self) -> &'static str {
        match self.media {
            Some(_) => "chanws",
            None => "audiosocket",
        }
    }

    fn attach_media(&self, media: Arc<dyn CallCommands>) {
        if let Some(m) = &self.media {
            m.attach_media(media);
        }
    }

    async fn originate(&self, req: &DialRequest) -> DialOutcome {
        if let Some(m) = &self.media {
            return m.originate(req).await;
        }
        match self.rest.originate(req).await {
            Ok(()) => DialOutcome::Accepted,
            Err(e) => DialOutcome::Failed(e),
        }
    }

    async fn cancel(&self, call_id: &str) {
        match &self.media {
            Some(m) => m.tear_down(call_id).await,
            None => self.rest.delete_channel(call_id).await,
        }
    }
}
