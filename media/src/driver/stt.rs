//! Transcription: a call's tapped audio streamed to a speech recognizer.
//!
//! For a route with `[routes.<name>.transcribe]` (from the call's start, or
//! when the API asks), each tapped direction of a call (`in`: the caller, at the bot's rate; `out`: what the caller heard,
//! at the caller's rate; see `sansio::tap`) gets a task of its own with a
//! bounded queue of 100 ms chunks (`buffer_ms` deep). The call task hands
//! chunks over without waiting: a full queue drops the chunk and counts it,
//! the call never waits on the recognizer. The task speaks Deepgram's
//! live-streaming protocol (`voxbridge_proto::stt`): binary linear16 at the
//! `sample_rate` of the URL, `CloseStream` at the end (or voxbridge's own:
//! a `start` message, the audio, `stop`); each final result
//! with words becomes a `Transcript` event (speaker by direction, its place
//! in the call from the chunk times plus the result's `start`). A
//! recognizer that fails, drops or stops reading (a send waiting 5 s) is
//! reconnected `max_reconnects` times, one second apart, the audio in
//! between held by the queue (then the direction gives up and its queue
//! closes); a rate change
//! (a codec change mid-call) ends the stream and starts another at the new
//! rate. When the call ends the queue closes: what is queued is sent, then
//! `CloseStream`, and the last results are waited for up to 5 s.
//!
//! A transcribe is one such session with an id: `TranscribeStarted` when it
//! starts, `TranscribeCompleted` once every direction's stream has ended
//! (stopped, the call ended, or the recognizer given up) and its last
//! `Transcript`s are out. Its tasks run on the daemon's task tracker, so a
//! shutdown waits for them.

use crate::config::{SttProtocol, Transcribe};
use crate::events::{CallEvent, EventSink, Speaker};
use crate::metrics::Metrics;
use crate::sansio::tap::{Chunk, TapDirection, CHUNK_MS};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::task::TaskTracker;
use voxbridge_contract::commands::TranscribeDirections;
use voxbridge_proto::stt::{parse_deepgram, parse_plain, plain_start, SttMessage, CLOSE_STREAM, PLAIN_STOP};

/// Connect (TCP, TLS, handshake) deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the last results are waited for after `CloseStream`.
const FINAL_WAIT: Duration = Duration::from_secs(5);
/// Pause before a reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// How long one send may wait on a recognizer that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest message taken from a recognizer (a result is a few KiB).
const MAX_MESSAGE: usize = 1 << 20;

/// One chunk on its way to the recognizer.
#[derive(Debug)]
struct Audio {
    rate: u32,
    pcm: Bytes,
    start_ms: u64,
}

/// A call's transcription: the queue of each tapped direction.
pub(crate) struct Transcriber {
    queues: [Option<mpsc::Sender<Audio>>; 2],
    metrics: Arc<Metrics>,
}

/// Why a recognizer connection ended.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("connect: {0}")]
    Connect(String),
    #[error("dropped: {0}")]
    Dropped(String),
}

/// What one transcribe is: its id, language and directions, and where in
/// the call its tap starts.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The transcribe's id (events carry it).
    pub id: String,
    /// The recognizer's `language`.
    pub language: String,
    /// Which audio.
    pub directions: TranscribeDirections,
    /// Milliseconds from the call's creation to the tap's start: added to
    /// the recognizer's times so segments keep their place in the call.
    pub base_ms: u64,
}

/// Emits `TranscribeCompleted` when the last of a transcribe's streams ends
/// (each holds it).
struct Completion {
    call_id: String,
    transcribe_id: String,
    sink: Arc<dyn EventSink>,
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.sink.emit(CallEvent::TranscribeCompleted {
            call_id: std::mem::take(&mut self.call_id),
            transcribe_id: std::mem::take(&mut self.transcribe_id),
            at: SystemTime::now(),
        });
    }
}

impl Transcriber {
    /// Emits `TranscribeStarted` and starts a task per direction of
    /// `session` on `tracker`.
    pub(crate) fn start(
        cfg: &Transcribe,
        session: Session,
        call_id: &str,
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
    ) -> Self {
        let depth = (cfg.buffer_ms / CHUNK_MS).max(1) as usize;
        let cfg = Arc::new(cfg.clone());
        sink.emit(CallEvent::TranscribeStarted {
            call_id: call_id.to_owned(),
            transcribe_id: session.id.clone(),
            language: session.language.clone(),
            directions: session.directions,
            at: SystemTime::now(),
        });
        let completion = Arc::new(Completion {
            call_id: call_id.to_owned(),
            transcribe_id: session.id.clone(),
            sink: sink.clone(),
        });
        let session = Arc::new(session);
        let (inbound, outbound) = session.directions.flags();
        let mut queues = [None, None];
        for (slot, (direction, wanted)) in [(TapDirection::In, inbound), (TapDirection::Out, outbound)]
            .into_iter()
            .enumerate()
        {
            if !wanted {
                continue;
            }
            let (tx, rx) = mpsc::channel(depth);
            let stream = Stream {
                cfg: cfg.clone(),
                session: session.clone(),
                direction,
                call_id: call_id.to_owned(),
                sink: sink.clone(),
                metrics: metrics.clone(),
                completion: Some(completion.clone()),
            };
            tracker.spawn(stream.run(rx));
            queues[slot] = Some(tx);
        }
        Transcriber { queues, metrics }
    }

