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
