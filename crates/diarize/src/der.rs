//! Diarization error rate (DER) with the standard definition.
//!
//! DER = (missed speech + false alarm + speaker confusion) / total reference speech, as
//! NIST's md-eval and pyannote.metrics' `DiarizationErrorRate` compute it:
//!
//! * speech is counted per speaker: where two reference speakers talk at once, that time
//!   counts twice in the total (and can be missed twice);
//! * hypothesis speakers are mapped one-to-one onto reference speakers so that the total
//!   time they share is largest (Hungarian algorithm on the co-occurrence matrix, any
//!   numbers of speakers on either side; a hypothesis speaker that shares no time with any
//!   reference speaker stays unmapped). The mapping is computed on the scored regions only,
//!   as pyannote does;
//! * at each instant with `n_ref` reference and `n_hyp` hypothesis speakers of which
//!   `n_correct` are mapped pairs: missed = max(0, n_ref - n_hyp), false alarm =
//!   max(0, n_hyp - n_ref), confusion = min(n_ref, n_hyp) - n_correct;
//! * a forgiveness collar of [`DerOptions::collar`] seconds on **each side** of every
//!   reference turn boundary (start and end) is not scored, for reference and hypothesis
//!   alike. This is md-eval's `-c 0.25` meaning. pyannote.metrics' `collar` argument is the
//!   total width of that zone instead: `collar: 0.25` here equals pyannote's `collar=0.5`;
//! * with [`DerOptions::skip_overlap`], regions where two or more reference speakers
//!   overlap are not scored either.
//!
//! Everything is computed exactly on the segment boundaries (a sweep over the sorted
//! boundary times), not by sampling frames.
//!
//! Input turns of one speaker that overlap or touch are merged first (the speaker is
//! talking or not; an instant is never counted twice for one speaker), and collars go
//! around the merged turns' boundaries. pyannote.metrics instead keeps such turns as
//! separate tracks, so it double-counts self-overlap and puts a collar at a boundary
//! where a speaker's turn ends and its next one starts; on inputs without such turns the
//! two agree exactly. Turns that are empty, reversed or have non-finite times are
//! ignored. Everything is one recording; score files one by one and [`DerReport::add`]
//! the reports for a corpus figure.

use crate::rttm::Turn;
use std::collections::BTreeMap;

/// Scoring options. The default is md-eval's usual setting: a 0.25 s collar on each side
/// of every reference boundary, overlapped speech scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DerOptions {
    /// Seconds not scored on each side of every reference turn boundary (md-eval `-c`;
    /// pyannote.metrics `collar = 2 * collar`). 0 scores everything.
    pub collar: f64,
    /// Leave out regions where several reference speakers talk at once.
    pub skip_overlap: bool,
}

impl Default for DerOptions {
    fn default() -> Self {
        DerOptions {
            collar: 0.25,
            skip_overlap: false,
        }
    }
}

/// The DER components, in seconds of speaker time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DerReport {
    /// Reference speech not covered by enough hypothesis speakers.
    pub missed: f64,
    /// Hypothesis speech beyond the number of reference speakers.
    pub false_alarm: f64,
    /// Speech attributed to the wrong (mapped) speaker.
    pub confusion: f64,
    /// Speech attributed to the right (mapped) speaker.
    pub correct: f64,
    /// Total scored reference speech (speaker time: overlap counts once per speaker).
    pub total: f64,
    /// The optimal mapping, `(hypothesis speaker, reference speaker)` pairs sorted by
    /// hypothesis speaker; unmapped hypothesis speakers are absent.
    pub mapping: Vec<(String, String)>,
}

impl DerReport {
    /// (missed + false alarm + confusion) / total, as a fraction. With no reference speech
    /// it is 0 when there is no error either, else 1 (pyannote's convention).
    pub fn der(&self) -> f64 {
        let errors = self.missed + self.false_alarm + self.confusion;
        if self.total > 0.0 {
            errors / self.total
        } else if errors > 0.0 {
            1.0
        } else {
            0.0
        }
    }

