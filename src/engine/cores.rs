//! How many cores other processes leave free, so whisper runs no more threads than there are
//! cores to run them: a thread without a core only makes its partners wait at every barrier
//! (docs/benchmarks.md, "A busy machine").
//!
//! One sampler thread per process, started with the first engine, reads the kernel's CPU
//! counters five times a second; a transcription asks it how busy the last second was.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// How often the counters are read, and how many readings make the window (about 1 s).
const PERIOD: Duration = Duration::from_millis(200);
const WINDOW: usize = 6;
/// No figure yet.
const UNKNOWN: u64 = u64::MAX;

/// CPU time counters: the whole machine's busy and total ticks, and this process's.
#[derive(Debug, Clone, Copy)]
struct Sample {
    busy: u64,
    total: u64,
    own: u64,
}

impl Sample {
    /// Reads `/proc/stat` and `/proc/self/stat` (Linux); `None` elsewhere or on a parse error.
    fn read() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let idle = field(3) + field(4);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command name (which may hold spaces): utime and stime are the
        // 12th and 13th, summed over every thread of the process, finished ones included.
        let after = own_stat.get(own_stat.rfind(')')? + 2..)?;
        let f: Vec<&str> = after.split_whitespace().collect();
        let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(Sample {
            busy,
            total: busy + idle,
            own,
        })
    }
}

/// Cores other processes kept busy between `a` and `b` on a machine of `cores` cores.
fn others(a: &Sample, b: &Sample, cores: usize) -> Option<f64> {
    let total = b.total.checked_sub(a.total).filter(|t| *t > 0)?;
    let busy = b.busy.saturating_sub(a.busy);
    let own = b.own.saturating_sub(a.own);
    Some(busy.saturating_sub(own) as f64 / total as f64 * cores as f64)
}

fn cores() -> usize {
    super::default_threads().max(1)
}

/// Other processes' load sustained over the last second (the least of its 0.2 s intervals),
/// in thousandths of a core.
fn figure() -> &'static AtomicU64 {
    static FIGURE: OnceLock<&'static AtomicU64> = OnceLock::new();
    FIGURE.get_or_init(|| {
        let figure: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(UNKNOWN)));
        if Sample::read().is_some() {
            let spawned = std::thread::Builder::new()
                .name("verbatim-cores".into())
                .spawn(move || {
                    let mut window: VecDeque<Sample> = VecDeque::with_capacity(WINDOW);
                    loop {
                        if let Some(s) = Sample::read() {
                            if window.len() == WINDOW {
                                window.pop_front();
                            }
                            window.push_back(s);
                        }
                        // The load present through the whole window: a process that has just
                        // ended, or a burst, does not take a core away from a long job.
                        let sustained = window
                            .iter()
                            .zip(window.iter().skip(1))
                            .filter_map(|(a, b)| others(a, b, cores()))
                            .reduce(f64::min);
                        if let Some(o) = sustained {
                            figure.store((o * 1000.0) as u64, Ordering::Relaxed);
                        }
                        std::thread::sleep(PERIOD);
                    }
                });
            // No thread, no figure: every call then gets the threads it asks for.
            drop(spawned);
        }
        figure
    })
}

/// Starts watching the machine (an engine does it when it loads, so its first transcription
/// already has a figure).
pub fn start() {
    figure();
}

/// Threads for a transcription that would use `wanted`: no more than the cores other
/// processes kept free throughout the last second (rounded), at least 1. Erring towards more
/// threads is the cheaper mistake (one thread too many costs about 1.2x with engine patch
/// 0008, one too few 1.7x). `wanted` itself while
/// there is no figure (not Linux, or in the first 0.2 s).
pub fn threads(wanted: usize) -> usize {
    let wanted = wanted.max(1);
    match figure().load(Ordering::Relaxed) {
        UNKNOWN => wanted,
        milli => {
            let free = (cores() as f64 - milli as f64 / 1000.0).round().max(1.0) as usize;
            wanted.min(free)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_busy_process_takes_its_core_away() {
        if Sample::read().is_none() {
            return; // not Linux: the count is never lowered
        }
        let n = cores();
        start();
        // A child process spinning for two seconds takes one core.
        let mut spin = std::process::Command::new("sh")
            .args([
                "-c",
                "end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do :; done",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1600));
        let threads = threads(n);
        let _ = spin.kill();
        let _ = spin.wait();
        if n >= 2 {
            assert!(threads < n, "{threads} threads of {n} with a core busy");
        }
        assert_eq!(super::threads(1), 1);
    }

    #[test]
    fn own_work_is_not_counted_as_others() {
        let Some(a) = Sample::read() else {
            return;
        };
        // This process burns a core; it is in the machine's busy time, not in the others'.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(400) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = Sample::read().unwrap();
        let n = cores();
        let theirs = others(&a, &b, n).unwrap();
        let all = (b.busy - a.busy) as f64 / (b.total - a.total) as f64 * n as f64;
        assert!(all - theirs > 0.5, "all {all:.2}, others {theirs:.2} cores");
    }
}
