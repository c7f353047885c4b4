//! The conversion of an import: reads each planned tensor's rows out of `model.bin`, converts
//! them to the type the plan gives (f32, f16 or q8_0) and writes the ggml file, through a
//! temporary so a failed import never leaves a partial model under the final name.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::plan::{Plan, Source};
use crate::error::Error;
use crate::models::ct2::DType;
use crate::models::ggml::{self, f16_to_f32, f32_to_f16, GgmlType, MelFilters};

/// Writes the file: a temporary in the same directory, renamed over `out` at the end, so a
/// failure (or Ctrl-C) never leaves a partial model under the final name.
pub(super) fn write_ggml(
    out: &Path,
    plan: &Plan<'_, '_>,
    filters: &MelFilters,
    vocab: &[Vec<u8>],
) -> Result<u64, Error> {
    let out_err = |reason: String| Error::Output {
        path: out.to_path_buf(),
        reason,
        source: None,
    };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".verbatim-import-").suffix(".partial");
    // tempfile creates files private (0600); a model is as readable as any other download.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let tmp = builder
        .tempfile_in(dir)
        .map_err(|e| out_err(e.to_string()))?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
    ggml::write_header(&mut w, &plan.hparams, filters, vocab)
        .map_err(|e| out_err(e.to_string()))?;
    let mut buf = Vec::new();
    for t in &plan.tensors {
        convert(&t.src, t.ttype, &mut buf).map_err(|r| {
            out_err(format!(
                "cannot convert '{}' ({}): {r}",
                t.name, t.src.var.name
            ))
        })?;
        let want = t.ttype.nbytes(&t.dims);
        if want != Some(buf.len() as u64) {
            return Err(out_err(format!(
                "internal error: '{}' converted to {} bytes, expected {want:?}",
                t.name,
                buf.len()
            )));
        }
        ggml::write_tensor_header(&mut w, &t.name, t.ttype, &t.dims)
            .and_then(|()| w.write_all(&buf))
            .map_err(|e| out_err(e.to_string()))?;
    }
    w.flush().map_err(|e| out_err(e.to_string()))?;
    drop(w);
    tmp.as_file()
        .sync_all()
        .map_err(|e| out_err(e.to_string()))?;
    let len = tmp
        .as_file()
        .metadata()
        .map_err(|e| out_err(e.to_string()))?
        .len();
    // The checks every model gets before whisper.cpp loads it: an import never installs a
    // file that `transcribe` would refuse (or that whisper.cpp would crash on).
    {
        use std::io::{Seek, SeekFrom};
        let mut r = std::io::BufReader::with_capacity(1 << 16, tmp.as_file());
        r.seek(SeekFrom::Start(0))
            .map_err(|e| out_err(e.to_string()))?;
        ggml::check_whisper(&mut r, len).map_err(|reason| {
            out_err(format!(
                "internal error: the converted model is not a valid Whisper ggml model ({reason})"
            ))
        })?;
    }
    tmp.persist(out).map_err(|e| out_err(e.error.to_string()))?;
    Ok(len)
}

/// Reads element `i` of `data` (of type `dtype`) as f32.
fn element(data: &[u8], dtype: DType, i: usize) -> f32 {
    let b = |k: usize| data.get(i * dtype.size() + k).copied().unwrap_or(0);
    match dtype {
        DType::F32 => f32::from_le_bytes([b(0), b(1), b(2), b(3)]),
        DType::F16 => f16_to_f32(u16::from_le_bytes([b(0), b(1)])),
        DType::BF16 => f32::from_bits(u32::from(u16::from_le_bytes([b(0), b(1)])) << 16),
        DType::I8 => f32::from(b(0) as i8),
        DType::I16 => f32::from(i16::from_le_bytes([b(0), b(1)])),
        DType::I32 => i32::from_le_bytes([b(0), b(1), b(2), b(3)]) as f32,
    }
}

