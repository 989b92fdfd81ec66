//! Blind transfer (RFC 3515 REFER, RFC 5589's transferee flow): the bot or
//! the API asks to hand a running SIP call on to a person. voxbridge sends
//! REFER in the call's dialog with `Refer-To` the target (a number at the
//! peer's host, or a `sip:` URI) and `Referred-By` itself; the far end
//! accepts it (`202`) and reports the new call's progress in NOTIFYs whose
//! `message/sipfrag` body is its status line. A `2xx` there means the
//! caller now talks to the target: [`UasAction::Transferred`], the call
//! ends with cause `transferred` and voxbridge sends BYE. A refused REFER,
//! no answer to it, or a final failure in a NOTIFY is
//! [`UasAction::TransferFailed`] and the call goes on as it was. A transfer
//! asked for before the call is up (before the caller's ACK) goes out once
//! it is.

use super::dialog::Phase;
use super::uac::request_uri;
use super::uas::{transport_index, SipUas, UasAction};
use crate::events::{HangupCause, SipCause};
use std::time::Instant;
use voxbridge_proto::sip::message::{HeaderName, Message, Method};
use voxbridge_proto::sip::transaction::TxEvent;
use voxbridge_proto::sip::{SipUri, BRANCH_COOKIE};

impl SipUas {
    /// Sends REFER to hand call `call_id` on to `target`; `Err` says why
    /// not (no such call up, a transfer already under way, a bad target),
    /// counted in [`super::UasStats::transfers_refused`].
    pub fn transfer(&mut self, now: Instant, call_id: &str, target: &str) -> Result<(), String> {
        let r = self.refer(now, call_id, target);
        if r.is_err() {
            self.stats.transfers_refused += 1;
        }
        r
    }

    fn refer(&mut self, now: Instant, call_id: &str, target: &str) -> Result<(), String> {
        let branch = format!("{BRANCH_COOKIE}{}", self.unique());
        let Some(dialog) = self.dialogs.get_mut(call_id) else {
            return Err(format!("no SIP call {call_id:?} here"));
        };
        if dialog.transfer.is_some() || dialog.queued_transfer.is_some() {
            return Err(format!("SIP call {call_id:?} is being transferred already"));
        }
        if !matches!(dialog.phase, Phase::Answered { acked: true, .. }) {
            // Not up yet: the REFER goes out with the ACK.
            dialog.queued_transfer = Some(target.to_owned());
            return Ok(());
        }
        let host = SipUri::parse(&dialog.target)
            .map(|u| u.host.to_owned())
            .unwrap_or_default();
        let refer_to = request_uri(target, &host).map_err(|e| format!("transfer target: {e}"))?;
        let transport = dialog.peer.transport;
        let contact = &self.contacts[transport_index(transport)];
        let refer = dialog
            .request(&Method::Refer, self.cfg.sent_by(transport), &branch, contact)
            .header("Refer-To", format_args!("<{refer_to}>"))
            .header("Referred-By", contact)
            .header("User-Agent", &self.cfg.user_agent)
            .build();
        dialog.transfer = Some(refer_to.clone());
        let dest = dialog.peer;
        self.stats.transfers += 1;
        tracing::info!(%call_id, target = %refer_to, "SIP: transferring the call (REFER)");
        self.start_client(
            now,
            refer,
            &Method::Refer,
            &branch,
            dest,
            Some(call_id.to_owned()),
        )
    }

    /// The call is up: a transfer asked for before goes out now.
    pub(super) fn send_queued_transfer(&mut self, now: Instant, call_id: &str) {
        let Some(target) = self
            .dialogs
            .get_mut(call_id)
            .and_then(|d| d.queued_transfer.take())
        else {
            return;
        };
        if let Err(why) = self.transfer(now, call_id, &target) {
            tracing::warn!(%call_id, %target, error = %why, "SIP: the transfer asked for before the ACK cannot be made");
        }
    }

    /// An event of a REFER's transaction: a refusal or no answer fails the
    /// transfer; an acceptance waits for the NOTIFYs.
    pub(super) fn refer_event(&mut self, call_id: &str, event: TxEvent) {
        match event {
            TxEvent::Response(msg) => {
                let code = msg.status().unwrap_or(0);
                if code >= 300 {
                    let reason = super::uac::reason_phrase(&msg).to_owned();
                    self.transfer_failed(call_id, SipCause::new(Some(code), &reason));
                }
            }
            TxEvent::Timeout => self.transfer_failed(call_id, SipCause::new(Some(408), "no answer to REFER")),
            TxEvent::AckTimeout => {}
        }
    }

