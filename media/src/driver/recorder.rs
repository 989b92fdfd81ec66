//! Call recording: a call's two directions written to a stereo WAV or Ogg
//! Opus file (caller left, what the caller heard right) by a task of its
//! own.
//!
//! The call task taps the call (`sansio::tap`) and hands each 100 ms chunk
//! to the recording's writer through a bounded queue (`[recording]
//! buffer_ms` deep) without waiting: a full queue drops the chunk, counted,
//! and the file gets silence of its length in its place
//! (`sansio::stereo` places audio by its time in the call). The writer
//! creates `<recording id>.wav` (or `.opus`) in `[recording] dir`, writes
//! the header (a WAV's with an open length: a file read while it is
//! written plays to its end), the audio through a 64 KiB buffer
//! (`sansio::recording_file` encodes it), and at the end a WAV's real
//! lengths. A write that fails (a full disk) ends the recording with
//! `RecordingFinished` (`disk_full` or `failed`, the file holding what was
//! written, its header patched to match) and closes the queue; the call
//! goes on, its tap stops. Writers run on the daemon's task tracker, so a
//! shutdown waits for the last bytes.

use crate::config::RecordingConfig;
use crate::events::{CallEvent, EventSink};
use crate::metrics::Metrics;
use crate::sansio::recording_file::{FileEncoder, RecordingFormat, WAV_HEADER as HEADER};
use crate::sansio::stereo::StereoMixer;
use crate::sansio::tap::{Chunk, TapDirection, CHUNK_MS};
use bytes::Bytes;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::fs::File;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use voxbridge_contract::commands::{RecordDone, RecordingInfo};
use voxbridge_contract::events::RecordingEnd;
use voxbridge_proto::wav::{write_header_channels, WavEncoding};

/// Write buffer.
const WRITE_BUFFER: usize = 64 * 1024;

/// One chunk on its way to the file.
struct Piece {
    direction: TapDirection,
    rate: u32,
    pcm: Bytes,
    start_ms: u64,
}

/// A call's running recording, as the call task holds it.
pub(crate) struct Recorder {
    id: String,
    rate: u32,
    format: RecordingFormat,
    tx: mpsc::Sender<Piece>,
    /// Set when stopped on command (else the end is the call's).
    stopped: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// Whether `id` can name a recording's file: 1-64 ASCII letters, digits,
/// `-` and `_`.
pub(crate) fn is_recording_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The file name of recording `id`.
pub(crate) fn recording_file(id: &str, format: RecordingFormat) -> String {
    format!("{id}.{}", format.extension())
}

/// Where recording `id` is written.
pub(crate) fn recording_path(dir: &Path, id: &str, format: RecordingFormat) -> PathBuf {
    dir.join(recording_file(id, format))
}

impl Recorder {
    /// Starts the writer of recording `id` of `call_id` at `rate` Hz on
    /// `tracker`. `done` (a command's) hears `Ok` once the file is made
    /// and `RecordingStarted` is out, or why not; then the queue is closed
    /// and [`Recorder::closed`] says so.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        cfg: &RecordingConfig,
        id: String,
        call_id: &str,
        rate: u32,
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
        done: Option<RecordDone>,
    ) -> Result<Self, String> {
        if !is_recording_id(&id) {
            return Err(format!("recording id {id:?}: 1-64 letters, digits, '-' and '_'"));
        }
        // A chunk per direction per 100 ms of call.
        let depth = (2 * cfg.buffer_ms / CHUNK_MS).max(2) as usize;
        let (tx, rx) = mpsc::channel(depth);
        let stopped = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            dir: cfg.dir.clone(),
            format: cfg.format,
            id: id.clone(),
            call_id: call_id.to_owned(),
            rate,
            sink,
            metrics: metrics.clone(),
            stopped: stopped.clone(),
        };
        tracker.spawn(writer.run(rx, done));
        Ok(Recorder {
            id,
            rate,
            format: cfg.format,
            tx,
            stopped,
            metrics,
        })
    }

    /// The recording's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// What the recording is, for a command's answer.
    pub(crate) fn info(&self, paused: bool) -> RecordingInfo {
        RecordingInfo {
            recording_id: self.id.clone(),
            file: recording_file(&self.id, self.format),
            rate: self.rate,
            paused,
        }
    }

    /// Whether the writer has ended on its own (the file could not be made,
    /// or a write failed).
    pub(crate) fn closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Hands a chunk on without waiting; a full or closed queue drops it
    /// (counted; silence of its length in the file).
    pub(crate) fn offer(&self, chunk: &Chunk<'_>) {
        let piece = Piece {
            direction: chunk.direction,
            rate: chunk.rate,
            pcm: Bytes::copy_from_slice(chunk.pcm_le),
            start_ms: chunk.start_ms,
        };
        if self.tx.try_send(piece).is_err() {
            let ms = (chunk.pcm_le.len() / 2) as u64 * 1000 / chunk.rate.max(1) as u64;
            self.metrics.recording_dropped_ms.fetch_add(ms, Relaxed);
        }
    }

    /// Ends the recording on command: the writer writes what is queued and
    /// completes the file (`RecordingFinished`, `stopped`). Dropping a
    /// recorder without this ends it as the call's end.
    pub(crate) fn stop(self) {
        self.stopped.store(true, Relaxed);
    }
}

