#![no_main]
//! SIP messages from the network (the SIP leg's parser): a message or an
//! error, never a panic; every typed header view of a parsed message reads
//! or errs (digest credentials and challenges included); on a stream, the same messages
//! however the bytes are split; a 400 built for bytes that did not parse
//! parses back.
use bytes::{Bytes, BytesMut};
use voxbridge_proto::sip::auth::{Challenge, Credentials};
use voxbridge_proto::sip::header::{NameAddr, SipUri, Via};
use voxbridge_proto::sip::message::{bad_request, decode_stream, is_keepalive, HeaderName};
use voxbridge_proto::sip::Message;

fn views(m: &Message) {
    let _ = (m.start_line(), m.cseq(), m.top_via(), m.call_id());
    for via in m.header_list(HeaderName::Via) {
        let _ = Via::parse(via).map(|v| v.response_target("192.0.2.1:5060".parse().unwrap(), false));
    }
    for name in [HeaderName::From, HeaderName::To, HeaderName::Contact, HeaderName::ReferTo] {
        for value in m.header_list(name) {
            if let Ok(n) = NameAddr::parse(value) {
                let _ = (n.tag(), SipUri::parse(n.uri));
            }
        }
    }
    if let Some(uri) = m.request_uri() {
        let _ = SipUri::parse(uri);
    }
    if let Some(Ok(c)) = m.header(HeaderName::Authorization).map(Credentials::parse) {
        let _ = c.verify("INVITE", "password");
    }
    for name in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
        if let Some(Ok(c)) = m.header(name).map(Challenge::parse) {
            let _ = c.authorization("user", "password", "INVITE", "sip:x@y", "c", 1);
        }
    }
}

fn stream(reads: &[&[u8]]) -> Vec<String> {
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for r in reads {
        buf.extend_from_slice(r);
        loop {
            match decode_stream(&mut buf) {
                Ok(Some(m)) => got.push(format!("{:?} {:?}", m.start_line(), m.body())),
                Ok(None) => break,
                Err(e) => {
                    got.push(format!("error {e}"));
                    return got;
                }
            }
        }
    }
    got
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = is_keepalive(data);
    match Message::parse(Bytes::copy_from_slice(data)) {
        Ok(m) => views(&m),
        Err(e) => {
            if let Some(r) = bad_request(data, &e.to_string()) {
                let r = Message::parse(r).expect("a 400 voxbridge builds parses");
                assert_eq!(r.status(), Some(400));
            }
        }
    }
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    assert_eq!(stream(&[data]), stream(&[&data[..cut], &data[cut..]]));
});
