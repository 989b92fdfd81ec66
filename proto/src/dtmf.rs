//! RFC 4733 telephone-events (DTMF over RTP): payload codec, a receiver that
//! turns the packet train into one begin and one end per key press, and a
//! sender that produces the standard train for a digit.
//!
//! Sans-IO: the receiver is fed (RTP timestamp, payload) and queues events;
//! the sender returns the packets to send with their timestamp and marker.

use crate::error::ProtoError;
use std::collections::VecDeque;

/// One telephone-event payload (RFC 4733 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9, 10 `*`, 11 `#`, 12-15 `A-D`, 16 flash.
    pub event: u8,
    /// End bit.
    pub end: bool,
    /// Power level, -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the 4-byte payload (extra bytes, from RFC 2198 redundancy, are refused).
    pub fn parse(p: &[u8]) -> Result<Self, ProtoError> {
        if p.len() != 4 {
            return Err(ProtoError::BadTelephoneEvent(p.len()));
        }
        Ok(TelephoneEvent {
            event: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3F,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }

    /// The 4 payload bytes.
    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (self.volume & 0x3F) | if self.end { 0x80 } else { 0 },
            d[0],
            d[1],
        ]
    }
}

/// The event code of a DTMF character.
pub fn event_of(digit: char) -> Option<u8> {
    Some(match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => digit as u8 - b'A' + 12,
        'a'..='d' => digit as u8 - b'a' + 12,
        _ => return None,
    })
}

/// The DTMF character of an event code (0-15).
pub fn digit_of(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// What the receiver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A key went down (first packet of an event).
    Begin {
        /// The digit.
        digit: char,
        /// RTP timestamp of the event start.
        timestamp: u32,
    },
    /// The key came up (first end packet; its repeats are swallowed).
    End {
        /// The digit.
        digit: char,
        /// RTP timestamp of the event start.
        timestamp: u32,
        /// Total duration, timestamp units.
        duration: u16,
    },
}

/// Turns a telephone-event packet train into one `Begin` and one `End` per key press.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    /// The event in progress or last finished: (start timestamp, code, ended).
    current: Option<(u32, u8, bool)>,
    events: VecDeque<DtmfEvent>,
}

impl Default for DtmfReceiver {
    fn default() -> Self {
        DtmfReceiver {
            current: None,
            events: VecDeque::with_capacity(4),
        }
    }
}

impl DtmfReceiver {
    /// Feeds one packet: its RTP timestamp and payload. Non-DTMF events (flash,
    /// tones) are ignored; malformed payloads are errors and change nothing.
    pub fn handle(&mut self, timestamp: u32, payload: &[u8]) -> Result<(), ProtoError> {
        let ev = TelephoneEvent::parse(payload)?;
        let Some(digit) = digit_of(ev.event) else {
            return Ok(());
        };
        match self.current {
            Some((ts, code, ended)) if ts == timestamp && code == ev.event => {
                if ev.end && !ended {
                    self.events.push_back(DtmfEvent::End {
                        digit,
                        timestamp,
                        duration: ev.duration,
                    });
                    self.current = Some((ts, code, true));
                }
            }
            previous => {
                // A new event. If the last one never saw its end packet (all lost), close it.
                if let Some((ts, code, false)) = previous {
                    if let Some(d) = digit_of(code) {
                        self.events.push_back(DtmfEvent::End {
                            digit: d,
                            timestamp: ts,
                            duration: 0,
                        });
                    }
                }
                self.events.push_back(DtmfEvent::Begin { digit, timestamp });
                if ev.end {
                    self.events.push_back(DtmfEvent::End {
                        digit,
                        timestamp,
                        duration: ev.duration,
                    });
                }
                self.current = Some((timestamp, ev.event, ev.end));
            }
        }
        Ok(())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.events.pop_front()
    }
}

/// One packet of an outgoing event train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// Marker bit (set on the first packet only).
    pub marker: bool,
    /// RTP timestamp (the event's start, the same for every packet).
    pub timestamp: u32,
    /// The payload.
    pub event: TelephoneEvent,
}

