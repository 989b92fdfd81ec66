//! The user agent server: SIP requests from a trunk in, responses and
//! in-dialog requests out, RTP calls started and ended through actions.
//!
//! What it answers (over UDP, TCP and TLS alike; RFC 3261 unless named):
//! - INVITE with an SDP offer: `100 Trying` at once, `180 Ringing` (unless
//!   [`UasConfig::ringing`] is off), then [`UasAction::StartCall`]; the driver's [`SipUas::call_started`] makes
//!   the `200 OK` with the SDP answer (with [`UasConfig::early_media`],
//!   a `183` with the answer first and the `200` when that time is over;
//!   CANCEL meanwhile: `487`), or the refusal (`488` for an offer
//!   with no common codec, `503` with `Retry-After` when full). An INVITE
//!   without SDP (delayed offer) gets voxbridge's offer in the `200` (the
//!   driver makes a session that latches onto the caller's RTP) and its
//!   ACK must carry an answer that takes it, or the call ends with BYE.
//! - ACK (for the 2xx: matched to the dialog; for a refusal: to its
//!   transaction), CANCEL (`200`, then `487` for the INVITE, or the call
//!   ended if it already exists), BYE (`200` and [`UasAction::EndCall`]),
//!   a re-INVITE in the dialog (a refresh gets the same SDP; hold, a
//!   `sendonly` or `inactive` offer, gets `recvonly`/`inactive` with the
//!   version raised, and resume `sendrecv`, and the driver is told with
//!   [`UasAction::Hold`]; an offer without the call's codec is answered
//!   with the best enabled codec it has, on the same port, and the driver
//!   switches the RTP leg ([`UasAction::Format`]); one with no enabled
//!   codec gets `488` and the call goes on unchanged),
//!   INFO (`200`; a DTMF digit in `application/dtmf-relay` or
//!   `application/dtmf` becomes [`UasAction::Digit`]), OPTIONS
//!   (`200` with `Allow`: SBCs use it as a health check).
//! - Session timers (RFC 4028): an INVITE with `Session-Expires` from a
//!   caller that supports `timer` gets the interval back with
//!   `refresher=uac`; each re-INVITE or UPDATE restarts it, and a session
//!   not refreshed in time ends with BYE. Under 90 s: `422` with `Min-SE`.
//!   A caller that asks `refresher=uas` and takes UPDATE gets that, and
//!   voxbridge refreshes (`super::refresh`). With
//!   [`UasConfig::session_expires`] a caller that asks for no timer gets
//!   one all the same (RFC 4028 section 9): `refresher=uac` with `Require:
//!   timer` when it supports `timer`, else `refresher=uas` (no `Require`)
//!   when it takes UPDATE, so that voxbridge refreshes; a caller that does
//!   neither has no timer (nothing could refresh it).
//! - With [`UasConfig::auth`], a new INVITE without right credentials gets
//!   `401` with a challenge per configured algorithm (MD5, SHA-256: RFC
//!   8760); a right answer
//!   to a nonce older than 5 minutes gets a new one with `stale=true`.
//! - A required extension it lacks (`Require: 100rel`): `420` with
//!   `Unsupported`; `Max-Forwards: 0`: `483`.
//! - A request for a dialog it does not have: `481`; another method
//!   outside a dialog: `405` with `Allow`.
//! - When a call ends on voxbridge's side ([`SipUas::call_ended`]) it sends
//!   BYE (after the ACK, if that has not come yet); a 2xx never ACKed ends
//!   the call and sends BYE too.
//!
//! Datagrams that do not parse are counted; a request among them that
//! still has a request line, `Via`, `From`, `To`, `Call-ID` and `CSeq`
//! gets `400 Bad Request` with the reason in a `Warning` (sent to where it
//! came from), the rest is dropped (nothing to address). A stream that
//! cannot be framed is answered the same way where it can be, counted by
//! [`SipUas::stream_malformed`] and closed by the driver.
//!
//! Transports (RFC 3261 section 18): a message arrives with its [`Peer`],
//! the transport and address it came from. Over UDP a response goes where
//! the top `Via` says (RFC 3581 `rport` honoured) and the transactions
//! retransmit; over TCP and TLS it goes back on the connection the request
//! came on, and nothing is retransmitted (the 2xx still waits 64*T1 for
//! its ACK). A dialog's own requests (BYE) take its INVITE's transport and connection,
//! with our `Via` and `Contact` for that transport; once a caller's TCP
//! connection closes they go to its route or Contact address on a new one
//! ([`SipUas::connection_closed`]).

use super::dialog::{reanswer, user_of, with_direction, x_headers, Dialog, Ends, Phase};
use super::policy::{CallTarget, Cidr, RateLimit, RouteRule};
use crate::events::{HangupCause, SipCause};
use crate::sansio::rtp::RtpFormat;
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use voxbridge_proto::sdp::AudioCodec;
use voxbridge_proto::sip::auth::{challenge, Algorithm, Credentials};
use voxbridge_proto::sip::message::{is_keepalive, HeaderName, Message, MessageBuilder, Method};
use voxbridge_proto::sip::transaction::{Kind, State, Timers, Transaction, TxEvent};
use voxbridge_proto::sip::{bad_request, NameAddr, Transport, BRANCH_COOKIE};

/// Where a message came from or goes: its transport and the peer's address
/// (for TCP and TLS, the address of the connection, which the driver maps
/// back to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// The peer's address and port.
    pub addr: SocketAddr,
}

impl Peer {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.transport.via_name())
    }
}

/// How long a nonce voxbridge issued stays good.
const NONCE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);
/// Nonces remembered at most (older ones go first when full).
const NONCES_MAX: usize = 16_384;

/// Digest authentication of INVITEs (RFC 3261 section 22, RFC 8760).
#[derive(Debug, Clone)]
pub struct DigestAuth {
    /// The realm in challenges.
    pub realm: String,
    /// Passwords by user name.
    pub users: HashMap<String, String>,
    /// The challenges sent, in this order, and the algorithms accepted.
    /// Many UAs read only the first challenge (sipp 3.6 fails on a first
    /// `SHA-256` one), so the config's default puts MD5 first.
    pub algorithms: Vec<Algorithm>,
}

/// Methods voxbridge answers, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY";

/// The shortest session interval accepted (RFC 4028's minimum and default `Min-SE`).
pub const MIN_SE: u32 = 90;

/// The session timer an INVITE or UPDATE asks for (RFC 4028):
/// `Ok(Some((s, ours)))` when it sends `Session-Expires` and supports
/// `timer`, `ours` when it asks voxbridge to refresh (`refresher=uas`) and
/// takes UPDATE; `Ok(None)` when it does not use the timer, `Err(MIN_SE)`
/// when the interval is under the minimum (answered `422`).
fn requested_timer(msg: &Message) -> Result<Option<(u32, bool)>, u32> {
    let Some(value) = msg.header(HeaderName::SessionExpires) else {
        return Ok(None);
    };
    let seconds = value.split(';').next().and_then(|n| n.trim().parse::<u32>().ok());
    let Some(seconds) = seconds else {
        return Ok(None);
    };
    if seconds < MIN_SE {
        return Err(MIN_SE);
    }
    // voxbridge refreshes by UPDATE (RFC 4028 section 10 prefers it), so
    // only for a peer that takes UPDATE; otherwise the peer refreshes.
    let asks_us = value
        .split(';')
        .skip(1)
        .any(|p| p.trim().eq_ignore_ascii_case("refresher=uas"));
    Ok(supports_timer(msg).then_some((seconds, asks_us && takes_update(msg))))
}

/// The request says it supports (or requires) session timers.
fn supports_timer(msg: &Message) -> bool {
    msg.header_list(HeaderName::Supported)
        .chain(msg.header_list(HeaderName::Require))
        .any(|o| o.eq_ignore_ascii_case("timer"))
}

/// The request's `Allow` lists UPDATE.
fn takes_update(msg: &Message) -> bool {
    msg.header_list(HeaderName::Allow)
        .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
}

/// A session timer granted to a caller (RFC 4028).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Granted {
    /// Seconds.
    interval: u32,
    /// voxbridge refreshes (`refresher=uas`).
    ours: bool,
    /// The caller supports `timer`, so the response carries `Require: timer`.
    required: bool,
}

/// The session timer of an INVITE or UPDATE: the one it asks for, else,
/// when `imposed` is set, that interval (at least the caller's `Min-SE` and
/// [`MIN_SE`]) with the caller as refresher when it supports `timer`, or
/// voxbridge when it takes UPDATE; `Ok(None)` for no timer, `Err(MIN_SE)`
/// for an interval it asks for under the minimum.
fn granted_timer(msg: &Message, imposed: Option<u32>) -> Result<Option<Granted>, u32> {
    if let Some((interval, ours)) = requested_timer(msg)? {
        return Ok(Some(Granted {
            interval,
            ours,
            required: true,
        }));
    }
    let Some(imposed) = imposed else {
        return Ok(None);
    };
    let min_se = msg
        .header(HeaderName::MinSe)
        .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let interval = imposed.max(min_se).max(MIN_SE);
    Ok(if supports_timer(msg) {
        Some(Granted {
            interval,
            ours: false,
            required: true,
        })
    } else if takes_update(msg) {
        Some(Granted {
            interval,
            ours: true,
            required: false,
        })
    } else {
        None
    })
}

/// When the refresher sends its refresh: half the interval (RFC 4028
/// section 10).
pub(super) fn refresh_time(now: Instant, interval: u32) -> Instant {
    now + std::time::Duration::from_secs(u64::from(interval / 2))
}

/// When a session of `interval` seconds refreshed at `now` is over: the
/// interval less a third, at most 32 s (RFC 4028 section 10).
pub(super) fn session_deadline(now: Instant, interval: u32) -> Instant {
    now + std::time::Duration::from_secs(u64::from(interval - (interval / 3).min(32)))
}

/// How the UAS presents itself.
#[derive(Debug, Clone)]
pub struct UasConfig {
    /// Host and port for our `Via` and `Contact` over UDP (the advertised address).
    pub sent_by: String,
    /// The same for TCP (`sent_by` when none).
    pub sent_by_tcp: Option<String>,
    /// The same for TLS (`sent_by` when none).
    pub sent_by_tls: Option<String>,
    /// `User-Agent` and `Server` value.
    pub user_agent: String,
    /// RFC 3261 timers.
    pub timers: Timers,
    /// Seeds tags and branches (any value; the driver passes a random one).
    pub seed: u64,
    /// Source networks allowed to send anything (empty: everyone). Others
    /// are dropped unanswered and counted, as scanners should be.
    pub allow: Vec<Cidr>,
    /// New INVITEs admitted per second on average (0: no limit); over it,
    /// `503` with `Retry-After`.
    pub invite_rate: f64,
    /// INVITEs admitted at once before the rate applies.
    pub invite_burst: f64,
    /// `Retry-After` seconds on a rate-limit `503`.
    pub retry_after_s: u32,
    /// Route rules, first match wins.
    pub routes: Vec<RouteRule>,
    /// The route when no rule matches.
    pub default_route: String,
    /// Transactions held at most; past it requests get a stateless `503`.
    pub max_transactions: usize,
    /// Digest authentication of new INVITEs (none: every INVITE allowed).
    pub auth: Option<DigestAuth>,
    /// Send `180 Ringing` after `100 Trying` while the call is made.
    pub ringing: bool,
    /// Early media: the call's SDP answer goes out in a `183 Session
    /// Progress` once the call is made, and the `200` this long after.
    pub early_media: Option<Duration>,
    /// The codecs a call may change to when an offer in its dialog drops
    /// the one it runs (`rtp.codecs`, in voxbridge's order of preference).
    pub codecs: Vec<AudioCodec>,
    /// A session timer (seconds) for callers that ask for none (see the
    /// module docs); `None`: only callers that ask get one.
    pub session_expires: Option<u32>,
}

impl UasConfig {
    /// Host and port for our `Via` and `Contact` over `transport`.
    pub fn sent_by(&self, transport: Transport) -> &str {
        let own = match transport {
            Transport::Udp => None,
            Transport::Tcp => self.sent_by_tcp.as_deref(),
            Transport::Tls => self.sent_by_tls.as_deref(),
        };
        own.unwrap_or(&self.sent_by)
    }
}

