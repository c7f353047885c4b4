//! verbatim's part of the build script: the pinned whisper.cpp, its patches, the CPU build.
//!
//! Every patch in `patches/` is applied, in name order, to a fresh copy of the pristine sources
//! with zero fuzz; any failure stops the build naming the patch, and the compiled copy is only
//! replaced once all of them applied. Files are written only where their content changed, so
//! CMake recompiles just what a patch edit touched.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The whisper.cpp release the vendored sources and the patches are for.
pub const WHISPER_CPP_VERSION: &str = "1.8.3";

pub struct Engine {
    pub patches: Vec<(String, Vec<u8>)>,
}

impl Engine {
    /// `1.8.3+verbatim.N.HASH`: the upstream version, the number of patches and a digest of
    /// their bytes, so two builds with the same level have the same engine sources.
    pub fn patch_level(&self) -> String {
        let mut hash = Sha256::new();
        for (name, bytes) in &self.patches {
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(bytes);
        }
        let digest = hash.finalize();
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{WHISPER_CPP_VERSION}+verbatim.{}.{hex}",
            self.patches.len()
        )
    }
}

fn fail(msg: String) -> ! {
    // A panic's message is what cargo shows of a failed build script; keep it to the point.
    panic!("\n\nverbatim engine build: {msg}\n\n");
}

/// Copies the pristine sources, applies every patch and updates `dest` in place.
pub fn prepare_sources(out: &Path, dest: &Path) -> Engine {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let pristine = manifest.join("whisper.cpp");
    let patch_dir = manifest.join("patches");
    for watched in [
        "build.rs",
        "build/engine.rs",
        "wrapper.h",
        "patches",
        "whisper.cpp",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=PATH");

    let version = cmake_project_version(&pristine.join("CMakeLists.txt"));
    if version.as_deref() != Some(WHISPER_CPP_VERSION) {
        fail(format!(
            "the vendored whisper.cpp is {}, but the patches are for {WHISPER_CPP_VERSION}; \
             update WHISPER_CPP_VERSION in build/engine.rs only after porting every patch",
            version.as_deref().unwrap_or("of unknown version")
        ));
    }

    let mut names: Vec<PathBuf> = fs::read_dir(&patch_dir)
        .unwrap_or_else(|e| fail(format!("cannot read {}: {e}", patch_dir.display())))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    names.sort();
    if names.is_empty() {
        fail(format!("no *.patch files in {}", patch_dir.display()));
    }

    let staging = out.join("whisper.cpp.staging");
    let _ = fs::remove_dir_all(&staging);
    copy_tree(&pristine, &staging)
        .unwrap_or_else(|e| fail(format!("cannot copy {}: {e}", pristine.display())));

    let mut patches = Vec::new();
    for path in &names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(path).unwrap_or_else(|e| fail(format!("cannot read {name}: {e}")));
        apply_patch(&staging, path, &name);
        patches.push((name, bytes));
    }

    sync_tree(&staging, dest)
        .unwrap_or_else(|e| fail(format!("cannot update {}: {e}", dest.display())));
    let _ = fs::remove_dir_all(&staging);
    Engine { patches }
}