/// The writer task's state.
struct Writer {
    dir: PathBuf,
    format: RecordingFormat,
    id: String,
    call_id: String,
    rate: u32,
    sink: Arc<dyn EventSink>,
    metrics: Arc<Metrics>,
    stopped: Arc<AtomicBool>,
}

/// How writing went.
enum Outcome {
    /// The queue closed: stopped or the call ended.
    Closed,
    /// A write failed.
    Failed(std::io::Error),
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Piece>, done: Option<RecordDone>) {
        let path = recording_path(&self.dir, &self.id, self.format);
        let (mut encoder, first) = match FileEncoder::new(self.format, self.rate, rand_serial(&self.id)) {
            Ok(e) => e,
            Err(why) => {
                self.metrics.recording_failures.fetch_add(1, Relaxed);
                if let Some(done) = done {
                    done(Err(why));
                }
                return;
            }
        };
        let file = match self.create(&path, &first).await {
            Ok(f) => f,
            Err(e) => {
                let why = format!("cannot create {}: {e}", path.display());
                tracing::warn!(
                    call_id = self.call_id,
                    recording_id = self.id,
                    "recording not started: {why}"
                );
                self.metrics.recording_failures.fetch_add(1, Relaxed);
                if let Some(done) = done {
                    done(Err(why));
                }
                return;
            }
        };
        self.sink.emit(CallEvent::RecordingStarted {
            call_id: self.call_id.clone(),
            recording_id: self.id.clone(),
            file: recording_file(&self.id, self.format),
            rate: self.rate,
            at: SystemTime::now(),
        });
        if let Some(done) = done {
            done(Ok(RecordingInfo {
                recording_id: self.id.clone(),
                file: recording_file(&self.id, self.format),
                rate: self.rate,
                paused: false,
            }));
        }
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut mixer = StereoMixer::new(self.rate);
        let outcome = write_all(&mut out, &mut rx, &mut mixer, &mut encoder).await;
        // Nothing more is taken: the call's offers fail from here on.
        rx.close();
        let end = match &outcome {
            Outcome::Closed if self.stopped.load(Relaxed) => RecordingEnd::Stopped,
            Outcome::Closed => RecordingEnd::CallEnded,
            Outcome::Failed(e) if e.kind() == std::io::ErrorKind::StorageFull => RecordingEnd::DiskFull,
            Outcome::Failed(_) => RecordingEnd::Failed,
        };
        if let Outcome::Failed(e) = &outcome {
            tracing::warn!(call_id = self.call_id, recording_id = self.id, error = %e,
                "recording ended by a write error; the call goes on");
            self.metrics.recording_failures.fetch_add(1, Relaxed);
        }
        let mut file = out.into_inner();
        let (bytes, frames) = match self.format {
            RecordingFormat::Wav => {
                let bytes = match finish_header(&mut file, self.rate).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(call_id = self.call_id, recording_id = self.id, error = %e,
                            "cannot complete the recording's header");
                        file.metadata().await.map(|m| m.len()).unwrap_or(0)
                    }
                };
                (bytes, bytes.saturating_sub(HEADER) / 4)
            }
            // What was encoded (after a failed write, the file may hold
            // less: a player stops at its last whole page).
            RecordingFormat::Ogg => (
                file.metadata().await.map(|m| m.len()).unwrap_or(0),
                mixer.frames(),
            ),
        };
        self.metrics.recordings_finished.fetch_add(1, Relaxed);
        self.sink.emit(CallEvent::RecordingFinished {
            call_id: self.call_id.clone(),
            recording_id: self.id.clone(),
            duration_ms: frames * 1000 / self.rate.max(1) as u64,
            bytes,
            end,
            at: SystemTime::now(),
        });
    }

    /// Makes the directory and a new file starting with `first` (its
    /// headers).
    async fn create(&self, path: &Path, first: &[u8]) -> std::io::Result<File> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await?;
        file.write_all(first).await?;
        Ok(file)
    }
}

