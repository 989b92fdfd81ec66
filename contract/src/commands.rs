//! The commands control/ may give the media plane. The media plane
//! implements them (its call registry); control calls them in one process,
//! or sends them as [`crate::event_wire::CallCommand`]s to a media process.

use std::collections::BTreeMap;

/// What control/ may ask of running calls.
pub trait CallCommands: Send + Sync + 'static {
    /// Hangs a running call up with cause `api_hangup`; `false` if no call
    /// with that id runs here.
    fn hangup(&self, call_id: &str) -> bool;

    /// Starts a call whose media the media plane fetches itself: it
    /// connects to Asterisk's WebSocket channel in server mode (ARI
    /// `externalMedia` with `connection_type=server`) and runs the call on
    /// `dial.route`. Returns once the connection attempt is under way;
    /// `done` hears `Ok` when Asterisk's `MEDIA_START` arrived (the call
    /// runs and its events follow) or why it did not. `Err` says why it
    /// cannot start here (no such route, over `max_calls`, shutting down,
    /// a media plane in another process); `done` is then never called.
    fn dial_asterisk_media(&self, dial: AsteriskMediaDial, done: DialDone) -> Result<(), String> {
        drop(done);
        Err(format!(
            "call {}: this media plane cannot dial Asterisk's media WebSocket",
            dial.call_id
        ))
    }
}

/// How a [`CallCommands::dial_asterisk_media`] went.
pub type DialDone = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A call for the media plane to connect to Asterisk's WebSocket channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsteriskMediaDial {
    /// The call's id (the stored outbound call's).
    pub call_id: String,
    /// The media route (bot).
    pub route: String,
    /// `ws(s)://<asterisk>:8088/media/<MEDIA_WEBSOCKET_CONNECTION_ID>`.
    pub url: String,
    /// Added to the route's parameters (the bot's start message).
    pub params: BTreeMap<String, String>,
}
