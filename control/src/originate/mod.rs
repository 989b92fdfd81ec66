//! Placing outbound calls. `POST /v1/calls` and the campaign scheduler store
//! a call as `dialing` and hand it to the [`Dialer`], which asks the
//! configured [`Originator`] to place it:
//!
//! - [`ari::AriOriginator`]: Asterisk ARI `POST /ari/channels` into a
//!   dialplan context that connects the answered channel to voxbridge by
//!   AudioSocket with the call's id;
//! - [`http_hook::HttpHook`]: a JSON `POST` to any edge that does the same;
//! - [`simulated::SimulatedCallee`]: a built-in callee for tests and the
//!   demo that answers (and speaks a WAV over AudioSocket), is busy, never
//!   answers or fails, as each target's `vars.sim` says;
//! - [`sip::SipOriginator`]: the media plane places the call on a SIP
//!   trunk itself and runs it when answered (`180`/`183` move the call
//!   to `ringing`).
//!
//! The media leg joins the call by id: the AudioSocket stream's UUID is
//! the call id, so media's `Created` event finds the stored call (a
//! replay) and its `Answered` and `Hungup` events move it along the same
//! state machine as an inbound call. An originator that learns the outcome
//! without media (busy, failed) reports it and the dialer hangs the call up
//! with that reason. A call whose media never joins is ended `noanswer`
//! after `ring_timeout_ms` by the sweep in [`Dialer::expire_unanswered`],
//! which runs from the store, so it also catches calls of a crashed
//! instance.

pub mod ari;
pub mod ari_media;
pub mod http_hook;
pub mod simulated;
pub mod sip;

use crate::error::{ControlError, Result};
use crate::model::{Call, CallChange};
use crate::state::{CallStatus, HangupBy, HangupReason};
use crate::store::Store;
use crate::time::Millis;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What an originator is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct DialRequest {
    /// The call's id: the AudioSocket UUID the answered leg must send.
    pub call_id: String,
    /// Owner.
    pub customer_id: String,
    /// Number or address to dial.
    pub destination: String,
    /// Caller id.
    pub source: String,
    /// Media route (bot).
    pub route: String,
    /// Where the answered leg connects (the route's AudioSocket listener).
    pub audiosocket: Option<SocketAddr>,
    /// Values of the target or the API request.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// 1 for a first attempt.
    pub attempt: u32,
}

/// What an originator learned when it placed the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialOutcome {
    /// The call is on its way; media joins when it is answered.
    Accepted,
    /// The callee is busy.
    Busy,
    /// Nobody answered.
    NoAnswer,
    /// The call could not be placed.
    Failed(String),
}

/// Told once when the callee's phone rings (by originators that learn it).
pub type Ringing = Box<dyn FnOnce() + Send>;

/// Places outbound calls.
#[async_trait]
pub trait Originator: Send + Sync + 'static {
    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Places the call; returns once the far end took the request.
    async fn originate(&self, req: &DialRequest) -> DialOutcome;
    /// [`Originator::originate`], calling `ringing` when the callee's phone
    /// rings, for originators that learn it (the others ignore it).
    async fn originate_ringing(&self, req: &DialRequest, ringing: Ringing) -> DialOutcome {
        drop(ringing);
        self.originate(req).await
    }
    /// Gives up a call that is not answered yet (API hangup).
    async fn cancel(&self, _call_id: &str) {}
    /// Whether the answered leg connects to a route's AudioSocket listener
    /// (so only routes with one can be dialled).
    fn needs_audiosocket(&self) -> bool {
        true
    }
    /// The media plane, for originators that connect the media themselves.
    fn attach_media(&self, _media: Arc<dyn voxbridge_contract::commands::CallCommands>) {}
    /// How the answered call's media arrives (the stored call's `ingress`).
    fn ingress(&self) -> &'static str {
        "audiosocket"
    }
}

/// `[control.originate]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginateConfig {
    /// `none` (outbound calls refused), `simulated`, `http` or `ari`.
    pub kind: OriginatorKind,
    /// An outgoing call whose media has not joined after this long is
    /// ended `noanswer`, ms.
    pub ring_timeout_ms: u64,
    /// AudioSocket address per route for the answered leg, where it is not
    /// a listener of this process (split mode, NAT).
    pub audiosocket: BTreeMap<String, SocketAddr>,
    /// `[control.originate.http]`.
    pub http: http_hook::HttpHookConfig,
    /// `[control.originate.ari]`.
    pub ari: ari::AriConfig,
    /// `[control.originate.simulated]`.
    pub simulated: simulated::SimulatedConfig,
    /// `[control.originate.sip]`.
    pub sip: sip::SipOriginateConfig,
}

