//! Parses a real-sized INVITE (with SDP) and its 200 OK with each parser and
//! reads what a user agent needs from them (method or status, Call-ID, CSeq,
//! the top Via's branch, From and To tags, the body). Prints ns per message
//! (median of 15 rounds) and ends with a RESULT line.
use bytes::Bytes;
use std::hint::black_box;
use std::time::Instant;

const INVITE: &str = "INVITE sip:+4930901820@voxbridge.example.com:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK-524287-1---3d6b7e1f4a2c;rport\r\n\
Max-Forwards: 69\r\n\
Contact: <sip:+15551234567@198.51.100.10:5060;transport=udp>\r\n\
To: <sip:+4930901820@voxbridge.example.com>\r\n\
From: \"Caller\" <sip:+15551234567@carrier.example.net>;tag=a6c85cf\r\n\
Call-ID: 1-7f3a9c2e-44d1-4b6f-9a0e-3c1d2b4e5f60@198.51.100.10\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: CarrierSBC 4.2\r\n\
X-Customer-Id: 8812\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 242\r\n\
\r\n\
v=0\r\n\
o=- 3912345678 3912345678 IN IP4 198.51.100.10\r\n\
s=-\r\n\
c=IN IP4 198.51.100.10\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn ok_response() -> String {
    let invite = voxbridge_proto::sip::Message::parse(Bytes::from_static(INVITE.as_bytes())).unwrap();
    let b = voxbridge_proto::sip::MessageBuilder::response_to(&invite, 200, "OK", Some("vb7f2a"), None)
        .header("Contact", "<sip:voxbridge@203.0.113.5:5060>")
        .body(
            "application/sdp",
            INVITE.split("\r\n\r\n").nth(1).unwrap().to_owned(),
        )
        .build();
    String::from_utf8(b.to_vec()).unwrap()
}

fn time(name: &str, msg: &Bytes, f: impl Fn(&Bytes) -> usize) -> f64 {
    let n = 20_000;
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let mut acc = 0;
            for _ in 0..n {
                acc += f(black_box(msg));
            }
            black_box(acc);
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = rounds[rounds.len() / 2];
    println!("{name:<28} {median:>8.0} ns/message");
    median
}

fn voxbridge(b: &Bytes) -> usize {
    use voxbridge_proto::sip::{header::NameAddr, HeaderName, Message};
    let m = Message::parse(b.clone()).unwrap();
    let via = m.top_via().unwrap();
    let from = NameAddr::parse(m.header(HeaderName::From).unwrap()).unwrap();
    let to = NameAddr::parse(m.header(HeaderName::To).unwrap()).unwrap();
    m.call_id().len()
        + m.cseq().unwrap().seq as usize
        + via.branch().unwrap().len()
        + from.tag().map_or(0, str::len)
        + to.tag().map_or(0, str::len)
        + m.body().len()
        + m.status().unwrap_or(0) as usize
}

fn rsip(b: &Bytes) -> usize {
    use rsip::prelude::*;
    let m = rsip::SipMessage::try_from(b.as_ref()).unwrap();
    let via = m.via_header().unwrap().typed().unwrap();
    let branch = via.branch().unwrap().to_string();
    let from = m
        .from_header()
        .unwrap()
        .tag()
        .unwrap()
        .map_or(0, |t| t.to_string().len());
    let to = m
        .to_header()
        .unwrap()
        .tag()
        .unwrap()
        .map_or(0, |t| t.to_string().len());
    let cseq = m.cseq_header().unwrap().typed().unwrap().seq as usize;
    let status = match &m {
        rsip::SipMessage::Response(r) => r.status_code.code() as usize,
        rsip::SipMessage::Request(_) => 0,
    };
    m.call_id_header().unwrap().value().len() + cseq + branch.len() + from + to + m.body().len() + status
}

fn ezk(b: &Bytes) -> usize {
    use ezk_sip_types::header::typed::{CSeq, CallID, FromTo, Via};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::{Headers, Name};
    let mut parser = PullParser::new(b, 0);
    let first = std::str::from_utf8(parser.next().unwrap().unwrap()).unwrap();
    let (_, line) = MessageLine::parse(b)(first).unwrap();
    let mut headers = Headers::new();
    for l in &mut parser {
        let l = std::str::from_utf8(l.unwrap()).unwrap();
        let (_, Line { name, value }) = Line::parse(b, l).unwrap();
        headers.insert(name, value);
    }
    let body = b.len() - parser.head_end();
    let via: Via = headers.get_named().unwrap();
    let from: FromTo = headers.get(Name::FROM).unwrap();
    let to: FromTo = headers.get(Name::TO).unwrap();
    let cseq: CSeq = headers.get_named().unwrap();
    let call_id: CallID = headers.get_named().unwrap();
    let status = match &line {
        MessageLine::Response(s) => s.code.into_u16() as usize,
        MessageLine::Request(_) => 0,
    };
    call_id.0.len()
        + cseq.cseq as usize
        + via.params.get_val("branch").map_or(0, |v| v.len())
        + from.tag.map_or(0, |t| t.len())
        + to.tag.map_or(0, |t| t.len())
        + body
        + status
}

fn main() {
    let invite = Bytes::from_static(INVITE.as_bytes());
    let ok = Bytes::from(ok_response());
    for m in [&invite, &ok] {
        assert_eq!(voxbridge(m), rsip(m), "rsip reads the same values");
        assert_eq!(voxbridge(m), ezk(m), "ezk-sip-types reads the same values");
    }
    println!("INVITE {} bytes, 200 OK {} bytes", invite.len(), ok.len());
    let mut sums = [0.0; 3];
    for (label, m) in [("INVITE", &invite), ("200 OK", &ok)] {
        sums[0] += time(&format!("voxbridge-proto {label}"), m, voxbridge);
        sums[1] += time(&format!("rsip 0.4.0 {label}"), m, rsip);
        sums[2] += time(&format!("ezk-sip-types 0.6.5 {label}"), m, ezk);
    }
    println!(
        "RESULT voxbridge_ns={:.0} rsip_ns={:.0} ezk_ns={:.0} rsip_vs_voxbridge={:.2} ezk_vs_voxbridge={:.2}",
        sums[0] / 2.0,
        sums[1] / 2.0,
        sums[2] / 2.0,
        sums[1] / sums[0],
        sums[2] / sums[0]
    );
}
