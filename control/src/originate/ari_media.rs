//! ARI with the media over Asterisk's WebSocket channel in server mode
//! (`[control.originate.ari] media = "websocket"`): no AudioSocket, no
//! dialplan.
//!
//! 1. Subscribe to the Stasis application's events (`GET /ari/events`, a
//!    WebSocket kept open and reconnected) before the first call.
//! 2. `POST /ari/channels` with `app`, `channelId` = the call id: the
//!    callee's channel enters the application when it answers
//!    (`StasisStart`), or its dial ends first (a `Dial` event whose
//!    `dialstatus` is `BUSY`, `NOANSWER`, `CONGESTION`, `CHANUNAVAIL` or
//!    `CANCEL`), or it is destroyed (`ChannelDestroyed` with the cause: 17
//!    busy, 16/18/19 no answer, others failed).
//! 3. On answer: a mixing bridge named by the call id, `POST
//!    /ari/channels/externalMedia` with `transport=websocket`,
//!    `encapsulation=none`, `connection_type=server` (its channel
//!    `<call id>-media` carries `MEDIA_WEBSOCKET_CONNECTION_ID`), the media
//!    plane connects to `<media_url>/media/<connection id>` (through
//!    [`CallCommands::dial_asterisk_media`]), which answers that channel
//!    and puts it in the application (its `StasisStart`; before that
//!    Asterisk refuses it in a bridge with 422), then both channels go into
//!    the bridge. Only then is the call `Accepted`; a step that fails tears
//!    down what was built.
//! 4. Either channel destroyed later ends the other and the bridge, so a
//!    callee hangup reaches the bot (Asterisk closes the media WebSocket)
//!    and a bot hangup reaches the callee.
//! 5. Events missed while the events WebSocket was down are made up for
//!    when it reconnects: `GET /ari/channels`, and every bridged call with
//!    a channel gone is torn down like step 4 ([`stale_calls`]).
//!
//! What the events mean is [`AriEvent::parse`], a pure function with
//! known-answer tests; this file's tasks only carry requests and events.

use super::ari::{AriConfig, AriRest};
use super::{DialOutcome, DialRequest};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use voxbridge_contract::commands::{AsteriskMediaDial, CallCommands};

/// The suffix of the media channel's id (`<call id>-media`).
pub const MEDIA_CHANNEL_SUFFIX: &str = "-media";

/// What an ARI event means to an outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AriEvent {
    /// A channel entered the application (an originated callee: answered).
    StasisStart {
        /// `channel.id`.
        channel_id: String,
    },
    /// A dial's progress: `peer.id` is the dialled channel.
    Dial {
        /// `peer.id`.
        peer_id: String,
        /// `dialstatus` (empty while it starts).
        dialstatus: String,
    },
    /// A channel is gone.
    ChannelDestroyed {
        /// `channel.id`.
        channel_id: String,
        /// Q.850 cause.
        cause: i64,
        /// Its text.
        cause_txt: String,
    },
    /// Anything else.
    Other,
}

impl AriEvent {
    /// Reads one event message (`None`: not JSON or not an event).
    pub fn parse(text: &str) -> Option<AriEvent> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let kind = v.get("type")?.as_str()?;
        let channel_id = || {
            v.pointer("/channel/id")
                .and_then(|i| i.as_str())
                .map(str::to_owned)
        };
        Some(match kind {
            "StasisStart" => AriEvent::StasisStart {
                channel_id: channel_id()?,
            },
            "Dial" => AriEvent::Dial {
                peer_id: v.pointer("/peer/id")?.as_str()?.to_owned(),
                dialstatus: v
                    .get("dialstatus")
                    .and_then(|d| d.as_str())
                    .unwrap_or("")
                    .to_owned(),
            },
            "ChannelDestroyed" => AriEvent::ChannelDestroyed {
                channel_id: channel_id()?,
                cause: v.get("cause").and_then(|c| c.as_i64()).unwrap_or(0),
                cause_txt: v
                    .get("cause_txt")
                    .and_then(|c| c.as_str())
                    .unwrap_or("")
                    .to_owned(),
            },
            _ => AriEvent::Other,
        })
    }
}

/// The `MEDIA_WEBSOCKET_CONNECTION_ID` of an `externalMedia` answer (the
/// channel's JSON with `channelvars`): a UUID-like token, since it goes
/// into the media URL's path.
pub fn connection_id_of(body: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("ARI externalMedia answer: {e}"))?;
    v.pointer("/channelvars/MEDIA_WEBSOCKET_CONNECTION_ID")
        .and_then(|c| c.as_str())
        .filter(|c| {
            !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned)
        .ok_or_else(|| "ARI externalMedia answer has no usable MEDIA_WEBSOCKET_CONNECTION_ID".into())
}

