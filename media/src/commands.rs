//! The registry of running calls that carries out the commands the rest of
//! voxbridge (control/) may give the media plane (`voxbridge_contract::commands`).
//!
//! The registry is also the one namespace of call ids: every call, from
//! any ingress (AudioSocket UUID, RTP `call_id`), claims its id here before
//! it starts, and a claim of an id in use is refused, never merged. So a
//! call's record (keyed by id in control/) and its media are always the
//! same call. RTP sessions keep a listing of their own ([`crate::driver::sessions`]).

use crate::events::{HangupCause, SipCause};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
pub use voxbridge_contract::commands::{
    AsteriskMediaDial, CallCommands, DialDone, RecordCommand, RecordDone, RecordingInfo, SipDial,
    SipDialEvent, SipDialEvents, TranscribeDirections, TranscribeDone, TranscribeRunning, TranscribeStart,
};

/// Signalling inputs sent to one call that may wait unread (SIP INFO
/// digits, hold); more are dropped, counted by the sender.
pub(crate) const INPUTS_QUEUED: usize = 32;

/// What the signalling beside the media (SIP) or the API tells a running
/// call.
pub(crate) enum CallInput {
    /// A caller digit (SIP INFO).
    Digit(char),
    /// The caller held (`true`) or resumed (`false`) the call (re-INVITE).
    Hold(bool),
    /// The call's media format changed (a re-INVITE answered with another
    /// codec).
    Format(crate::sansio::rtp::RtpFormat),
    /// Start transcribing (API); `done` hears whether it started.
    Transcribe(TranscribeStart, TranscribeDone),
    /// Stop the running transcribe (API); `done` hears whether one ran.
    StopTranscribe(DialDone),
    /// Start, stop, pause or resume the call's recording (API); `done`
    /// hears how it went.
    Record(RecordCommand, RecordDone),
    /// A transfer of the call to `target` failed (SIP REFER refused, or a
    /// failure in its NOTIFY); the call goes on and the bot is told.
    TransferFailed {
        /// Where the call was to go.
        target: String,
        /// What the far end said.
        sip: crate::events::SipCause,
    },
}

impl std::fmt::Debug for CallInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallInput::Digit(d) => f.debug_tuple("Digit").field(d).finish(),
            CallInput::Hold(h) => f.debug_tuple("Hold").field(h).finish(),
            CallInput::Format(x) => f.debug_tuple("Format").field(x).finish(),
            CallInput::Transcribe(t, _) => f.debug_tuple("Transcribe").field(t).finish(),
            CallInput::StopTranscribe(_) => f.write_str("StopTranscribe"),
            CallInput::Record(c, _) => f.debug_tuple("Record").field(c).finish(),
            CallInput::TransferFailed { target, sip } => f
                .debug_struct("TransferFailed")
                .field("target", target)
                .field("sip", sip)
                .finish(),
        }
    }
}

/// What the registry keeps of a running call: its stop switch and where
/// signalling inputs go.
#[derive(Debug)]
struct Handle {
    stop: watch::Sender<Option<Stop>>,
    inputs: mpsc::Sender<CallInput>,
}

/// A hangup by command: its cause and, for a SIP call its signalling
/// ended, what the SIP said (it goes on the hangup event).
pub(crate) type Stop = (HangupCause, Option<SipCause>);

/// What a running call takes from outside: `stop` turns `Some(cause)` on a
/// hangup by command, and `inputs` brings what the signalling beside the
/// media says (SIP INFO digits, hold and resume).
#[derive(Debug)]
pub(crate) struct CallControl {
    pub stop: watch::Receiver<Option<Stop>>,
    pub inputs: mpsc::Receiver<CallInput>,
}

/// Stop switches of the running calls, by call id. Touched at call start
/// and end only, never per frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallRegistry(Arc<Mutex<HashMap<String, Handle>>>);

/// Frees its call's id when dropped (a claim is never replaced while held,
/// so the entry is this call's).
pub(crate) struct Registered {
    registry: CallRegistry,
    call_id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.registry.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&self.call_id);
    }
}

impl CallRegistry {
    /// Claims `call_id` for a new call; the receiver turns `Some(cause)` on
    /// hangup, and the id is free again when the guard drops. `None` when a
    /// live call holds the id.
    pub(crate) fn claim(&self, call_id: &str) -> Option<(CallControl, Registered)> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(call_id) {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        let (inputs_tx, inputs) = mpsc::channel(INPUTS_QUEUED);
        map.insert(
            call_id.to_owned(),
            Handle {
                stop: tx,
                inputs: inputs_tx,
            },
        );
        let rx = CallControl { stop: rx, inputs };
        let guard = Registered {
            registry: self.clone(),
            call_id: call_id.to_owned(),
        };
        Some((rx, guard))
    }

    /// Hangs a running call up (cause `api_hangup`); `false` if none has the id.
    pub(crate) fn hangup(&self, call_id: &str) -> bool {
        self.hangup_with(call_id, HangupCause::ApiHangup)
    }

    /// Hangs a running call up with `cause`; `false` if none has the id.
    pub(crate) fn hangup_with(&self, call_id: &str, cause: HangupCause) -> bool {
        self.hangup_with_sip(call_id, cause, None)
    }

