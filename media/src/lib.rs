//! voxbridge-media: the real-time engine.
//!
//! Will hold one driver task per call wrapping sans-IO state (jitter buffer,
//! pacer, barge-in), AudioSocket and RTP ingress, and the bot WebSocket link
//! (issues 4 and 5). It uses `voxbridge-codecs` for DSP and `voxbridge-proto`
//! for wire formats, and exposes only event and command types to `control`.
//! Empty until then.
#![forbid(unsafe_code)]