    /// Whether each direction is transcribed (`in`, `out`).
    pub(crate) fn directions(&self) -> (bool, bool) {
        (self.queues[0].is_some(), self.queues[1].is_some())
    }

    /// Whether every direction's stream has given up (its queue closed):
    /// the transcribe is over though the call goes on.
    pub(crate) fn gave_up(&self) -> bool {
        self.queues.iter().flatten().all(|tx| tx.is_closed())
    }

    /// Hands a chunk on without waiting; a full or closed queue drops it
    /// (counted).
    pub(crate) fn offer(&self, chunk: &Chunk<'_>) {
        let slot = match chunk.direction {
            TapDirection::In => 0,
            TapDirection::Out => 1,
        };
        let Some(tx) = &self.queues[slot] else { return };
        let audio = Audio {
            rate: chunk.rate,
            pcm: Bytes::copy_from_slice(chunk.pcm_le),
            start_ms: chunk.start_ms,
        };
        if tx.try_send(audio).is_err() {
            let ms = audio_ms(chunk.pcm_le, chunk.rate);
            self.metrics.transcribe_dropped_ms.fetch_add(ms, Relaxed);
        }
    }
}

/// One direction's recognizer stream.
struct Stream {
    cfg: Arc<Transcribe>,
    session: Arc<Session>,
    direction: TapDirection,
    call_id: String,
    sink: Arc<dyn EventSink>,
    metrics: Arc<Metrics>,
    /// Released when this stream ends or gives up; the last release
    /// completes the transcribe.
    completion: Option<Arc<Completion>>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Stream {
    async fn run(mut self, mut rx: mpsc::Receiver<Audio>) {
        let mut failures = 0u32;
        let mut pending: Option<Audio> = None;
        loop {
            // A stream starts with its first chunk (its rate and place in time).
            let first = match pending.take() {
                Some(a) => a,
                None => match rx.recv().await {
                    Some(a) => a,
                    None => return,
                },
            };
            match self.stream(first, &mut rx).await {
                Ok(None) => return,
                Ok(Some(next)) => pending = Some(next),
                Err(e) => {
                    self.metrics.transcribe_failures.fetch_add(1, Relaxed);
                    failures += 1;
                    if failures > self.cfg.max_reconnects {
                        tracing::warn!(call_id = self.call_id, direction = self.direction.as_str(), error = %e,
                            "speech recognizer failed; transcription of this direction ends");
                        // Given up: this direction's part of the
                        // transcribe is over, though the call goes on
                        // (its queue closes; the call task sees that).
                        self.give_up(rx);
                        return;
                    }
                    tracing::warn!(call_id = self.call_id, direction = self.direction.as_str(), error = %e,
                        "speech recognizer failed; reconnecting");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }

    /// One connection from `first` on. `Ok(None)`: the call ended and the
    /// last results are in; `Ok(Some(chunk))`: the rate changed, go on with
    /// a new stream from `chunk`.
    async fn stream(&self, first: Audio, rx: &mut mpsc::Receiver<Audio>) -> Result<Option<Audio>, Failure> {
        let rate = first.rate;
        let origin = first.start_ms;
        let mut ws = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(rate))
            .await
            .map_err(|_| Failure::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))??;
        send(&mut ws, first.pcm).await?;
        let next = loop {
            tokio::select! {
                audio = rx.recv() => match audio {
                    Some(a) if a.rate == rate => send(&mut ws, a.pcm).await?,
                    Some(a) => break Some(a),
                    None => break None,
                },
                msg = ws.next() => self.received(msg, origin)?,
            }
        };
        // The end of this stream: the last results, then the close.
        let close = match self.cfg.protocol {
            SttProtocol::Deepgram => CLOSE_STREAM,
            SttProtocol::Voxbridge => PLAIN_STOP,
        };
        send_message(&mut ws, Message::text(close)).await?;
        let last = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    msg => self.received(msg, origin)?,
                }
            }
        };
        match tokio::time::timeout(FINAL_WAIT, last).await {
            Ok(r) => r?,
            Err(_) => tracing::debug!(
                call_id = self.call_id,
                "speech recognizer did not close after CloseStream"
            ),
        }
        Ok(next)
    }

    async fn connect(&self, rate: u32) -> Result<Ws, Failure> {
        let (url, scheme) = match self.cfg.protocol {
            SttProtocol::Deepgram => {
                let sep = if self.cfg.url.contains('?') { '&' } else { '?' };
                let url = format!(
                    "{}{sep}encoding=linear16&sample_rate={rate}&channels=1&language={}",
                    self.cfg.url, self.session.language
                );
                (url, "Token")
            }
            SttProtocol::Voxbridge => (self.cfg.url.clone(), "Bearer"),
        };
        let mut req = url
            .into_client_request()
            .map_err(|e| Failure::Connect(e.to_string()))?;
        if let Some(key) = &self.cfg.key {
            let v = HeaderValue::from_str(&format!("{scheme} {}", key.expose()))
                .map_err(|_| Failure::Connect("the key is not a valid header value".into()))?;
            req.headers_mut().insert("Authorization", v);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        if self.cfg.protocol == SttProtocol::Voxbridge {
            let start = plain_start(
                rate,
                &self.session.language,
                self.direction.as_str(),
                &self.call_id,
                &self.session.id,
            );
            send_message(&mut ws, Message::text(start)).await?;
        }
        Ok(ws)
    }

    /// A message from the recognizer: a final result with words becomes an event.
    fn received(
        &self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        origin_ms: u64,
    ) -> Result<(), Failure> {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                return Err(Failure::Dropped(format!(
                    "closed by the recognizer ({})",
                    c.map_or_else(
                        || "no code".into(),
                        |c| format!("{} {}", u16::from(c.code), c.reason)
                    )
                )))
            }
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => return Err(Failure::Dropped(e.to_string())),
            None => return Err(Failure::Dropped("connection closed".into())),
        };
        let parsed = match self.cfg.protocol {
            SttProtocol::Deepgram => parse_deepgram(&text),
            SttProtocol::Voxbridge => parse_plain(&text),
        };
        match parsed {
            Ok(SttMessage::Result(r)) if r.is_final => {
                let (words, dirty) = crate::text::clean(r.transcript);
                if dirty {
                    self.metrics.transcribe_bad_messages.fetch_add(1, Relaxed);
                }
                let words = words.trim();
                if !words.is_empty() {
                    self.metrics.transcribe_segments.fetch_add(1, Relaxed);
                    self.sink.emit(CallEvent::Transcript {
                        call_id: self.call_id.clone(),
                        speaker: match self.direction {
                            TapDirection::In => Speaker::Caller,
                            TapDirection::Out => Speaker::Bot,
                        },
                        text: words.to_owned(),
                        user_id: String::new(),
                        offset_ms: Some(
                            self.session
                                .base_ms
                                .saturating_add(origin_ms)
                                .saturating_add(r.start_ms),
                        ),
                        transcribe_id: Some(self.session.id.clone()),
                    });
                }
            }
            Ok(SttMessage::Refused(why)) => {
                let (why, _) = crate::text::clean(why);
                return Err(Failure::Dropped(format!("refused by the recognizer: {why}")));
            }
            Ok(_) => {}
            Err(e) => {
                self.metrics.transcribe_bad_messages.fetch_add(1, Relaxed);
                tracing::debug!(call_id = self.call_id, error = %e, "unusable speech recognizer message");
            }
        }
        Ok(())
    }

    /// Transcription of this direction gave up: the queue closes (what the
    /// call offers from now on is dropped and counted there), what it held
    /// is counted as dropped, and the transcribe is released.
    fn give_up(&mut self, mut rx: mpsc::Receiver<Audio>) {
        rx.close();
        while let Ok(a) = rx.try_recv() {
            self.metrics
                .transcribe_dropped_ms
                .fetch_add(audio_ms(&a.pcm, a.rate), Relaxed);
        }
        self.completion = None;
    }
}

/// The length of `pcm_le` (PCM16) at `rate`, ms.
fn audio_ms(pcm_le: &[u8], rate: u32) -> u64 {
    pcm_le.len() as u64 / 2 * 1000 / u64::from(rate.max(1))
}

async fn send(ws: &mut Ws, pcm: Bytes) -> Result<(), Failure> {
    send_message(ws, Message::Binary(pcm)).await
}

/// One message out; a recognizer that stops reading is dropped after
/// [`SEND_TIMEOUT`] (its task and socket never wait on it for good).
async fn send_message(ws: &mut Ws, m: Message) -> Result<(), Failure> {
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(m)).await {
        Ok(r) => r.map_err(|e| Failure::Dropped(e.to_string())),
        Err(_) => Err(Failure::Dropped(format!(
            "not reading: a send took over {SEND_TIMEOUT:?}"
        ))),
    }
}
