//! The commands the rest of voxbridge (control/) may give the media plane,
//! and the registry of running AudioSocket calls that carries them out.
//! RTP sessions have their own registry ([`crate::sessions`]).

use crate::events::HangupCause;
use crate::sessions::RtpSessions;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What control/ may ask of running calls.
pub trait CallCommands: Send + Sync + 'static {
    /// Hangs a running call up with cause `api_hangup`; `false` if no call
    /// with that id runs here.
    fn hangup(&self, call_id: &str) -> bool;
}

type Stop = watch::Sender<Option<HangupCause>>;

/// Stop switches of the running AudioSocket calls, by call id. Touched at
/// call start and end only, never per frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallRegistry(Arc<Mutex<HashMap<String, Stop>>>);

/// Unregisters its call when dropped.
pub(crate) struct Registered {
    registry: CallRegistry,
    call_id: String,
    stop: Stop,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.registry.0.lock().unwrap_or_else(|e| e.into_inner());
        // A later call with the same id may have replaced this one.
        if map.get(&self.call_id).is_some_and(|s| s.same_channel(&self.stop)) {
            map.remove(&self.call_id);
        }
    }
}

impl CallRegistry {
    /// Registers a call; the receiver turns `Some(cause)` on hangup.
    pub(crate) fn register(&self, call_id: &str) -> (watch::Receiver<Option<HangupCause>>, Registered) {
        let (tx, rx) = watch::channel(None);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(call_id.to_owned(), tx.clone());
        let guard = Registered {
            registry: self.clone(),
            call_id: call_id.to_owned(),
            stop: tx,
        };
        (rx, guard)
    }

    fn hangup(&self, call_id: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(call_id) {
            Some(s) => {
                s.send_replace(Some(HangupCause::ApiHangup));
                true
            }
            None => false,
        }
    }
}

/// Commands for every call of one media server (cheap to clone).
#[derive(Clone)]
pub struct MediaCommands {
    pub(crate) rtp: RtpSessions,
    pub(crate) audiosocket: CallRegistry,
}

impl CallCommands for MediaCommands {
    fn hangup(&self, call_id: &str) -> bool {
        self.rtp.hangup(call_id) || self.audiosocket.hangup(call_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hangs_up_by_id_and_forgets_ended_calls() {
        let reg = CallRegistry::default();
        let (rx, guard) = reg.register("a");
        assert!(reg.hangup("a"));
        assert_eq!(*rx.borrow(), Some(HangupCause::ApiHangup));
        assert!(!reg.hangup("b"));
        drop(guard);
        assert!(!reg.hangup("a"));
    }

    #[test]
    fn an_ended_call_does_not_unregister_its_successor() {
        let reg = CallRegistry::default();
        let (_old_rx, old) = reg.register("a");
        let (new_rx, _new) = reg.register("a");
        drop(old);
        assert!(reg.hangup("a"));
        assert_eq!(*new_rx.borrow(), Some(HangupCause::ApiHangup));
    }
}
