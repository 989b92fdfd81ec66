//! voxbridge as the session-timer refresher (RFC 4028 section 10): a
//! caller that asks `refresher=uas` (and takes UPDATE) gets that in the
//! `200`, and voxbridge sends an UPDATE with `Session-Expires` at half of
//! each interval. A `2xx` re-arms the timer with the interval it grants;
//! no answer, `408` or `481` end the call with BYE (the session is gone at
//! the far end); another refusal leaves the session as it is, tried again
//! at the next half interval.

use super::uas::{refresh_time, transport_index, SipUas, UasAction};
use crate::events::{HangupCause, SipCause};
use std::cmp::Reverse;
use std::time::Instant;
use voxbridge_proto::sip::message::{HeaderName, Method};
use voxbridge_proto::sip::transaction::TxEvent;
use voxbridge_proto::sip::BRANCH_COOKIE;

impl SipUas {
    /// A refresh entry came due: the UPDATE goes out when it is voxbridge's
    /// to send now (the heap keeps stale entries; the dialog has the truth).
    pub(super) fn refresh_due(&mut self, now: Instant, call_id: &str) {
        let branch = format!("{BRANCH_COOKIE}{}", self.unique());
        let Some(dialog) = self.dialogs.get_mut(call_id) else {
            return;
        };
        let due = dialog.we_refresh
            && dialog.refresh_at.is_some_and(|at| at <= now)
            && matches!(dialog.phase, super::dialog::Phase::Answered { acked: true, .. });
        let Some(interval) = dialog.session_interval.filter(|_| due) else {
            return;
        };
        dialog.refresh_at = None;
        let transport = dialog.peer.transport;
        let update = dialog
            .request(
                &Method::Update,
                self.cfg.sent_by(transport),
                &branch,
                &self.contacts[transport_index(transport)],
            )
            .header("Session-Expires", format_args!("{interval};refresher=uas"))
            .header("Supported", "timer")
            .header("User-Agent", &self.cfg.user_agent)
            .build();
        let dest = dialog.peer;
        self.stats.refreshes_sent += 1;
        let owner = Some(call_id.to_owned());
        if let Err(e) = self.start_client(now, update, &Method::Update, &branch, dest, owner) {
            tracing::error!(error = %e, "session refresh not sent");
        }
    }

    /// An event of a refresh UPDATE's transaction.
    pub(super) fn refresh_event(&mut self, now: Instant, call_id: &str, event: TxEvent) {
        let code = match &event {
            TxEvent::Response(msg) => msg.status().unwrap_or(0),
            TxEvent::Timeout => 408,
            TxEvent::AckTimeout => return,
        };
        if code < 200 {
            return;
        }
        if matches!(code, 408 | 481) {
            self.stats.session_expired += 1;
            self.actions.push_back(UasAction::EndCall {
                call_id: call_id.to_owned(),
                sip: SipCause::new(Some(code), "session refresh failed (RFC 4028)"),
                cause: HangupCause::CallerGone,
            });
            if self.dialogs.contains_key(call_id) {
                self.send_bye(now, call_id);
            }
            return;
        }
        // 2xx: the interval granted (it may be shorter); a refusal: the same.
        let granted = match &event {
            TxEvent::Response(msg) if code < 300 => msg
                .header(HeaderName::SessionExpires)
                .and_then(|v| v.split(';').next())
                .and_then(|s| s.trim().parse::<u32>().ok()),
            _ => None,
        };
        let Some(dialog) = self.dialogs.get_mut(call_id) else {
            return;
        };
        if let Some(granted) = granted.filter(|g| *g >= super::uas::MIN_SE) {
            dialog.session_interval = Some(granted);
        }
        let Some(interval) = dialog.session_interval.filter(|_| dialog.we_refresh) else {
            return;
        };
        if code >= 300 {
            tracing::info!(%call_id, code, "session refresh refused; the session goes on, tried again");
        }
        let at = refresh_time(now, interval);
        dialog.refresh_at = Some(at);
        self.timers.push(Reverse((at, format!("f|{call_id}"))));
    }
}