/// The ids in a `GET /ari/channels` answer (a JSON array of channels).
pub fn channel_ids_of(body: &str) -> Result<HashSet<String>, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("ARI channel list: {e}"))?;
    let list = v.as_array().ok_or("ARI channel list is not a JSON array")?;
    Ok(list
        .iter()
        .filter_map(|c| c.get("id").and_then(|i| i.as_str()).map(str::to_owned))
        .collect())
}

/// The bridged calls to tear down, given the channels that exist (`live`):
/// a call whose callee channel is gone, or whose media channel is gone once
/// its bridge was complete (while it is being built the media channel may
/// not exist yet). Sorted, for a stable order.
pub fn stale_calls(bridged: &HashMap<String, Bridge>, live: &HashSet<String>) -> Vec<String> {
    let mut stale: Vec<String> = bridged
        .iter()
        .filter(|(call_id, bridge)| {
            !live.contains(call_id.as_str())
                || (**bridge == Bridge::Complete
                    && !live.contains(&format!("{call_id}{MEDIA_CHANNEL_SUFFIX}")))
        })
        .map(|(call_id, _)| call_id.clone())
        .collect();
    stale.sort();
    stale
}

/// How far a bridged call's set-up is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bridge {
    /// Bridge, media channel and media connection are being built.
    Building,
    /// Both channels are in the bridge.
    Complete,
}

/// The dial outcome of a callee destroyed before it answered, by Q.850 cause.
pub fn outcome_of_cause(cause: i64, cause_txt: &str) -> DialOutcome {
    match cause {
        17 => DialOutcome::Busy,
        // No user responding, no answer, and a normal clearing before the
        // answer (the far end gave up ringing).
        16 | 18 | 19 => DialOutcome::NoAnswer,
        _ => DialOutcome::Failed(format!("Asterisk: {cause_txt} (cause {cause})")),
    }
}

/// The outcome a final `dialstatus` means (`None`: still on its way, or answered).
pub fn outcome_of_dialstatus(status: &str) -> Option<DialOutcome> {
    match status {
        "BUSY" => Some(DialOutcome::Busy),
        "NOANSWER" | "CANCEL" => Some(DialOutcome::NoAnswer),
        "CONGESTION" | "CHANUNAVAIL" | "INVALIDARGS" => {
            Some(DialOutcome::Failed(format!("Asterisk dial status {status}")))
        }
        _ => None,
    }
}

/// How the callee's ringing ended.
#[derive(Debug)]
enum Answer {
    Up,
    Gone(DialOutcome),
}

#[derive(Default)]
struct Calls {
    /// Callees ringing, by call id.
    ringing: HashMap<String, oneshot::Sender<Answer>>,
    /// Calls whose bridge is built or standing, by call id.
    bridged: HashMap<String, Bridge>,
}

/// The websocket-media mode of the ARI originator.
pub(crate) struct AriMedia {
    rest: AriRest,
    calls: Mutex<Calls>,
    connected: watch::Sender<bool>,
    events_task: OnceLock<()>,
    media: OnceLock<Arc<dyn CallCommands>>,
}

impl AriMedia {
    pub(crate) fn new(rest: AriRest) -> Arc<Self> {
        Arc::new(AriMedia {
            rest,
            calls: Mutex::default(),
            connected: watch::channel(false).0,
            events_task: OnceLock::new(),
            media: OnceLock::new(),
        })
    }

    fn cfg(&self) -> &AriConfig {
        &self.rest.cfg
    }

