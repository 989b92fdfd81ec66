//! The rows the store keeps and the API shows. Field names follow the
//! telephony conventions the issue asks for (`tm_*` times, `hangup_by`).

use crate::state::{CallStatus, Direction, HangupBy, HangupReason};
use crate::time::Millis;
use serde::Serialize;
use utoipa::ToSchema;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Customer {
    /// Customer id (UUID unless given at creation).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Contact address, if any.
    pub email: Option<String>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
}

/// An API access key (its secret is shown once, at creation; the store
/// keeps only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccessKey {
    /// Key id.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// Label.
    pub name: String,
    /// The first characters of the secret, to tell keys apart.
    pub prefix: String,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
    /// Expiry, if any.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_expire: Option<Millis>,
}

/// A call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Call {
    /// Call id (the media plane's id: AudioSocket UUID or RTP session id).
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// Status (see the state machine in `state.rs`).
    pub status: CallStatus,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Calling party (number or address), empty if unknown.
    pub source: String,
    /// Called party, empty if unknown.
    pub destination: String,
    /// Media route (bot) the call uses.
    pub route: String,
    /// How the media arrived (`audiosocket`, `rtp`).
    pub ingress: String,
    /// Which side hung up.
    pub hangup_by: Option<HangupBy>,
    /// Why, in telephony terms.
    pub hangup_reason: Option<HangupReason>,
    /// The media plane's own cause (`caller_hangup`, `media_timeout`, ...).
    pub hangup_cause: Option<String>,
    /// For a SIP call its signalling ended: the SIP status code, when there
    /// was one (`487` for a CANCEL; none for a BYE).
    pub hangup_sip_code: Option<u16>,
    /// For a SIP call its signalling ended: the reason, the BYE's or
    /// CANCEL's `Reason` header (RFC 3326) when it had one (`Q.850;cause=16;
    /// text="Normal call clearing"`), else `BYE`, `Request Terminated`, ...
    pub hangup_sip_reason: Option<String>,
    /// For a call voxbridge placed on a route with answering-machine
    /// detection: who answered, `human`, `machine` or `not_sure`.
    pub answered_by: Option<String>,
    /// The rule that decided `answered_by` (`human`, `long_greeting`,
    /// `max_words`, `max_word_length`, `initial_silence`, `too_long`).
    pub amd_cause: Option<String>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
    /// Started ringing.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_ringing: Option<Millis>,
    /// Answered.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_progressing: Option<Millis>,
    /// Ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_hangup: Option<Millis>,
    /// Length in milliseconds (created to hangup).
    pub duration_ms: Option<i64>,
    /// Last change.
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: Millis,
}

/// A call as the media plane announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// Call id.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// First status (`ringing` for inbound, `dialing` for outbound).
    pub status: CallStatus,
    /// Direction.
    pub direction: Direction,
    /// Calling party.
    pub source: String,
    /// Called party.
    pub destination: String,
    /// Route.
    pub route: String,
    /// Ingress.
    pub ingress: String,
    /// When.
    pub at: Millis,
}

/// A status change for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallChange {
    /// The status asked for.
    pub to: CallStatus,
    /// When it happened.
    pub at: Millis,
    /// For `hangup`: who, why, and the media cause.
    pub hangup: Option<(HangupBy, HangupReason, String)>,
    /// For `hangup` of a call its SIP signalling ended: the SIP code and reason.
    pub sip: Option<voxbridge_contract::events::SipCause>,
}

/// Who made a change through the API (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `admin`, `customer:<id>`, `agent:<id>` or `key:<id>`.
    pub id: String,
}

/// A transcription session of one call: a speech recognizer's (started by
/// the route's config or `POST /v1/calls/{id}/transcribes`), or the one a
/// bot reports its own transcripts into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Transcribe {
    /// Transcribe id.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// The call transcribed.
    pub call_id: String,
    /// `recognizer` (voxbridge streams the call's audio to a speech
    /// recognizer) or `bot` (segments the bot reported).
    #[schema(pattern = "^(recognizer|bot)$")]
    pub source: String,
    /// `running`, then `completed` (stopped, the call ended, or the
    /// recognizer gave up; its last segments are in).
    #[schema(pattern = "^(running|completed)$")]
    pub status: String,
    /// The recognizer's language (none for `bot`).
    pub language: Option<String>,
    /// `in` (the caller), `out` (what the caller heard) or `both`.
    #[schema(pattern = "^(in|out|both)$")]
    pub directions: String,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
    /// Completed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_end: Option<Millis>,
}