/// `patch` with zero fuzz, never asking, never writing .orig/.rej files, refusing a patch
/// that looks already applied; a missing target file is a failure too.
fn apply_patch(root: &Path, path: &Path, name: &str) {
    let output = Command::new("patch")
        .args([
            "-p1",
            "--forward",
            "--batch",
            "--fuzz=0",
            "--no-backup-if-mismatch",
            "--reject-file=-",
            "-i",
        ])
        .arg(path)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| {
            fail(format!(
                "cannot run `patch` to apply {name} ({e}); install it (Debian: apt install patch)"
            ))
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let missing = text.contains("can't find file") || text.contains("No file to patch");
    if !output.status.success() || missing {
        fail(format!(
            "patch {name} does not apply exactly to whisper.cpp {WHISPER_CPP_VERSION} \
             (zero fuzz); nothing was built with a partial patch set. `patch` said:\n{text}"
        ));
    }
}

fn cmake_project_version(cmake_lists: &Path) -> Option<String> {
    let text = fs::read_to_string(cmake_lists).ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(r#"project("whisper.cpp" VERSION "#)
            .map(|v| v.trim_end_matches(')').trim().to_string())
    })
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Makes `to` hold exactly the files of `from`, rewriting only those whose bytes differ
/// (their modification time is what CMake's incremental build goes by).
fn sync_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    let mut seen = BTreeSet::new();
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        seen.insert(entry.file_name());
        if entry.file_type()?.is_dir() {
            if target.is_file() {
                fs::remove_file(&target)?;
            }
            sync_tree(&entry.path(), &target)?;
        } else {
            let new = fs::read(entry.path())?;
            if target.is_dir() {
                fs::remove_dir_all(&target)?;
            }
            if fs::read(&target).ok().as_deref() != Some(&new[..]) {
                fs::write(&target, &new)?;
            }
        }
    }
    for entry in fs::read_dir(to)? {
        let entry = entry?;
        if !seen.contains(&entry.file_name()) {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(path)?;
            } else {
                fs::remove_file(path)?;
            }
        }
    }
    Ok(())
}

/// The CMake settings verbatim builds whisper.cpp with, whatever the environment says
/// (an explicit GGML_*/WHISPER_*/CMAKE_* variable still overrides one; see docs/engine.md).
pub fn cmake_settings(target: &str) -> Vec<(String, String)> {
    let mut settings: Vec<(&str, &str)> = Vec::new();
    if target.starts_with("x86_64") || target.starts_with("i686") {
        // Portable AVX2 instead of -march=native: native builds SIGILL on AMX hosts with q8_0
        // models, and the portable build was measured faster anyway.
        settings.extend([
            ("GGML_NATIVE", "OFF"),
            ("GGML_AVX", "ON"),
            ("GGML_AVX2", "ON"),
            ("GGML_FMA", "ON"),
            ("GGML_F16C", "ON"),
        ]);
    }
    // tinyBLAS GEMM kernels (patch 0005 extends them); ggml's own thread pool, not OpenMP.
    settings.extend([("GGML_LLAMAFILE", "ON"), ("GGML_OPENMP", "OFF")]);
    let mut out: Vec<(String, String)> = settings
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, _) in out.iter() {
        println!("cargo:rerun-if-env-changed={key}");
    }
    println!("cargo:rerun-if-env-changed=CMAKE_CUDA_ARCHITECTURES");
    for (key, value) in env::vars() {
        let passed = (key.starts_with("WHISPER_") && key != "WHISPER_DONT_GENERATE_BINDINGS")
            || key.starts_with("GGML_")
            || key.starts_with("CMAKE_");
        if passed {
            println!("cargo:rerun-if-env-changed={key}");
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => out.push((key, value)),
            }
        }
    }
    out
}

/// `engine_build.rs` in OUT_DIR, included by `src/lib.rs` as `whisper_rs_sys::engine_build`.
pub fn write_build_info(out: &Path, engine: &Engine, settings: &[(String, String)]) {
    let names: Vec<String> = engine
        .patches
        .iter()
        .map(|(n, _)| format!("{:?}", n.trim_end_matches(".patch")))
        .collect();
    let pairs: Vec<String> = settings
        .iter()
        .filter(|(k, _)| k.starts_with("GGML_") || k.starts_with("WHISPER_"))
        .map(|(k, v)| format!("({k:?}, {v:?})"))
        .collect();
    let text = format!(
        "/// The upstream whisper.cpp release.\n\
         pub const WHISPER_CPP_VERSION: &str = {:?};\n\
         /// `VERSION+verbatim.N.HASH`: N patches whose bytes hash to HASH.\n\
         pub const PATCH_LEVEL: &str = {:?};\n\
         /// The patches applied, in order.\n\
         pub const PATCHES: &[&str] = &[{}];\n\
         /// The GGML_*/WHISPER_* CMake settings the engine was built with.\n\
         pub const SETTINGS: &[(&str, &str)] = &[{}];\n",
        WHISPER_CPP_VERSION,
        engine.patch_level(),
        names.join(", "),
        pairs.join(", ")
    );
    fs::write(out.join("engine_build.rs"), text).expect("write engine_build.rs");
}
