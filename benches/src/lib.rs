//! Benchmark support: C peers (libsoxr, speexdsp) behind small safe wrappers,
//! the "bridge path" workload shared by the criterion bench and scripts, and
//! the setup the control sidecar's load tools share.
//!
//! Only benchmarks link these libraries; nothing in voxbridge itself does.

pub mod bridge;
pub mod control_setup;
pub mod peers;
