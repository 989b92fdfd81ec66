//! The SIP originator (`[control.originate] kind = "sip"`): the media
//! plane places the call on a SIP trunk itself (its `[[sip.gateways]]`,
//! through [`CallCommands::dial_sip`]) and runs it once it is answered, so
//! outbound calls and campaigns need neither Asterisk nor an HTTP edge.
//!
//! The gateway is the target's or request's `vars.gateway`, else
//! `[control.originate.sip] gateway`, else the media plane's first. The
//! call's `vars` (strings as they are, other values as JSON) go to the
//! bot's start parameters. SIP's answers map onto the call's statuses
//! and hangup reasons ([`outcome_of`]): `180`/`183` -> `ringing`;
//! `486`/`600` -> busy; `408`/`480`/`487` (and the ring timeout) -> no
//! answer; anything else -> failed, with the code and reason in the
//! hangup's cause text.

use super::{DialOutcome, DialRequest, Originator, Ringing};
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use voxbridge_contract::commands::{CallCommands, SipDial, SipDialEvent};

/// `[control.originate.sip]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipOriginateConfig {
    /// The media plane's gateway to use when a call's `vars.gateway` does
    /// not name one (its first gateway when absent).
    pub gateway: Option<String>,
}

/// Places calls through the media plane's SIP gateways.
pub struct SipOriginator {
    cfg: SipOriginateConfig,
    ring_timeout: Duration,
    media: OnceLock<Arc<dyn CallCommands>>,
}

impl std::fmt::Debug for SipOriginator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipOriginator").field("cfg", &self.cfg).finish()
    }
}

impl SipOriginator {
    /// An originator that gives each call `ring_timeout` to be answered.
    pub fn new(cfg: &SipOriginateConfig, ring_timeout: Duration) -> SipOriginator {
        SipOriginator {
            cfg: cfg.clone(),
            ring_timeout,
            media: OnceLock::new(),
        }
    }
}