/// A call recording: a stereo WAV file (caller left, what the caller heard
/// right) the media plane writes, `GET /v1/recordings/{id}` serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Recording {
    /// Recording id.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// The call recorded.
    pub call_id: String,
    /// `recording`, `paused` (silence is recorded meanwhile), `completed`
    /// (stopped or the call ended), `failed` (a write error such as a full
    /// disk: the file holds what was written before), or `deleted` (by
    /// retention).
    #[schema(pattern = "^(recording|paused|completed|failed|deleted)$")]
    pub status: String,
    /// Why it ended: `stopped`, `call_ended`, `disk_full` or `failed`.
    #[schema(pattern = "^(stopped|call_ended|disk_full|failed)$")]
    pub end_reason: Option<String>,
    /// Sample rate of the file, Hz.
    pub rate: i64,
    /// Audio in the file, ms (once ended).
    pub duration_ms: Option<i64>,
    /// Size of the file, bytes (once ended).
    pub bytes: Option<i64>,
    /// Started.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
    /// Ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_end: Option<Millis>,
}

/// One transcript segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Transcript {
    /// Transcript id.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// Its transcribe.
    pub transcribe_id: String,
    /// The call.
    pub call_id: String,
    /// `in` (the caller) or `out` (the bot: what the caller heard).
    pub direction: String,
    /// The words.
    pub message: String,
    /// Milliseconds since the call was answered (since it was created,
    /// for a call not answered): where a recognizer heard the words start,
    /// or when a bot's report arrived.
    pub tm_transcript: i64,
    /// Stored.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Entry id.
    pub id: String,
    /// Tenant whose data changed.
    pub customer_id: String,
    /// Who.
    pub actor: String,
    /// What (`call.hangup`, `customer.delete`, ...).
    pub action: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: String,
    /// State before, as JSON (null for creations).
    #[schema(value_type = Option<Object>)]
    pub before: serde_json::Value,
    /// State after, as JSON (null for deletions).
    #[schema(value_type = Option<Object>)]
    pub after: serde_json::Value,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
}

/// One page of a list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Which page to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageReq {
    /// Rows per page (1..=100).
    pub limit: u32,
    /// Rows older than this position (from `next_cursor`).
    pub before: Option<i64>,
}

impl PageReq {
    /// Largest page.
    pub const MAX: u32 = 100;

    /// Checks `limit` and decodes `cursor`.
    pub fn new(limit: Option<u32>, cursor: Option<&str>) -> crate::Result<Self> {
        let limit = limit.unwrap_or(50);
        if !(1..=Self::MAX).contains(&limit) {
            return Err(crate::ControlError::Invalid(format!(
                "limit must be 1..={}",
                Self::MAX
            )));
        }
        let before = match cursor {
            None => None,
            Some(c) => Some(
                c.parse::<i64>()
                    .ok()
                    .filter(|v| *v > 0 && c.len() <= 18)
                    .ok_or_else(|| crate::ControlError::Invalid("bad cursor".into()))?,
            ),
        };
        Ok(PageReq { limit, before })
    }
}

/// Filters for listing calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Only this status.
    pub status: Option<CallStatus>,
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Created at or after.
    pub since: Option<Millis>,
    /// Created before.
    pub until: Option<Millis>,
}

/// Deserialises an integer that JSON may spell as `126` or `126.0` (JSON
/// Schema's `integer` admits both, and so do API clients); other fractions
/// and values beyond 2^53 written as floats are refused.
pub fn lenient_int<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    use serde::de::Error as _;
    use serde::Deserialize as _;
    let v = serde_json::Number::deserialize(d)?;
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => Ok(f as i64),
        _ => Err(D::Error::custom(format!("{v} is not an integer in range"))),
    }
}

/// [`lenient_int`] for optional fields (`null` or absent is `None`).
pub fn lenient_opt_int<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct W(#[serde(deserialize_with = "lenient_int")] i64);
    use serde::Deserialize as _;
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// [`lenient_int`] into a `u32` (negative or too large is refused).
pub fn lenient_u32<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    use serde::de::Error as _;
    let v = lenient_int(d)?;
    u32::try_from(v).map_err(|_| D::Error::custom(format!("{v} is out of range")))
}

/// [`lenient_u32`] for optional fields.
pub fn lenient_opt_u32<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    #[derive(serde::Deserialize)]
    struct W(#[serde(deserialize_with = "lenient_u32")] u32);
    use serde::Deserialize as _;
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}
