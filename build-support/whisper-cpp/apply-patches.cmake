# verbatim's patches to whisper.cpp 1.8.3 (the copy whisper-rs-sys 0.15.0 builds).
#
# whisper-rs-sys hands every CMAKE_* environment variable to whisper.cpp's CMake, and
# .cargo/config.toml sets CMAKE_PROJECT_INCLUDE to this file, so CMake runs it right after
# whisper.cpp's project() call, before any source is compiled. The sources it patches are
# whisper-rs-sys's private copy under target/*/build/whisper-rs-sys-*/out/whisper.cpp, never the
# registry. A stamp file makes it run once per copy; a patch that does not apply (a different
# whisper.cpp) stops the build with the patch's name instead of silently building without it.
#
# whisper-rs-sys's build script does not watch these files: after changing a patch, run
# `cargo clean -p whisper-rs-sys` and `cargo clean -p whisper-rs-sys --release` (a fresh clone,
# as in CI, always builds with them).

set(_verbatim_root "${CMAKE_SOURCE_DIR}")
set(_verbatim_stamp "${_verbatim_root}/.verbatim-patches-applied")

if (NOT EXISTS "${_verbatim_stamp}" AND EXISTS "${_verbatim_root}/ggml/src/ggml-cpu/ops.cpp")
    find_program(VERBATIM_PATCH_EXE patch)
    if (NOT VERBATIM_PATCH_EXE)
        message(FATAL_ERROR "verbatim: `patch` is needed to apply build-support/whisper-cpp/*.patch (apt install patch)")
    endif()
    file(GLOB _verbatim_patches "${CMAKE_CURRENT_LIST_DIR}/*.patch")
    list(SORT _verbatim_patches)
    foreach(_p IN LISTS _verbatim_patches)
        execute_process(
            COMMAND "${VERBATIM_PATCH_EXE}" -p1 --forward --batch --quiet -i "${_p}"
            WORKING_DIRECTORY "${_verbatim_root}"
            RESULT_VARIABLE _rc
            OUTPUT_VARIABLE _out
            ERROR_VARIABLE _out)
        if (NOT _rc EQUAL 0)
            message(FATAL_ERROR "verbatim: ${_p} does not apply to ${_verbatim_root}:\n${_out}")
        endif()
        message(STATUS "verbatim: applied ${_p}")
    endforeach()
    file(WRITE "${_verbatim_stamp}" "${_verbatim_patches}\n")
endif()