/// What the driver does for the UAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UasAction {
    /// Create the RTP call `call_id` from `offer`, then report with
    /// [`SipUas::call_started`].
    StartCall {
        /// voxbridge call id to use.
        call_id: String,
        /// The route its rules chose.
        route: String,
        /// The SDP offer; `None` for a delayed offer (the driver makes the
        /// offer, and the ACK brings the answer).
        offer: Option<String>,
        /// The caller (From user part).
        caller: Option<String>,
        /// The callee (Request-URI user part).
        callee: Option<String>,
        /// Where the INVITE came from.
        source: SocketAddr,
        /// The INVITE's `X-` headers, for the bot.
        headers: Vec<(String, String)>,
    },
    /// The caller pressed `digit`, told by SIP INFO (RFC 6086 with
    /// `application/dtmf-relay` or `application/dtmf`).
    Digit {
        /// voxbridge call id.
        call_id: String,
        /// `0-9`, `*`, `#` or `A-D`.
        digit: char,
    },
    /// An offer in the dialog (re-INVITE, UPDATE) dropped the call's codec
    /// and was answered with `format`: the RTP leg switches to it.
    Format {
        /// voxbridge call id.
        call_id: String,
        /// The codec and payload types from now on.
        format: RtpFormat,
    },
    /// The caller held (`held`: its offer was `sendonly` or `inactive`)
    /// or resumed the call by re-INVITE or UPDATE: the media stops or
    /// resumes sending (RFC 3264 section 8.4).
    Hold {
        /// voxbridge call id.
        call_id: String,
        /// On hold now.
        held: bool,
    },
    /// The far end carried out a transfer ([`SipUas::transfer`]): the
    /// caller talks to `target` now (an `EndCall` follows).
    Transferred {
        /// voxbridge call id.
        call_id: String,
        /// The REFER's target.
        target: String,
    },
    /// A transfer was refused or its target did not answer; the call goes on.
    TransferFailed {
        /// voxbridge call id.
        call_id: String,
        /// The REFER's target.
        target: String,
        /// What SIP said.
        sip: SipCause,
    },
    /// A placed call ([`SipUas::dial`]) is ringing: `180` or `183` came.
    DialProgress {
        /// voxbridge call id.
        call_id: String,
        /// The response code.
        code: u16,
    },
    /// A placed call was answered: start its RTP call from `answer`, then
    /// report with [`SipUas::dial_started`].
    DialAnswered {
        /// voxbridge call id.
        call_id: String,
        /// The 2xx's SDP answer to voxbridge's offer.
        answer: String,
    },
    /// A placed call will not be answered: the final response's code and
    /// reason (`408` for no response or no answer within the ring
    /// timeout; no code when voxbridge gave it up).
    DialFailed {
        /// voxbridge call id.
        call_id: String,
        /// What SIP said.
        sip: SipCause,
    },
    /// Hang the RTP call up (the caller hung up or cancelled).
    EndCall {
        /// voxbridge call id.
        call_id: String,
        /// What happened in SIP terms, for the hangup event and the log: a
        /// CANCEL's `487`, or the BYE's or CANCEL's `Reason` header (RFC
        /// 3326) when it has one, else `BYE`, `ACK timeout`, ...
        sip: SipCause,
        /// The call's hangup cause: `caller_hangup` for BYE and CANCEL,
        /// `caller_gone` when the caller stopped answering (no ACK, no
        /// session refresh), `unsupported_audio` for an unusable answer.
        cause: HangupCause,
    },
}

/// Why the driver could not start a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No capacity (call limit, no RTP port, shutting down): `503`.
    Unavailable {
        /// Seconds for `Retry-After`.
        retry_after_s: u32,
    },
    /// The offer cannot be answered (no common codec, bad SDP): `488`.
    NotAcceptable(String),
    /// Anything else: `500`.
    Failed(String),
    /// The call ended before it could be answered: `480`.
    Ended,
}

/// Counters of what the UAS saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UasStats {
    /// Datagrams that did not parse (dropped) and streams that could not
    /// be framed (closed).
    pub malformed: u64,
    /// Of those, requests answered `400` (enough of them to address a
    /// response: see `voxbridge_proto::sip::bad_request`).
    pub bad_requests: u64,
    /// Keepalives (CR LF) received.
    pub keepalives: u64,
    /// New INVITEs.
    pub invites: u64,
    /// Calls answered with 200.
    pub answered: u64,
    /// INVITEs refused (4xx-6xx).
    pub refused: u64,
    /// INVITEs cancelled by the caller.
    pub cancelled: u64,
    /// Requests for unknown dialogs or transactions (481).
    pub unknown_dialog: u64,
    /// BYEs received.
    pub byes_received: u64,
    /// BYEs sent.
    pub byes_sent: u64,
    /// 2xx never ACKed.
    pub ack_timeouts: u64,
    /// Responses that matched no transaction (dropped).
    pub stray_responses: u64,
    /// Datagrams from outside the allowed networks (dropped unanswered).
    pub forbidden_source: u64,
    /// INVITEs refused by the rate limit (`503`).
    pub rate_limited: u64,
    /// Delayed-offer ACKs without an answer voxbridge can use (call ended).
    pub bad_answers: u64,
    /// Calls answered with early media first (`183` with SDP).
    pub early_media: u64,
    /// re-INVITEs answered (refresh, hold, resume, codec change).
    pub reinvites: u64,
    /// Offers in a dialog (re-INVITE, UPDATE) answered with another codec.
    pub codec_changes: u64,
    /// Sessions ended because the caller stopped refreshing them, or
    /// voxbridge's own refresh failed (RFC 4028).
    pub session_expired: u64,
    /// Session refreshes voxbridge sent (UPDATE, as the refresher).
    pub refreshes_sent: u64,
    /// DTMF digits received by SIP INFO.
    pub info_digits: u64,
    /// Requests answered with a stateless `503` at the transaction cap, and
    /// connections closed at the connection cap.
    pub overloaded: u64,
    /// Messages that could not be sent (their connection was gone or full).
    pub send_failures: u64,
    /// INVITEs challenged with `401` (no credentials, or an expired nonce).
    pub auth_challenges: u64,
    /// INVITEs whose credentials were wrong (`401` again, and logged).
    pub auth_failures: u64,
    /// Calls placed (INVITEs voxbridge sent).
    pub dials: u64,
    /// Of those, answered (2xx with an SDP answer).
    pub dials_answered: u64,
    /// Of those, failed (a final error, no response, the ring timeout).
    pub dials_failed: u64,
    /// Challenges answered with credentials.
    pub dial_auth: u64,
    /// CANCELs sent (the API gave the call up, or the ring timeout).
    pub dials_cancelled: u64,
    /// REGISTERs sent (first ones, refreshes, challenge answers).
    pub registers_sent: u64,
    /// Registrations accepted (`200`).
    pub registrations: u64,
    /// Registrations refused or unanswered (each tried again later).
    pub register_failures: u64,
    /// Registrations the registrars hold now (a gauge).
    pub registered: u64,
    /// Transfers asked for (REFERs sent).
    pub transfers: u64,
    /// Of those, carried out (a NOTIFY said `2xx`).
    pub transfers_completed: u64,
    /// Of those, refused or failed (the call went on).
    pub transfers_failed: u64,
    /// Transfers not asked for at all: a bad target, no such call up, or
    /// one already under way (from the bot or the API).
    pub transfers_refused: u64,
}

pub(super) struct TxEntry {
    pub(super) tx: Transaction,
    pub(super) dest: Peer,
    pub(super) dialog: Option<String>,
}

/// The UAS (see the module docs).
pub struct SipUas {
    pub(super) cfg: UasConfig,
    /// Our `Contact` per transport (UDP, TCP, TLS).
    pub(super) contacts: [String; 3],
    pub(super) counter: u64,
    pub(super) transactions: HashMap<String, TxEntry>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, String)>>,
    /// Dialogs by voxbridge call id.
    pub(super) dialogs: HashMap<String, Dialog>,
    /// voxbridge call id by (Call-ID, our tag).
    pub(super) by_sip: HashMap<(String, String), String>,
    pub(super) out: VecDeque<(Peer, Bytes)>,
    pub(super) actions: VecDeque<UasAction>,
    pub(super) stats: UasStats,
    pub(super) limiter: RateLimit,
    pub(super) draining: bool,
    /// Nonces issued, with when.
    pub(super) nonces: HashMap<String, Instant>,
    /// Calls placed and not answered yet, by voxbridge call id.
    pub(super) dials: HashMap<String, super::uac::Dial>,
    /// Registrations kept, by name.
    pub(super) registrations: HashMap<String, super::register::Registered>,
}

/// True when `ack` carries an SDP answer that takes PCMU, the one codec a
/// delayed-offer call offers (see `crate::driver::sip`).
fn answer_takes_pcmu(ack: &Message) -> bool {
    std::str::from_utf8(ack.body())
        .ok()
        .and_then(|s| voxbridge_proto::sdp::AudioOffer::parse(s).ok())
        .is_some_and(|a| {
            a.remote.port() != 0 && a.negotiate(&[voxbridge_proto::sdp::AudioCodec::Pcmu]).is_ok()
        })
}

/// The digit of a SIP INFO body: `Signal=5` (`application/dtmf-relay`, the
/// Cisco form most PBXs send) or a bare `5` / event code (`application/dtmf`);
/// event codes 10-15 are `*`, `#`, `A`-`D` as in RFC 4733.
fn info_digit(msg: &Message) -> Option<char> {
    let ctype = msg.header(HeaderName::ContentType)?.trim().to_ascii_lowercase();
    let body = std::str::from_utf8(msg.body()).ok()?;
    let signal = if ctype.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if ctype.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    match signal.parse::<u8>() {
        Ok(code) => voxbridge_proto::dtmf::digit_of(code),
        Err(_) => {
            let mut chars = signal.chars();
            let c = chars.next()?.to_ascii_uppercase();
            let ok = chars.next().is_none() && voxbridge_proto::dtmf::event_of(c).is_some();
            ok.then_some(c)
        }
    }
}

/// The direction voxbridge answers an offer's `a=` direction with.
fn answer_direction(offer: &Message) -> &'static str {
    use voxbridge_proto::sdp::{AudioOffer, Direction};
    let direction = std::str::from_utf8(offer.body())
        .ok()
        .and_then(|s| AudioOffer::parse(s).ok())
        .map_or(Direction::SendRecv, |o| o.direction);
    match direction {
        Direction::SendOnly => "recvonly",
        Direction::RecvOnly => "sendonly",
        Direction::Inactive => "inactive",
        Direction::SendRecv => "sendrecv",
    }
}

/// Whether a new offer in the dialog keeps the codec the call runs (the
/// first format of our `answer`); one that does not is answered with
/// another codec ([`reanswer`]). An answer that does not parse (none of
/// ours) lets every offer through.
fn keeps_codec(offer: &Message, answer: &str) -> bool {
    use voxbridge_proto::sdp::{AudioCodec, AudioOffer};
    let current = AudioOffer::parse(answer)
        .ok()
        .and_then(|a| a.negotiate(&AudioCodec::ALL).ok())
        .map(|n| n.codec);
    let Some(current) = current else {
        return true;
    };
    std::str::from_utf8(offer.body())
        .ok()
        .and_then(|s| AudioOffer::parse(s).ok())
        .is_some_and(|o| o.negotiate(&[current]).is_ok())
}

/// A request's `Reason` header (RFC 3326: `Q.850;cause=16;text="Normal
/// call clearing"`, `SIP;cause=200;text="Call completed elsewhere"`), or
/// `fallback` when it has none.
fn reason_of(msg: &Message, fallback: &str) -> String {
    msg.header_named("reason")
        .filter(|r| !r.trim().is_empty())
        .map_or_else(|| fallback.to_owned(), |r| r.trim().to_owned())
}

/// splitmix64: tags and branches need to be unique, not secret.
pub(super) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The server transaction key of RFC 3261 section 17.2.3 (ACK matches its
/// INVITE); requests without an RFC 3261 branch are keyed by Call-ID,
/// CSeq and From tag.
fn server_key(msg: &Message) -> Option<String> {
    let via = msg.top_via().ok()?;
    let method = match msg.method()? {
        Method::Ack => &Method::Invite,
        m => m,
    };
    match via.branch().filter(|b| b.starts_with(BRANCH_COOKIE)) {
        Some(branch) => Some(format!("s|{branch}|{}|{:?}|{method}", via.host, via.port)),
        None => {
            let from_tag = msg
                .header(HeaderName::From)
                .and_then(|f| NameAddr::parse(f).ok())
                .and_then(|n| n.tag().map(str::to_owned))
                .unwrap_or_default();
            let seq = msg.cseq().ok()?.seq;
            Some(format!("s2543|{}|{seq}|{from_tag}|{method}", msg.call_id()))
        }
    }
}

pub(super) fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
    }
}

pub(super) fn client_key(branch: &str, method: &Method) -> String {
    format!("c|{branch}|{method}")
}

impl SipUas {
    /// A UAS with no dialogs.
    pub fn new(cfg: UasConfig) -> SipUas {
        SipUas {
            limiter: RateLimit::new(cfg.invite_rate, cfg.invite_burst),
            draining: false,
            nonces: HashMap::new(),
            contacts: [Transport::Udp, Transport::Tcp, Transport::Tls].map(|t| match t {
                Transport::Udp => format!("<sip:voxbridge@{}>", cfg.sent_by(t)),
                _ => format!("<sip:voxbridge@{};transport={}>", cfg.sent_by(t), t.uri_param()),
            }),
            counter: cfg.seed,
            cfg,
            transactions: HashMap::new(),
            timers: BinaryHeap::new(),
            dialogs: HashMap::new(),
            by_sip: HashMap::new(),
            out: VecDeque::new(),
            actions: VecDeque::new(),
            stats: UasStats::default(),
            dials: HashMap::new(),
            registrations: HashMap::new(),
        }
    }

    /// What it has seen so far.
    pub fn stats(&self) -> UasStats {
        UasStats {
            registered: self.registered() as u64,
            ..self.stats
        }
    }