/// What a failed SIP dial means for the call: `486 Busy Here` and `600
/// Busy Everywhere` are busy; `408`, `480`, `487` (cancelled, the ring
/// timeout's CANCEL included) no answer; the rest failed, saying which.
pub fn outcome_of(code: Option<u16>, reason: &str) -> DialOutcome {
    match code {
        Some(486 | 600) => DialOutcome::Busy,
        Some(408 | 480 | 487) => DialOutcome::NoAnswer,
        Some(code) => DialOutcome::Failed(format!("SIP {code} {reason}")),
        None => DialOutcome::Failed(reason.to_owned()),
    }
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait]
impl Originator for SipOriginator {
    fn name(&self) -> &'static str {
        "sip"
    }

    fn needs_audiosocket(&self) -> bool {
        false
    }

    fn ingress(&self) -> &'static str {
        "sip"
    }

    fn attach_media(&self, media: Arc<dyn CallCommands>) {
        let _ = self.media.set(media);
    }

    async fn originate(&self, req: &DialRequest) -> DialOutcome {
        self.originate_ringing(req, Box::new(|| {})).await
    }

    async fn originate_ringing(&self, req: &DialRequest, ringing: Ringing) -> DialOutcome {
        let Some(media) = self.media.get() else {
            return DialOutcome::Failed("no media plane in this process to carry the call".into());
        };
        let params: BTreeMap<String, String> =
            req.vars.iter().map(|(k, v)| (k.clone(), text_of(v))).collect();
        let dial = SipDial {
            call_id: req.call_id.clone(),
            route: req.route.clone(),
            gateway: req
                .vars
                .get("gateway")
                .map(text_of)
                .or_else(|| self.cfg.gateway.clone()),
            destination: req.destination.clone(),
            caller: Some(req.source.clone()).filter(|s| !s.is_empty()),
            params,
            ring_timeout: self.ring_timeout,
        };
        let (tx, mut events) = mpsc::unbounded_channel();
        if let Err(why) = media.dial_sip(dial, Box::new(move |e| drop(tx.send(e)))) {
            return DialOutcome::Failed(why);
        }
        let mut ringing = Some(ringing);
        loop {
            match events.recv().await {
                Some(SipDialEvent::Ringing) => {
                    if let Some(r) = ringing.take() {
                        r();
                    }
                }
                Some(SipDialEvent::Answered) => return DialOutcome::Accepted,
                Some(SipDialEvent::Failed { code, reason }) => return outcome_of(code, &reason),
                None => return DialOutcome::Failed("the media plane dropped the dial".into()),
            }
        }
    }

    async fn cancel(&self, call_id: &str) {
        if let Some(media) = self.media.get() {
            if !media.cancel_dial(call_id) {
                tracing::warn!(call_id, "SIP dial not cancelled: the media plane did not take it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use voxbridge_contract::commands::SipDialEvents;

    #[test]
    fn sip_codes_map_onto_call_outcomes() {
        assert_eq!(outcome_of(Some(486), "Busy Here"), DialOutcome::Busy);
        assert_eq!(outcome_of(Some(600), "Busy Everywhere"), DialOutcome::Busy);
        for code in [408, 480, 487] {
            assert_eq!(outcome_of(Some(code), "x"), DialOutcome::NoAnswer);
        }
        assert_eq!(
            outcome_of(Some(503), "Service Unavailable"),
            DialOutcome::Failed("SIP 503 Service Unavailable".into())
        );
        assert_eq!(
            outcome_of(None, "no route"),
            DialOutcome::Failed("no route".into())
        );
    }

    /// A media plane that answers each dial with a script of events and
    /// keeps what it was asked.
    struct Scripted {
        script: Vec<SipDialEvent>,
        asked: Mutex<Vec<SipDial>>,
        cancelled: Mutex<Vec<String>>,
    }

    impl CallCommands for Scripted {
        fn hangup(&self, _call_id: &str) -> bool {
            false
        }
        fn dial_sip(&self, dial: SipDial, mut events: SipDialEvents) -> Result<(), String> {
            self.asked.lock().expect("lock").push(dial);
            for e in self.script.clone() {
                events(e);
            }
            Ok(())
        }
        fn cancel_dial(&self, call_id: &str) -> bool {
            self.cancelled.lock().expect("lock").push(call_id.to_owned());
            true
        }
    }

    fn request() -> DialRequest {
        let mut vars = serde_json::Map::new();
        vars.insert("gateway".into(), "carrier-b".into());
        vars.insert("attempt_tag".into(), serde_json::json!(3));
        DialRequest {
            call_id: "c1".into(),
            customer_id: "acme".into(),
            destination: "+15550100".into(),
            source: "+15550199".into(),
            route: "default".into(),
            audiosocket: None,
            vars,
            attempt: 1,
        }
    }

    #[tokio::test]
    async fn a_dial_goes_to_the_media_plane_and_its_events_come_back() {
        let o = SipOriginator::new(
            &SipOriginateConfig {
                gateway: Some("carrier-a".into()),
            },
            Duration::from_secs(30),
        );
        assert!(
            matches!(o.originate(&request()).await, DialOutcome::Failed(why) if why.contains("no media plane"))
        );
        let media = Arc::new(Scripted {
            script: vec![
                SipDialEvent::Ringing,
                SipDialEvent::Ringing,
                SipDialEvent::Answered,
            ],
            asked: Mutex::new(Vec::new()),
            cancelled: Mutex::new(Vec::new()),
        });
        o.attach_media(media.clone());
        let rang = Arc::new(AtomicBool::new(false));
        let r = rang.clone();
        let outcome = o
            .originate_ringing(&request(), Box::new(move || r.store(true, Ordering::SeqCst)))
            .await;
        assert_eq!(outcome, DialOutcome::Accepted);
        assert!(rang.load(Ordering::SeqCst));
        let asked = media.asked.lock().expect("lock").clone();
        assert_eq!(
            asked[0].gateway.as_deref(),
            Some("carrier-b"),
            "vars.gateway wins"
        );
        assert_eq!(asked[0].params.get("attempt_tag").map(String::as_str), Some("3"));
        assert_eq!(
            (asked[0].caller.as_deref(), asked[0].ring_timeout),
            (Some("+15550199"), Duration::from_secs(30))
        );
        o.cancel("c1").await;
        assert_eq!(
            media.cancelled.lock().expect("lock").clone(),
            vec!["c1".to_owned()]
        );
        let busy = SipOriginator::new(&SipOriginateConfig::default(), Duration::from_secs(1));
        busy.attach_media(Arc::new(Scripted {
            script: vec![SipDialEvent::Failed {
                code: Some(486),
                reason: "Busy Here".into(),
            }],
            asked: Mutex::new(Vec::new()),
            cancelled: Mutex::new(Vec::new()),
        }));
        assert_eq!(busy.originate(&request()).await, DialOutcome::Busy);
    }
}
