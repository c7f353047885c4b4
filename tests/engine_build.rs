//! The patched engine reaches every consumer: the binary, a crate that depends on verbatim by
//! path (built from another directory, without this repository's .cargo/config.toml), and
//! the engine crate's build fails loudly, naming the patch, when one does not apply exactly.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// This test run's target folder: the scratch builds reuse what it has compiled (the engine
/// crate among it), as they would reuse a cache.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn patch_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("crates/whisper-rs-sys/patches"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".patch"))
        .collect();
    names.sort();
    names
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Whatever a developer exported must not change what is being checked.
    for (key, _) in std::env::vars() {
        if key.starts_with("GGML_") || key.starts_with("CMAKE_") || key.starts_with("WHISPER_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUSTFLAGS");
    cmd
}

/// The engine's report in `verbatim info --json`.
fn info_engine() -> serde_json::Value {
    let out = run(verbatim().args(["info", "--json"]));
    assert!(out.status.success());
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["engine"].clone()
}

#[test]
fn info_reports_every_patch_and_the_portable_build() {
    let engine = info_engine();
    let patches: Vec<String> = engine["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}.patch", p.as_str().unwrap()))
        .collect();
    assert_eq!(patches, patch_files());
    let level = engine["patch_level"].as_str().unwrap();
    assert!(
        level.starts_with(&format!("1.8.3+verbatim.{}.", patches.len())),
        "{level}"
    );
    let settings = engine["settings"].to_string();
    assert!(settings.contains(r#"["GGML_OPENMP","OFF"]"#), "{settings}");
    // ggml's own report of what was compiled in, not just what the build script wrote down.
    let system = engine["system_info"].as_str().unwrap();
    assert!(!system.contains("OPENMP = 1"), "{system}");
    assert!(system.contains("LLAMAFILE = 1"), "{system}");
    if cfg!(target_arch = "x86_64") {
        assert!(settings.contains(r#"["GGML_NATIVE","OFF"]"#), "{settings}");
        assert!(system.contains("AVX2 = 1"), "{system}");
    }

    let out = run(verbatim().arg("info"));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("engine        {level} (0001-")),
        "{text}"
    );
}

/// A scratch crate outside this repository, depending on verbatim by path with no default
/// features, built with cargo run from its own directory: the engine it links is the same.
#[test]
fn a_crate_depending_on_verbatim_gets_the_patched_engine() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nverbatim = {{ path = {:?}, default-features = false }}\n\n\
             [profile.dev.package.\"*\"]\nopt-level = 2\n\n[workspace]\n",
            repo().display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("src/main.rs"),
        "fn main() {\n    let b = verbatim::engine::engine_build();\n    \
         println!(\"{}\\n{}\", b.patch_level, b.system_info);\n}\n",
    )
    .unwrap();
    std::fs::copy(repo().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let out = run(cargo()
        .args(["run", "--quiet", "--offline"])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(root));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let level = lines.next().unwrap();
    assert_eq!(level, info_engine()["patch_level"].as_str().unwrap());
    let system = lines.next().unwrap_or_default();
    assert!(!system.contains("OPENMP = 1"), "{system}");
    assert!(system.contains("LLAMAFILE = 1"), "{system}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Builds a copy of the engine crate with one extra patch; returns the build's stderr.
fn build_engine_with(patch_name: &str, patch: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("engine");
    copy_dir(&repo().join("crates/whisper-rs-sys"), &krate);
    let manifest = krate.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[workspace]\n");
    std::fs::write(&manifest, text).unwrap();
    std::fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    std::fs::write(krate.join("patches").join(patch_name), patch).unwrap();
    let out = run(cargo()
        .args(["build", "--offline", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(dir.path()));
    (out.status.success(), stderr(&out))
}

#[test]
fn a_patch_that_does_not_apply_exactly_stops_the_build_naming_it() {
    // One context line differs from the source: GNU patch would apply it with fuzz 1.
    let fuzzy = "\
--- a/src/whisper.cpp
+++ b/src/whisper.cpp
@@ -1,4 +1,5 @@
 #include \"whisper.h\"
-#include \"not-what-the-source-says.h\"
+// added by a test
+#include \"not-what-the-source-says.h\"
 
";
    let (ok, err) = build_engine_with("0099-fuzzy.patch", fuzzy);
    assert!(!ok, "a patch needing fuzz was applied:\n{err}");
    assert!(err.contains("0099-fuzzy.patch"), "{err}");
    assert!(err.contains("does not apply exactly"), "{err}");

    let missing = "\
--- a/src/no-such-file.cpp
+++ b/src/no-such-file.cpp
@@ -1,1 +1,1 @@
-int a;
+int b;
";
    let (ok, err) = build_engine_with("0098-missing-file.patch", missing);
    assert!(!ok, "a patch of a missing file was accepted:\n{err}");
    assert!(err.contains("0098-missing-file.patch"), "{err}");
}
