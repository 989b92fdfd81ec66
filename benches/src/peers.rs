//! Minimal FFI to libsoxr and speexdsp (system libraries from Debian's
//! libsoxr-dev and libspeexdsp-dev), wrapped as safe streaming resamplers.
//!
//! Declared here rather than through the -sys crates: speexdsp-sys needs an
//! ancient bindgen and libclang at build time; four functions are simpler.
#![allow(unsafe_code)]

use std::os::raw::{c_char, c_double, c_int, c_uint, c_ulong, c_void};

#[repr(C)]
struct SoxrIoSpec {
    itype: c_uint,
    otype: c_uint,
    scale: c_double,
    e: *mut c_void,
    flags: c_ulong,
}

#[repr(C)]
struct SoxrQualitySpec {
    precision: c_double,
    phase_response: c_double,
    passband_end: c_double,
    stopband_begin: c_double,
    e: *mut c_void,
    flags: c_ulong,
}

#[repr(C)]
struct Soxr {
    _private: [u8; 0],
}

#[repr(C)]
struct SpeexState {
    _private: [u8; 0],
}

const SOXR_INT16_I: c_uint = 3;
const SOXR_NO_DITHER: c_ulong = 8;
/// libsoxr's "medium quality" recipe.
pub const SOXR_MQ: c_ulong = 2;
/// libsoxr's "high quality" recipe (20-bit).
pub const SOXR_HQ: c_ulong = 4;

#[link(name = "soxr")]
extern "C" {
    fn soxr_create(
        input_rate: c_double,
        output_rate: c_double,
        num_channels: c_uint,
        error: *mut *const c_char,
        io_spec: *const SoxrIoSpec,
        quality_spec: *const SoxrQualitySpec,
        runtime_spec: *const c_void,
    ) -> *mut Soxr;
    fn soxr_process(
        resampler: *mut Soxr,
        input: *const c_void,
        ilen: usize,
        idone: *mut usize,
        output: *mut c_void,
        olen: usize,
        odone: *mut usize,
    ) -> *const c_char;
    fn soxr_delete(resampler: *mut Soxr);
    fn soxr_quality_spec(recipe: c_ulong, flags: c_ulong) -> SoxrQualitySpec;
}

#[link(name = "speexdsp")]
extern "C" {
    fn speex_resampler_init(
        channels: u32,
        in_rate: u32,
        out_rate: u32,
        quality: c_int,
        err: *mut c_int,
    ) -> *mut SpeexState;
    fn speex_resampler_process_int(
        st: *mut SpeexState,
        channel: u32,
        input: *const i16,
        in_len: *mut u32,
        output: *mut i16,
        out_len: *mut u32,
    ) -> c_int;
    fn speex_resampler_destroy(st: *mut SpeexState);
}

/// A libsoxr stream, mono PCM16 in and out, no dither.
pub struct SoxrStream {
    raw: *mut Soxr,
}

impl SoxrStream {
    /// `recipe` is [`SOXR_MQ`] or [`SOXR_HQ`].
    pub fn new(from: u32, to: u32, recipe: c_ulong) -> Option<Self> {
        let io = SoxrIoSpec {
            itype: SOXR_INT16_I,
            otype: SOXR_INT16_I,
            scale: 1.0,
            e: std::ptr::null_mut(),
            flags: SOXR_NO_DITHER,
        };
        // SAFETY: plain value-returning call with valid recipe constants.
        let q = unsafe { soxr_quality_spec(recipe, 0) };
        let mut err: *const c_char = std::ptr::null();
        // SAFETY: all pointers point at live locals for the duration of the call;
        // a null runtime spec selects libsoxr's defaults (single-threaded here).
        let raw = unsafe { soxr_create(from as f64, to as f64, 1, &mut err, &io, &q, std::ptr::null()) };
        (err.is_null() && !raw.is_null()).then_some(SoxrStream { raw })
    }

    /// Feeds `input`, writes what is ready into `output`; returns samples written.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> usize {
        let (mut idone, mut odone) = (0usize, 0usize);
        // SAFETY: `raw` is a live resampler owned by self; buffers are valid for
        // the lengths passed and do not overlap.
        unsafe {
            soxr_process(
                self.raw,
                input.as_ptr().cast(),
                input.len(),
                &mut idone,
                output.as_mut_ptr().cast(),
                output.len(),
                &mut odone,
            );
        }
        odone
    }
}

impl Drop for SoxrStream {
    fn drop(&mut self) {
        // SAFETY: created by soxr_create, deleted once.
        unsafe { soxr_delete(self.raw) }
    }
}

/// A speexdsp resampler stream, mono PCM16.
pub struct SpeexStream {
    raw: *mut SpeexState,
}

impl SpeexStream {
    /// `quality` 0..=10 (VoIP default is 3).
    pub fn new(from: u32, to: u32, quality: i32) -> Option<Self> {
        let mut err: c_int = 0;
        // SAFETY: `err` is a live local; returns null on failure.
        let raw = unsafe { speex_resampler_init(1, from, to, quality, &mut err) };
        (err == 0 && !raw.is_null()).then_some(SpeexStream { raw })
    }

    /// Feeds `input`, writes into `output`; returns samples written.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> usize {
        let mut in_len = input.len() as u32;
        let mut out_len = output.len() as u32;
        // SAFETY: live state owned by self; lengths match the buffers.
        unsafe {
            speex_resampler_process_int(
                self.raw,
                0,
                input.as_ptr(),
                &mut in_len,
                output.as_mut_ptr(),
                &mut out_len,
            );
        }
        out_len as usize
    }
}

impl Drop for SpeexStream {
    fn drop(&mut self) {
        // SAFETY: created by speex_resampler_init, destroyed once.
        unsafe { speex_resampler_destroy(self.raw) }
    }
}