    /// Hangs a running call up with `cause` and the SIP signalling's own
    /// words (`sip`, for the hangup event); `false` if none has the id.
    pub(crate) fn hangup_with_sip(&self, call_id: &str, cause: HangupCause, sip: Option<SipCause>) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(call_id) {
            Some(h) => {
                h.stop.send_replace(Some((cause, sip)));
                true
            }
            None => false,
        }
    }

    /// Hands what the signalling beside the media said (a SIP INFO digit,
    /// hold) to the running call; `false` when there is no such call or its
    /// queue of [`INPUTS_QUEUED`] is full.
    pub(crate) fn send_input(&self, call_id: &str, input: CallInput) -> bool {
        self.try_input(call_id, input).is_ok()
    }

    /// [`CallRegistry::send_input`] that hands the input back when it could
    /// not be queued, with why.
    fn try_input(&self, call_id: &str, input: CallInput) -> Result<(), (CallInput, &'static str)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = map.get(call_id) else {
            return Err((input, "no such call runs here"));
        };
        h.inputs.try_send(input).map_err(|e| match e {
            mpsc::error::TrySendError::Full(i) => (i, "the call is busy; try again"),
            mpsc::error::TrySendError::Closed(i) => (i, "the call is ending"),
        })
    }

    /// Hands a command that answers through `done` to the running call;
    /// `done` hears why not when it cannot be queued.
    fn command(&self, call_id: &str, input: CallInput) {
        if let Err((input, why)) = self.try_input(call_id, input) {
            let why = format!("call {call_id}: {why}");
            match input {
                CallInput::Transcribe(_, done) => done(Err(why)),
                CallInput::StopTranscribe(done) => done(Err(why)),
                CallInput::Record(_, done) => done(Err(why)),
                _ => {}
            }
        }
    }
}

/// Commands for every call of one media server, AudioSocket or RTP alike
/// (cheap to clone).
#[derive(Clone)]
pub struct MediaCommands {
    pub(crate) calls: CallRegistry,
    pub(crate) dialer: crate::driver::chanws::MediaDialer,
    /// Places SIP calls (none with SIP off).
    pub(crate) sip: Option<crate::driver::sip::dial::SipDialer>,
}

impl CallCommands for MediaCommands {
    fn hangup(&self, call_id: &str) -> bool {
        self.calls.hangup(call_id)
    }

    fn dial_asterisk_media(&self, dial: AsteriskMediaDial, done: DialDone) -> Result<(), String> {
        self.dialer.dial(dial, done)
    }

    fn dial_sip(&self, dial: SipDial, events: SipDialEvents) -> Result<(), String> {
        match &self.sip {
            Some(sip) => sip.dial(dial, events),
            None => Err("SIP is off on this media plane (no sip.listen)".into()),
        }
    }

    fn transfer(&self, call_id: &str, target: &str, done: DialDone) {
        match &self.sip {
            Some(sip) => sip.transfer(call_id, target, done),
            None => done(Err(format!(
                "call {call_id}: SIP is off on this media plane, and only SIP calls transfer"
            ))),
        }
    }

    fn cancel_dial(&self, call_id: &str) -> bool {
        self.sip.as_ref().is_some_and(|s| s.cancel(call_id))
    }

    fn transcribe(&self, call_id: &str, start: TranscribeStart, done: TranscribeDone) {
        self.calls.command(call_id, CallInput::Transcribe(start, done));
    }

    fn stop_transcribe(&self, call_id: &str, done: DialDone) {
        self.calls.command(call_id, CallInput::StopTranscribe(done));
    }

    fn record(&self, call_id: &str, command: RecordCommand, done: RecordDone) {
        self.calls.command(call_id, CallInput::Record(command, done));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hangs_up_by_id_and_forgets_ended_calls() {
        let reg = CallRegistry::default();
        let (mut rx, guard) = reg.claim("a").expect("free");
        assert!(reg.send_input("a", CallInput::Digit('5')));
        assert!(reg.send_input("a", CallInput::Hold(true)));
        assert!(matches!(rx.inputs.try_recv(), Ok(CallInput::Digit('5'))));
        assert!(matches!(rx.inputs.try_recv(), Ok(CallInput::Hold(true))));
        assert!(!reg.send_input("b", CallInput::Digit('5')));
        let (tx, mut heard) = tokio::sync::oneshot::channel();
        reg.command(
            "b",
            CallInput::StopTranscribe(Box::new(move |r| drop(tx.send(r)))),
        );
        let why = heard
            .try_recv()
            .expect("answered at once")
            .expect_err("no call b");
        assert!(why.contains("no such call"), "{why}");
        assert!(reg.hangup("a"));
        assert_eq!(rx.stop.borrow().clone(), Some((HangupCause::ApiHangup, None)));
        assert!(!reg.hangup("b"));
        drop(guard);
        assert!(!reg.hangup("a"));
    }

    #[test]
    fn a_call_id_in_use_is_refused_and_free_again_after_the_call() {
        let reg = CallRegistry::default();
        let (old_rx, old) = reg.claim("a").expect("free");
        assert!(reg.claim("a").is_none(), "a live call's id is never merged");
        assert!(reg.hangup("a"));
        assert_eq!(old_rx.stop.borrow().clone(), Some((HangupCause::ApiHangup, None)));
        drop(old);
        let (new_rx, _new) = reg.claim("a").expect("free after the call ended");
        assert!(reg.hangup("a"));
        assert_eq!(new_rx.stop.borrow().clone(), Some((HangupCause::ApiHangup, None)));
    }
}
