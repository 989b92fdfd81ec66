//! Ogg Opus files (RFC 7845: Opus in the Ogg container of RFC 3533), sans-IO
//! on the writing side: the identification header (`OpusHead`), the comment
//! header (`OpusTags`), and audio packets with their granule positions,
//! paged by the `ogg` crate into a byte buffer the caller writes out.
//!
//! Granule positions count the 48 kHz samples the packets decode to
//! (whatever the encoder's rate), the pre-skip included (the encoder's
//! look-ahead, which a player drops); the last page's granule position
//! trims the padding of the last frames, so a file plays for exactly its
//! input's length. Only channel mapping family 0
//! (mono or stereo) is written and read, which is what every Opus encoder
//! of speech writes.

use crate::error::ProtoError;
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use std::io::{Read, Seek};

/// Granule positions are at 48 kHz.
pub const GRANULE_RATE: u32 = 48_000;
/// Audio packets per page (a second of 20 ms frames): a page reaches the
/// file at least this often.
const PACKETS_PER_PAGE: u32 = 50;

/// The identification header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// 1 or 2.
    pub channels: u8,
    /// Samples at 48 kHz a player drops at the start.
    pub pre_skip: u16,
    /// The rate the audio had before encoding (informative), Hz.
    pub input_rate: u32,
    /// Output gain, Q7.8 dB.
    pub gain: i16,
}

impl OpusHead {
    /// The 19 bytes of the header (mapping family 0).
    pub fn write(&self) -> [u8; 19] {
        let mut h = [0u8; 19];
        h[..8].copy_from_slice(b"OpusHead");
        h[8] = 1;
        h[9] = self.channels;
        h[10..12].copy_from_slice(&self.pre_skip.to_le_bytes());
        h[12..16].copy_from_slice(&self.input_rate.to_le_bytes());
        h[16..18].copy_from_slice(&self.gain.to_le_bytes());
        h[18] = 0;
        h
    }

    /// Parses an identification header; a version other than 0.x, a
    /// channel count of 0, or a mapping other than family 0 with one or
    /// two channels is an error.
    pub fn parse(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < 19 || &b[..8] != b"OpusHead" {
            return Err(ProtoError::BadOgg("the first packet is not an OpusHead".into()));
        }
        if b[8] >> 4 != 0 {
            return Err(ProtoError::BadOgg(format!(
                "OpusHead version {} (only 0.x)",
                b[8]
            )));
        }
        let channels = b[9];
        let family = b[18];
        if family != 0 || !(1..=2).contains(&channels) {
            return Err(ProtoError::BadOgg(format!(
                "{channels} channels in mapping family {family} (only mono or stereo, family 0)"
            )));
        }
        Ok(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([b[10], b[11]]),
            input_rate: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            gain: i16::from_le_bytes([b[16], b[17]]),
        })
    }
}

/// A comment header naming `vendor` and no comments.
pub fn opus_tags(vendor: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(16 + vendor.len());
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor.as_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

/// Pages an Ogg Opus stream into a byte buffer ([`OggOpusWriter::take`]).
pub struct OggOpusWriter {
    pages: PacketWriter<'static, Vec<u8>>,
    serial: u32,
    pre_skip: u64,
    /// 48 kHz samples of the packets written so far.
    samples: u64,
    /// The last packet, held back: the stream's last packet must be
    /// written knowing it is the last.
    held: Option<(Vec<u8>, u64)>,
    in_page: u32,
}

impl std::fmt::Debug for OggOpusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusWriter")
            .field("serial", &self.serial)
            .field("samples", &self.samples)
            .finish()
    }
}

fn io(e: std::io::Error) -> ProtoError {
    ProtoError::BadOgg(e.to_string())
}

impl OggOpusWriter {
    /// A stream `serial` starting with `head` and a comment header naming
    /// `vendor`, each on a page of its own (as RFC 7845 asks).
    pub fn new(head: OpusHead, vendor: &str, serial: u32) -> Result<Self, ProtoError> {
        let mut pages = PacketWriter::new(Vec::new());
        pages
            .write_packet(head.write().to_vec(), serial, PacketWriteEndInfo::EndPage, 0)
            .map_err(io)?;
        pages
            .write_packet(opus_tags(vendor), serial, PacketWriteEndInfo::EndPage, 0)
            .map_err(io)?;
        Ok(OggOpusWriter {
            pages,
            serial,
            pre_skip: u64::from(head.pre_skip),
            samples: 0,
            held: None,
            in_page: 0,
        })
    }

    /// One audio packet decoding to `samples_48k` samples (per channel, at
    /// 48 kHz).
    pub fn push(&mut self, packet: &[u8], samples_48k: u64) -> Result<(), ProtoError> {
        self.samples += samples_48k;
        let granule = self.samples;
        if let Some((p, g)) = self.held.replace((packet.to_vec(), granule)) {
            self.in_page += 1;
            let end = if self.in_page >= PACKETS_PER_PAGE {
                self.in_page = 0;
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.pages.write_packet(p, self.serial, end, g).map_err(io)?;
        }
        Ok(())
    }

    /// 48 kHz samples the packets pushed so far decode to, pre-skip
    /// included: a stream of `n` samples needs packets for `pre_skip + n`
    /// (the encoder's look-ahead delays its output by the pre-skip), so
    /// its writer encodes silence until this reaches that.
    pub fn pushed(&self) -> u64 {
        self.samples
    }

    /// Ends the stream as `length_48k` samples long (past the pre-skip):
    /// the last granule position trims what the packets hold beyond it (a
    /// last frame's padding). A stream with no audio gets no end mark.
    pub fn finish(&mut self, length_48k: u64) -> Result<(), ProtoError> {
        if let Some((p, g)) = self.held.take() {
            let g = g.min(self.pre_skip + length_48k);
            self.pages
                .write_packet(p, self.serial, PacketWriteEndInfo::EndStream, g)
                .map_err(io)?;
        }
        Ok(())
    }

    /// The bytes of the pages completed so far (emptied).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(self.pages.inner_mut())
    }