    pub(crate) fn attach_media(&self, media: Arc<dyn CallCommands>) {
        let _ = self.media.set(media);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Places the call and waits for the callee (module docs, steps 1-3).
    pub(crate) async fn originate(self: &Arc<Self>, req: &DialRequest) -> DialOutcome {
        let Some(media) = self.media.get().cloned() else {
            return DialOutcome::Failed("no media plane in this process to carry the call".into());
        };
        self.events_task.get_or_init(|| {
            tokio::spawn(events_loop(self.clone()));
        });
        let mut connected = self.connected.subscribe();
        if tokio::time::timeout(Duration::from_secs(5), connected.wait_for(|c| *c))
            .await
            .is_err()
        {
            return DialOutcome::Failed("ARI events WebSocket not connected".into());
        }
        let (tx, rx) = oneshot::channel();
        self.lock().ringing.insert(req.call_id.clone(), tx);
        if let Err(e) = self.rest.originate(req).await {
            self.lock().ringing.remove(&req.call_id);
            return DialOutcome::Failed(e);
        }
        let ring = Duration::from_secs(u64::from(self.cfg().timeout_s) + 10);
        let answer = tokio::time::timeout(ring, rx).await;
        self.lock().ringing.remove(&req.call_id);
        match answer {
            Ok(Ok(Answer::Up)) => match self.connect_media(req, media.as_ref()).await {
                Ok(()) => DialOutcome::Accepted,
                Err(e) => {
                    self.lock().bridged.remove(&req.call_id);
                    self.tear_down(&req.call_id).await;
                    DialOutcome::Failed(e)
                }
            },
            Ok(Ok(Answer::Gone(outcome))) => outcome,
            // The events stream lost the answer or Asterisk never said.
            Ok(Err(_)) | Err(_) => {
                self.rest.delete_channel(&req.call_id).await;
                DialOutcome::NoAnswer
            }
        }
    }

    /// Step 3: bridge, media channel, media plane.
    async fn connect_media(&self, req: &DialRequest, media: &dyn CallCommands) -> Result<(), String> {
        let call_id = &req.call_id;
        let media_channel = format!("{call_id}{MEDIA_CHANNEL_SUFFIX}");
        self.lock().bridged.insert(call_id.clone(), Bridge::Building);
        self.rest.create_bridge(call_id).await?;
        let (up_tx, media_up) = oneshot::channel();
        self.lock().ringing.insert(media_channel.clone(), up_tx);
        let connected = self
            .connect_media_channel(req, &media_channel, media, media_up)
            .await;
        self.lock().ringing.remove(&media_channel);
        connected?;
        self.rest
            .add_to_bridge(call_id, &[call_id, &media_channel])
            .await?;
        if let Some(b) = self.lock().bridged.get_mut(call_id) {
            *b = Bridge::Complete;
        }
        Ok(())
    }

    /// Step 5: after a reconnect of the events WebSocket, tears down the
    /// calls whose `ChannelDestroyed` may have been missed.
    async fn reconcile(self: &Arc<Self>) {
        if self.lock().bridged.is_empty() {
            return;
        }
        let live = match self.rest.channel_ids().await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "ARI: cannot list channels to find calls ended while disconnected");
                return;
            }
        };
        let stale = {
            let mut calls = self.lock();
            let stale = stale_calls(&calls.bridged, &live);
            for call_id in &stale {
                calls.bridged.remove(call_id);
            }
            stale
        };
        for call_id in stale {
            tracing::info!(call_id = %call_id, "ARI: a channel of this call ended while the events WebSocket was down; tearing down");
            self.tear_down(&call_id).await;
        }
    }

    /// `externalMedia`, the media plane's connection, and the media
    /// channel's `StasisStart` (`media_up`).
    async fn connect_media_channel(
        &self,
        req: &DialRequest,
        media_channel: &str,
        media: &dyn CallCommands,
        media_up: oneshot::Receiver<Answer>,
    ) -> Result<(), String> {
        let call_id = &req.call_id;
        let connection_id = self.rest.external_media(call_id, media_channel).await?;
        let mut params = BTreeMap::new();
        for (k, v) in &req.vars {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            params.insert(k.clone(), v);
        }
        params.insert("callee".into(), req.destination.clone());
        if !req.source.is_empty() {
            params.insert("caller".into(), req.source.clone());
        }
        let dial = AsteriskMediaDial {
            call_id: call_id.clone(),
            route: req.route.clone(),
            url: format!("{}/media/{connection_id}", self.rest.media_base()),
            params,
        };
        let (tx, rx) = oneshot::channel();
        media.dial_asterisk_media(dial, Box::new(move |r| drop(tx.send(r))))?;
        match tokio::time::timeout(Duration::from_secs(15), rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err("the media plane dropped the dial".into()),
            Err(_) => return Err("the media plane did not connect within 15 s".into()),
        }
        match tokio::time::timeout(Duration::from_secs(10), media_up).await {
            Ok(Ok(Answer::Up)) => Ok(()),
            Ok(Ok(Answer::Gone(_))) => Err("the media channel went away before it answered".into()),
            Ok(Err(_)) | Err(_) => Err("the media channel did not enter the application within 10 s".into()),
        }
    }

    /// Hangs up both channels and removes the bridge (each may be gone).
    pub(crate) async fn tear_down(&self, call_id: &str) {
        self.rest.delete_channel(call_id).await;
        self.rest
            .delete_channel(&format!("{call_id}{MEDIA_CHANNEL_SUFFIX}"))
            .await;
        self.rest.delete_bridge(call_id).await;
    }

    /// What an event does (step 4 and the answers of step 2).
    fn on_event(self: &Arc<Self>, event: AriEvent) {
        match event {
            AriEvent::StasisStart { channel_id } => {
                if let Some(tx) = self.lock().ringing.remove(&channel_id) {
                    let _ = tx.send(Answer::Up);
                }
            }
            AriEvent::Dial { peer_id, dialstatus } => {
                if let Some(outcome) = outcome_of_dialstatus(&dialstatus) {
                    if let Some(tx) = self.lock().ringing.remove(&peer_id) {
                        let _ = tx.send(Answer::Gone(outcome));
                    }
                }
            }
            AriEvent::ChannelDestroyed {
                channel_id,
                cause,
                cause_txt,
            } => {
                let call_id = channel_id
                    .strip_suffix(MEDIA_CHANNEL_SUFFIX)
                    .unwrap_or(&channel_id)
                    .to_owned();
                let mut calls = self.lock();
                if let Some(tx) = calls.ringing.remove(&channel_id) {
                    let _ = tx.send(Answer::Gone(outcome_of_cause(cause, &cause_txt)));
                } else if calls.bridged.remove(&call_id).is_some() {
                    drop(calls);
                    let me = self.clone();
                    tokio::spawn(async move { me.tear_down(&call_id).await });
                }
            }
            AriEvent::Other => {}
        }
    }
}

