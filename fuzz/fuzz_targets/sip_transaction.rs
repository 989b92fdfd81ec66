#![no_main]
//! SIP transactions driven by a script from the fuzzer (responses with any
//! code, retransmitted requests, ACKs, time passing, both transports, all
//! four machines): never a panic, nothing sent after Terminated, and every
//! transaction ends once its timers have run out.
use bytes::Bytes;
use std::time::{Duration, Instant};
use voxbridge_proto::sip::message::MessageBuilder;
use voxbridge_proto::sip::transaction::{Timers, Transaction};
use voxbridge_proto::sip::Message;

const INVITE: &[u8] = b"INVITE sip:bot@vb SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKf\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:bot@vb>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
const BYE: &[u8] = b"BYE sip:bot@vb SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKf\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:bot@vb>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
const ACK: &[u8] = b"ACK sip:bot@vb SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKf\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:bot@vb>;tag=2\r\nCall-ID: c\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&setup, script)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut now = t0;
    let reliable = setup & 1 == 1;
    let request = Message::parse(Bytes::from_static(if setup & 2 == 0 { INVITE } else { BYE })).unwrap();
    let ack = Message::parse(Bytes::from_static(ACK)).unwrap();
    let mut tx = if setup & 4 == 0 {
        Transaction::server(&request, reliable, Timers::default())
    } else {
        let raw = if setup & 2 == 0 { INVITE } else { BYE };
        Transaction::client(now, Bytes::from_static(raw), reliable, Timers::default()).unwrap()
    };
    for pair in script.chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        let code = 100 + u16::from(arg) * 2;
        match op % 6 {
            0 => {
                let bytes = MessageBuilder::response_to(&request, code, "X", Some("2"), None).build();
                let _ = tx.respond(now, code, bytes);
            }
            1 => {
                let bytes = MessageBuilder::response_to(&request, code, "X", Some("2"), None).build();
                tx.on_response(now, Message::parse(bytes).unwrap());
            }
            2 => tx.on_request(now, &request),
            3 => tx.on_request(now, &ack),
            4 => tx.ack_received(),
            _ => now += Duration::from_millis(u64::from(arg) * 250),
        }
        if let Some(at) = tx.poll_timeout() {
            if at <= now {
                tx.handle_timeout(now);
            }
        }
        let terminated = tx.is_terminated();
        while tx.poll_transmit().is_some() {}
        while tx.poll_event().is_some() {}
        if terminated {
            tx.on_request(now, &request);
            assert!(tx.poll_transmit().is_none(), "sent after Terminated");
        }
    }
    // Every machine ends by itself once its timers run out (the INVITE
    // machines in Proceeding wait for their user, so answer them first).
    let final_resp = MessageBuilder::response_to(&request, 500, "X", Some("2"), None).build();
    let _ = tx.respond(now, 500, final_resp.clone());
    tx.on_response(now, Message::parse(final_resp).unwrap());
    for _ in 0..64 {
        match tx.poll_timeout() {
            Some(at) => {
                now = now.max(at);
                tx.handle_timeout(now);
            }
            None => break,
        }
    }
    assert!(tx.is_terminated(), "stuck in {:?} after {:?}", tx.state(), now - t0);
});