    /// Appends the bytes of the pages completed so far to `out`.
    pub fn drain_into(&mut self, out: &mut Vec<u8>) {
        out.append(self.pages.inner_mut());
    }
}

/// Reads the packets of the first Opus stream of an Ogg file.
pub struct OggOpusReader<R: Read + Seek> {
    packets: ogg::PacketReader<R>,
    head: OpusHead,
    serial: u32,
    ended: bool,
}

/// An audio packet and the granule position of its page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggPacket {
    /// The Opus packet.
    pub data: Vec<u8>,
    /// The granule position of the page the packet ends in.
    pub granule: u64,
    /// Whether it is the stream's last.
    pub last: bool,
}

fn read_err(e: ogg::OggReadError) -> ProtoError {
    ProtoError::BadOgg(e.to_string())
}

impl<R: Read + Seek> OggOpusReader<R> {
    /// Reads the two headers of the first stream.
    pub fn new(r: R) -> Result<Self, ProtoError> {
        let mut packets = ogg::PacketReader::new(r);
        let first = packets
            .read_packet()
            .map_err(read_err)?
            .ok_or_else(|| ProtoError::BadOgg("no Ogg page".into()))?;
        let head = OpusHead::parse(&first.data)?;
        let serial = first.stream_serial();
        loop {
            let p = packets
                .read_packet()
                .map_err(read_err)?
                .ok_or_else(|| ProtoError::BadOgg("no OpusTags after OpusHead".into()))?;
            if p.stream_serial() != serial {
                continue;
            }
            if !p.data.starts_with(b"OpusTags") {
                return Err(ProtoError::BadOgg("the second packet is not OpusTags".into()));
            }
            break;
        }
        Ok(OggOpusReader {
            packets,
            head,
            serial,
            ended: false,
        })
    }

    /// The identification header.
    pub fn head(&self) -> OpusHead {
        self.head
    }

    /// The next audio packet; `None` at the end of the stream or file.
    pub fn next_packet(&mut self) -> Result<Option<OggPacket>, ProtoError> {
        while !self.ended {
            let Some(p) = self.packets.read_packet().map_err(read_err)? else {
                return Ok(None);
            };
            if p.stream_serial() != self.serial {
                continue;
            }
            self.ended = p.last_in_stream();
            return Ok(Some(OggPacket {
                granule: p.absgp_page(),
                last: p.last_in_stream(),
                data: p.data,
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head() -> OpusHead {
        OpusHead {
            channels: 2,
            pre_skip: 312,
            input_rate: 16000,
            gain: 0,
        }
    }

    #[test]
    fn the_head_round_trips_and_other_mappings_are_refused() {
        let h = head();
        assert_eq!(OpusHead::parse(&h.write()).expect("parses"), h);
        let mut surround = h.write();
        surround[18] = 1;
        assert!(OpusHead::parse(&surround).is_err());
        assert!(OpusHead::parse(b"OpusHea").is_err());
    }

    #[test]
    fn packets_come_back_with_granules_and_the_end_trimmed() {
        let mut w = OggOpusWriter::new(head(), "voxbridge", 7).expect("writer");
        for i in 0..120u8 {
            w.push(&[i; 20], 960).expect("push");
        }
        assert_eq!(w.pushed(), 120 * 960);
        w.finish(120 * 960 - 312 - 500).expect("finish");
        let file = w.take();
        assert_eq!(&file[..4], b"OggS");
        let mut r = OggOpusReader::new(std::io::Cursor::new(file)).expect("reader");
        assert_eq!(r.head(), head());
        let mut got = Vec::new();
        while let Some(p) = r.next_packet().expect("packet") {
            got.push(p);
        }
        assert_eq!(got.len(), 120);
        assert!(got.iter().enumerate().all(|(i, p)| p.data == vec![i as u8; 20]));
        let last = got.last().expect("last");
        assert!(last.last);
        assert_eq!(last.granule, 120 * 960 - 500);
        assert_eq!(
            got[0].granule,
            50 * 960,
            "a page's granule counts what its packets decode to"
        );
    }

    proptest! {
        #[test]
        fn any_bytes_are_an_error_or_packets_never_a_panic(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(mut r) = OggOpusReader::new(std::io::Cursor::new(b)) {
                for _ in 0..64 {
                    match r.next_packet() {
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
            }
        }

        #[test]
        fn a_damaged_file_is_an_error_or_fewer_packets(cut in 0usize..4000, flip in 0usize..4000) {
            let mut w = OggOpusWriter::new(head(), "voxbridge", 1).expect("writer");
            for i in 0..60u8 {
                w.push(&[i; 30], 960).expect("push");
            }
            w.finish(60 * 960).expect("finish");
            let mut file = w.take();
            let n = file.len();
            file[flip % n] ^= 0x5a;
            file.truncate(cut.min(n));
            if let Ok(mut r) = OggOpusReader::new(std::io::Cursor::new(file)) {
                let mut count = 0;
                while let Ok(Some(_)) = r.next_packet() {
                    count += 1;
                }
                prop_assert!(count <= 60);
            }
        }
    }
}