/// Keeps the events WebSocket open (reconnecting with a backoff up to 5 s)
/// and hands each event to [`AriMedia::on_event`].
async fn events_loop(me: Arc<AriMedia>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let request = match me.rest.events_request() {
            Ok(r) => r,
            Err(e) => {
                // Settings checked at start make this unreachable; say so
                // loudly rather than spin.
                tracing::error!(error = %e, "ARI events WebSocket: cannot build the request");
                return;
            }
        };
        match tokio_tungstenite::connect_async(request).await {
            Ok((mut ws, _)) => {
                tracing::info!(app = %me.cfg().app_name(), "ARI events connected");
                me.connected.send_replace(true);
                backoff = Duration::from_millis(100);
                let me2 = me.clone();
                tokio::spawn(async move { me2.reconcile().await });
                while let Some(msg) = ws.next().await {
                    match msg {
                        Ok(Message::Text(t)) => {
                            if let Some(e) = AriEvent::parse(t.as_str()) {
                                me.on_event(e);
                            }
                        }
                        Ok(Message::Close(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                me.connected.send_replace(false);
                tracing::warn!("ARI events WebSocket closed: reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "ARI events WebSocket: connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_with_a_channel_gone_are_stale() {
        let live = channel_ids_of(
            r#"[{"id":"a","name":"PJSIP/t-1","state":"Up"},{"id":"a-media","state":"Up"},
                {"id":"b","state":"Up"},{"id":"c-media","state":"Up"},{"id":"d","state":"Up"},{"name":"no id"}]"#,
        )
        .expect("list");
        let bridged: HashMap<String, Bridge> = [
            ("a", Bridge::Complete), // both channels up
            ("b", Bridge::Complete), // media channel gone
            ("c", Bridge::Complete), // callee gone
            ("d", Bridge::Building), // media channel not made yet
            ("e", Bridge::Building), // callee gone while building
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(stale_calls(&bridged, &live), vec!["b", "c", "e"]);
        for bad in ["", "{}", r#"{"id":"a"}"#, "[1"] {
            assert!(channel_ids_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_as_asterisk_sends_them() {
        let start = r#"{"type":"StasisStart","timestamp":"2026-12-06T03:00:00.000+0000","args":["c1"],
            "channel":{"id":"c1","name":"PJSIP/trunk-00000001","state":"Up","protocol_id":"",
            "caller":{"name":"","number":"+15550100"},"connected":{"name":"","number":""},
            "accountcode":"","dialplan":{"context":"default","exten":"s","priority":1,"app_name":"Stasis","app_data":"voxbridge,c1"},
            "creationtime":"2026-12-06T02:59:58.000+0000","language":"en"},
            "asterisk_id":"02:42:ac:11:00:02","application":"voxbridge"}"#;
        assert_eq!(
            AriEvent::parse(start),
            Some(AriEvent::StasisStart {
                channel_id: "c1".into()
            })
        );
        let gone = r#"{"type":"ChannelDestroyed","timestamp":"2026-12-06T03:00:01.000+0000","cause":17,
            "cause_txt":"User busy","channel":{"id":"c2","name":"PJSIP/trunk-00000002","state":"Down"},
            "asterisk_id":"02:42:ac:11:00:02","application":"voxbridge"}"#;
        assert_eq!(
            AriEvent::parse(gone),
            Some(AriEvent::ChannelDestroyed {
                channel_id: "c2".into(),
                cause: 17,
                cause_txt: "User busy".into()
            })
        );
        assert_eq!(
            AriEvent::parse(r#"{"type":"ChannelVarset","variable":"x","value":"1"}"#),
            Some(AriEvent::Other)
        );
        assert_eq!(AriEvent::parse(r#"{"type":"StasisStart"}"#), None, "no channel");
        assert_eq!(AriEvent::parse("not json"), None);
        assert_eq!(AriEvent::parse("[1,2]"), None);
    }

    /// Events a real Asterisk sent (tests/fixtures/asterisk/ari_events.jsonl):
    /// a Local callee that is busy, one that rings out, one answered and
    /// then hung up.
    #[test]
    fn events_captured_from_asterisk() {
        let captured = include_str!("../../../tests/fixtures/asterisk/ari_events.jsonl");
        let events: Vec<AriEvent> = captured.lines().filter_map(AriEvent::parse).collect();
        let finals: Vec<(String, DialOutcome)> = events
            .iter()
            .filter_map(|e| match e {
                AriEvent::Dial { peer_id, dialstatus } => {
                    outcome_of_dialstatus(dialstatus).map(|o| (peer_id.clone(), o))
                }
                _ => None,
            })
            .collect();
        assert_eq!(finals, vec![("busy1".to_string(), DialOutcome::Busy)]);
        assert!(events.contains(&AriEvent::StasisStart {
            channel_id: "ok1".into()
        }));
        assert!(events.contains(&AriEvent::ChannelDestroyed {
            channel_id: "ring1".into(),
            cause: 19,
            cause_txt: "User alerting, no answer".into()
        }));
        assert_eq!(
            outcome_of_cause(19, "User alerting, no answer"),
            DialOutcome::NoAnswer
        );
        assert!(events.contains(&AriEvent::ChannelDestroyed {
            channel_id: "ok1".into(),
            cause: 16,
            cause_txt: "Normal Clearing".into()
        }));
    }

    #[test]
    fn the_connection_id_comes_from_the_channel_variables() {
        let answer = r#"{"id":"c1-media","name":"WebSocket/INCOMING-00000001","state":"Down",
            "channelvars":{"MEDIA_WEBSOCKET_CONNECTION_ID":"4f8a2c1e-7d3b-4c2a-9e1f-0a1b2c3d4e5f",
            "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE":"640"}}"#;
        assert_eq!(
            connection_id_of(answer).as_deref(),
            Ok("4f8a2c1e-7d3b-4c2a-9e1f-0a1b2c3d4e5f")
        );
        for bad in [
            r#"{"id":"x"}"#,
            r#"{"channelvars":{"MEDIA_WEBSOCKET_CONNECTION_ID":"../../ari/channels"}}"#,
            r#"{"channelvars":{"MEDIA_WEBSOCKET_CONNECTION_ID":""}}"#,
            r#"{"channelvars":{"MEDIA_WEBSOCKET_CONNECTION_ID":7}}"#,
            "<html>",
        ] {
            assert!(connection_id_of(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read_without_panicking(text in "\\PC{0,200}") {
            let _ = AriEvent::parse(&text);
            let _ = connection_id_of(&text);
        }

        #[test]
        fn destroyed_events_keep_their_channel_and_cause(
            id in "[A-Za-z0-9.-]{1,40}", cause in 0i64..128, txt in "[ -~]{0,30}",
        ) {
            let json = serde_json::json!({"type": "ChannelDestroyed", "cause": cause,
                "cause_txt": txt, "channel": {"id": id}}).to_string();
            proptest::prop_assert_eq!(
                AriEvent::parse(&json),
                Some(AriEvent::ChannelDestroyed { channel_id: id, cause, cause_txt: txt.clone() })
            );
            let _ = outcome_of_cause(cause, &txt);
        }
    }

    #[test]
    fn causes_map_to_dial_outcomes() {
        assert_eq!(outcome_of_cause(17, "User busy"), DialOutcome::Busy);
        assert_eq!(outcome_of_cause(19, "No answer"), DialOutcome::NoAnswer);
        assert_eq!(outcome_of_cause(18, "No user responding"), DialOutcome::NoAnswer);
        assert_eq!(
            outcome_of_cause(34, "Circuit/channel congestion"),
            DialOutcome::Failed("Asterisk: Circuit/channel congestion (cause 34)".into())
        );
    }
}