#[cfg(test)]
mod tests {
    use super::super::uas::tests::{ack, codes, peer, request, sent, to_tag, uas};
    use super::super::uas::UasAction;
    use bytes::Bytes;
    use std::time::{Duration, Instant};
    use voxbridge_proto::sip::message::{HeaderName, Message, MessageBuilder, Method};

    /// An INVITE asking for a 90 s session refreshed by voxbridge.
    fn invite_asking_us_to_refresh(allow_update: bool) -> Bytes {
        let allow = if allow_update {
            "INVITE, ACK, BYE, CANCEL, UPDATE"
        } else {
            "INVITE, ACK, BYE, CANCEL"
        };
        invite_with(&format!(
            "Session-Expires: 90;refresher=uas\r\nSupported: timer\r\nAllow: {allow}\r\n"
        ))
    }

    /// The tests' INVITE (no `Session-Expires`) with these headers added.
    fn invite_with(headers: &str) -> Bytes {
        let invite = request("INVITE", "inv1", 1, None, Some(super::super::uas::tests::SDP));
        let text = String::from_utf8(invite.to_vec()).expect("text").replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{headers}"),
            1,
        );
        Bytes::from(text)
    }

    fn answered(u: &mut super::SipUas, t: Instant, invite: Bytes) -> (String, Message) {
        u.handle_datagram(t, peer(), invite);
        let _ = sent(u);
        let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
            panic!("no StartCall");
        };
        u.call_started(t, &call_id, Ok("v=0 answer".into()));
        let mut ok = sent(u);
        assert_eq!(codes(&ok), [200]);
        let ok = ok.remove(0);
        u.handle_datagram(t, peer(), ack(&to_tag(&ok)));
        (call_id, ok)
    }

    fn updates(out: &[Message]) -> Vec<&Message> {
        out.iter()
            .filter(|m| m.method() == Some(&Method::Update))
            .collect()
    }

    #[test]
    fn voxbridge_refreshes_when_asked_and_a_481_ends_the_call() {
        let t = Instant::now();
        let mut u = uas();
        let (call_id, ok) = answered(&mut u, t, invite_asking_us_to_refresh(true));
        assert_eq!(ok.header(HeaderName::SessionExpires), Some("90;refresher=uas"));
        // Nothing before half the interval; the UPDATE at 45 s.
        u.handle_timeout(t + Duration::from_secs(44));
        assert!(updates(&sent(&mut u)).is_empty());
        u.handle_timeout(t + Duration::from_secs(45));
        let out = sent(&mut u);
        let update = updates(&out);
        assert_eq!(update.len(), 1, "one refresh");
        assert_eq!(
            update[0].header(HeaderName::SessionExpires),
            Some("90;refresher=uas")
        );
        // Granted: the next one 45 s later, and no expiry meanwhile.
        let t2 = t + Duration::from_secs(45);
        let r = MessageBuilder::response_to(update[0], 200, "OK", None, None)
            .header("Session-Expires", "90;refresher=uas")
            .build();
        u.handle_datagram(t2, peer(), r);
        u.handle_timeout(t2 + Duration::from_secs(44));
        assert!(updates(&sent(&mut u)).is_empty());
        assert_eq!(u.poll_action(), None, "the call goes on");
        u.handle_timeout(t2 + Duration::from_secs(45));
        let out = sent(&mut u);
        let update = updates(&out);
        assert_eq!(update.len(), 1, "the second refresh");
        // The far end lost the dialog: 481 ends the call with BYE.
        let t3 = t2 + Duration::from_secs(45);
        u.handle_datagram(
            t3,
            peer(),
            MessageBuilder::response_to(update[0], 481, "Call/Transaction Does Not Exist", None, None)
                .build(),
        );
        assert!(matches!(
            u.poll_action(),
            Some(UasAction::EndCall { call_id: c, .. }) if c == call_id
        ));
        assert!(sent(&mut u).iter().any(|m| m.method() == Some(&Method::Bye)));
        assert_eq!((u.stats().refreshes_sent, u.stats().session_expired), (2, 1));
    }

    #[test]
    fn a_caller_without_update_refreshes_itself() {
        let t = Instant::now();
        let mut u = uas();
        let (_, ok) = answered(&mut u, t, invite_asking_us_to_refresh(false));
        assert_eq!(ok.header(HeaderName::SessionExpires), Some("90;refresher=uac"));
        u.handle_timeout(t + Duration::from_secs(45));
        assert!(
            updates(&sent(&mut u)).is_empty(),
            "no UPDATE to a peer without it"
        );
        assert_eq!(u.stats().refreshes_sent, 0);
    }

    /// A UAS that gives a session timer of `secs` to callers that ask for none.
    fn imposing(secs: u32) -> super::SipUas {
        super::SipUas::new(super::super::uas::UasConfig {
            session_expires: Some(secs),
            ..uas().cfg
        })
    }

    #[test]
    fn a_caller_that_supports_timers_but_asks_none_is_given_one_to_refresh() {
        let t = Instant::now();
        let mut u = imposing(1800);
        let (call_id, ok) = answered(&mut u, t, invite_with("Supported: timer\r\nMin-SE: 2000\r\n"));
        assert_eq!(
            ok.header(HeaderName::SessionExpires),
            Some("2000;refresher=uac"),
            "the caller's Min-SE raises the interval"
        );
        assert_eq!(ok.header(HeaderName::Require), Some("timer"));
        // Not refreshed: over at 2000 - 32 s, with BYE.
        u.handle_timeout(t + Duration::from_secs(1967));
        assert!(u.poll_action().is_none(), "not over yet");
        u.handle_timeout(t + Duration::from_secs(1968));
        match u.poll_action() {
            Some(UasAction::EndCall { call_id: ended, .. }) => assert_eq!(ended, call_id),
            other => panic!("expected EndCall, got {other:?}"),
        }
        let out = sent(&mut u);
        assert!(out.iter().any(|m| m.method() == Some(&Method::Bye)), "BYE sent");
        assert_eq!(u.stats().session_expired, 1);
    }

    #[test]
    fn a_caller_without_timer_support_that_takes_update_is_refreshed_by_voxbridge() {
        let t = Instant::now();
        let mut u = imposing(120);
        let (_, ok) = answered(
            &mut u,
            t,
            invite_with("Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\n"),
        );
        assert_eq!(ok.header(HeaderName::SessionExpires), Some("120;refresher=uas"));
        assert_eq!(
            ok.header(HeaderName::Require),
            None,
            "no Require: timer to a caller that does not support it (RFC 4028 section 9)"
        );
        // A re-INVITE at 10 s without `Allow` (as re-INVITEs often are)
        // keeps the timer voxbridge gave and restarts it.
        let sdp = Some(super::super::uas::tests::SDP);
        let reinvite = request("INVITE", "re1", 2, Some(&to_tag(&ok)), sdp);
        u.handle_datagram(t + Duration::from_secs(10), peer(), reinvite);
        let re = sent(&mut u);
        assert_eq!(codes(&re), [200]);
        assert_eq!(
            re[0].header(HeaderName::SessionExpires),
            Some("120;refresher=uas")
        );
        u.handle_timeout(t + Duration::from_secs(69));
        assert!(
            updates(&sent(&mut u)).is_empty(),
            "the re-INVITE restarted the timer"
        );
        u.handle_timeout(t + Duration::from_secs(70));
        let out = sent(&mut u);
        let update = updates(&out);
        assert_eq!(update.len(), 1, "voxbridge refreshes at half the interval");
        assert_eq!(
            update[0].header(HeaderName::SessionExpires),
            Some("120;refresher=uas")
        );
    }

    #[test]
    fn a_caller_that_can_neither_refresh_nor_be_refreshed_gets_no_timer() {
        let t = Instant::now();
        let mut u = imposing(1800);
        let (_, ok) = answered(&mut u, t, invite_with(""));
        assert_eq!(ok.header(HeaderName::SessionExpires), None);
        let mut off = uas();
        let (_, ok) = answered(&mut off, t, invite_with("Supported: timer\r\n"));
        assert_eq!(
            ok.header(HeaderName::SessionExpires),
            None,
            "off by default: only a caller that asks gets a timer"
        );
        u.handle_timeout(t + Duration::from_secs(7200));
        assert!(u.poll_action().is_none(), "the call goes on");
    }
}
