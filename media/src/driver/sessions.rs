//! RTP session registry: what the media API (`/v1/rtp/sessions`) drives.
//!
//! A session is created from an SDP offer (answered with voxbridge's SDP) or
//! from plain parameters (remote address and codec, as Asterisk ARI
//! `externalMedia` gives them). Each gets an even RTP port from the
//! configured range (RTCP on the next port, unless the offer asked for
//! rtcp-mux), or a slot on the shared port when `rtp.shared_port` is set,
//! and a call task of its own; it ends on RTCP BYE, on
//! [`RtpSessions::hangup`], on the media timeout or when the bot policy says
//! so. Refusals (bad SDP, no common codec, no free port, call limit,
//! shutting down) are errors with the reason and are counted.

use super::call_task::CallContext;
use super::rtp::{run, LegIo, RtpLegParams};
use crate::commands::CallRegistry;
use crate::config::{Route, RtpConfig};
use crate::driver::net::shared_port::SharedPort;
use crate::error::MediaError;
use crate::events::{CallInfo, EventSink, HangupCause};
use crate::metrics::Metrics;
use crate::sansio::rtp::receiver::pcm_codec;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use voxbridge_proto::sdp::{self, AudioCodec, AudioOffer, LocalMedia};

/// Who the call is for; all optional.
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    /// Call id to use (one is generated when absent; must be unique).
    pub call_id: Option<String>,
    /// Route name (the `rtp.route` config default when absent).
    pub route: Option<String>,
    /// Caller number/URI, passed to the bot.
    pub caller: Option<String>,
    /// Callee number/URI, passed to the bot.
    pub callee: Option<String>,
    /// Extra parameters for the bot (merged over the route's).
    pub params: BTreeMap<String, String>,
    /// Who created it (the media API credential's tenant): only the same
    /// owner sees and hangs it up through the API.
    pub owner: Option<String>,
    /// The ingress named in the call's events (`rtp` when absent; the SIP
    /// leg says `sip`).
    pub ingress: Option<&'static str>,
    /// Told the call id when the call ends, whatever ended it (the SIP leg
    /// sends BYE then).
    pub on_end: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Told `(call id, target)` when the bot asks for a transfer (the SIP
    /// leg sends REFER then).
    pub on_transfer: Option<tokio::sync::mpsc::UnboundedSender<(String, String)>>,
}

/// A session without SDP.
#[derive(Debug, Clone)]
pub struct PlainSession {
    /// Where to send RTP; with symmetric RTP it may be left out and is
    /// learnt from the first packet.
    pub remote: Option<SocketAddr>,
    /// Codec.
    pub codec: AudioCodec,
    /// Payload type (the codec's static one, or 96 for Opus, when absent).
    pub pt: Option<u8>,
    /// telephone-event payload type (none when absent).
    pub dtmf_pt: Option<u8>,
    /// Overrides the configured symmetric-RTP setting.
    pub symmetric: Option<bool>,
}

/// A created session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Call id.
    pub call_id: String,
    /// Where voxbridge receives RTP.
    pub local: SocketAddr,
    /// voxbridge's SDP (the answer, or a description for a plain session).
    pub sdp: String,
    /// Codec chosen.
    pub codec: AudioCodec,
    /// Its payload type.
    pub pt: u8,
    /// telephone-event payload type.
    pub dtmf_pt: Option<u8>,
}

/// One running session as listed by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Call id.
    pub call_id: String,
    /// Local RTP address.
    pub local: SocketAddr,
    /// Codec.
    pub codec: AudioCodec,
    /// Created at.
    pub created: SystemTime,
    /// See [`SessionRequest::owner`].
    pub owner: Option<String>,
}

/// A running session, as listed (its stop switch is in the call registry).
struct Entry {
    summary: SessionSummary,
}

struct Inner {
    cfg: RtpConfig,
    allowed: Vec<AudioCodec>,
    routes: BTreeMap<String, Arc<Route>>,
    sink: Arc<dyn EventSink>,
    metrics: Arc<Metrics>,
    hangup_now: watch::Receiver<bool>,
    stopping: watch::Receiver<bool>,
    tracker: TaskTracker,
    max_calls: usize,
    calls: CallRegistry,
    recording: Arc<crate::config::RecordingConfig>,
    tenant_recognizers: Arc<std::collections::BTreeMap<String, crate::config::Transcribe>>,
    sessions: Mutex<HashMap<String, Entry>>,
    next_port: Mutex<u16>,
    shared: Option<SharedPort>,
}

/// Handle to the registry (cheap to clone).
#[derive(Clone)]
pub struct RtpSessions(Arc<Inner>);