/// The packet train for one digit (RFC 4733 2.5): a packet every `ptime_ms`
/// with growing duration, the first with the marker bit, and the final
/// end packet sent three times.
pub fn digit_train(
    digit: char,
    start_ts: u32,
    duration_ms: u32,
    clock_rate: u32,
    ptime_ms: u32,
    volume: u8,
) -> Option<impl Iterator<Item = DtmfPacket>> {
    let event = event_of(digit)?;
    let step = (clock_rate * ptime_ms.max(1) / 1000).max(1);
    let total = (clock_rate.saturating_mul(duration_ms) / 1000).clamp(step, u16::MAX as u32);
    let updates = total.div_ceil(step);
    Some((1..=updates + 2).map(move |i| {
        let end = i >= updates;
        let duration = if end { total } else { i * step };
        DtmfPacket {
            marker: i == 1,
            timestamp: start_ts,
            event: TelephoneEvent {
                event,
                end,
                volume,
                duration: duration as u16,
            },
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4733_payload_known_answer() {
        // Digit 5, end bit, volume 10, duration 800 (100 ms at 8 kHz).
        let p = [0x05, 0x8A, 0x03, 0x20];
        let e = TelephoneEvent::parse(&p).expect("valid");
        assert_eq!(
            e,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(e.to_bytes(), p);
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(ProtoError::BadTelephoneEvent(3))
        );
    }

    #[test]
    fn a_train_with_three_end_packets_yields_one_begin_and_one_end() {
        let train: Vec<_> = digit_train('7', 16000, 100, 8000, 20, 10)
            .expect("digit")
            .collect();
        assert!(train[0].marker && train.iter().skip(1).all(|p| !p.marker));
        assert_eq!(train.iter().filter(|p| p.event.end).count(), 3);
        let mut rx = DtmfReceiver::default();
        for p in &train {
            rx.handle(p.timestamp, &p.event.to_bytes()).expect("valid");
        }
        assert_eq!(
            rx.poll_event(),
            Some(DtmfEvent::Begin {
                digit: '7',
                timestamp: 16000
            })
        );
        assert_eq!(
            rx.poll_event(),
            Some(DtmfEvent::End {
                digit: '7',
                timestamp: 16000,
                duration: 800
            })
        );
        assert_eq!(rx.poll_event(), None);
    }

    #[test]
    fn same_digit_twice_is_two_presses() {
        let mut rx = DtmfReceiver::default();
        for ts in [0u32, 4000] {
            for p in digit_train('1', ts, 60, 8000, 20, 10).expect("digit") {
                rx.handle(p.timestamp, &p.event.to_bytes()).expect("valid");
            }
        }
        let begins = std::iter::from_fn(|| rx.poll_event())
            .filter(|e| matches!(e, DtmfEvent::Begin { .. }))
            .count();
        assert_eq!(begins, 2);
    }

    proptest! {
        #[test]
        fn payload_round_trip(event in any::<u8>(), end in any::<bool>(), volume in 0u8..64, duration in any::<u16>()) {
            let e = TelephoneEvent { event, end, volume, duration };
            prop_assert_eq!(TelephoneEvent::parse(&e.to_bytes()).expect("valid"), e);
        }

        #[test]
        fn any_loss_or_duplication_still_gives_exactly_one_begin(
            digit in prop::sample::select(b"0123456789*#ABCD".to_vec()),
            keep in prop::collection::vec(0u8..3, 12),
        ) {
            let train: Vec<_> = digit_train(digit as char, 320, 200, 8000, 20, 10).expect("digit").collect();
            let mut rx = DtmfReceiver::default();
            let mut fed = 0;
            for (p, k) in train.iter().zip(keep.iter().cycle()) {
                for _ in 0..*k { rx.handle(p.timestamp, &p.event.to_bytes()).expect("valid"); fed += 1; }
            }
            let events: Vec<_> = std::iter::from_fn(|| rx.poll_event()).collect();
            let begins = events.iter().filter(|e| matches!(e, DtmfEvent::Begin { .. })).count();
            prop_assert_eq!(begins, usize::from(fed > 0));
            let ends = events.iter().filter(|e| matches!(e, DtmfEvent::End { .. })).count();
            prop_assert!(ends <= 1, "{} end events", ends);
        }

        #[test]
        fn arbitrary_payloads_never_panic(ts in any::<u32>(), p in prop::collection::vec(any::<u8>(), 0..8)) {
            let mut rx = DtmfReceiver::default();
            let _ = rx.handle(ts, &p);
        }
    }
}