/// An Ogg stream serial from the recording's id (any number will do; one
/// that differs between files helps tools that chain them).
fn rand_serial(id: &str) -> u32 {
    id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Writes the queue's audio until it closes or a write fails.
async fn write_all(
    out: &mut BufWriter<File>,
    rx: &mut mpsc::Receiver<Piece>,
    mixer: &mut StereoMixer,
    encoder: &mut FileEncoder,
) -> Outcome {
    let mut stereo = Vec::with_capacity(WRITE_BUFFER);
    let mut bytes = Vec::with_capacity(WRITE_BUFFER);
    let failed = |why: String| Outcome::Failed(std::io::Error::other(why));
    while let Some(piece) = rx.recv().await {
        let chunk = Chunk {
            direction: piece.direction,
            rate: piece.rate,
            pcm_le: &piece.pcm,
            start_ms: piece.start_ms,
        };
        stereo.clear();
        bytes.clear();
        mixer.push(&chunk, &mut stereo);
        if let Err(why) = encoder.audio(&stereo, &mut bytes) {
            return failed(why);
        }
        if let Err(e) = out.write_all(&bytes).await {
            return Outcome::Failed(e);
        }
    }
    stereo.clear();
    bytes.clear();
    mixer.finish(&mut stereo);
    let end = encoder
        .audio(&stereo, &mut bytes)
        .and_then(|()| encoder.finish(&mut bytes));
    if let Err(why) = end {
        return failed(why);
    }
    if let Err(e) = out.write_all(&bytes).await {
        return Outcome::Failed(e);
    }
    match out.flush().await {
        Ok(()) => Outcome::Closed,
        Err(e) => Outcome::Failed(e),
    }
}

/// Patches the header to the whole stereo frames the file holds (what a
/// failed write left is cut to them) and returns the file's size.
async fn finish_header(file: &mut File, rate: u32) -> std::io::Result<u64> {
    let len = file.metadata().await?.len();
    let data = (len.saturating_sub(HEADER) / 4 * 4).min(u32::MAX as u64 - HEADER);
    if HEADER + data < len {
        file.set_len(HEADER + data).await?;
    }
    let header = write_header_channels(WavEncoding::Pcm16, rate, 2, data as u32);
    file.seek(SeekFrom::Start(0)).await?;
    file.write_all(&header).await?;
    file.flush().await?;
    Ok(HEADER + data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Events(Mutex<Vec<CallEvent>>);

    impl EventSink for Events {
        fn emit(&self, event: CallEvent) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        }
    }

    fn chunk(direction: TapDirection, pcm: &[u8], start_ms: u64) -> Chunk<'_> {
        Chunk {
            direction,
            rate: 8000,
            pcm_le: pcm,
            start_ms,
        }
    }

    fn recorder(dir: &Path, events: &Arc<Events>, tracker: &TaskTracker) -> Recorder {
        let cfg = RecordingConfig {
            dir: dir.to_owned(),
            ..RecordingConfig::default()
        };
        let sink: Arc<dyn EventSink> = events.clone();
        Recorder::start(
            &cfg,
            "r1".into(),
            "c1",
            8000,
            sink,
            Arc::new(Metrics::default()),
            tracker,
            None,
        )
        .expect("a good id")
    }

    fn finished(events: &Events) -> Option<(u64, u64, RecordingEnd)> {
        events.0.lock().expect("events").iter().find_map(|e| match e {
            CallEvent::RecordingFinished {
                duration_ms,
                bytes,
                end,
                ..
            } => Some((*duration_ms, *bytes, *end)),
            _ => None,
        })
    }

    #[tokio::test]
    async fn a_stopped_recording_is_a_whole_stereo_wav() {
        let dir = std::env::temp_dir().join(format!("vb-rec-{}", uuid::Uuid::new_v4()));
        let events = Arc::new(Events::default());
        let tracker = TaskTracker::new();
        let rec = recorder(&dir, &events, &tracker);
        let pcm: Vec<u8> = [1000i16; 800].iter().flat_map(|s| s.to_le_bytes()).collect();
        for i in 0..10 {
            rec.offer(&chunk(TapDirection::In, &pcm, i * 100));
            rec.offer(&chunk(TapDirection::Out, &pcm, i * 100));
        }
        rec.stop();
        tracker.close();
        tracker.wait().await;
        let (duration_ms, bytes, end) = finished(&events).expect("finished");
        assert_eq!(
            (duration_ms, bytes, end),
            (1000, 44 + 8000 * 4, RecordingEnd::Stopped)
        );
        let file = std::fs::read(recording_path(&dir, "r1", RecordingFormat::Wav)).expect("the file");
        assert_eq!(file.len() as u64, bytes);
        assert_eq!(&file[22..24], &2u16.to_le_bytes(), "stereo");
        assert_eq!(&file[40..44], &(8000u32 * 4).to_le_bytes(), "data length");
        assert_eq!(&file[44..48], &[0xe8, 0x03, 0xe8, 0x03], "1000 left, 1000 right");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[tokio::test]
    async fn a_full_disk_is_told_apart_and_a_cut_file_keeps_whole_frames() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .await
            .expect("/dev/full opens");
        let (tx, mut rx) = mpsc::channel(4);
        for direction in [TapDirection::In, TapDirection::Out] {
            let pcm = Bytes::from(vec![0u8; 1600]);
            let piece = Piece {
                direction,
                rate: 8000,
                pcm,
                start_ms: 0,
            };
            tx.send(piece).await.expect("queued");
        }
        drop(tx);
        let mut out = BufWriter::with_capacity(16, file);
        let mut wav = FileEncoder::Wav;
        let outcome = write_all(&mut out, &mut rx, &mut StereoMixer::new(8000), &mut wav).await;
        assert!(
            matches!(&outcome, Outcome::Failed(e) if e.kind() == std::io::ErrorKind::StorageFull),
            "a full disk is told apart from other errors"
        );
        // What a failed write left: a header and 2.5 frames.
        let path = std::env::temp_dir().join(format!("vb-rec-{}.wav", uuid::Uuid::new_v4()));
        std::fs::write(&path, vec![0u8; 44 + 10]).expect("write");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(&path)
            .await
            .expect("open");
        assert_eq!(finish_header(&mut file, 8000).await.expect("patched"), 44 + 8);
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), 52);
        assert_eq!(&bytes[40..44], &8u32.to_le_bytes());
        std::fs::remove_file(&path).expect("clean up");
    }

    #[test]
    fn recording_ids_name_files_safely() {
        assert!(is_recording_id("0b6d3c1e-aaaa-4f1c-9b1e-1234567890ab"));
        assert!(!is_recording_id("../etc/passwd"));
        assert!(!is_recording_id(""));
        assert!(!is_recording_id(&"a".repeat(65)));
    }
}