impl Default for OriginateConfig {
    fn default() -> Self {
        OriginateConfig {
            kind: OriginatorKind::None,
            ring_timeout_ms: 45_000,
            audiosocket: BTreeMap::new(),
            http: http_hook::HttpHookConfig::default(),
            ari: ari::AriConfig::default(),
            simulated: simulated::SimulatedConfig::default(),
            sip: sip::SipOriginateConfig::default(),
        }
    }
}

/// Which originator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginatorKind {
    /// Outbound calls are refused.
    None,
    /// The built-in simulated callee.
    Simulated,
    /// A generic HTTP hook.
    Http,
    /// Asterisk ARI.
    Ari,
    /// The media plane's SIP gateways.
    Sip,
}

impl OriginateConfig {
    /// Builds the configured originator (`None` for `kind = "none"`).
    pub fn build(&self) -> Result<Option<Arc<dyn Originator>>> {
        Ok(match self.kind {
            OriginatorKind::None => None,
            OriginatorKind::Simulated => Some(Arc::new(simulated::SimulatedCallee::new(&self.simulated)?)),
            OriginatorKind::Http => Some(Arc::new(http_hook::HttpHook::new(&self.http)?)),
            OriginatorKind::Ari => Some(Arc::new(ari::AriOriginator::new(&self.ari)?)),
            OriginatorKind::Sip => Some(Arc::new(sip::SipOriginator::new(
                &self.sip,
                Duration::from_millis(self.ring_timeout_ms.max(1)),
            ))),
        })
    }
}

/// The dialer's counters.
#[derive(Debug, Default)]
pub struct DialStats {
    /// Calls handed to the originator.
    pub placed: AtomicU64,
    /// Outcomes reported by the originator, by kind.
    pub accepted: AtomicU64,
    /// Busy.
    pub busy: AtomicU64,
    /// No answer (reported or by ring timeout).
    pub no_answer: AtomicU64,
    /// Failed.
    pub failed: AtomicU64,
}

impl DialStats {
    /// Prometheus text.
    pub fn render(&self) -> String {
        format!(
            "# HELP voxbridge_originate_calls_total Outbound calls handed to the originator.\n\
             # TYPE voxbridge_originate_calls_total counter\n\
             voxbridge_originate_calls_total {}\n\
             # HELP voxbridge_originate_outcomes_total What the originator or the ring timeout decided.\n\
             # TYPE voxbridge_originate_outcomes_total counter\n\
             voxbridge_originate_outcomes_total{{outcome=\"accepted\"}} {}\n\
             voxbridge_originate_outcomes_total{{outcome=\"busy\"}} {}\n\
             voxbridge_originate_outcomes_total{{outcome=\"no_answer\"}} {}\n\
             voxbridge_originate_outcomes_total{{outcome=\"failed\"}} {}\n",
            self.placed.load(Relaxed),
            self.accepted.load(Relaxed),
            self.busy.load(Relaxed),
            self.no_answer.load(Relaxed),
            self.failed.load(Relaxed),
        )
    }
}

/// `dialing` -> `ringing` when the callee's phone rings (a call already
/// further along is left as it is).
async fn mark_ringing(store: &Store, call_id: &str) {
    let r = store
        .transition_call_with(None, call_id, None, |c| {
            (c.status == CallStatus::Dialing).then(|| CallChange {
                to: CallStatus::Ringing,
                at: Millis::now(),
                hangup: None,
                sip: None,
            })
        })
        .await;
    if let Err(e) = r {
        tracing::debug!(call_id, error = %e, "ringing not recorded");
    }
}

/// Hands stored `dialing` calls to the originator and records what it says.
pub struct Dialer {
    originator: Arc<dyn Originator>,
    store: Store,
    routes: RwLock<BTreeMap<String, SocketAddr>>,
    ring_timeout: Duration,
    /// Counters.
    pub stats: DialStats,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("originator", &self.originator.name())
            .finish()
    }
}

impl Dialer {
    /// A dialer over `originator`; `cfg.audiosocket` seeds the route map.
    pub fn new(store: Store, originator: Arc<dyn Originator>, cfg: &OriginateConfig) -> Self {
        Dialer {
            originator,
            store,
            routes: RwLock::new(cfg.audiosocket.clone()),
            ring_timeout: Duration::from_millis(cfg.ring_timeout_ms.max(1)),
            stats: DialStats::default(),
        }
    }