    /// A NOTIFY in call `call_id`'s dialog (already answered `200`): the
    /// transfer's progress.
    pub(super) fn transfer_progress(&mut self, now: Instant, call_id: &str, notify: &Message) {
        let Some(target) = self.dialogs.get(call_id).and_then(|d| d.transfer.clone()) else {
            return;
        };
        let is_refer = notify
            .header(HeaderName::Event)
            .is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("refer"));
        let Some((code, phrase)) = is_refer.then(|| sipfrag_status(notify.body())).flatten() else {
            return;
        };
        match code {
            100..=199 => {}
            200..=299 => {
                self.stats.transfers_completed += 1;
                tracing::info!(%call_id, %target, "SIP: the call was transferred");
                self.actions.push_back(UasAction::Transferred {
                    call_id: call_id.to_owned(),
                    target: target.clone(),
                });
                self.actions.push_back(UasAction::EndCall {
                    call_id: call_id.to_owned(),
                    sip: SipCause::new(Some(code), &format!("transferred to {target}")),
                    cause: HangupCause::Transferred,
                });
                self.send_bye(now, call_id);
            }
            // The new call's own status line says why (`486 Busy Here`).
            _ => {
                let reason = if phrase.is_empty() {
                    "the transfer failed"
                } else {
                    phrase
                };
                self.transfer_failed(call_id, SipCause::new(Some(code), reason));
            }
        }
    }

    fn transfer_failed(&mut self, call_id: &str, sip: SipCause) {
        let Some(target) = self.dialogs.get_mut(call_id).and_then(|d| d.transfer.take()) else {
            return;
        };
        self.stats.transfers_failed += 1;
        tracing::info!(%call_id, %target, code = ?sip.code, reason = %sip.reason, "SIP: the transfer failed; the call goes on");
        self.actions.push_back(UasAction::TransferFailed {
            call_id: call_id.to_owned(),
            target,
            sip,
        });
    }
}

