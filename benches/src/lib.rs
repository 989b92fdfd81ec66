//! Benchmark support: C peers (libsoxr, speexdsp) behind small safe wrappers,
//! and the "bridge path" workload shared by the criterion bench and scripts.
//!
//! Only benchmarks link these libraries; nothing in voxbridge itself does.

pub mod bridge;
pub mod peers;