    /// Where the answered leg of calls on `route` connects (the media
    /// plane's listener; a configured address wins).
    pub fn set_route_addr(&self, route: &str, addr: SocketAddr) {
        let mut m = self.routes.write().unwrap_or_else(|e| e.into_inner());
        m.entry(route.to_owned()).or_insert(addr);
    }

    /// The media plane, for an originator that connects media itself.
    pub fn attach_media(&self, media: Arc<dyn voxbridge_contract::commands::CallCommands>) {
        self.originator.attach_media(media);
    }

    /// How the calls it places get their media (`audiosocket`, `chanws`).
    pub fn ingress(&self) -> &'static str {
        self.originator.ingress()
    }

    /// Whether calls can be placed on `route`.
    pub fn knows_route(&self, route: &str) -> bool {
        if !self.originator.needs_audiosocket() {
            return true;
        }
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(route)
    }

    /// The ring timeout.
    pub fn ring_timeout(&self) -> Duration {
        self.ring_timeout
    }

    /// Places a stored `dialing` call in the background.
    pub fn start(
        self: &Arc<Self>,
        call: &Call,
        vars: serde_json::Map<String, serde_json::Value>,
        attempt: u32,
    ) {
        let req = DialRequest {
            call_id: call.id.clone(),
            customer_id: call.customer_id.clone(),
            destination: call.destination.clone(),
            source: call.source.clone(),
            route: call.route.clone(),
            audiosocket: self
                .routes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&call.route)
                .copied(),
            vars,
            attempt,
        };
        self.stats.placed.fetch_add(1, Relaxed);
        let me = self.clone();
        let store = self.store.clone();
        let call_id = req.call_id.clone();
        let ringing: Ringing = Box::new(move || {
            tokio::spawn(async move { mark_ringing(&store, &call_id).await });
        });
        tokio::spawn(async move {
            let outcome = me.originator.originate_ringing(&req, ringing).await;
            me.settle(&req.call_id, outcome).await;
        });
    }

    /// Gives up an unanswered call at the originator (API hangup).
    /// (Answered calls are hung up through the media plane.)
    pub async fn cancel(&self, call_id: &str) {
        self.originator.cancel(call_id).await;
    }

    async fn settle(&self, call_id: &str, outcome: DialOutcome) {
        let (counter, reason, cause) = match outcome {
            DialOutcome::Accepted => {
                self.stats.accepted.fetch_add(1, Relaxed);
                return;
            }
            DialOutcome::Busy => (&self.stats.busy, HangupReason::Busy, "busy".to_owned()),
            DialOutcome::NoAnswer => (
                &self.stats.no_answer,
                HangupReason::Noanswer,
                "no_answer".to_owned(),
            ),
            DialOutcome::Failed(why) => {
                tracing::warn!(call_id, originator = self.originator.name(), error = %why, "outbound call failed");
                (
                    &self.stats.failed,
                    HangupReason::Dialout,
                    format!("dialout: {why}"),
                )
            }
        };
        counter.fetch_add(1, Relaxed);
        let mut backoff = Duration::from_millis(50);
        for _ in 0..8 {
            let r = self
                .store
                .transition_call_with(None, call_id, None, |c| {
                    matches!(c.status, CallStatus::Dialing | CallStatus::Ringing).then(|| CallChange {
                        to: CallStatus::Hangup,
                        at: Millis::now(),
                        hangup: Some((HangupBy::Remote, reason, cause.clone())),
                        sip: None,
                    })
                })
                .await;
            match r {
                Ok(_) => return,
                Err(ControlError::Store(e)) => {
                    tracing::warn!(call_id, error = %e, "store unavailable: retrying the dial outcome");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::warn!(call_id, error = %e, "dial outcome not recorded");
                    return;
                }
            }
        }
        tracing::warn!(
            call_id,
            "dial outcome not recorded; the ring timeout will end the call"
        );
    }

    /// Ends outgoing calls whose media has not joined within the ring
    /// timeout (`noanswer`).
    pub async fn expire_unanswered(&self) -> Result<usize> {
        let cutoff =
            Millis(Millis::now().0 - i64::try_from(self.ring_timeout.as_millis()).unwrap_or(i64::MAX));
        let n = self.store.expire_unanswered(cutoff).await?;
        self.stats.no_answer.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}
