//! Benchmark-only package: see `benches/` for criterion benches and the comparison scripts.