/// The status code and reason phrase of a `message/sipfrag` body's status
/// line (`SIP/2.0 486 Busy Here`), if it has one.
fn sipfrag_status(body: &[u8]) -> Option<(u16, &str)> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, phrase) = rest.split_once(' ').unwrap_or((rest, ""));
    let code = code.parse().ok().filter(|c| (100..700).contains(c))?;
    Some((code, phrase.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sansio::sip::uas::tests::{answered_call, uas};
    use bytes::Bytes;

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some((200, "OK")));
        assert_eq!(sipfrag_status(b"SIP/2.0 180 Ringing"), Some((180, "Ringing")));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 486 Busy Here\r\n"),
            Some((486, "Busy Here"))
        );
        assert_eq!(sipfrag_status(b"SIP/2.0 503"), Some((503, "")));
        assert_eq!(sipfrag_status(b"SIP/2.0 999 x"), None);
        assert_eq!(sipfrag_status(b"hello"), None);
        assert_eq!(sipfrag_status(&[0xff, 0xfe]), None);
    }

    /// The caller's NOTIFY (the uas tests' caller: tag `abc`, its Call-ID).
    fn notify(our_tag: &str, cseq: u32, frag: &str) -> Bytes {
        Bytes::from(format!(
            "NOTIFY sip:voxbridge@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKn{cseq}\r\n\
             From: <sip:+15550100@carrier>;tag=abc\r\nTo: <sip:+4930123@vb>;tag={our_tag}\r\n\
             Call-ID: call-1@carrier\r\nCSeq: {cseq} NOTIFY\r\nEvent: refer\r\nSubscription-State: active\r\n\
             Content-Type: message/sipfrag\r\nContent-Length: {}\r\n\r\n{frag}",
            frag.len()
        ))
    }

    #[test]
    fn refer_then_notify_200_ends_the_call_as_transferred() {
        let mut u = uas();
        let t = Instant::now();
        let (call_id, call) = answered_call(&mut u, t);
        u.transfer(t, &call_id, "+15550123").expect("REFER goes out");
        assert!(u.transfer(t, &call_id, "+15550124").is_err(), "one at a time");
        let refer = std::iter::from_fn(|| u.poll_transmit())
            .map(|(_, b)| Message::parse(b).expect("parses"))
            .find(|m| m.method() == Some(&Method::Refer))
            .expect("REFER");
        assert_eq!(refer.header_named("refer-to"), Some("<sip:+15550123@192.0.2.10>"));
        let accepted =
            voxbridge_proto::sip::MessageBuilder::response_to(&refer, 202, "Accepted", None, None).build();
        u.handle_datagram(t, "192.0.2.10:5062".parse().expect("addr"), accepted);
        u.handle_datagram(
            t,
            "192.0.2.10:5062".parse().expect("addr"),
            notify(&call, 10, "SIP/2.0 100 Trying\r\n"),
        );
        assert!(
            std::iter::from_fn(|| u.poll_action()).next().is_none(),
            "trying changes nothing"
        );
        u.handle_datagram(
            t,
            "192.0.2.10:5062".parse().expect("addr"),
            notify(&call, 11, "SIP/2.0 200 OK\r\n"),
        );
        let actions: Vec<UasAction> = std::iter::from_fn(|| u.poll_action()).collect();
        assert!(
            matches!(&actions[0], UasAction::Transferred { target, .. } if target == "sip:+15550123@192.0.2.10")
        );
        assert!(matches!(
            &actions[1],
            UasAction::EndCall {
                cause: HangupCause::Transferred,
                ..
            }
        ));
        let sent: Vec<Message> = std::iter::from_fn(|| u.poll_transmit())
            .map(|(_, b)| Message::parse(b).expect("parses"))
            .collect();
        assert!(
            sent.iter().any(|m| m.status() == Some(200)),
            "each NOTIFY answered"
        );
        assert!(sent.iter().any(|m| m.method() == Some(&Method::Bye)));
        assert_eq!(u.dialogs(), 0);
        let s = u.stats();
        assert_eq!(
            (s.transfers, s.transfers_completed, s.transfers_failed),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_transfer_asked_for_before_the_ack_goes_out_with_it() {
        let mut u = uas();
        let t = Instant::now();
        u.handle_datagram(
            t,
            "192.0.2.10:5062".parse().expect("addr"),
            crate::sansio::sip::uas::tests::invite(),
        );
        let Some(UasAction::StartCall { call_id, .. }) = u.poll_action() else {
            panic!("no StartCall");
        };
        u.transfer(t, &call_id, "+15550123").expect("queued");
        u.call_started(t, &call_id, Ok("v=0 answer".into()));
        let ok = std::iter::from_fn(|| u.poll_transmit())
            .map(|(_, b)| Message::parse(b).expect("parses"))
            .find(|m| m.status() == Some(200))
            .expect("200");
        assert_eq!(u.stats().transfers, 0, "not before the ACK");
        let tag = voxbridge_proto::sip::NameAddr::parse(ok.header(HeaderName::To).expect("to"))
            .expect("to")
            .tag()
            .expect("tag")
            .to_owned();
        u.handle_datagram(
            t,
            "192.0.2.10:5062".parse().expect("addr"),
            crate::sansio::sip::uas::tests::ack(&tag),
        );
        let refer = std::iter::from_fn(|| u.poll_transmit())
            .map(|(_, b)| Message::parse(b).expect("parses"))
            .find(|m| m.method() == Some(&Method::Refer));
        assert!(refer.is_some(), "REFER after the ACK");
    }

    #[test]
    fn a_refused_refer_or_a_failed_target_leaves_the_call_up() {
        let mut u = uas();
        let t = Instant::now();
        let (call_id, call) = answered_call(&mut u, t);
        assert!(u.transfer(t, "nope", "+1").is_err());
        assert!(u.transfer(t, &call_id, "not a number").is_err());
        assert_eq!(u.stats().transfers_refused, 2, "both counted");
        u.transfer(t, &call_id, "sip:agent@pbx.example").expect("REFER");
        let refer = std::iter::from_fn(|| u.poll_transmit())
            .map(|(_, b)| Message::parse(b).expect("parses"))
            .find(|m| m.method() == Some(&Method::Refer))
            .expect("REFER");
        let refused =
            voxbridge_proto::sip::MessageBuilder::response_to(&refer, 603, "Decline", None, None).build();
        u.handle_datagram(t, "192.0.2.10:5062".parse().expect("addr"), refused);
        let actions: Vec<UasAction> = std::iter::from_fn(|| u.poll_action()).collect();
        assert!(matches!(&actions[..], [UasAction::TransferFailed { sip, .. }] if sip.code == Some(603)));
        // Again, accepted, but the target is busy.
        u.transfer(t, &call_id, "sip:agent@pbx.example")
            .expect("REFER again");
        u.handle_datagram(
            t,
            "192.0.2.10:5062".parse().expect("addr"),
            notify(&call, 12, "SIP/2.0 486 Busy Here\r\n"),
        );
        let actions: Vec<UasAction> = std::iter::from_fn(|| u.poll_action()).collect();
        assert!(matches!(&actions[..], [UasAction::TransferFailed { sip, .. }] if sip.code == Some(486)));
        assert_eq!(u.dialogs(), 1, "the call goes on");
        assert_eq!(u.stats().transfers_failed, 2);
    }
}
