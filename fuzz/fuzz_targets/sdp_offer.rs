#![no_main]
//! SDP offers: any text through the parser and the codec choice; an answer
//! written for a successful negotiation must parse back to the same choice.
use voxbridge_proto::sdp::{write_answer, AudioCodec, AudioOffer, LocalMedia};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = AudioOffer::parse(text) else {
        return;
    };
    let Ok(n) = offer.negotiate(&AudioCodec::ALL) else {
        return;
    };
    let local = LocalMedia {
        addr: "127.0.0.1:4000".parse().expect("addr"),
        session_id: 1,
    };
    let answer = write_answer(&local, &n);
    let back = AudioOffer::parse(&answer).expect("our answer parses");
    let again = back.negotiate(&[n.codec]).expect("our answer negotiates");
    assert_eq!((again.codec, again.pt, again.dtmf_pt), (n.codec, n.pt, n.dtmf_pt));
});