    /// Accumulate another file's components (the corpus DER is the ratio of the sums).
    /// The mapping is extended with the other file's pairs.
    pub fn add(&mut self, other: &DerReport) {
        self.missed += other.missed;
        self.false_alarm += other.false_alarm;
        self.confusion += other.confusion;
        self.correct += other.correct;
        self.total += other.total;
        self.mapping.extend(other.mapping.iter().cloned());
    }
}

/// Each speaker's turns merged into disjoint, sorted, non-touching intervals.
/// Returns the speaker names (sorted) and their intervals.
fn by_speaker(turns: &[Turn]) -> (Vec<String>, Vec<Vec<(f64, f64)>>) {
    let mut map: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for t in turns {
        if t.start.is_finite() && t.end.is_finite() && t.end > t.start {
            map.entry(t.speaker.as_str())
                .or_default()
                .push((t.start, t.end));
        }
    }
    let mut names = Vec::with_capacity(map.len());
    let mut all = Vec::with_capacity(map.len());
    for (name, iv) in map {
        names.push(name.to_string());
        all.push(union(iv));
    }
    (names, all)
}

/// Union of intervals: sorted, disjoint, non-touching.
fn union(mut iv: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    iv.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(iv.len());
    for (s, e) in iv {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Regions where at least two of the given speakers are active.
fn overlap_regions(speakers: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let mut ev: Vec<(f64, i32)> = Vec::new();
    for iv in speakers {
        for &(s, e) in iv {
            ev.push((s, 1));
            ev.push((e, -1));
        }
    }
    // Ends before starts at equal times: touching turns do not overlap.
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out = Vec::new();
    let mut active = 0;
    let mut since = 0.0;
    for (t, d) in ev {
        let before = active;
        active += d;
        if before < 2 && active >= 2 {
            since = t;
        } else if before >= 2 && active < 2 && t > since {
            out.push((since, t));
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Who {
    Ref(usize),
    Hyp(usize),
    NoScore,
}

/// Score `hypothesis` against `reference` (turns of one recording).
pub fn score(reference: &[Turn], hypothesis: &[Turn], opts: &DerOptions) -> DerReport {
    let (ref_names, ref_iv) = by_speaker(reference);
    let (hyp_names, hyp_iv) = by_speaker(hypothesis);

    // Regions not scored: collars around reference boundaries, optionally overlap.
    let mut no_score = Vec::new();
    if opts.collar > 0.0 {
        for iv in &ref_iv {
            for &(s, e) in iv {
                no_score.push((s - opts.collar, s + opts.collar));
                no_score.push((e - opts.collar, e + opts.collar));
            }
        }
    }
    if opts.skip_overlap {
        no_score.extend(overlap_regions(&ref_iv));
    }
    let no_score = union(no_score);

    // Events: (time, +1/-1, who). Every kind of interval is disjoint per owner, so each
    // owner is simply on or off between consecutive event times.
    let mut ev: Vec<(f64, i8, Who)> = Vec::new();
    let mut push = |iv: &[(f64, f64)], who: Who| {
        for &(s, e) in iv {
            ev.push((s, 1, who));
            ev.push((e, -1, who));
        }
    };
    for (i, iv) in ref_iv.iter().enumerate() {
        push(iv, Who::Ref(i));
    }
    for (i, iv) in hyp_iv.iter().enumerate() {
        push(iv, Who::Hyp(i));
    }
    push(&no_score, Who::NoScore);
    ev.sort_by(|a, b| a.0.total_cmp(&b.0));

    // Scored elementary segments: (duration, active reference, active hypothesis).
    let mut segments: Vec<(f64, Vec<usize>, Vec<usize>)> = Vec::new();
    let mut ref_on: Vec<usize> = Vec::new();
    let mut hyp_on: Vec<usize> = Vec::new();
    let mut no_score_on = 0i32;
    let mut i = 0;
    while i < ev.len() {
        let t = ev[i].0;
        while i < ev.len() && ev[i].0 == t {
            let (_, d, who) = ev[i];
            match who {
                Who::Ref(k) => toggle(&mut ref_on, k, d > 0),
                Who::Hyp(k) => toggle(&mut hyp_on, k, d > 0),
                Who::NoScore => no_score_on += d as i32,
            }
            i += 1;
        }
        if i < ev.len() && no_score_on == 0 && !(ref_on.is_empty() && hyp_on.is_empty()) {
            let dur = ev[i].0 - t;
            if dur > 0.0 {
                segments.push((dur, ref_on.clone(), hyp_on.clone()));
            }
        }
    }

    // Co-occurrence on the scored regions, then the optimal one-to-one mapping.
    let mut cooc = vec![vec![0.0f64; hyp_names.len()]; ref_names.len()];
    for (dur, r, h) in &segments {
        for &a in r {
            for &b in h {
                cooc[a][b] += dur;
            }
        }
    }
    let assignment = hungarian_max(&cooc);
    let mut hyp_to_ref: Vec<Option<usize>> = vec![None; hyp_names.len()];
    for (r, h) in assignment.iter().enumerate() {
        if let Some(h) = *h {
            if cooc[r][h] > 0.0 {
                hyp_to_ref[h] = Some(r);
            }
        }
    }

    let mut rep = DerReport::default();
    for (dur, r, h) in &segments {
        let (nr, nh) = (r.len(), h.len());
        let correct = h
            .iter()
            .filter(|&&b| hyp_to_ref[b].is_some_and(|a| r.contains(&a)))
            .count();
        rep.total += dur * nr as f64;
        rep.missed += dur * nr.saturating_sub(nh) as f64;
        rep.false_alarm += dur * nh.saturating_sub(nr) as f64;
        rep.confusion += dur * (nr.min(nh) - correct) as f64;
        rep.correct += dur * correct as f64;
    }
    rep.mapping = hyp_to_ref
        .iter()
        .enumerate()
        .filter_map(|(h, r)| r.map(|r| (hyp_names[h].clone(), ref_names[r].clone())))
        .collect();
    rep
}

fn toggle(on: &mut Vec<usize>, k: usize, start: bool) {
    match on.binary_search(&k) {
        Ok(pos) if !start => {
            on.remove(pos);
        }
        Err(pos) if start => on.insert(pos, k),
        _ => {}
    }
}

/// Maximum-weight one-to-one assignment of rows to columns (rectangular allowed):
/// for each row, the column it gets, or `None` when there are more rows than columns
/// and it gets none. Every row has the same number of columns. O(n³) with
/// n = max(rows, columns) (Kuhn–Munkres with potentials on the square padded matrix,
/// padding weight 0).
pub fn hungarian_max(weights: &[Vec<f64>]) -> Vec<Option<usize>> {
    let rows = weights.len();
    let cols = weights.first().map_or(0, |r| r.len());
    let n = rows.max(cols);
    if n == 0 {
        return vec![None; rows];
    }
    let big = weights
        .iter()
        .flatten()
        .fold(0.0f64, |m, &w| if w.is_finite() { m.max(w) } else { m });
    // Minimise cost = big - weight (padding costs big).
    let cost = |i: usize, j: usize| -> f64 {
        if i < rows && j < cols && weights[i][j].is_finite() {
            big - weights[i][j]
        } else {
            big
        }
    };
    // 1-based arrays as in the classic formulation; p[j] = row matched to column j.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![None; rows];
    for (j, &i) in p.iter().enumerate().skip(1) {
        if (1..=rows).contains(&i) && j <= cols {
            out[i - 1] = Some(j - 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64, e: f64, spk: &str) -> Turn {
        Turn::new(s, e, spk)
    }

    const NO_COLLAR: DerOptions = DerOptions {
        collar: 0.0,
        skip_overlap: false,
    };

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn reference() -> Vec<Turn> {
        vec![t(0.0, 4.0, "A"), t(5.0, 9.0, "B"), t(10.0, 12.0, "A")]
    }

    #[test]
    fn perfect_hypothesis() {
        let r = score(&reference(), &reference(), &NO_COLLAR);
        assert!(close(r.total, 10.0));
        assert_eq!(r.der(), 0.0);
        assert!(close(r.correct, 10.0));
        // default collar: each of the 6 boundaries loses 0.25 s inside the speech
        let r = score(&reference(), &reference(), &DerOptions::default());
        assert!(close(r.total, 10.0 - 6.0 * 0.25), "{r:?}");
        assert_eq!(r.der(), 0.0);
    }

    #[test]
    fn all_missed() {
        let r = score(&reference(), &[], &NO_COLLAR);
        assert!(close(r.missed, 10.0));
        assert!(close(r.der(), 1.0));
        assert!(r.mapping.is_empty());
    }

    #[test]
    fn swapped_labels_cost_nothing() {
        let hyp: Vec<Turn> = reference()
            .into_iter()
            .map(|mut x| {
                x.speaker = if x.speaker == "A" { "spk1" } else { "spk0" }.into();
                x
            })
            .collect();
        let r = score(&reference(), &hyp, &NO_COLLAR);
        assert_eq!(r.der(), 0.0);
        assert_eq!(
            r.mapping,
            vec![("spk0".into(), "B".into()), ("spk1".into(), "A".into())]
        );
    }

    #[test]
    fn speaker_split_in_two() {
        let reference = [t(0.0, 10.0, "A")];
        let hyp = [t(0.0, 6.0, "x"), t(6.0, 10.0, "y")];
        let r = score(&reference, &hyp, &NO_COLLAR);
        assert!(close(r.confusion, 4.0));
        assert!(close(r.der(), 0.4));
        assert_eq!(r.mapping, vec![("x".into(), "A".into())]);
    }

    #[test]
    fn two_speakers_merged_into_one() {
        let reference = [t(0.0, 6.0, "A"), t(6.0, 10.0, "B")];
        let hyp = [t(0.0, 10.0, "x")];
        let r = score(&reference, &hyp, &NO_COLLAR);
        assert!(close(r.confusion, 4.0) && close(r.der(), 0.4), "{r:?}");
    }

    #[test]
    fn overlap_counts_per_speaker() {
        let reference = [t(0.0, 10.0, "A"), t(5.0, 10.0, "B")];
        let hyp = [t(0.0, 10.0, "x")];
        let r = score(&reference, &hyp, &NO_COLLAR);
        assert!(close(r.total, 15.0));
        assert!(close(r.missed, 5.0));
        assert!(close(r.der(), 1.0 / 3.0));
        // both overlapping speakers found, one with the wrong label
        let hyp = [t(0.0, 10.0, "x"), t(5.0, 10.0, "y"), t(5.0, 7.0, "z")];
        let r = score(&reference, &hyp, &NO_COLLAR);
        assert!(close(r.false_alarm, 2.0) && close(r.missed, 0.0), "{r:?}");
        assert!(close(r.der(), 2.0 / 15.0));
        // skipping overlap leaves only 0..5
        let opts = DerOptions {
            collar: 0.0,
            skip_overlap: true,
        };
        let hyp = [t(0.0, 10.0, "x")];
        let r = score(&reference, &hyp, &opts);
        assert!(close(r.total, 5.0) && r.der() == 0.0, "{r:?}");
    }

    #[test]
    fn collar_forgives_boundary_errors() {
        let reference = [t(1.0, 10.0, "A")];
        let hyp = [t(1.2, 9.9, "x"), t(10.0, 10.2, "y")];
        let r = score(&reference, &hyp, &NO_COLLAR);
        assert!(close(r.missed, 0.3) && close(r.false_alarm, 0.2), "{r:?}");
        let r = score(&reference, &hyp, &DerOptions::default());
        assert_eq!(r.der(), 0.0);
        assert!(close(r.total, 9.0 - 0.5));
        // a collar only covers ±collar: an error 0.3 s from the boundary still counts
        let hyp = [t(1.3, 10.0, "x")];
        let r = score(&reference, &hyp, &DerOptions::default());
        assert!(close(r.missed, 0.05), "{r:?}");
    }

    #[test]
    fn false_alarm_in_silence_and_extra_speakers() {
        let hyp = [
            t(0.0, 4.0, "a"),
            t(5.0, 9.0, "b"),
            t(10.0, 12.0, "a"),
            t(13.0, 14.0, "c"),
        ];
        let r = score(&reference(), &hyp, &NO_COLLAR);
        assert!(close(r.false_alarm, 1.0) && close(r.der(), 0.1), "{r:?}");
        assert_eq!(r.mapping.len(), 2);
    }

    #[test]
    fn more_reference_than_hypothesis_speakers() {
        let reference = [t(0.0, 2.0, "A"), t(2.0, 5.0, "B"), t(5.0, 6.0, "C")];
        let hyp = [t(0.0, 2.0, "x"), t(2.0, 6.0, "y")];
        let r = score(&reference, &hyp, &NO_COLLAR);
        assert!(
            close(r.confusion, 1.0) && close(r.der(), 1.0 / 6.0),
            "{r:?}"
        );
    }

    #[test]
    fn same_speaker_turns_are_merged() {
        let reference = [t(0.0, 5.0, "A"), t(3.0, 8.0, "A")];
        let hyp = [t(0.0, 8.0, "x")];
        let r = score(&reference, &hyp, &NO_COLLAR);
        assert!(close(r.total, 8.0) && r.der() == 0.0, "{r:?}");
    }

    #[test]
    fn empty_everything() {
        let r = score(&[], &[], &DerOptions::default());
        assert_eq!(r.der(), 0.0);
        let r = score(&[], &[t(0.0, 1.0, "x")], &DerOptions::default());
        assert!(close(r.false_alarm, 1.0) && r.der() == 1.0);
    }

    #[test]
    fn hungarian_beats_greedy() {
        // greedy takes 10 then 0; optimal is 9 + 9
        let w = vec![vec![10.0, 9.0], vec![9.0, 0.0]];
        assert_eq!(hungarian_max(&w), vec![Some(1), Some(0)]);
        // rectangular both ways
        let w = vec![vec![1.0, 5.0, 2.0]];
        assert_eq!(hungarian_max(&w), vec![Some(1)]);
        let w = vec![vec![1.0], vec![5.0], vec![2.0]];
        assert_eq!(hungarian_max(&w), vec![None, Some(0), None]);
        assert_eq!(hungarian_max(&[]), Vec::<Option<usize>>::new());
    }

    #[test]
    fn hungarian_matches_brute_force() {
        // small pseudo-random matrices against exhaustive search over permutations
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        fn perms(n: usize) -> Vec<Vec<usize>> {
            if n == 0 {
                return vec![vec![]];
            }
            let mut out = Vec::new();
            for p in perms(n - 1) {
                for i in 0..=p.len() {
                    let mut q = p.clone();
                    q.insert(i, n - 1);
                    out.push(q);
                }
            }
            out
        }
        for rows in 1..=5 {
            for cols in 1..=5 {
                let w: Vec<Vec<f64>> = (0..rows)
                    .map(|_| (0..cols).map(|_| (rnd() * 10.0).floor()).collect())
                    .collect();
                let n = rows.max(cols);
                let best = perms(n)
                    .iter()
                    .map(|p| {
                        (0..rows)
                            .filter(|&i| p[i] < cols)
                            .map(|i| w[i][p[i]])
                            .sum::<f64>()
                    })
                    .fold(f64::MIN, f64::max);
                let a = hungarian_max(&w);
                let got: f64 = a
                    .iter()
                    .enumerate()
                    .filter_map(|(i, j)| j.map(|j| w[i][j]))
                    .sum();
                assert_eq!(got, best, "{w:?} {a:?}");
                let mut seen: Vec<usize> = a.iter().flatten().copied().collect();
                seen.sort();
                seen.dedup();
                assert_eq!(seen.len(), rows.min(cols));
            }
        }
    }
}
