//! Splitting a library between processes of a cluster job engine (Slurm job arrays,
//! Kubernetes Indexed Jobs) without any coordinator: each process takes the files whose stable
//! hash falls in its shard.

use std::path::Path;

use crate::{Error, Result};

/// Which part of the files this process handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shard {
    /// Every file.
    All,
    /// Files with `hash(relative path) % count == index`.
    Part {
        /// 0-based index of this process.
        index: u64,
        /// Number of processes.
        count: u64,
    },
}

impl Shard {
    /// Parses `--shard`: `I/N` (0-based), or `auto` to read the job engine's environment.
    /// `count` is `--shard-count`, needed with `auto` under Kubernetes, whose Indexed Jobs give
    /// the index but not the count. `env` reads a variable (the process environment in the CLI).
    pub fn parse(
        spec: &str,
        count: Option<u64>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Shard> {
        let shard = if spec.trim() == "auto" {
            Self::from_env(count, env)?
        } else {
            let (i, n) = spec.split_once('/').ok_or_else(|| {
                Error::Usage(format!(
                    "--shard {spec:?}: expected INDEX/COUNT (e.g. 0/4) or auto"
                ))
            })?;
            let parse = |s: &str, what: &str| {
                s.trim().parse::<u64>().map_err(|_| {
                    Error::Usage(format!("--shard {spec:?}: {what} {s:?} is not a number"))
                })
            };
            Shard::Part {
                index: parse(i, "index")?,
                count: parse(n, "count")?,
            }
        };
        shard.validate()?;
        Ok(shard)
    }

    fn from_env(count: Option<u64>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        let number = |name: &str| -> Result<Option<u64>> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                    Error::Usage(format!("--shard auto: {name}={v:?} is not a number"))
                }),
            }
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            // Arrays may start anywhere (--array=1-8); the shard index counts from the minimum.
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let n = match count {
                Some(n) => n,
                None => number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                    Error::Usage(
                        "--shard auto: SLURM_ARRAY_TASK_COUNT is not set (Slurm older than \
                         20.11?); pass --shard-count N"
                            .into(),
                    )
                })?,
            };
            return Ok(Shard::Part {
                index: id.checked_sub(min).ok_or_else(|| {
                    Error::Usage(format!(
                        "--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                    ))
                })?,
                count: n,
            });
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let n = match count {
                Some(n) => n,
                None => number("VERBATIM_SHARD_COUNT")?.ok_or_else(|| {
                    Error::Usage(
                        "--shard auto: JOB_COMPLETION_INDEX is set but not the shard count; pass \
                         --shard-count N (the Job's completions) or set VERBATIM_SHARD_COUNT"
                            .into(),
                    )
                })?,
            };
            return Ok(Shard::Part { index, count: n });
        }
        Err(Error::Usage(
            "--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor \
             JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set; use --shard INDEX/COUNT"
                .into(),
        ))
    }

    fn validate(self) -> Result<()> {
        if let Shard::Part { index, count } = self {
            if count == 0 || index >= count {
                return Err(Error::Usage(format!(
                    "--shard {index}/{count}: the index must be below the count (0-based)"
                )));
            }
        }
        Ok(())
    }

    /// True when the file at `relative` (relative to its input root) belongs to this shard.
    pub fn contains(self, relative: &Path) -> bool {
        match self {
            Shard::All => true,
            Shard::Part { index, count } => stable_hash(relative) % count == index,
        }
    }
}

/// FNV-1a over the path's components joined by `/`: the same on every machine, Rust version
/// and run (std's hasher is randomly seeded), and independent of the platform's separator.
fn stable_hash(path: &Path) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (i, component) in path.components().enumerate() {
        if i > 0 {
            feed(b"/");
        }
        feed(component.as_os_str().to_string_lossy().as_bytes());
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn parses_explicit_shards_and_rejects_bad_ones() {
        let none = env_of(&[]);
        assert_eq!(
            Shard::parse("1/4", None, &none).unwrap(),
            Shard::Part { index: 1, count: 4 }
        );
        for bad in ["4/4", "0/0", "x/2", "3", "-1/2"] {
            assert!(Shard::parse(bad, None, &none).is_err(), "{bad}");
        }
        let err = Shard::parse("auto", None, &none).unwrap_err();
        assert!(err.to_string().contains("SLURM_ARRAY_TASK_ID"), "{err}");
    }

    #[test]
    fn auto_reads_slurm_and_kubernetes() {
        let slurm = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::parse("auto", None, &slurm).unwrap(),
            Shard::Part { index: 2, count: 4 }
        );
        let k8s = env_of(&[("JOB_COMPLETION_INDEX", "5")]);
        assert!(Shard::parse("auto", None, &k8s).is_err());
        assert_eq!(
            Shard::parse("auto", Some(8), &k8s).unwrap(),
            Shard::Part { index: 5, count: 8 }
        );
        let k8s_env = env_of(&[("JOB_COMPLETION_INDEX", "5"), ("VERBATIM_SHARD_COUNT", "6")]);
        assert_eq!(
            Shard::parse("auto", None, &k8s_env).unwrap(),
            Shard::Part { index: 5, count: 6 }
        );
        let past = env_of(&[("JOB_COMPLETION_INDEX", "6"), ("VERBATIM_SHARD_COUNT", "6")]);
        assert!(Shard::parse("auto", None, &past).is_err());
    }

    #[test]
    fn every_path_lands_in_exactly_one_shard_and_the_hash_is_stable() {
        // Pinned (checked against a Python FNV-1a): a change here would reshuffle every existing cluster's split.
        assert_eq!(stable_hash(Path::new("a/b.mp3")), 0xe94b_4238_48eb_4b29);
        let paths: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("show{}/ep{i}.mkv", i % 7)))
            .collect();
        let mut sizes = [0usize; 5];
        for p in &paths {
            let owners: Vec<u64> = (0..5)
                .filter(|&i| Shard::Part { index: i, count: 5 }.contains(p))
                .collect();
            assert_eq!(owners.len(), 1, "{}", p.display());
            sizes[owners[0] as usize] += 1;
        }
        // FNV spreads similar names: no shard is starved.
        assert!(sizes.iter().all(|&n| n > 20), "{sizes:?}");
    }
    use std::path::PathBuf;
}
