//! UDP plumbing shared by many calls: batched system calls ([`batch`]) and
//! the shared-port mode's hub ([`shared_port`]).

pub mod batch;
pub mod shared_port;