/// Everything [`RtpSessions`] needs from the server.
pub(crate) struct RegistryParts {
    pub shared: Option<SharedPort>,
    pub cfg: RtpConfig,
    pub routes: BTreeMap<String, Arc<Route>>,
    pub sink: Arc<dyn EventSink>,
    pub metrics: Arc<Metrics>,
    pub hangup_now: watch::Receiver<bool>,
    pub stopping: watch::Receiver<bool>,
    pub tracker: TaskTracker,
    pub max_calls: usize,
    /// The server's one namespace of call ids.
    pub calls: CallRegistry,
    /// Where recordings go.
    pub recording: Arc<crate::config::RecordingConfig>,
    /// Tenants' own speech recognizers.
    pub tenant_recognizers: Arc<std::collections::BTreeMap<String, crate::config::Transcribe>>,
}

impl RtpSessions {
    pub(crate) fn new(p: RegistryParts) -> Self {
        let first = p.cfg.port_min + p.cfg.port_min % 2;
        RtpSessions(Arc::new(Inner {
            allowed: p.cfg.allowed_codecs(),
            cfg: p.cfg,
            routes: p.routes,
            sink: p.sink,
            metrics: p.metrics,
            hangup_now: p.hangup_now,
            stopping: p.stopping,
            tracker: p.tracker,
            max_calls: p.max_calls,
            calls: p.calls,
            recording: p.recording,
            tenant_recognizers: p.tenant_recognizers,
            sessions: Mutex::new(HashMap::new()),
            next_port: Mutex::new(first),
            shared: p.shared,
        }))
    }

    /// Creates a session from an SDP offer; the result carries the answer.
    pub async fn offer(&self, offer: &str, req: SessionRequest) -> Result<Created, MediaError> {
        let r = async {
            let offer = AudioOffer::parse(offer)?;
            let n = offer.negotiate(&self.0.allowed)?;
            let setup = Setup::negotiated(&n, n.rtcp_mux, self.0.cfg.symmetric);
            self.start(setup, req, |local| sdp::write_answer(&local, &n))
                .await
        }
        .await;
        self.count(r)
    }

    /// Creates a session from plain parameters; the result carries an SDP
    /// describing voxbridge's side (for peers that read one).
    pub async fn plain(&self, p: PlainSession, req: SessionRequest) -> Result<Created, MediaError> {
        let r = async {
            if !self.0.allowed.contains(&p.codec) {
                return Err(MediaError::Session(format!(
                    "codec {} is not enabled (rtp.codecs)",
                    p.codec.encoding_name()
                )));
            }
            let pt = p.pt.or(p.codec.static_pt()).unwrap_or(96);
            if pt >= 128 || p.dtmf_pt.is_some_and(|d| d >= 128 || d == pt) {
                return Err(MediaError::Session(format!(
                    "payload types must be < 128 and distinct (pt {pt}, dtmf_pt {:?})",
                    p.dtmf_pt
                )));
            }
            let symmetric = p.symmetric.unwrap_or(self.0.cfg.symmetric);
            if p.remote.is_none() && !symmetric {
                return Err(MediaError::Session(
                    "remote is required when symmetric RTP is off".into(),
                ));
            }
            let setup = Setup {
                codec: p.codec,
                pt,
                dtmf_pt: p.dtmf_pt,
                remote: p.remote,
                remote_rtcp: p
                    .remote
                    .map(|r| SocketAddr::new(r.ip(), r.port().wrapping_add(1))),
                rtcp_mux: false,
                symmetric,
            };
            self.start(setup, req, |local| {
                sdp::write_description(&local, p.codec, pt, p.dtmf_pt)
            })
            .await
        }
        .await;
        self.count(r)
    }

    /// Takes the RTP port a call voxbridge places will use (its own port
    /// pair, or the shared port) and writes the SDP offer for it: every
    /// enabled codec (`rtp.codecs`) in voxbridge's order, with
    /// telephone-event. [`RtpSessions::start_answered`] starts the call on
    /// it once the answer comes; dropping the reservation frees the port.
    pub async fn reserve(&self) -> Result<Reservation, MediaError> {
        let inner = &self.0;
        if *inner.stopping.borrow() {
            return Err(MediaError::Unavailable("shutting down".into()));
        }
        let (io, bound) = match &inner.shared {
            Some(shared) => (
                None,
                shared
                    .local_addr()
                    .map_err(|e| MediaError::Session(format!("local address: {e}")))?,
            ),
            None => {
                let (rtp, rtcp) = self.bind_pair(true).await?;
                let bound = rtp
                    .local_addr()
                    .map_err(|e| MediaError::Session(format!("local address: {e}")))?;
                (Some(LegIo::Own { rtp, rtcp }), bound)
            }
        };
        let advertised = SocketAddr::new(inner.cfg.advertise_ip.unwrap_or(bound.ip()), bound.port());
        let offer = sdp::write_offer(
            &LocalMedia {
                addr: advertised,
                session_id: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            },
            &inner.allowed,
        );
        Ok(Reservation {
            io: io.map(|io| (io, bound)),
            offer,
        })
    }