/// Converts the source rows to `ttype` into `out` (cleared first).
fn convert(src: &Source<'_, '_>, ttype: GgmlType, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let var = src.var;
    let size = var.dtype.size();
    let row_bytes = src.row_len * size;
    let data = var
        .data
        .get(src.rows.start * row_bytes..src.rows.end * row_bytes)
        .ok_or("row range outside the variable")?;
    let n = src.rows.len() * src.row_len;

    // Per-row multipliers of int8 rows: CTranslate2 stores q = round(x · scale), so
    // x = q / scale.
    let scales: Option<Vec<f32>> = match (var.dtype, src.scale) {
        (DType::I8, Some(s)) => {
            let v: Vec<f32> = src
                .rows
                .clone()
                .map(|r| element(s.data, s.dtype, r))
                .collect();
            if let Some((r, bad)) = v
                .iter()
                .enumerate()
                .find(|(_, x)| !(x.is_finite() && **x > 0.0))
            {
                return Err(format!("scale of row {} is {bad}", src.rows.start + r));
            }
            Some(v)
        }
        (DType::I8, None) => return Err("int8 without a scale".into()),
        _ => None,
    };
    let value = |i: usize| -> f32 {
        let x = element(data, var.dtype, i);
        match &scales {
            Some(s) => x / s[i / src.row_len],
            None => x,
        }
    };

    match ttype {
        GgmlType::F32 if var.dtype == DType::F32 => out.extend_from_slice(data),
        GgmlType::F32 => {
            out.reserve(n * 4);
            for i in 0..n {
                out.extend_from_slice(&value(i).to_le_bytes());
            }
        }
        GgmlType::F16 if var.dtype == DType::F16 => out.extend_from_slice(data),
        GgmlType::F16 => {
            out.reserve(n * 2);
            for i in 0..n {
                out.extend_from_slice(&f32_to_f16(value(i)).to_le_bytes());
            }
        }
        GgmlType::Q8_0 => {
            if !src.row_len.is_multiple_of(32) {
                return Err(format!("rows of {} are not a multiple of 32", src.row_len));
            }
            out.reserve(n / 32 * 34);
            match &scales {
                // The int8 values stay as they are; the row's scale becomes each block's d.
                Some(s) => {
                    for (r, row) in data.chunks_exact(src.row_len).enumerate() {
                        let d = f32_to_f16(1.0 / s[r]);
                        if f16_to_f32(d) == 0.0 || !f16_to_f32(d).is_finite() {
                            return Err(format!(
                                "scale {} of row {} does not fit an f16",
                                s[r],
                                src.rows.start + r
                            ));
                        }
                        for block in row.chunks_exact(32) {
                            out.extend_from_slice(&d.to_le_bytes());
                            out.extend_from_slice(block);
                        }
                    }
                }
                // Float rows in a q8_0 file: ggml's quantize_row_q8_0_ref.
                None => {
                    let mut block = [0f32; 32];
                    for b in 0..n / 32 {
                        for (k, x) in block.iter_mut().enumerate() {
                            *x = value(b * 32 + k);
                        }
                        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
                        let d = amax / 127.0;
                        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
                        out.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
                    }
                }
            }
        }
        other => return Err(format!("cannot write {}", other.name())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;
    use crate::models::ct2::Variable;

    /// A variable over `data` for conversion tests.
    fn var<'a>(shape: &[usize], dtype: DType, data: &'a [u8]) -> Variable<'a> {
        Variable {
            name: "x".into(),
            shape: shape.to_vec(),
            dtype,
            data,
            offset: 0,
            header_offset: 0,
        }
    }

    fn run(
        v: &Variable<'_>,
        scale: Option<&Variable<'_>>,
        rows: Range<usize>,
        t: GgmlType,
    ) -> Vec<u8> {
        let src = Source {
            var: v,
            rows,
            row_len: v.shape[1..].iter().product(),
            scale,
        };
        let mut out = Vec::new();
        convert(&src, t, &mut out).unwrap();
        out
    }

    fn f32s(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn conversions_between_types() {
        // 2 rows × 32: row 0 = 0..32, row 1 = -(0..32) / 4.
        let vals: Vec<f32> = (0..32)
            .map(|i| i as f32)
            .chain((0..32).map(|i| -(i as f32) / 4.0))
            .collect();
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| f32_to_f16(*v).to_le_bytes())
            .collect();
        let bf16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        for (dtype, data) in [
            (DType::F32, &f32b),
            (DType::F16, &f16b),
            (DType::BF16, &bf16b),
        ] {
            let v = var(&[2, 32], dtype, data);
            assert_eq!(f32s(&run(&v, None, 0..2, GgmlType::F32)), vals, "{dtype}");
            assert_eq!(run(&v, None, 0..2, GgmlType::F16), f16b, "{dtype}");
            // The second row alone.
            assert_eq!(run(&v, None, 1..2, GgmlType::F16), &f16b[64..], "{dtype}");
            // ggml's q8_0: d = amax / 127, q = round(x / d).
            let q = run(&v, None, 1..2, GgmlType::Q8_0);
            assert_eq!(q.len(), 34);
            assert_eq!(
                f16_to_f32(u16::from_le_bytes([q[0], q[1]])),
                f16_to_f32(f32_to_f16(7.75 / 127.0))
            );
            assert_eq!(q[2 + 31] as i8, -127);
            assert_eq!(q[2 + 4] as i8, (-1.0f32 / (7.75 / 127.0)).round() as i8);
        }

        // CTranslate2 int8: q = round(x · scale) per row; x = q / scale.
        let q: Vec<u8> = (0..64).map(|i| (i as i8 - 32) as u8).collect();
        let scales: Vec<u8> = [2.0f32, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (v, s) = (var(&[2, 32], DType::I8, &q), var(&[2], DType::F32, &scales));
        let x = f32s(&run(&v, Some(&s), 0..2, GgmlType::F32));
        assert_eq!(x[0], -16.0);
        assert_eq!(x[32], 0.0);
        assert_eq!(x[63], 62.0);
        // q8_0 keeps the int8 values, with d = 1 / scale in every block of the row.
        let out = run(&v, Some(&s), 1..2, GgmlType::Q8_0);
        assert_eq!(out.len(), 34);
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), f32_to_f16(2.0));
        assert_eq!(&out[2..], &q[32..]);
        // A zero scale is refused, not turned into infinities.
        let zero = [0u8; 8];
        let s0 = var(&[2], DType::F32, &zero);
        let src = Source {
            var: &v,
            rows: 0..2,
            row_len: 32,
            scale: Some(&s0),
        };
        assert!(convert(&src, GgmlType::F16, &mut Vec::new())
            .unwrap_err()
            .contains("scale of row 0"));
    }
}