    /// Shutting down: new INVITEs get `503` with `Retry-After`; the calls
    /// up go on (and their BYEs are still sent and answered).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Dialogs held (calls starting, up, or ending) and calls placed but
    /// not answered yet.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len() + self.dials.len()
    }

    /// Transactions held.
    pub fn transactions(&self) -> usize {
        self.transactions.len()
    }

    pub(super) fn unique(&mut self) -> String {
        self.counter = self.counter.wrapping_add(1);
        format!("{:016x}", mix(self.counter))
    }

    /// Whether `source` may reach the endpoint (counted when not). Datagrams
    /// are checked here; the driver asks before it reads a new connection.
    pub fn admits(&mut self, source: SocketAddr) -> bool {
        let allowed = self.cfg.allow.is_empty() || self.cfg.allow.iter().any(|c| c.contains(source.ip()));
        if !allowed {
            self.stats.forbidden_source += 1;
        }
        allowed
    }

    /// A stream (TCP or TLS) that could not be framed: counted; the driver
    /// closes it.
    pub fn stream_malformed(&mut self, peer: Peer) {
        self.stats.malformed += 1;
        tracing::debug!(%peer, "SIP stream cannot be framed");
    }

    /// A connection refused at the driver's connection cap: counted.
    pub fn connection_refused(&mut self) {
        self.stats.overloaded += 1;
    }

    /// A message for `peer` could not be sent (its connection is gone or
    /// its queue full): counted. The transaction's own timeout ends what
    /// waited for an answer.
    pub fn send_failed(&mut self, peer: Peer) {
        self.stats.send_failures += 1;
        tracing::debug!(%peer, "SIP message not sent");
    }

    /// `peer`'s TCP connection (one it opened) closed. The dialogs it
    /// carried send their requests (the BYE) to the next hop their route
    /// set or remote target names from now on, over a new connection (RFC
    /// 3261 section 18.1.1: a request whose connection is gone opens one);
    /// returns those addresses for the driver to connect to on demand.
    /// Over TLS (a caller's certificate name cannot be checked), to a host
    /// name (no DNS here) and to another host than the connection's (a
    /// caller must not make voxbridge connect anywhere it likes) nothing
    /// changes: a BYE there is counted as a send failure and the dialog
    /// ends.
    pub fn connection_closed(&mut self, peer: Peer) -> Vec<Peer> {
        if peer.transport != Transport::Tcp {
            return Vec::new();
        }
        let mut next = Vec::new();
        for dialog in self.dialogs.values_mut().filter(|d| d.peer == peer) {
            // Only on the caller's own host: a Contact elsewhere would let
            // any caller make voxbridge connect where it names.
            if let Some(addr) = dialog.next_hop().filter(|a| a.ip() == peer.addr.ip()) {
                dialog.peer = Peer {
                    transport: Transport::Tcp,
                    addr,
                };
                if !next.contains(&dialog.peer) {
                    next.push(dialog.peer);
                }
            }
        }
        next
    }

    /// Where the dialogs' requests go now (their peers).
    pub fn dialog_peers(&self) -> std::collections::HashSet<Peer> {
        self.dialogs.values().map(|d| d.peer).collect()
    }

    /// No connection to `peer` could be opened: its client transactions
    /// end at once as the RFC says a transport error does (section
    /// 8.1.3.1: as a `503`), so a placed call fails and a registration is
    /// tried again later instead of waiting for Timer B or F.
    pub fn transport_failed(&mut self, now: Instant, peer: Peer) {
        let keys: Vec<String> = self
            .transactions
            .iter()
            .filter(|(k, e)| e.dest == peer && k.starts_with("c|"))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(entry) = self.transactions.remove(&key) else {
                continue;
            };
            self.stats.send_failures += 1;
            let Some(owner) = entry.dialog else {
                continue;
            };
            if key.ends_with("|INVITE") {
                self.dial_over(&owner, SipCause::new(Some(503), "no connection to the gateway"));
            } else if key.ends_with("|REGISTER") {
                self.register_event(now, &owner, TxEvent::Timeout);
            } else if key.ends_with("|REFER") {
                self.refer_event(&owner, TxEvent::Timeout);
            }
        }
    }

    /// A datagram from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: Bytes) {
        if !self.admits(source) {
            return;
        }
        if is_keepalive(&data) {
            self.stats.keepalives += 1;
            return;
        }
        let msg = match Message::parse(data.clone()) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                let why = e.to_string();
                match bad_request(&data, &why) {
                    Some(r) => {
                        self.stats.bad_requests += 1;
                        tracing::debug!(%source, error = %why, "SIP request malformed: 400");
                        self.out.push_back((Peer::udp(source), r));
                    }
                    None => tracing::debug!(%source, error = %why, "SIP datagram dropped"),
                }
                return;
            }
        };
        self.handle_message(now, Peer::udp(source), msg);
    }

    /// A message from `peer`: a parsed datagram, or one framed off a TCP or
    /// TLS connection (`voxbridge_proto::sip::decode_stream`) whose source
    /// [`SipUas::admits`] accepted.
    pub fn handle_message(&mut self, now: Instant, peer: Peer, msg: Message) {
        if msg.is_request() {
            self.on_request(now, peer, msg);
        } else {
            self.on_response(now, msg);
        }
    }

    fn on_response(&mut self, now: Instant, msg: Message) {
        let (Ok(via), Ok(cseq)) = (msg.top_via(), msg.cseq()) else {
            self.stats.stray_responses += 1;
            return;
        };
        let key = client_key(via.branch().unwrap_or_default(), &cseq.method);
        match self.transactions.get_mut(&key) {
            Some(entry) => {
                entry.tx.on_response(now, msg);
                self.pump(now, &key);
            }
            None => self.stats.stray_responses += 1,
        }
    }

    fn on_request(&mut self, now: Instant, source: Peer, msg: Message) {
        let Some(key) = server_key(&msg) else {
            self.stats.malformed += 1;
            return;
        };
        let method = msg.method().cloned().unwrap_or(Method::Other(String::new()));
        // A retransmission, or the ACK of a refusal: the transaction handles
        // it. An ACK reaching an INVITE transaction that sent a 2xx (same
        // branch: RFC 2543 peers) is the 2xx's ACK.
        if let Some(entry) = self.transactions.get_mut(&key) {
            if method == Method::Ack && entry.tx.state() == State::Accepted {
                self.ack_for_2xx(now, &msg);
            } else {
                entry.tx.on_request(now, &msg);
                self.pump(now, &key);
            }
            return;
        }
        if method == Method::Ack {
            // An ACK for a 2xx is its own transaction: match it to the dialog.
            if !self.ack_for_2xx(now, &msg) {
                self.stats.unknown_dialog += 1;
            }
            return;
        }
        // Over a connection, responses go back on it; over UDP, where the
        // top Via says.
        let dest = match source.transport {
            Transport::Udp => Peer::udp(
                msg.top_via()
                    .map(|v| v.response_target(source.addr, false))
                    .unwrap_or(source.addr),
            ),
            _ => source,
        };
        // Every request holds a transaction for up to 32 s: past the cap
        // (a flood of OPTIONS, say) requests get a stateless 503 instead.
        if self.transactions.len() >= self.cfg.max_transactions {
            self.stats.overloaded += 1;
            let r = self
                .response(&msg, 503, "Service Unavailable", source)
                .header("Retry-After", self.cfg.retry_after_s)
                .build();
            self.out.push_back((dest, r));
            return;
        }
        let to_tag = msg
            .header(HeaderName::To)
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|n| n.tag().map(str::to_owned));
        let tx = Transaction::server(&msg, source.transport.is_reliable(), self.cfg.timers);
        self.transactions.insert(
            key.clone(),
            TxEntry {
                tx,
                dest,
                dialog: None,
            },
        );
        // RFC 3261 section 8.2.2.3 and 16.3: an extension the caller
        // requires that voxbridge lacks, or a request out of hops.
        if method != Method::Cancel {
            let unsupported: Vec<&str> = msg
                .header_list(HeaderName::Require)
                .filter(|o| !o.eq_ignore_ascii_case("timer"))
                .collect();
            if !unsupported.is_empty() {
                let list = unsupported.join(", ");
                let r = self
                    .response(&msg, 420, "Bad Extension", source)
                    .header("Unsupported", list)
                    .build();
                self.respond(now, &key, 420, r);
                return;
            }
            if msg.header(HeaderName::MaxForwards).map(str::trim) == Some("0") {
                let r = self.response(&msg, 483, "Too Many Hops", source).build();
                self.respond(now, &key, 483, r);
                return;
            }
        }
        match (method, to_tag) {
            (Method::Invite, None) => self.new_invite(now, source, key, msg),
            (Method::Cancel, _) => self.cancel(now, source, key, &msg),
            (Method::Options, None) => {
                let r = self
                    .response(&msg, 200, "OK", source)
                    .header("Allow", ALLOW)
                    .header("Accept", "application/sdp")
                    .build();
                self.respond(now, &key, 200, r);
            }
            (method, Some(tag)) => self.in_dialog(now, source, key, &msg, method, tag),
            (_, None) => {
                let r = self
                    .response(&msg, 405, "Method Not Allowed", source)
                    .header("Allow", ALLOW)
                    .build();
                self.respond(now, &key, 405, r);
            }
        }
    }

    fn response(&mut self, req: &Message, code: u16, reason: &str, source: Peer) -> MessageBuilder {
        let tag = self.unique();
        MessageBuilder::response_to(req, code, reason, Some(&tag), Some(source.addr))
            .header("Server", &self.cfg.user_agent)
    }

    /// Checks an INVITE's `Authorization`: `Ok` when it is right for a
    /// known user with a nonce we issued and that is still good;
    /// `Err(stale)` otherwise (`stale` when only the nonce was too old).
    fn authenticate(&mut self, now: Instant, msg: &Message, source: Peer) -> Result<(), bool> {
        let Some(auth) = &self.cfg.auth else {
            return Ok(());
        };
        let Some(value) = msg.header(HeaderName::Authorization) else {
            self.stats.auth_challenges += 1;
            return Err(false);
        };
        let creds = match Credentials::parse(value) {
            Ok(c) => c,
            Err(e) => {
                self.stats.auth_failures += 1;
                tracing::warn!(%source, error = %e, "SIP INVITE with unusable credentials");
                return Err(false);
            }
        };
        let right = creds.realm == auth.realm
            && auth.algorithms.contains(&creds.algorithm)
            && auth
                .users
                .get(&creds.username)
                .is_some_and(|password| creds.verify("INVITE", password));
        if !right {
            self.stats.auth_failures += 1;
            tracing::warn!(%source, user = %creds.username, "SIP INVITE with wrong credentials");
            return Err(false);
        }
        let fresh = self
            .nonces
            .get(&creds.nonce)
            .is_some_and(|issued| now.saturating_duration_since(*issued) < NONCE_LIFETIME);
        if !fresh {
            self.stats.auth_challenges += 1;
            return Err(true);
        }
        Ok(())
    }

    /// A `401` with a fresh nonce and one challenge per configured
    /// algorithm, in the configured order (RFC 8760 section 2.4).
    fn challenge_response(&mut self, now: Instant, msg: &Message, source: Peer, stale: bool) -> Bytes {
        if self.nonces.len() >= NONCES_MAX {
            self.nonces
                .retain(|_, issued| now.saturating_duration_since(*issued) < NONCE_LIFETIME);
            if self.nonces.len() >= NONCES_MAX {
                self.nonces.clear();
            }
        }
        let nonce = format!("{}{}", self.unique(), self.unique());
        self.nonces.insert(nonce.clone(), now);
        let (realm, algorithms) = match &self.cfg.auth {
            Some(a) => (a.realm.clone(), a.algorithms.clone()),
            None => ("voxbridge".to_owned(), vec![Algorithm::Md5]),
        };
        let mut b = self.response(msg, 401, "Unauthorized", source);
        for algorithm in algorithms {
            b = b.header("WWW-Authenticate", challenge(&realm, &nonce, algorithm, stale));
        }
        b.build()
    }

    fn new_invite(&mut self, now: Instant, source: Peer, key: String, msg: Message) {
        self.stats.invites += 1;
        let limited = !self.limiter.admit(now);
        if limited || self.draining {
            if limited {
                self.stats.rate_limited += 1;
            }
            self.stats.refused += 1;
            let r = self
                .response(&msg, 503, "Service Unavailable", source)
                .header("Retry-After", self.cfg.retry_after_s)
                .build();
            self.respond(now, &key, 503, r);
            return;
        }
        if self.cfg.auth.is_some() {
            if let Err(stale) = self.authenticate(now, &msg, source) {
                let r = self.challenge_response(now, &msg, source, stale);
                self.respond(now, &key, 401, r);
                return;
            }
        }
        let trying = MessageBuilder::response_to(&msg, 100, "Trying", None, Some(source.addr)).build();
        self.respond(now, &key, 100, trying);
        let timer = match granted_timer(&msg, self.cfg.session_expires) {
            Ok(timer) => timer,
            Err(min) => {
                self.stats.refused += 1;
                let r = self
                    .response(&msg, 422, "Session Interval Too Small", source)
                    .header("Min-SE", min)
                    .build();
                self.respond(now, &key, 422, r);
                return;
            }
        };
        let is_sdp = msg
            .header(HeaderName::ContentType)
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/sdp"));
        let offer = match std::str::from_utf8(msg.body()) {
            Ok(s) if is_sdp && !s.trim().is_empty() => Some(s.to_owned()),
            _ if msg.body().is_empty() => None,
            _ => {
                self.stats.refused += 1;
                let r = self
                    .response(&msg, 488, "Not Acceptable Here", source)
                    .header(
                        "Warning",
                        "399 voxbridge \"the INVITE's body is not an SDP offer\"",
                    )
                    .build();
                self.respond(now, &key, 488, r);
                return;
            }
        };
        let local_tag = self.unique();
        let call_id = format!("sip-{local_tag}");
        let caller = user_of(msg.header(HeaderName::From));
        let callee = msg
            .request_uri()
            .and_then(|u| voxbridge_proto::sip::SipUri::parse(u).ok())
            .and_then(|u| u.user.map(str::to_owned))
            .or_else(|| user_of(msg.header(HeaderName::To)));
        let headers = x_headers(&msg);
        let to = user_of(msg.header(HeaderName::To));
        let target = CallTarget {
            user: callee.as_deref(),
            from: caller.as_deref(),
            to: to.as_deref(),
            source: source.addr.ip(),
        };
        let route = self
            .cfg
            .routes
            .iter()
            .find(|r| r.matches(&target))
            .map_or_else(|| self.cfg.default_route.clone(), |r| r.route.clone());
        self.by_sip
            .insert((msg.call_id().to_owned(), local_tag.clone()), call_id.clone());
        if let Some(entry) = self.transactions.get_mut(&key) {
            entry.dialog = Some(call_id.clone());
        }
        let ends = Ends::of_invite(&msg, &local_tag, source);
        let dialog = Dialog {
            call_id: call_id.clone(),
            local_tag,
            invite: msg,
            local: ends.local,
            remote: ends.remote,
            target: ends.target,
            route_set: ends.route_set,
            ack: None,
            invite_tx: key.clone(),
            peer: source,
            phase: Phase::Starting {
                cancelled: false,
                ended: false,
            },
            answer: None,
            local_cseq: 0,
            awaiting_answer: offer.is_none(),
            session_interval: timer.map(|g| g.interval),
            session_deadline: None,
            we_refresh: timer.is_some_and(|g| g.ours),
            timer_required: timer.is_some_and(|g| g.required),
            refresh_at: None,
            held: false,
            transfer: None,
            queued_transfer: None,
        };
        // 180 opens the early dialog (our tag, our Contact) while the call
        // and its bot link are made.
        let ringing = self.cfg.ringing.then(|| {
            dialog
                .invite_response(180, "Ringing")
                .header("Contact", &self.contacts[transport_index(source.transport)])
                .build()
        });
        self.dialogs.insert(call_id.clone(), dialog);
        if let Some(r) = ringing {
            self.respond(now, &key, 180, r);
        }
        self.actions.push_back(UasAction::StartCall {
            call_id,
            route,
            offer,
            caller,
            callee,
            source: source.addr,
            headers,
        });
    }

    /// The driver's answer to [`UasAction::StartCall`]: the SDP answer, or why not.
    pub fn call_started(&mut self, now: Instant, call_id: &str, result: Result<String, Refusal>) {
        let Some(dialog) = self.dialogs.get_mut(call_id) else {
            return;
        };
        let (cancelled, ended) = match dialog.phase {
            Phase::Starting { cancelled, ended } => (cancelled, ended),
            Phase::Early | Phase::Answered { .. } => return,
        };
        let key = dialog.invite_tx.clone();
        let result = match result {
            Ok(_) if ended && !cancelled => Err(Refusal::Ended),
            r => r,
        };
        match result {
            Ok(_) if cancelled => {
                self.actions.push_back(UasAction::EndCall {
                    call_id: call_id.to_owned(),
                    sip: SipCause::new(Some(487), "Request Terminated"),
                    cause: HangupCause::CallerHangup,
                });
                self.forget(call_id);
            }
            // A delayed offer cannot go in an unreliable 183 (RFC 3261
            // 13.2.1): its call is answered at once.
            Ok(answer) => match self.cfg.early_media.filter(|_| !dialog.awaiting_answer) {
                Some(early) => {
                    // Media first (RFC 3261 13.3.1.1: a provisional response
                    // with the answer); the 200 repeats it when the timer fires.
                    let r = dialog
                        .invite_response(183, "Session Progress")
                        .header("Contact", &self.contacts[transport_index(dialog.peer.transport)])
                        .header("Allow", ALLOW)
                        .header("Server", &self.cfg.user_agent)
                        .body("application/sdp", answer.clone())
                        .build();
                    dialog.phase = Phase::Early;
                    dialog.answer = Some(answer);
                    self.stats.early_media += 1;
                    self.timers.push(Reverse((now + early, format!("e|{call_id}"))));
                    self.respond(now, &key, 183, r);
                }
                None => {
                    dialog.answer = Some(answer);
                    self.answer(now, call_id);
                }
            },
            Err(_) if cancelled => self.forget(call_id),
            Err(refusal) => {
                let builder = match &refusal {
                    Refusal::Unavailable { retry_after_s } => dialog
                        .invite_response(503, "Service Unavailable")
                        .header("Retry-After", retry_after_s),
                    Refusal::NotAcceptable(why) => dialog
                        .invite_response(488, "Not Acceptable Here")
                        .header("Warning", format_args!("399 voxbridge {:?}", why)),
                    Refusal::Failed(why) => dialog
                        .invite_response(500, "Server Internal Error")
                        .header("Warning", format_args!("399 voxbridge {:?}", why)),
                    Refusal::Ended => dialog.invite_response(480, "Temporarily Unavailable"),
                };
                let code = match refusal {
                    Refusal::Unavailable { .. } => 503,
                    Refusal::NotAcceptable(_) => 488,
                    Refusal::Failed(_) => 500,
                    Refusal::Ended => 480,
                };
                self.stats.refused += 1;
                self.respond(now, &key, code, builder.build());
                self.forget(call_id);
            }
        }
    }

    /// Sends the `200 OK` for `call_id`'s INVITE with its SDP answer (and
    /// the session timer when the caller asked for one).
    fn answer(&mut self, now: Instant, call_id: &str) {
        let Some(dialog) = self.dialogs.get_mut(call_id) else {
            return;
        };
        let Some(answer) = dialog.answer.clone() else {
            return;
        };
        let mut b = dialog
            .invite_response(200, "OK")
            .header("Contact", &self.contacts[transport_index(dialog.peer.transport)])
            .header("Allow", ALLOW)
            .header("Supported", "timer")
            .header("Server", &self.cfg.user_agent);
        if let Some(interval) = dialog.session_interval {
            let refresher = if dialog.we_refresh { "uas" } else { "uac" };
            b = b.header(
                "Session-Expires",
                format_args!("{interval};refresher={refresher}"),
            );
            // Not for a caller that does not support `timer` (RFC 4028
            // section 9): voxbridge refreshes that session itself.
            if dialog.timer_required {
                b = b.header("Require", "timer");
            }
            let timer = dialog.arm_session_timer(now);
            self.timers.push(Reverse(timer));
        }
        let r = b.body("application/sdp", answer).build();
        dialog.phase = Phase::Answered {
            acked: false,
            bye_pending: false,
        };
        let key = dialog.invite_tx.clone();
        self.stats.answered += 1;
        self.respond(now, &key, 200, r);
    }

    /// The early-media timer of `call_id` fired: the `200` goes out (the
    /// call may have ended or been cancelled since: then nothing).
    fn early_media_over(&mut self, now: Instant, call_id: &str) {
        if self
            .dialogs
            .get(call_id)
            .is_some_and(|d| matches!(d.phase, Phase::Early))
        {
            self.answer(now, call_id);
        }
    }

    /// The RTP call `call_id` ended on voxbridge's side (bot hangup, media
    /// timeout, API): BYE the caller.
    pub fn call_ended(&mut self, now: Instant, call_id: &str) {
        let Some(dialog) = self.dialogs.get_mut(call_id) else {
            return;
        };
        match dialog.phase {
            Phase::Answered { acked: true, .. } => self.send_bye(now, call_id),
            Phase::Answered { acked: false, .. } => {
                dialog.phase = Phase::Answered {
                    acked: false,
                    bye_pending: true,
                };
            }
            // Ended before its start was reported: the INVITE gets a 480
            // when the start result comes.
            Phase::Starting { cancelled, .. } => {
                dialog.phase = Phase::Starting {
                    cancelled,
                    ended: true,
                };
            }
            // Ended during early media (the bot hung up, say): the INVITE
            // gets its final answer, a 480, and the dialog is gone.
            Phase::Early => {
                let r = dialog
                    .invite_response(480, "Temporarily Unavailable")
                    .header("Server", &self.cfg.user_agent)
                    .build();
                let key = dialog.invite_tx.clone();
                self.stats.refused += 1;
                self.respond(now, &key, 480, r);
                self.forget(call_id);
            }
        }
    }

    pub(super) fn send_bye(&mut self, now: Instant, call_id: &str) {
        let branch = format!("{BRANCH_COOKIE}{}", self.unique());
        let Some(dialog) = self.dialogs.get_mut(call_id) else {
            return;
        };
        let transport = dialog.peer.transport;
        let bye = dialog
            .request(
                &Method::Bye,
                self.cfg.sent_by(transport),
                &branch,
                &self.contacts[transport_index(transport)],
            )
            .header("User-Agent", &self.cfg.user_agent)
            .build();
        let dest = dialog.peer;
        self.stats.byes_sent += 1;
        if let Err(e) = self.start_client(now, bye, &Method::Bye, &branch, dest, None) {
            tracing::error!(error = %e, "SIP request not sent");
        }
        self.forget(call_id);
    }

    /// Starts the client transaction of `request` (its `method` and
    /// `branch`) to `dest` and sends it; `owner` (a call id, a registration
    /// name) gets its responses and timeouts (see [`SipUas::pump`]). `Err`
    /// when the request cannot make a transaction.
    pub(super) fn start_client(
        &mut self,
        now: Instant,
        request: Bytes,
        method: &Method,
        branch: &str,
        dest: Peer,
        owner: Option<String>,
    ) -> Result<(), String> {
        let tx = Transaction::client(now, request, dest.transport.is_reliable(), self.cfg.timers)
            .map_err(|e| format!("{method} not built: {e}"))?;
        let key = client_key(branch, method);
        self.transactions.insert(
            key.clone(),
            TxEntry {
                tx,
                dest,
                dialog: owner,
            },
        );
        self.pump(now, &key);
        Ok(())
    }

    pub(super) fn forget(&mut self, call_id: &str) {
        if let Some(d) = self.dialogs.remove(call_id) {
            self.by_sip.remove(&(d.invite.call_id().to_owned(), d.local_tag));
        }
    }

    fn dialog_of(&self, msg: &Message, local_tag: &str) -> Option<String> {
        self.by_sip
            .get(&(msg.call_id().to_owned(), local_tag.to_owned()))
            .cloned()
    }

    /// An ACK with our tag: the 2xx's ACK. True when it matched a dialog.
    fn ack_for_2xx(&mut self, now: Instant, msg: &Message) -> bool {
        let tag = msg
            .header(HeaderName::To)
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|n| n.tag().map(str::to_owned));
        let Some(call_id) = tag.and_then(|t| self.dialog_of(msg, &t)) else {
            return false;
        };
        let Some(dialog) = self.dialogs.get_mut(&call_id) else {
            return false;
        };
        let key = dialog.invite_tx.clone();
        let mut bye_pending = match dialog.phase {
            Phase::Answered { bye_pending, .. } => {
                dialog.phase = Phase::Answered {
                    acked: true,
                    bye_pending,
                };
                bye_pending
            }
            Phase::Starting { .. } | Phase::Early => false,
        };
        if dialog.awaiting_answer && matches!(dialog.phase, Phase::Answered { .. }) {
            dialog.awaiting_answer = false;
            if !answer_takes_pcmu(msg) {
                self.stats.bad_answers += 1;
                self.actions.push_back(UasAction::EndCall {
                    call_id: call_id.clone(),
                    sip: SipCause::new(None, "no usable SDP answer in the ACK"),
                    cause: HangupCause::UnsupportedAudio,
                });
                bye_pending = true;
            }
        }
        if let Some(entry) = self.transactions.get_mut(&key) {
            entry.tx.ack_received();
            self.pump(now, &key);
        }
        if bye_pending {
            self.send_bye(now, &call_id);
        } else {
            self.send_queued_transfer(now, &call_id);
        }
        true
    }

    fn cancel(&mut self, now: Instant, source: Peer, key: String, msg: &Message) {
        // The CANCEL names the INVITE's transaction: same branch, method INVITE.
        let invite_key = key.rsplit_once('|').map(|(k, _)| format!("{k}|INVITE"));
        let call_id = invite_key
            .as_ref()
            .and_then(|k| self.transactions.get(k))
            .and_then(|e| e.dialog.clone());
        let Some(call_id) = call_id else {
            self.stats.unknown_dialog += 1;
            let r = self
                .response(msg, 481, "Call/Transaction Does Not Exist", source)
                .build();
            self.respond(now, &key, 481, r);
            return;
        };
        let r = self.response(msg, 200, "OK", source).build();
        self.respond(now, &key, 200, r);
        let Some(dialog) = self.dialogs.get_mut(&call_id) else {
            return;
        };
        match dialog.phase {
            Phase::Starting { .. } => {
                if let Phase::Starting { ended, .. } = dialog.phase {
                    dialog.phase = Phase::Starting {
                        cancelled: true,
                        ended,
                    };
                }
                let r = dialog.invite_response(487, "Request Terminated").build();
                let invite_tx = dialog.invite_tx.clone();
                self.stats.cancelled += 1;
                self.respond(now, &invite_tx, 487, r);
                // The call may already exist in the driver: end it (a no-op if not).
                self.actions.push_back(UasAction::EndCall {
                    call_id,
                    sip: SipCause::new(Some(487), &reason_of(msg, "Request Terminated")),
                    cause: HangupCause::CallerHangup,
                });
            }
            // Early media: the call exists; the INVITE ends with 487.
            Phase::Early => {
                let r = dialog.invite_response(487, "Request Terminated").build();
                let invite_tx = dialog.invite_tx.clone();
                self.stats.cancelled += 1;
                self.respond(now, &invite_tx, 487, r);
                self.actions.push_back(UasAction::EndCall {
                    call_id: call_id.clone(),
                    sip: SipCause::new(Some(487), &reason_of(msg, "Request Terminated")),
                    cause: HangupCause::CallerHangup,
                });
                self.forget(&call_id);
            }
            // Too late: the 200 went out; the caller will BYE.
            Phase::Answered { .. } => {}
        }
    }

    fn in_dialog(
        &mut self,
        now: Instant,
        source: Peer,
        key: String,
        msg: &Message,
        method: Method,
        tag: String,
    ) {
        let Some(call_id) = self.dialog_of(msg, &tag) else {
            self.stats.unknown_dialog += 1;
            let r = self
                .response(msg, 481, "Call/Transaction Does Not Exist", source)
                .build();
            self.respond(now, &key, 481, r);
            return;
        };
        let answer = self.dialogs.get(&call_id).and_then(|d| d.answer.clone());
        let mut ok = MessageBuilder::response_to(msg, 200, "OK", None, Some(source.addr))
            .header("Server", &self.cfg.user_agent);
        if matches!(method, Method::Invite | Method::Update) {
            // A refresh (RFC 4028): the timer restarts with what it asks for.
            // A timer voxbridge imposed stays as it is for a request that
            // asks none (a re-INVITE often leaves `Allow` out).
            let imposed = self
                .dialogs
                .get(&call_id)
                .filter(|d| self.cfg.session_expires.is_some() && d.session_interval.is_some())
                .and_then(|d| {
                    Some(Granted {
                        interval: d.session_interval?,
                        ours: d.we_refresh,
                        required: d.timer_required,
                    })
                });
            let granted = match imposed {
                Some(kept) => requested_timer(msg).map(|asked| {
                    Some(asked.map_or(kept, |(interval, ours)| Granted {
                        interval,
                        ours,
                        required: true,
                    }))
                }),
                None => granted_timer(msg, self.cfg.session_expires),
            };
            let interval = match granted {
                Ok(interval) => interval,
                Err(min) => {
                    let r = self
                        .response(msg, 422, "Session Interval Too Small", source)
                        .header("Min-SE", min)
                        .build();
                    self.respond(now, &key, 422, r);
                    return;
                }
            };
            if let Some(d) = self.dialogs.get_mut(&call_id) {
                d.session_interval = interval.map(|g| g.interval);
                d.we_refresh = interval.is_some_and(|g| g.ours);
                d.timer_required = interval.is_some_and(|g| g.required);
                d.session_deadline = None;
                d.refresh_at = None;
                if let Some(g) = interval {
                    let refresher = if g.ours { "uas" } else { "uac" };
                    ok = ok.header(
                        "Session-Expires",
                        format_args!("{};refresher={refresher}", g.interval),
                    );
                    if g.required {
                        ok = ok.header("Require", "timer");
                    }
                    let timer = d.arm_session_timer(now);
                    self.timers.push(Reverse(timer));
                }
            }
        }
        match method {
            Method::Bye => {
                self.stats.byes_received += 1;
                self.respond(now, &key, 200, ok.build());
                self.actions.push_back(UasAction::EndCall {
                    call_id: call_id.clone(),
                    sip: SipCause::new(None, &reason_of(msg, "BYE")),
                    cause: HangupCause::CallerHangup,
                });
                self.forget(&call_id);
            }
            Method::Invite | Method::Update => {
                let is_invite = matches!(method, Method::Invite);
                let sdp = match answer {
                    // A re-INVITE without an offer gets the current SDP as
                    // ours (its ACK answers); an UPDATE without one, none.
                    Some(previous) if msg.body().is_empty() => is_invite.then_some(previous),
                    Some(previous) => match self.answer_in_dialog(&call_id, msg, &previous) {
                        Some(sdp) => Some(sdp),
                        None => {
                            self.stats.refused += 1;
                            let r = MessageBuilder::response_to(msg, 488, "Not Acceptable Here", None, Some(source.addr))
                                .header(
                                    "Warning",
                                    "305 voxbridge \"no codec of the offer is enabled (rtp.codecs); the call goes on unchanged\"",
                                )
                                .header("Server", &self.cfg.user_agent)
                                .build();
                            self.respond(now, &key, 488, r);
                            return;
                        }
                    },
                    // A re-INVITE while ours is unanswered (RFC 3261 14.2).
                    None if is_invite => {
                        let r =
                            MessageBuilder::response_to(msg, 491, "Request Pending", None, Some(source.addr))
                                .build();
                        self.respond(now, &key, 491, r);
                        return;
                    }
                    None => None,
                };
                if is_invite {
                    self.stats.reinvites += 1;
                    // The re-INVITE's 2xx is the one the next ACK confirms.
                    if let Some(d) = self.dialogs.get_mut(&call_id) {
                        d.invite_tx = key.clone();
                    }
                    if let Some(entry) = self.transactions.get_mut(&key) {
                        entry.dialog = Some(call_id.clone());
                    }
                    ok = ok.header("Contact", &self.contacts[transport_index(source.transport)]);
                }
                let r = match sdp {
                    Some(sdp) => {
                        if let Some(d) = self.dialogs.get_mut(&call_id) {
                            d.answer = Some(sdp.clone());
                        }
                        ok.body("application/sdp", sdp).build()
                    }
                    None => ok.build(),
                };
                self.respond(now, &key, 200, r);
            }
            Method::Info => {
                match info_digit(msg) {
                    Some(digit) => {
                        self.stats.info_digits += 1;
                        self.actions.push_back(UasAction::Digit {
                            call_id: call_id.clone(),
                            digit,
                        });
                    }
                    None if !msg.body().is_empty() => {
                        tracing::debug!(%call_id, "SIP INFO without a DTMF digit: answered, ignored");
                    }
                    None => {}
                }
                self.respond(now, &key, 200, ok.build());
            }
            Method::Options => self.respond(now, &key, 200, ok.build()),
            // A transfer's progress (RFC 3515): answered, then read.
            Method::Notify => {
                self.respond(now, &key, 200, ok.build());
                self.transfer_progress(now, &call_id, msg);
            }
            _ => {
                let r = MessageBuilder::response_to(msg, 501, "Not Implemented", None, Some(source.addr))
                    .header("Allow", ALLOW)
                    .build();
                self.respond(now, &key, 501, r);
            }
        }
    }

    /// The answer to an offer in the dialog (re-INVITE, UPDATE) given our
    /// `previous` answer: the same media with the direction the offer asks
    /// for (hold, resume) and, when the offer drops the call's codec, the
    /// best enabled one it has (the driver is told with
    /// [`UasAction::Format`]). `None`: nothing in common (`488`, the call
    /// goes on unchanged).
    fn answer_in_dialog(&mut self, call_id: &str, offer: &Message, previous: &str) -> Option<String> {
        let sdp = if keeps_codec(offer, previous) {
            with_direction(previous, answer_direction(offer))
        } else {
            let text = std::str::from_utf8(offer.body()).ok()?;
            let (sdp, format) = reanswer(text, previous, &self.cfg.codecs)?;
            self.stats.codec_changes += 1;
            self.actions.push_back(UasAction::Format {
                call_id: call_id.to_owned(),
                format,
            });
            sdp
        };
        self.hold_changed(call_id, offer);
        Some(sdp)
    }

    /// An offer in the dialog (re-INVITE, UPDATE): tells the driver when it
    /// puts the call on hold or takes it off (we answer `recvonly` or
    /// `inactive`, so we must not send).
    fn hold_changed(&mut self, call_id: &str, offer: &Message) {
        let held = matches!(answer_direction(offer), "recvonly" | "inactive");
        if let Some(d) = self.dialogs.get_mut(call_id) {
            if d.held != held {
                d.held = held;
                self.actions.push_back(UasAction::Hold {
                    call_id: call_id.to_owned(),
                    held,
                });
            }
        }
    }

    fn respond(&mut self, now: Instant, key: &str, code: u16, bytes: Bytes) {
        if let Some(entry) = self.transactions.get_mut(key) {
            if !entry.tx.respond(now, code, bytes) {
                tracing::debug!(code, "SIP response after a final one: not sent");
            }
            self.pump(now, key);
        }
    }

    /// Moves a transaction's output to the send queue, acts on its events,
    /// re-arms its timer and drops it once terminated.
    pub(super) fn pump(&mut self, now: Instant, key: &str) {
        let Some(entry) = self.transactions.get_mut(key) else {
            return;
        };
        while let Some(bytes) = entry.tx.poll_transmit() {
            self.out.push_back((entry.dest, bytes));
        }
        let mut ack_timeout = false;
        // A placed call's INVITE and a registration's REGISTER: their
        // responses and timeouts go to the UAC.
        let dial = match entry.tx.kind() {
            Kind::ClientInvite => entry.dialog.clone(),
            _ => None,
        };
        let registration = match entry.tx.kind() {
            Kind::ClientNonInvite if key.ends_with("|REGISTER") => entry.dialog.clone(),
            _ => None,
        };
        let refer = match entry.tx.kind() {
            Kind::ClientNonInvite if key.ends_with("|REFER") => entry.dialog.clone(),
            _ => None,
        };
        let refresh = match entry.tx.kind() {
            Kind::ClientNonInvite if key.ends_with("|UPDATE") => entry.dialog.clone(),
            _ => None,
        };
        let mut dial_events = Vec::new();
        while let Some(ev) = entry.tx.poll_event() {
            match ev {
                TxEvent::AckTimeout if entry.tx.kind() == Kind::ServerInvite => ack_timeout = true,
                ev if dial.is_some() || registration.is_some() || refer.is_some() || refresh.is_some() => {
                    dial_events.push(ev)
                }
                TxEvent::Timeout => tracing::debug!("SIP request timed out (no final response)"),
                _ => {}
            }
        }
        let dialog = entry.dialog.clone();
        if entry.tx.is_terminated() {
            self.transactions.remove(key);
        } else if let Some(at) = entry.tx.poll_timeout() {
            self.timers.push(Reverse((at, key.to_owned())));
        }
        if let Some(call_id) = dial {
            for ev in dial_events {
                self.dial_event(now, &call_id, ev);
            }
        } else if let Some(name) = registration {
            for ev in dial_events {
                self.register_event(now, &name, ev);
            }
        } else if let Some(call_id) = refer {
            for ev in dial_events {
                self.refer_event(&call_id, ev);
            }
        } else if let Some(call_id) = refresh {
            for ev in dial_events {
                self.refresh_event(now, &call_id, ev);
            }
        }
        if ack_timeout {
            if let Some(call_id) = dialog.filter(|c| {
                self.dialogs
                    .get(c)
                    .is_some_and(|d| matches!(d.phase, Phase::Answered { acked: false, .. }))
            }) {
                self.stats.ack_timeouts += 1;
                self.actions.push_back(UasAction::EndCall {
                    call_id: call_id.clone(),
                    sip: SipCause::new(None, "ACK timeout"),
                    cause: HangupCause::CallerGone,
                });
                self.send_bye(now, &call_id);
            }
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.timers.pop() else {
                break;
            };
            if let Some(call_id) = key.strip_prefix("d|") {
                self.session_timer(now, call_id);
                continue;
            }
            if let Some(call_id) = key.strip_prefix("r|") {
                self.ring_timeout(now, call_id);
                continue;
            }
            if let Some(call_id) = key.strip_prefix("e|") {
                self.early_media_over(now, call_id);
                continue;
            }
            if let Some(call_id) = key.strip_prefix("f|") {
                self.refresh_due(now, call_id);
                continue;
            }
            if let Some(name) = key.strip_prefix("g|") {
                self.registration_due(now, name);
                continue;
            }
            let due = self
                .transactions
                .get(&key)
                .and_then(|e| e.tx.poll_timeout())
                .is_some_and(|t| t <= now);
            if due {
                if let Some(entry) = self.transactions.get_mut(&key) {
                    entry.tx.handle_timeout(now);
                }
                self.pump(now, &key);
            }
        }
    }

    /// A session-timer entry came due: end the call when no refresh moved
    /// its deadline (the heap keeps stale entries; the dialog has the truth).
    fn session_timer(&mut self, now: Instant, call_id: &str) {
        let Some(dialog) = self.dialogs.get_mut(call_id) else {
            return;
        };
        if dialog.session_deadline.is_none_or(|d| d > now) {
            return;
        }
        dialog.session_deadline = None;
        self.stats.session_expired += 1;
        self.actions.push_back(UasAction::EndCall {
            call_id: call_id.to_owned(),
            sip: SipCause::new(None, "session expired (RFC 4028)"),
            cause: HangupCause::CallerGone,
        });
        match dialog.phase {
            Phase::Answered { acked: true, .. } => self.send_bye(now, call_id),
            _ => self.call_ended(now, call_id),
        }
    }

    /// When [`SipUas::handle_timeout`] is next needed (may be early: a
    /// wake-up with nothing due is harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The next message to send and where.
    pub fn poll_transmit(&mut self) -> Option<(Peer, Bytes)> {
        self.out.pop_front()
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<UasAction> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::Duration;
    use voxbridge_proto::sdp::AudioOffer;

    const PEER: &str = "192.0.2.10:5062";
    pub(in crate::sansio::sip) const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

    /// A UAS as the tests here and in `super::uac` use it.
    pub(in crate::sansio::sip) fn uas() -> SipUas {
        SipUas::new(UasConfig {
            sent_by: "198.51.100.1:5060".into(),
            sent_by_tcp: None,
            sent_by_tls: Some("sbc.example:5061".into()),
            user_agent: "voxbridge-test".into(),
            timers: Timers::default(),
            seed: 7,
            allow: Vec::new(),
            invite_rate: 0.0,
            invite_burst: 0.0,
            retry_after_s: 5,
            routes: vec![RouteRule {
                user: Some("+4930*".into()),
                route: "berlin".into(),
                ..RouteRule::default()
            }],
            default_route: "default".into(),
            max_transactions: 10_000,
            auth: None,
            ringing: true,
            codecs: AudioCodec::ALL.to_vec(),
            early_media: None,
            session_expires: None,
        })
    }

    pub(in crate::sansio::sip) fn peer() -> SocketAddr {
        PEER.parse().expect("address")
    }

    pub(in crate::sansio::sip) fn request(
        method: &str,
        branch: &str,
        cseq: u32,
        to_tag: Option<&str>,
        body: Option<&str>,
    ) -> Bytes {
        let to = match to_tag {
            Some(t) => format!("<sip:+4930123@vb>;tag={t}"),
            None => "<sip:+4930123@vb>".into(),
        };
        let mut b = MessageBuilder::request(&Method::from_token(method), "sip:+4930123@198.51.100.1")
            .header(
                "Via",
                format_args!("SIP/2.0/UDP {PEER};branch=z9hG4bK{branch};rport"),
            )
            .header("Max-Forwards", 70)
            .header("From", "\"Alice\" <sip:+15550100@carrier>;tag=abc")
            .header("To", to)
            .header("Call-ID", "call-1@carrier")
            .header("CSeq", format_args!("{cseq} {method}"))
            .header("Contact", format_args!("<sip:alice@{PEER}>"))
            .header("X-Customer", "42");
        if let Some(sdp) = body {
            b = b.body("application/sdp", sdp.to_owned());
        }
        b.build()
    }

    pub(in crate::sansio::sip) fn sent(u: &mut SipUas) -> Vec<Message> {
        std::iter::from_fn(|| u.poll_transmit())
            .map(|(to, b)| {
                assert_eq!(to, Peer::udp(peer()));
                Message::parse(b).expect("we send valid SIP")
            })
            .collect()
    }

    pub(in crate::sansio::sip) fn codes(msgs: &[Message]) -> Vec<u16> {
        msgs.iter().filter_map(Message::status).collect()
    }

    pub(in crate::sansio::sip) fn to_tag(m: &Message) -> String {
        NameAddr::parse(m.header(HeaderName::To).expect("To"))
            .expect("name-addr")
            .tag()
            .expect("tag")
            .to_owned()
    }

    /// INVITE -> 100, StartCall, 200 with the answer; returns the call id and our tag.
    fn answered(u: &mut SipUas, t: Instant) -> (String, String) {
        u.handle_datagram(t, peer(), request("INVITE", "inv1", 1, None, Some(SDP)));
        assert_eq!(codes(&sent(u)), [100, 180]);
        let Some(UasAction::StartCall {
            call_id,
            route,
            offer,
            caller,
            callee,
            headers,
            ..
        }) = u.poll_action()
        else {
            panic!("no StartCall");
        };
        assert_eq!(offer.as_deref(), Some(SDP));
        assert_eq!(route, "berlin", "the rule on the number dialled");
        assert_eq!(caller.as_deref(), Some("+15550100"));
        assert_eq!(callee.as_deref(), Some("+4930123"));
        assert_eq!(headers, [("X-Customer".to_owned(), "42".to_owned())]);
        u.call_started(t, &call_id, Ok("v=0 answer".into()));
        let ok = sent(u);
        assert_eq!(codes(&ok), [200]);
        assert_eq!(ok[0].body().as_ref(), b"v=0 answer");
        assert!(ok[0].header(HeaderName::Contact).is_some());
        let tag = to_tag(&ok[0]);
        (call_id, tag)
    }

    #[test]
    fn answers_acks_and_ends_on_the_callers_bye() {
        let t = Instant::now();
        let mut u = uas();
        let (call_id, tag) = answered(&mut u, t);
        u.handle_datagram(t, peer(), request("INVITE", "inv1", 1, None, Some(SDP)));
        assert_eq!(
            codes(&sent(&mut u)),
            [200],
            "a retransmitted INVITE gets the 200 again"
        );
        u.handle_datagram(t, peer(), request("ACK", "ack1", 1, Some(&tag), None));
        u.handle_timeout(t + Duration::from_secs(5));
        assert!(sent(&mut u).is_empty(), "no 2xx retransmission after the ACK");
        u.handle_datagram(t, peer(), request("BYE", "bye1", 2, Some(&tag), None));
        assert_eq!(codes(&sent(&mut u)), [200]);
        assert_eq!(
            u.poll_action(),
            Some(UasAction::EndCall {
                call_id,
                sip: SipCause::new(None, "BYE"),
                cause: HangupCause::CallerHangup
            })
        );
        u.handle_datagram(t, peer(), request("BYE", "bye2", 3, Some(&tag), None));
        assert_eq!(codes(&sent(&mut u)), [481], "the dialog is gone");
        u.handle_timeout(t + Duration::from_secs(60));
        assert_eq!((u.dialogs(), u.transactions()), (0, 0), "nothing left behind");
    }

    #[test]
    fn unacked_2xx_is_retransmitted_then_ends_the_call_with_bye() {
        let t = Instant::now();
        let mut u = uas();
        let (call_id, _) = answered(&mut u, t);
        let mut retransmits = 0;
        while let Some(at) = u.poll_timeout() {
            if at > t + Duration::from_secs(40) {
                break;
            }
            u.handle_timeout(at);
            for m in sent(&mut u) {
                match m.status() {
                    Some(200) => retransmits += 1,
                    _ => assert_eq!(m.method(), Some(&Method::Bye)),
                }
            }
        }
        assert_eq!(retransmits, 10);
        assert_eq!(
            u.poll_action(),
            Some(UasAction::EndCall {
                call_id,
                sip: SipCause::new(None, "ACK timeout"),
                cause: HangupCause::CallerGone
            })
        );
        assert_eq!(u.stats().ack_timeouts, 1);
        assert_eq!(u.stats().byes_sent, 1);
    }

    /// Everything sent, each with where it went.
    fn sent_to(u: &mut SipUas) -> Vec<(Peer, Message)> {
        std::iter::from_fn(|| u.poll_transmit())
            .map(|(to, b)| (to, Message::parse(b).expect("we send valid SIP")))
            .collect()
    }

    #[test]
    fn over_tcp_and_tls_answers_go_back_on_the_connection_and_nothing_is_retransmitted() {
        for transport in [Transport::Tcp, Transport::Tls] {
            let t = Instant::now();
            let mut u = uas();
            // The connection's address differs from the Via's sent-by (a
            // NATed client): responses must still take the connection.
            let conn = Peer {
                transport,
                addr: "203.0.113.5:40123".parse().expect("address"),
            };
            let invite = Message::parse(request("INVITE", "inv1", 1, None, Some(SDP))).expect("valid");
            u.handle_message(t, conn, invite);
            let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
                panic!("no StartCall");
            };
            u.call_started(t, &call_id, Ok("v=0 answer".into()));
            let out = sent_to(&mut u);
            assert_eq!(
                out.iter().map(|(to, m)| (*to, m.status())).collect::<Vec<_>>(),
                [(conn, Some(100)), (conn, Some(180)), (conn, Some(200))]
            );
            let contact = out[2].1.header(HeaderName::Contact).expect("Contact");
            assert!(
                contact.contains(&format!("transport={}", transport.uri_param())),
                "{contact}"
            );
            // No Timer G over a connection: the 2xx is not retransmitted.
            u.handle_timeout(t + Duration::from_secs(2));
            assert!(sent_to(&mut u).is_empty(), "{transport:?}: retransmitted");
            let tag = to_tag(&out[2].1);
            let ack = Message::parse(request("ACK", "ack1", 1, Some(&tag), None)).expect("valid");
            u.handle_message(t, conn, ack);
            u.call_ended(t, &call_id);
            let (to, bye) = sent_to(&mut u).pop().expect("our BYE");
            assert_eq!((to, bye.method()), (conn, Some(&Method::Bye)));
            let via = bye.top_via().expect("Via");
            assert_eq!(via.transport, transport.via_name());
            let sent_by = match transport {
                Transport::Tls => "sbc.example:5061",
                _ => "198.51.100.1:5060",
            };
            assert!(bye.header(HeaderName::Via).expect("Via").contains(sent_by));
            // No Timer E either; the 200 ends the BYE's transaction at once.
            u.handle_timeout(t + Duration::from_secs(2));
            assert!(sent_to(&mut u).is_empty());
            let ok = MessageBuilder::response_to(&bye, 200, "OK", None, None).build();
            u.handle_message(t, conn, Message::parse(ok).expect("valid"));
            // Timer L (64*T1 over any transport) ends the INVITE's.
            u.handle_timeout(t + Duration::from_secs(40));
            assert_eq!((u.dialogs(), u.transactions()), (0, 0), "{transport:?}");
        }
    }

    #[test]
    fn a_closed_tcp_connection_moves_requests_to_the_contact_on_the_callers_host_only() {
        // The tests' INVITE names `sip:alice@192.0.2.10:5062` as Contact.
        let contact: SocketAddr = "192.0.2.10:5062".parse().expect("address");
        for (from, moved) in [("192.0.2.10:40123", true), ("203.0.113.5:40123", false)] {
            let t = Instant::now();
            let mut u = uas();
            let conn = Peer {
                transport: Transport::Tcp,
                addr: from.parse().expect("address"),
            };
            let invite = Message::parse(request("INVITE", "inv1", 1, None, Some(SDP))).expect("valid");
            u.handle_message(t, conn, invite);
            let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
                panic!("no StartCall");
            };
            u.call_started(t, &call_id, Ok("v=0 answer".into()));
            let tag = to_tag(&sent_to(&mut u).pop().expect("200").1);
            let ack = Message::parse(request("ACK", "ack1", 1, Some(&tag), None)).expect("valid");
            u.handle_message(t, conn, ack);
            let next = u.connection_closed(conn);
            u.call_ended(t, &call_id);
            let (to, bye) = sent_to(&mut u).pop().expect("our BYE");
            assert_eq!(bye.method(), Some(&Method::Bye));
            if moved {
                let hop = Peer {
                    transport: Transport::Tcp,
                    addr: contact,
                };
                assert_eq!((next, to), (vec![hop], hop), "{from}: to the Contact");
            } else {
                assert_eq!(
                    (next, to),
                    (vec![], conn),
                    "{from}: a Contact on another host is not followed"
                );
            }
        }
    }

    #[test]
    fn our_bye_waits_for_the_ack_and_retransmits_until_answered() {
        let t = Instant::now();
        let mut u = uas();
        let (call_id, tag) = answered(&mut u, t);
        u.call_ended(t, &call_id);
        assert!(sent(&mut u).is_empty(), "no BYE before the ACK");
        u.handle_datagram(t, peer(), request("ACK", "ack1", 1, Some(&tag), None));
        let bye = sent(&mut u).pop().expect("BYE after the ACK");
        assert_eq!(bye.method(), Some(&Method::Bye));
        assert_eq!(bye.request_uri(), Some("sip:alice@192.0.2.10:5062"));
        let from = NameAddr::parse(bye.header(HeaderName::From).expect("From")).expect("From");
        assert_eq!(from.tag(), Some(tag.as_str()));
        assert!(bye.header(HeaderName::To).expect("To").contains("tag=abc"));
        u.handle_timeout(t + Duration::from_millis(500));
        assert_eq!(sent(&mut u).len(), 1, "BYE retransmitted (Timer E)");
        let ok = MessageBuilder::response_to(&bye, 200, "OK", None, None).build();
        u.handle_datagram(t, peer(), ok);
        // Timer K ends the BYE's transaction, Timer L the INVITE's.
        u.handle_timeout(t + Duration::from_secs(40));
        assert!(sent(&mut u).is_empty());
        assert_eq!((u.dialogs(), u.transactions()), (0, 0));
    }

    #[test]
    fn cancel_before_the_call_exists() {
        let t = Instant::now();
        let mut u = uas();
        u.handle_datagram(t, peer(), request("INVITE", "inv1", 1, None, Some(SDP)));
        sent(&mut u);
        let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
            panic!("no StartCall");
        };
        u.handle_datagram(t, peer(), request("CANCEL", "inv1", 1, None, None));
        let got = sent(&mut u);
        assert_eq!(codes(&got), [200, 487]);
        assert_eq!(got[0].cseq().expect("cseq").method, Method::Cancel);
        assert_eq!(got[1].cseq().expect("cseq").method, Method::Invite);
        assert!(matches!(
            u.poll_action(),
            Some(UasAction::EndCall {
                sip: SipCause { code: Some(487), .. },
                ..
            })
        ));
        // The call was created meanwhile: it is ended, never answered.
        u.call_started(t, &call_id, Ok("v=0".into()));
        assert!(sent(&mut u).is_empty());
        assert!(matches!(
            u.poll_action(),
            Some(UasAction::EndCall {
                sip: SipCause { code: Some(487), .. },
                ..
            })
        ));
        let tag = to_tag(&got[1]);
        u.handle_datagram(t, peer(), request("ACK", "inv1", 1, Some(&tag), None));
        u.handle_timeout(t + Duration::from_secs(40));
        assert!(sent(&mut u).is_empty(), "the 487 was ACKed: no retransmission");
        assert_eq!(u.stats().cancelled, 1);
        assert_eq!((u.dialogs(), u.transactions()), (0, 0));
    }

    #[test]
    fn a_malformed_request_that_can_be_addressed_gets_a_400() {
        let t = Instant::now();
        let mut u = uas();
        let good = request("OPTIONS", "o1", 1, None, None);
        let text = std::str::from_utf8(&good).expect("text");
        let broken = text.replace("Content-Length: 0", "Content-Length: 50");
        u.handle_datagram(t, peer(), Bytes::from(broken));
        let out = sent(&mut u);
        assert_eq!(codes(&out), [400]);
        assert_eq!(out[0].call_id(), "call-1@carrier");
        u.handle_datagram(
            t,
            peer(),
            Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n"),
        );
        assert!(sent(&mut u).is_empty(), "nothing to address: dropped");
        let s = u.stats();
        assert_eq!((s.malformed, s.bad_requests), (2, 1));
        assert_eq!(u.transactions(), 0, "a 400 for a malformed request is stateless");
    }

    #[test]
    fn ringing_opens_the_early_dialog_and_can_be_turned_off() {
        let t = Instant::now();
        let mut u = uas();
        u.handle_datagram(t, peer(), request("INVITE", "r1", 1, None, Some(SDP)));
        let out = sent(&mut u);
        assert_eq!(codes(&out), [100, 180]);
        assert!(
            out[1].header(HeaderName::Contact).is_some(),
            "a dialog-creating 18x has Contact"
        );
        let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
            panic!("no StartCall");
        };
        u.call_started(t, &call_id, Ok("v=0 answer".into()));
        let ok = sent(&mut u);
        assert_eq!(
            to_tag(&ok[0]),
            to_tag(&out[1]),
            "the 200 confirms the early dialog"
        );
        let mut quiet = SipUas::new(UasConfig {
            ringing: false,
            ..uas().cfg
        });
        quiet.handle_datagram(t, peer(), request("INVITE", "r2", 1, None, Some(SDP)));
        assert_eq!(codes(&sent(&mut quiet)), [100]);
    }

    #[test]
    fn refusals_and_requests_outside_dialogs() {
        let t = Instant::now();
        let mut u = uas();
        let text = String::from_utf8(request("INVITE", "inv1", 1, None, Some("hi")).to_vec()).expect("text");
        u.handle_datagram(
            t,
            peer(),
            Bytes::from(text.replace("application/sdp", "text/plain")),
        );
        assert_eq!(codes(&sent(&mut u)), [100, 488], "a body that is not SDP");
        u.handle_datagram(t, peer(), request("INVITE", "inv2", 1, None, Some(SDP)));
        sent(&mut u);
        let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
            panic!("no StartCall");
        };
        u.call_started(t, &call_id, Err(Refusal::Unavailable { retry_after_s: 5 }));
        let busy = sent(&mut u);
        assert_eq!(codes(&busy), [503]);
        assert_eq!(busy[0].header(HeaderName::RetryAfter), Some("5"));
        u.handle_datagram(t, peer(), request("OPTIONS", "opt", 1, None, None));
        let opt = sent(&mut u);
        assert_eq!(codes(&opt), [200]);
        assert_eq!(opt[0].header(HeaderName::Allow), Some(ALLOW));
        u.handle_datagram(t, peer(), request("REGISTER", "reg", 1, None, None));
        assert_eq!(codes(&sent(&mut u)), [405]);
        u.handle_datagram(t, peer(), request("BYE", "b", 2, Some("nope"), None));
        assert_eq!(codes(&sent(&mut u)), [481]);
        u.handle_datagram(t, peer(), request("CANCEL", "unknown", 1, None, None));
        assert_eq!(codes(&sent(&mut u)), [481]);
        u.handle_datagram(t, peer(), Bytes::from_static(b"INVITE nonsense\r\n\r\n"));
        u.handle_datagram(t, peer(), Bytes::from_static(b"\r\n\r\n"));
        assert!(sent(&mut u).is_empty());
        let s = u.stats();
        assert_eq!(
            (s.malformed, s.keepalives, s.refused, s.unknown_dialog),
            (1, 1, 2, 2)
        );
    }

    #[test]
    fn reinvite_refresh_gets_the_same_answer() {
        let t = Instant::now();
        let mut u = uas();
        let (_, tag) = answered(&mut u, t);
        u.handle_datagram(t, peer(), request("ACK", "ack1", 1, Some(&tag), None));
        u.handle_datagram(t, peer(), request("INVITE", "re1", 2, Some(&tag), Some(SDP)));
        let ok = sent(&mut u);
        assert_eq!(codes(&ok), [200]);
        assert_eq!(ok[0].body().as_ref(), b"v=0 answer");
        u.handle_datagram(t, peer(), request("ACK", "ack2", 2, Some(&tag), None));
        u.handle_timeout(t + Duration::from_secs(40));
        assert!(sent(&mut u).is_empty(), "the re-INVITE's 200 was ACKed");
        assert!(u.poll_action().is_none(), "the call goes on");
        assert_eq!(u.dialogs(), 1);
    }

    #[test]
    fn sources_outside_the_allow_list_and_floods_are_kept_out() {
        let t = Instant::now();
        let mut u = SipUas::new(UasConfig {
            allow: vec![Cidr::parse("192.0.2.0/24").expect("valid")],
            invite_rate: 1.0,
            invite_burst: 2.0,
            ..uas().cfg
        });
        let stranger: SocketAddr = "203.0.113.9:5060".parse().expect("address");
        u.handle_datagram(t, stranger, request("INVITE", "x", 1, None, Some(SDP)));
        assert!(u.poll_transmit().is_none(), "no answer to a stranger");
        for i in 0..3 {
            u.handle_datagram(t, peer(), request("INVITE", &format!("f{i}"), 1, None, Some(SDP)));
        }
        let got = sent(&mut u);
        assert_eq!(codes(&got), [100, 180, 100, 180, 503]);
        assert_eq!(got[4].header(HeaderName::RetryAfter), Some("5"));
        u.handle_datagram(
            t + std::time::Duration::from_secs(1),
            peer(),
            request("INVITE", "later", 1, None, Some(SDP)),
        );
        assert_eq!(codes(&sent(&mut u)), [100, 180], "the bucket refilled");
        let s = u.stats();
        assert_eq!((s.forbidden_source, s.rate_limited), (1, 1));
    }

    #[test]
    fn delayed_offer_takes_the_answer_from_the_ack_or_ends_the_call() {
        for (answer, ends) in [
            (Some(SDP), false),
            (None, true),
            (Some(&SDP.replace("RTP/AVP 0", "RTP/AVP 8")[..]), true),
        ] {
            let t = Instant::now();
            let mut u = uas();
            u.handle_datagram(t, peer(), request("INVITE", "inv1", 1, None, None));
            assert_eq!(codes(&sent(&mut u)), [100, 180]);
            let Some(UasAction::StartCall { call_id, offer, .. }) = u.poll_action() else {
                panic!("no StartCall");
            };
            assert_eq!(offer, None, "the driver makes the offer");
            u.call_started(t, &call_id, Ok("v=0 our offer".into()));
            let ok = sent(&mut u);
            assert_eq!(ok[0].body().as_ref(), b"v=0 our offer");
            let tag = to_tag(&ok[0]);
            u.handle_datagram(t, peer(), request("ACK", "ack1", 1, Some(&tag), answer));
            let bye = sent(&mut u);
            assert_eq!(bye.len(), usize::from(ends), "{answer:?}");
            assert_eq!(u.poll_action().is_some(), ends, "{answer:?}");
            assert_eq!(u.stats().bad_answers, u64::from(ends));
        }
    }

    /// A call up and ACKed with `ours` as voxbridge's answer; its call id and our tag.
    /// The tests' INVITE with an SDP offer, for `super::transfer`.
    pub(in crate::sansio::sip) fn invite() -> Bytes {
        request("INVITE", "inv1", 1, None, Some(SDP))
    }

    /// The ACK of the tests' INVITE's 200 with our `tag`.
    pub(in crate::sansio::sip) fn ack(tag: &str) -> Bytes {
        request("ACK", "ack1", 1, Some(tag), None)
    }

    /// A call answered and ACKed (its voxbridge call id and our tag), for
    /// the tests of `super::transfer`.
    pub(in crate::sansio::sip) fn answered_call(u: &mut SipUas, t: Instant) -> (String, String) {
        let up = up_with(u, t, "v=0 answer");
        let _ = sent(u);
        up
    }

    fn up_with(u: &mut SipUas, t: Instant, ours: &str) -> (String, String) {
        u.handle_datagram(t, peer(), request("INVITE", "inv1", 1, None, Some(SDP)));
        sent(u);
        let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
            panic!("no StartCall");
        };
        u.call_started(t, &call_id, Ok(ours.into()));
        let tag = to_tag(&sent(u)[0]);
        u.handle_datagram(t, peer(), request("ACK", "ack1", 1, Some(&tag), None));
        (call_id, tag)
    }

    #[test]
    fn hold_and_resume_answer_with_the_direction_and_a_new_version() {
        let t = Instant::now();
        let mut u = uas();
        let (call_id, tag) = up_with(&mut u, t, "v=0\r\no=voxbridge 5 5 IN IP4 198.51.100.1\r\ns=voxbridge\r\nm=audio 41000 RTP/AVP 0\r\na=sendrecv\r\n");
        let hold = format!("{SDP}a=sendonly\r\n");
        u.handle_datagram(t, peer(), request("INVITE", "re1", 2, Some(&tag), Some(&hold)));
        let held = sent(&mut u);
        let body = std::str::from_utf8(held[0].body()).expect("text").to_owned();
        assert!(
            body.contains("a=recvonly") && body.contains("o=voxbridge 5 6 "),
            "{body}"
        );
        let hold_action = |held| UasAction::Hold {
            call_id: call_id.clone(),
            held,
        };
        assert_eq!(u.poll_action(), Some(hold_action(true)), "the media is told");
        u.handle_datagram(t, peer(), request("ACK", "ack2", 2, Some(&tag), None));
        u.handle_datagram(t, peer(), request("INVITE", "re2", 3, Some(&tag), Some(SDP)));
        let resumed = sent(&mut u);
        let body = std::str::from_utf8(resumed[0].body()).expect("text").to_owned();
        assert!(
            body.contains("a=sendrecv") && body.contains("o=voxbridge 5 7 "),
            "{body}"
        );
        assert_eq!(u.poll_action(), Some(hold_action(false)));
        u.handle_datagram(t, peer(), request("ACK", "ack3", 3, Some(&tag), None));
        u.handle_datagram(t, peer(), request("INVITE", "re3", 4, Some(&tag), Some(SDP)));
        assert_eq!(u.poll_action(), None, "no change, no action");
        assert_eq!(u.stats().reinvites, 3);
    }

    #[test]
    fn early_media_sends_the_answer_in_a_183_and_the_200_later() {
        let t = Instant::now();
        let early = Duration::from_secs(3);
        // A UAS with early media whose call is made: its 183 and call id.
        let in_early_media = || -> (SipUas, Message, String) {
            let mut u = SipUas::new(UasConfig {
                early_media: Some(early),
                ..uas().cfg
            });
            u.handle_datagram(t, peer(), request("INVITE", "inv1", 1, None, Some(SDP)));
            assert_eq!(codes(&sent(&mut u)), [100, 180]);
            let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
                panic!("no StartCall");
            };
            u.call_started(t, &call_id, Ok("v=0 answer".into()));
            let mut progress = sent(&mut u);
            assert_eq!(codes(&progress), [183]);
            (u, progress.remove(0), call_id)
        };
        // The answer goes out in the 183; the 200 repeats it when the timer fires.
        let (mut u, progress, _) = in_early_media();
        assert_eq!(progress.body(), b"v=0 answer".as_slice());
        u.handle_timeout(t + early - Duration::from_millis(1));
        assert!(sent(&mut u).is_empty(), "no 200 before the early media is over");
        u.handle_timeout(t + early);
        let ok = sent(&mut u);
        assert_eq!(codes(&ok), [200]);
        assert_eq!(ok[0].body(), b"v=0 answer".as_slice());
        assert_eq!(to_tag(&ok[0]), to_tag(&progress), "one dialog");
        u.handle_datagram(t + early, peer(), ack(&to_tag(&ok[0])));
        assert_eq!((u.stats().early_media, u.stats().answered), (1, 1));
        assert_eq!((u.poll_action(), u.dialogs()), (None, 1));

        // CANCEL during early media: 200, 487, the call ended, no 200 later.
        let (mut u, _, call_id) = in_early_media();
        u.handle_datagram(t, peer(), request("CANCEL", "inv1", 1, None, None));
        assert_eq!(codes(&sent(&mut u)), [200, 487]);
        assert!(matches!(
            u.poll_action(),
            Some(UasAction::EndCall { call_id: c, cause: HangupCause::CallerHangup, .. }) if c == call_id
        ));
        u.handle_timeout(t + early);
        assert!(sent(&mut u).iter().all(|m| m.status() != Some(200)));
        assert_eq!(u.dialogs(), 0);

        // The call ends on voxbridge's side during early media: 480.
        let (mut u, _, call_id) = in_early_media();
        u.call_ended(t, &call_id);
        assert_eq!(codes(&sent(&mut u)), [480]);
        u.handle_timeout(t + early);
        assert!(
            sent(&mut u).iter().all(|m| m.status() == Some(480)),
            "the 480 is retransmitted until ACKed, no 200 comes"
        );
        assert_eq!((u.dialogs(), u.stats().answered), (0, 0));
    }

    #[test]
    fn an_offer_without_the_calls_codec_changes_it_and_one_with_none_enabled_is_refused() {
        let t = Instant::now();
        let mut u = SipUas::new(UasConfig {
            codecs: vec![AudioCodec::Pcmu, AudioCodec::Pcma],
            ..uas().cfg
        });
        let ours = "v=0\r\no=voxbridge 5 5 IN IP4 198.51.100.1\r\ns=voxbridge\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
        let (call_id, tag) = up_with(&mut u, t, ours);
        // PCMA alone: the call changes to it, on the same port, a new version.
        let pcma = SDP.replace("RTP/AVP 0", "RTP/AVP 8 101") + "a=rtpmap:101 telephone-event/8000\r\n";
        u.handle_datagram(t, peer(), request("INVITE", "re1", 2, Some(&tag), Some(&pcma)));
        let changed = sent(&mut u);
        assert_eq!(codes(&changed), [200]);
        let body = std::str::from_utf8(changed[0].body()).expect("text").to_owned();
        let answer = AudioOffer::parse(&body).expect("SDP");
        assert_eq!(
            (answer.formats.as_slice(), answer.remote.to_string().as_str()),
            (&[8u8, 101][..], "198.51.100.1:41000"),
            "{body}"
        );
        assert!(
            body.contains("o=voxbridge 5 6 ") && body.contains("a=sendrecv"),
            "{body}"
        );
        let format = RtpFormat {
            codec: AudioCodec::Pcma,
            pt: 8,
            dtmf_pt: Some(101),
        };
        assert_eq!(
            u.poll_action(),
            Some(UasAction::Format {
                call_id: call_id.clone(),
                format
            }),
            "the media is told"
        );
        u.handle_datagram(t, peer(), request("ACK", "ack2", 2, Some(&tag), None));
        // Both offered now: the call keeps PCMA, nothing to tell.
        let both = SDP.replace("RTP/AVP 0", "RTP/AVP 0 8");
        u.handle_datagram(t, peer(), request("INVITE", "re2", 3, Some(&tag), Some(&both)));
        let kept = sent(&mut u);
        assert_eq!(codes(&kept), [200]);
        let body = std::str::from_utf8(kept[0].body()).expect("text").to_owned();
        assert!(body.contains("m=audio 41000 RTP/AVP 8 101"), "{body}");
        assert_eq!(u.poll_action(), None);
        u.handle_datagram(t, peer(), request("ACK", "ack3", 3, Some(&tag), None));
        // G.722 alone is not enabled here: 488, the call goes on as it was.
        let g722 = SDP.replace("RTP/AVP 0", "RTP/AVP 9");
        u.handle_datagram(t, peer(), request("INVITE", "re3", 4, Some(&tag), Some(&g722)));
        let refused = sent(&mut u);
        assert_eq!(codes(&refused), [488]);
        assert!(refused[0]
            .all_headers()
            .any(|(n, v)| n == "Warning" && v.starts_with("305 ")));
        // The ACK for the 488 goes to its transaction; the call is still up.
        u.handle_datagram(t, peer(), request("ACK", "re3", 4, Some(&tag), None));
        assert_eq!((u.poll_action(), u.dialogs()), (None, 1));
        assert_eq!((u.stats().codec_changes, u.stats().reinvites), (1, 2));
        // An UPDATE with PCMU alone changes it back (RFC 3311 offers too).
        u.handle_datagram(t, peer(), request("UPDATE", "up1", 5, Some(&tag), Some(SDP)));
        let updated = sent(&mut u);
        assert_eq!(codes(&updated), [200]);
        assert!(std::str::from_utf8(updated[0].body())
            .expect("text")
            .contains("m=audio 41000 RTP/AVP 0\r\n"));
        assert!(matches!(
            u.poll_action(),
            Some(UasAction::Format {
                format: RtpFormat {
                    codec: AudioCodec::Pcmu,
                    ..
                },
                ..
            })
        ));
    }

    fn with_timer(bytes: Bytes, interval: u32) -> Bytes {
        let text = String::from_utf8(bytes.to_vec()).expect("text");
        Bytes::from(text.replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\nSession-Expires: {interval}\r\nSupported: timer\r\n"),
            1,
        ))
    }

    #[test]
    fn session_timers_end_a_session_that_is_not_refreshed() {
        let t = Instant::now();
        let mut u = uas();
        u.handle_datagram(
            t,
            peer(),
            with_timer(request("INVITE", "short", 1, None, Some(SDP)), 30),
        );
        let short = sent(&mut u);
        assert_eq!(codes(&short), [100, 422]);
        assert_eq!(short[1].header(HeaderName::MinSe), Some("90"));

        u.handle_datagram(
            t,
            peer(),
            with_timer(request("INVITE", "inv1", 1, None, Some(SDP)), 120),
        );
        sent(&mut u);
        let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
            panic!("no StartCall");
        };
        u.call_started(t, &call_id, Ok("v=0 answer".into()));
        let ok = sent(&mut u);
        assert_eq!(
            ok[0].header(HeaderName::SessionExpires),
            Some("120;refresher=uac")
        );
        assert_eq!(ok[0].header(HeaderName::Require), Some("timer"));
        let tag = to_tag(&ok[0]);
        u.handle_datagram(t, peer(), request("ACK", "ack1", 1, Some(&tag), None));
        // A refresh by UPDATE at 60 s moves the end to 60 + 88 s.
        let refresh = with_timer(request("UPDATE", "up1", 2, Some(&tag), None), 120);
        u.handle_datagram(t + Duration::from_secs(60), peer(), refresh);
        let up = sent(&mut u);
        assert_eq!(codes(&up), [200]);
        assert_eq!(
            up[0].header(HeaderName::SessionExpires),
            Some("120;refresher=uac")
        );
        u.handle_timeout(t + Duration::from_secs(100));
        assert!(u.poll_action().is_none(), "refreshed: the call goes on");
        assert!(sent(&mut u).is_empty());
        u.handle_timeout(t + Duration::from_secs(148));
        assert!(matches!(u.poll_action(), Some(UasAction::EndCall { .. })));
        let bye = sent(&mut u);
        assert_eq!(bye.len(), 1);
        assert_eq!(bye[0].method(), Some(&Method::Bye));
        assert_eq!(u.stats().session_expired, 1);
    }

    #[test]
    fn unsupported_extensions_and_exhausted_hops_are_refused() {
        let t = Instant::now();
        let mut u = uas();
        let text = String::from_utf8(request("INVITE", "r1", 1, None, Some(SDP)).to_vec()).expect("text");
        let rel = text.replacen(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRequire: 100rel, timer\r\n",
            1,
        );
        u.handle_datagram(t, peer(), Bytes::from(rel));
        let got = sent(&mut u);
        assert_eq!(codes(&got), [420]);
        assert_eq!(got[0].header_named("Unsupported"), Some("100rel"));
        let hops = text.replacen("Max-Forwards: 70", "Max-Forwards: 0", 1).replacen(
            "branch=z9hG4bKr1",
            "branch=z9hG4bKr2",
            1,
        );
        u.handle_datagram(t, peer(), Bytes::from(hops));
        assert_eq!(codes(&sent(&mut u)), [483]);
        assert!(u.poll_action().is_none());
    }

    proptest::proptest! {
        /// Any mix of real requests, responses and corrupted copies, in any
        /// order and at any times, over UDP, TCP and TLS: never a panic,
        /// every message sent parses, and once every timer has run and the
        /// calls are reported ended, nothing is left behind.
        #[test]
        fn any_sequence_of_datagrams_leaves_nothing_behind(
            steps in proptest::collection::vec((0usize..8, 0usize..4, proptest::num::u8::ANY, 0u64..40_000, 0usize..3), 1..40),
        ) {
            let t0 = Instant::now();
            let mut u = uas();
            let tags = ["", "zz"];
            let mut now = t0;
            for (kind, tag, flip, dt, transport) in steps {
                now += Duration::from_millis(dt);
                let to_tag = (tag > 1).then_some(tags[1]);
                let mut bytes = match kind {
                    0 => request("INVITE", "p1", 1, None, Some(SDP)).to_vec(),
                    1 => request("ACK", "p2", 1, to_tag, None).to_vec(),
                    2 => request("BYE", "p3", 2, to_tag, None).to_vec(),
                    3 => request("CANCEL", "p1", 1, None, None).to_vec(),
                    4 => request("OPTIONS", "p4", 1, None, None).to_vec(),
                    5 => request("INVITE", "p5", 3, to_tag, Some(SDP)).to_vec(),
                    6 => {
                        let inv = Message::parse(request("INVITE", "p1", 1, None, None)).expect("valid");
                        MessageBuilder::response_to(&inv, 200, "OK", Some("x"), None).build().to_vec()
                    }
                    _ => request("INFO", "p6", 4, to_tag, None).to_vec(),
                };
                if flip > 200 {
                    let i = usize::from(flip) % bytes.len();
                    bytes[i] ^= flip;
                }
                let transport = [Transport::Udp, Transport::Tcp, Transport::Tls][transport];
                match transport {
                    Transport::Udp => u.handle_datagram(now, peer(), Bytes::from(bytes)),
                    // A stream hands over framed messages; what cannot be
                    // framed closes the connection.
                    _ => {
                        let conn = Peer { transport, addr: peer() };
                        match Message::parse(Bytes::from(bytes)) {
                            Ok(m) => u.handle_message(now, conn, m),
                            Err(_) => u.stream_malformed(conn),
                        }
                    }
                }
                while let Some(a) = u.poll_action() {
                    if let UasAction::StartCall { call_id, .. } = a {
                        u.call_started(now, &call_id, Ok("v=0".into()));
                    }
                }
                while let Some((_, b)) = u.poll_transmit() {
                    proptest::prop_assert!(Message::parse(b).is_ok());
                }
            }
            let ids: Vec<String> = u.dialogs.keys().cloned().collect();
            for id in ids {
                u.call_ended(now, &id);
            }
            for _ in 0..200 {
                match u.poll_timeout() {
                    Some(at) => {
                        now = now.max(at);
                        u.handle_timeout(now);
                        while u.poll_transmit().is_some() {}
                        while u.poll_action().is_some() {}
                    }
                    None => break,
                }
            }
            proptest::prop_assert_eq!((u.transactions(), u.dialogs()), (0, 0));
        }
    }

    #[test]
    fn info_dtmf_in_both_forms() {
        let t = Instant::now();
        let mut u = uas();
        let (call_id, tag) = answered(&mut u, t);
        u.handle_datagram(t, peer(), request("ACK", "ack1", 1, Some(&tag), None));
        for (i, (ctype, body, want)) in [
            (
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n",
                Some('5'),
            ),
            (
                "application/dtmf-relay",
                "Signal= #\r\nDuration=100\r\n",
                Some('#'),
            ),
            ("application/dtmf", "11", Some('#')),
            ("application/dtmf", "a", Some('A')),
            ("application/dtmf-relay", "Signal=X\r\n", None),
            ("text/plain", "5", None),
        ]
        .into_iter()
        .enumerate()
        {
            let text = String::from_utf8(
                request("INFO", &format!("i{i}"), 10 + i as u32, Some(&tag), Some(body)).to_vec(),
            )
            .expect("text");
            u.handle_datagram(t, peer(), Bytes::from(text.replace("application/sdp", ctype)));
            assert_eq!(codes(&sent(&mut u)), [200], "{ctype} {body:?}");
            let got = match u.poll_action() {
                Some(UasAction::Digit { call_id: c, digit }) => {
                    assert_eq!(c, call_id);
                    Some(digit)
                }
                None => None,
                other => panic!("{other:?}"),
            };
            assert_eq!(got, want, "{ctype} {body:?}");
        }
        assert_eq!(u.stats().info_digits, 4);
    }

    #[test]
    fn a_flood_past_the_transaction_cap_gets_stateless_503s() {
        let t = Instant::now();
        let mut u = SipUas::new(UasConfig {
            max_transactions: 3,
            ..uas().cfg
        });
        for i in 0..5 {
            u.handle_datagram(t, peer(), request("OPTIONS", &format!("o{i}"), 1, None, None));
        }
        assert_eq!(codes(&sent(&mut u)), [200, 200, 200, 503, 503]);
        assert_eq!((u.transactions(), u.stats().overloaded), (3, 2));
        u.handle_timeout(t + Duration::from_secs(40));
        u.handle_datagram(t, peer(), request("OPTIONS", "later", 1, None, None));
        assert_eq!(codes(&sent(&mut u)), [200], "room again once Timer J ran out");
    }

    #[test]
    fn digest_authentication_challenges_then_admits() {
        use voxbridge_proto::sip::auth::response;
        let t = Instant::now();
        let mut u = SipUas::new(UasConfig {
            auth: Some(DigestAuth {
                realm: "voxbridge".into(),
                users: HashMap::from([("trunk".to_owned(), "s3cret".to_owned())]),
                algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            }),
            ..uas().cfg
        });
        u.handle_datagram(t, peer(), request("INVITE", "a1", 1, None, Some(SDP)));
        let got = sent(&mut u);
        assert_eq!(codes(&got), [401]);
        let challenges: Vec<&str> = got[0].headers(HeaderName::WwwAuthenticate).collect();
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
        let nonce = challenges[0]
            .split("nonce=\"")
            .nth(1)
            .and_then(|n| n.split('"').next())
            .expect("nonce");
        assert!(u.poll_action().is_none());
        let uri = "sip:+4930123@198.51.100.1";
        let with_auth = |branch: &str, seq: u32, password: &str, algorithm: Algorithm| {
            let r = response(
                algorithm,
                "trunk",
                "voxbridge",
                password,
                "INVITE",
                uri,
                nonce,
                Some(("00000001", "xyz")),
            );
            let value = format!(
                "Digest username=\"trunk\", realm=\"voxbridge\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"xyz\"",
                algorithm.token()
            );
            let text =
                String::from_utf8(request("INVITE", branch, seq, None, Some(SDP)).to_vec()).expect("text");
            Bytes::from(text.replacen(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 70\r\nAuthorization: {value}\r\n"),
                1,
            ))
        };
        u.handle_datagram(t, peer(), with_auth("a2", 2, "wrong", Algorithm::Sha256));
        assert_eq!(codes(&sent(&mut u)), [401]);
        u.handle_datagram(t, peer(), with_auth("a3", 3, "s3cret", Algorithm::Md5));
        assert_eq!(codes(&sent(&mut u)), [100, 180], "MD5 for old PBXs");
        assert!(matches!(u.poll_action(), Some(UasAction::StartCall { .. })));
        u.handle_datagram(t, peer(), with_auth("a4", 4, "s3cret", Algorithm::Sha256));
        assert_eq!(codes(&sent(&mut u)), [100, 180]);
        assert!(matches!(u.poll_action(), Some(UasAction::StartCall { .. })));
        u.handle_datagram(
            t + Duration::from_secs(301),
            peer(),
            with_auth("a5", 5, "s3cret", Algorithm::Sha256),
        );
        let stale = sent(&mut u);
        assert_eq!(codes(&stale), [401]);
        assert!(stale[0]
            .header(HeaderName::WwwAuthenticate)
            .is_some_and(|c| c.contains("stale=true")));
        let s = u.stats();
        assert_eq!((s.auth_challenges, s.auth_failures), (2, 1));
    }
}