    /// Starts a call voxbridge placed on `reserved`, from the far end's SDP
    /// `answer` to its offer; the result's SDP describes the media as set
    /// up (the codec the answer chose).
    pub async fn start_answered(
        &self,
        reserved: Reservation,
        answer: &str,
        req: SessionRequest,
    ) -> Result<Created, MediaError> {
        let r = async {
            let n = AudioOffer::parse(answer)?.negotiate(&self.0.allowed)?;
            // voxbridge's offer has no rtcp-mux, so its answer cannot either.
            let setup = Setup::negotiated(&n, false, self.0.cfg.symmetric);
            self.start_on(setup, req, reserved.io, |local| {
                sdp::write_description(&local, n.codec, n.pt, n.dtmf_pt)
            })
            .await
        }
        .await;
        self.count(r)
    }

    fn count(&self, r: Result<Created, MediaError>) -> Result<Created, MediaError> {
        let m = &self.0.metrics.rtp;
        match &r {
            Ok(_) => m.sessions_created.fetch_add(1, Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, "RTP session refused");
                m.sessions_refused.fetch_add(1, Relaxed)
            }
        };
        r
    }

    /// Emits `event` on the calls' sink (what the SIP signalling learns
    /// about a call, such as its transfer).
    pub fn emit(&self, event: crate::events::CallEvent) {
        self.0.sink.emit(event);
    }

    /// Hangs a session up (cause `api_hangup`); `false` if there is none.
    pub fn hangup(&self, call_id: &str) -> bool {
        self.hangup_with(call_id, HangupCause::ApiHangup)
    }

    /// Hangs a session up with `cause` (the SIP leg: the caller's BYE or
    /// CANCEL is `caller_hangup`); `false` if there is none.
    pub fn hangup_with(&self, call_id: &str, cause: HangupCause) -> bool {
        self.hangup_session(call_id, cause, None)
    }

    /// [`RtpSessions::hangup_with`] and what the SIP signalling said (it
    /// goes on the call's hangup event).
    pub fn hangup_with_sip(&self, call_id: &str, cause: HangupCause, sip: crate::events::SipCause) -> bool {
        self.hangup_session(call_id, cause, Some(sip))
    }

    fn hangup_session(
        &self,
        call_id: &str,
        cause: HangupCause,
        sip: Option<crate::events::SipCause>,
    ) -> bool {
        let is_session = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(call_id);
        is_session && self.0.calls.hangup_with_sip(call_id, cause, sip)
    }

    /// Hands a caller digit that arrived beside the media (SIP INFO) to the
    /// session's call; `false` if there is none or its digit queue is full.
    pub fn send_digit(&self, call_id: &str, digit: char) -> bool {
        self.0
            .calls
            .send_input(call_id, crate::commands::CallInput::Digit(digit))
    }

    /// Tells the session's call that the caller held (`true`) or resumed
    /// it (SIP re-INVITE): on hold nothing is sent to the caller and the
    /// media timeout waits. `false` if there is no such call or its input
    /// queue is full.
    pub fn set_hold(&self, call_id: &str, held: bool) -> bool {
        self.0
            .calls
            .send_input(call_id, crate::commands::CallInput::Hold(held))
    }

    /// Tells the session's call that its media changed to `format` (SIP
    /// re-INVITE with another codec): the RTP leg reads and writes it from
    /// its next packet. `false` if there is no such call or its input queue
    /// is full.
    pub fn set_format(&self, call_id: &str, format: crate::sansio::rtp::RtpFormat) -> bool {
        self.0
            .calls
            .send_input(call_id, crate::commands::CallInput::Format(format))
    }

    /// Tells the session's call that its transfer to `target` failed (SIP
    /// REFER refused or a failure in its NOTIFY): the call goes on and its
    /// bot hears why. `false` if there is no such call or its input queue
    /// is full.
    pub fn transfer_failed(&self, call_id: &str, target: String, sip: crate::events::SipCause) -> bool {
        self.0.calls.send_input(
            call_id,
            crate::commands::CallInput::TransferFailed { target, sip },
        )
    }

    /// [`RtpSessions::hangup`] of a session `owner` created; `false` for a
    /// session of another owner, as for none.
    pub fn hangup_owned(&self, call_id: &str, owner: Option<&str>) -> bool {
        let owned = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(call_id)
            .is_some_and(|e| e.summary.owner.as_deref() == owner);
        owned && self.0.calls.hangup(call_id)
    }

    /// The running sessions.
    pub fn list(&self) -> Vec<SessionSummary> {
        let map = self.0.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().map(|e| e.summary.clone()).collect();
        v.sort_by(|a, b| a.created.cmp(&b.created).then(a.call_id.cmp(&b.call_id)));
        v
    }

    async fn start(
        &self,
        s: Setup,
        req: SessionRequest,
        write_sdp: impl FnOnce(LocalMedia) -> String,
    ) -> Result<Created, MediaError> {
        self.start_on(s, req, None, write_sdp).await
    }

    /// [`RtpSessions::start`] on the sockets of a reservation
    /// (`prebound`), or on new ones when `None`.
    async fn start_on(
        &self,
        s: Setup,
        req: SessionRequest,
        prebound: Option<(LegIo, SocketAddr)>,
        write_sdp: impl FnOnce(LocalMedia) -> String,
    ) -> Result<Created, MediaError> {
        let inner = &self.0;
        if *inner.stopping.borrow() {
            return Err(MediaError::Unavailable("shutting down".into()));
        }
        if inner.metrics.active_calls.load(Relaxed) >= inner.max_calls as i64 {
            inner.metrics.hangup(HangupCause::Overload);
            return Err(MediaError::Unavailable(format!(
                "call limit {} reached",
                inner.max_calls
            )));
        }
        let route_name = req.route.clone().unwrap_or_else(|| inner.cfg.route.clone());
        let route = inner
            .routes
            .get(&route_name)
            .cloned()
            .ok_or_else(|| MediaError::Session(format!("route {route_name:?} is not defined")))?;
        let call_id = match req.call_id.clone() {
            Some(id)
                if id.is_empty()
                    || id.len() > 128
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?' && b != b'#') =>
            {
                return Err(MediaError::Session(
                    "call_id must be 1-128 printable ASCII characters without '/', '?' or '#'".into(),
                ))
            }
            Some(id) => id,
            None => new_call_id(),
        };
        // Text that would reach the store and the bot is checked here,
        // where it enters (a NUL once stalled every tenant's call events).
        for (what, v) in [("caller", &req.caller), ("callee", &req.callee)] {
            if let Some(v) = v {
                if v.chars().count() > 256 {
                    return Err(MediaError::Session(format!(
                        "{what} is longer than 256 characters"
                    )));
                }
                crate::text::check(what, v).map_err(MediaError::Session)?;
            }
        }
        for (k, v) in &req.params {
            crate::text::check("params key", k).map_err(MediaError::Session)?;
            crate::text::check(&format!("params.{k}"), v).map_err(MediaError::Session)?;
        }
        let Some((stop_rx, claim)) = inner.calls.claim(&call_id) else {
            inner.metrics.duplicate_call_ids.fetch_add(1, Relaxed);
            return Err(MediaError::Session(format!("call_id {call_id:?} is in use")));
        };
        // On an error below, the claim drops and frees the id.
        let (io, bound) = match prebound {
            Some(p) => p,
            None => self.leg_io(&s).await?,
        };
        let advertised = SocketAddr::new(inner.cfg.advertise_ip.unwrap_or(bound.ip()), bound.port());
        let sdp = write_sdp(LocalMedia {
            addr: advertised,
            session_id: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        let codec = pcm_codec(s.codec, route.bot_rate());
        let params = RtpLegParams {
            codec,
            clock: s.codec.rtp_clock(),
            pt: s.pt,
            dtmf_pt: s.dtmf_pt,
            remote: s.remote,
            remote_rtcp: if s.rtcp_mux { s.remote } else { s.remote_rtcp },
            symmetric: s.symmetric,
            media_timeout: Duration::from_millis(inner.cfg.media_timeout_ms),
            opus_complexity: inner.cfg.opus_complexity,
            opus_fec: inner.cfg.opus_fec,
            rtcp_mux: s.rtcp_mux,
        };
        let req_owner = req.owner.clone();
        let on_end = req.on_end.clone();
        let mut bot_params = route.params.clone();
        bot_params.extend(req.params);
        let info = CallInfo {
            call_id: call_id.clone(),
            route: route_name.clone(),
            caller: req.caller,
            callee: req.callee,
            ingress: req.ingress.unwrap_or("rtp"),
            params: bot_params,
        };
        let ctx = CallContext {
            route_name,
            route,
            sink: inner.sink.clone(),
            metrics: inner.metrics.clone(),
            hangup_now: inner.hangup_now.clone(),
            max_frame_bytes: 0,
            media_timeout: Duration::from_millis(inner.cfg.media_timeout_ms),
            frame_timeout: Duration::ZERO,
            transfers: req.on_transfer.clone(),
            tracker: inner.tracker.clone(),
            recording: inner.recording.clone(),
            tenant_recognizers: inner.tenant_recognizers.clone(),
        };
        inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(
            call_id.clone(),
            Entry {
                summary: SessionSummary {
                    call_id: call_id.clone(),
                    local: advertised,
                    codec: s.codec,
                    created: SystemTime::now(),
                    owner: req_owner,
                },
            },
        );
        let registry = self.clone();
        let id = call_id.clone();
        inner.tracker.spawn(async move {
            let _claim = claim;
            run(io, params, info, ctx, stop_rx).await;
            registry
                .0
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Some(tx) = on_end {
                let _ = tx.send(id);
            }
        });
        Ok(Created {
            call_id,
            local: advertised,
            sdp,
            codec: s.codec,
            pt: s.pt,
            dtmf_pt: s.dtmf_pt,
        })
    }

    /// The leg's sockets (a port pair of its own) or its shared-port slot,
    /// and the local RTP address.
    async fn leg_io(&self, s: &Setup) -> Result<(LegIo, SocketAddr), MediaError> {
        let local = |r: std::io::Result<SocketAddr>| {
            r.map_err(|e| MediaError::Session(format!("local address: {e}")))
        };
        if let Some(shared) = &self.0.shared {
            let remote = s.remote.filter(|r| !r.ip().is_unspecified()).ok_or_else(|| {
                MediaError::Session(
                    "shared-port mode tells callers apart by address: the session needs the caller's address (SDP c=/m= or plain remote)".into(),
                )
            })?;
            return Ok((LegIo::Shared(shared.attach(remote)), local(shared.local_addr())?));
        }
        let (rtp, rtcp) = self.bind_pair(!s.rtcp_mux).await?;
        let bound = local(rtp.local_addr())?;
        Ok((LegIo::Own { rtp, rtcp }, bound))
    }

    /// Binds an even RTP port (and the next one for RTCP) from the range.
    async fn bind_pair(&self, with_rtcp: bool) -> Result<(UdpSocket, Option<UdpSocket>), MediaError> {
        let cfg = &self.0.cfg;
        let first = cfg.port_min + cfg.port_min % 2;
        let pairs = ((cfg.port_max.saturating_sub(first)) / 2 + 1) as usize;
        for _ in 0..pairs {
            let port = {
                let mut next = self.0.next_port.lock().unwrap_or_else(|e| e.into_inner());
                let p = *next;
                *next = if p.saturating_add(3) > cfg.port_max {
                    first
                } else {
                    p + 2
                };
                p
            };
            let Ok(rtp) = UdpSocket::bind((cfg.bind_ip, port)).await else {
                continue;
            };
            if !with_rtcp {
                return Ok((rtp, None));
            }
            if let Ok(rtcp) = UdpSocket::bind((cfg.bind_ip, port + 1)).await {
                return Ok((rtp, Some(rtcp)));
            }
        }
        Err(MediaError::Unavailable(format!(
            "no free RTP port pair in {}-{} on {}",
            cfg.port_min, cfg.port_max, cfg.bind_ip
        )))
    }
}

/// The RTP port of a call voxbridge places, held from its offer to its
/// answer ([`RtpSessions::reserve`]).
pub struct Reservation {
    /// Its own sockets and their address (none on the shared port).
    io: Option<(LegIo, SocketAddr)>,
    /// voxbridge's SDP offer for it.
    pub offer: String,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("own_port", &self.io.as_ref().map(|(_, a)| *a))
            .finish()
    }
}

struct Setup {
    codec: AudioCodec,
    pt: u8,
    dtmf_pt: Option<u8>,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    symmetric: bool,
}

impl Setup {
    /// A session as an offer and answer agreed it (`n`).
    fn negotiated(n: &sdp::Negotiated, rtcp_mux: bool, symmetric: bool) -> Setup {
        Setup {
            codec: n.codec,
            pt: n.pt,
            dtmf_pt: n.dtmf_pt,
            remote: Some(n.remote),
            remote_rtcp: Some(n.remote_rtcp),
            rtcp_mux,
            symmetric,
        }
    }
}

/// A random call id (`rtp-` and 16 hex digits).
fn new_call_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("rtp-{:016x}", h.finish())
}
