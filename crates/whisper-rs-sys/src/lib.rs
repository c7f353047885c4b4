#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// What the build script built: the whisper.cpp version, verbatim's patches and the CMake
/// settings it chose. A build that could not apply every patch fails, so these describe the
/// engine that is linked into this crate.
pub mod engine_build {
    include!(concat!(env!("OUT_DIR"), "/engine_build.rs"));
}

extern "C" {
    /// verbatim patch 0009 (`patches/0009-decoder-prefix.patch`): the text the decoder is forced
    /// to start with in the first window of every later `whisper_full_with_state` call on
    /// `state`, until set again (`n_tokens` = 0 clears it), and where it ends in the audio
    /// (`t_end`, centiseconds from the window's start, at most 3000; -1: unknown). Declared
    /// here because the bindings are generated from the pristine header. Returns 0, or -1 on
    /// invalid arguments.
    pub fn whisper_state_set_prefix(
        state: *mut whisper_state,
        tokens: *const whisper_token,
        n_tokens: ::std::os::raw::c_int,
        t_end: i64,
    ) -> ::std::os::raw::c_int;

    /// verbatim patch 0010 (`patches/0010-encoder-split.patch`): in the first window of every
    /// later `whisper_full_with_state` call on `state`, the first `n_frames` encoder frames
    /// (20 ms each) are encoded on their own and their output and self-attention K/V kept; a
    /// later call with the same `n_frames` and `key` reuses them. The rest of the window is
    /// encoded each call, at its positions in the window, attending to the kept K/V too.
    /// `n_frames` = 0 encodes the window whole. Returns 0, or -1 on invalid arguments.
    pub fn whisper_state_set_encoder_split(
        state: *mut whisper_state,
        n_frames: ::std::os::raw::c_int,
        key: u64,
    ) -> ::std::os::raw::c_int;
}
