//! The commands control/ may give the media plane. The media plane
//! implements them (its call registry); control calls them in one process,
//! or sends them as [`crate::event_wire::CallCommand`]s to a media process.

/// What control/ may ask of running calls.
pub trait CallCommands: Send + Sync + 'static {
    /// Hangs a running call up with cause `api_hangup`; `false` if no call
    /// with that id runs here.
    fn hangup(&self, call_id: &str) -> bool;
}
