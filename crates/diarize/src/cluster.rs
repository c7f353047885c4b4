//! Clustering speaker embeddings into speakers.
//!
//! Agglomerative hierarchical clustering (AHC) on the cosine geometry of L2-normalised
//! embeddings: start with one cluster per embedding, repeatedly merge the closest pair,
//! stop when the closest pair is farther apart than [`ClusterOptions::threshold`] (a
//! cosine distance, `1 - cos`), subject to the speaker-count constraints.
//!
//! Two linkages ([`Linkage`]):
//! * `Average` (default): the distance between two clusters is the weighted mean of the
//!   pairwise cosine distances between their members (weights `w_a * w_b`). This is what
//!   3D-Speaker, CAM++'s own toolkit, uses for its AHC (`AHCluster`: average linkage on
//!   cosine similarity, stopping at similarity 0.4 = distance 0.6), hence the default
//!   threshold of 0.6;
//! * `Centroid`: the distance is the cosine distance between the clusters' centroids,
//!   each the weighted mean of its members' normalised embeddings. pyannote's pipelines
//!   use centroid linkage on normalised embeddings (Euclidean distance between centroids,
//!   threshold about 0.7 for WeSpeaker; 0.7 Euclidean between unit vectors is about 0.25
//!   cosine distance, though centroids are shorter than unit). Centroid-cosine distances
//!   between clusters of one speaker shrink as clusters grow, so a lower threshold than
//!   for `Average` fits (0.3–0.5 is a place to start).
//!
//! Both thresholds are to be tuned on labelled CAM++ output; the defaults are starting
//! points, not measured optima.
//!
//! Weights (for example the seconds of speech an embedding stands for) make a cluster's
//! centroid the weighted mean and weigh pairs in the average linkage.
//!
//! Cost: one `N×N` f32 matrix (N = 3000 → 36 MB; N = 2000 → 16 MB) and O(N²) time in
//! practice: each cluster keeps its nearest neighbour (or a lower bound of that distance
//! when the neighbour was merged away), and a row is rescanned only when its lower bound
//! is the smallest of all (the generic algorithm of Müllner, "Modern hierarchical,
//! agglomerative clustering algorithms", 2011, with a linear scan in place of the
//! priority queue).

use crate::{Error, Result};

/// How the distance between two clusters is defined (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Linkage {
    #[default]
    Average,
    Centroid,
}

/// Default stopping threshold (cosine distance) for [`Linkage::Average`] on CAM++ embeddings
/// of single stretches of speech: the middle of the range (0.7-0.8) that counted the
/// speakers of all 20 benchmark conversations right (docs/diarization.md).
pub const DEFAULT_THRESHOLD: f32 = 0.75;

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOptions {
    /// Stop merging when the closest pair of clusters is farther apart than this cosine
    /// distance (`1 - cos`, 0..2). Ignored when `num_speakers` is set.
    pub threshold: f32,
    pub linkage: Linkage,
    /// Exactly this many clusters (fewer only if there are fewer embeddings). Overrides
    /// the threshold and `min_speakers` / `max_speakers`.
    pub num_speakers: Option<usize>,
    /// Keep merging while there are more clusters than this, whatever the distance.
    pub max_speakers: Option<usize>,
    /// Never merge below this many clusters (or below the number of embeddings).
    pub min_speakers: Option<usize>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            threshold: DEFAULT_THRESHOLD,
            linkage: Linkage::Average,
            num_speakers: None,
            max_speakers: None,
            min_speakers: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// One label per embedding, `0..num_clusters`, numbered in order of first appearance.
    pub labels: Vec<usize>,
    pub num_clusters: usize,
    /// Per label, the weighted mean of its members' normalised embeddings, L2-normalised.
    pub centroids: Vec<Vec<f32>>,
}

/// Cluster `embeddings` (all of one dimension, e.g. 192 for CAM++). `weights`, if given,
/// has one positive weight per embedding (default: all 1).
///
/// Fails on embeddings of unequal dimension, with non-finite values or zero norm, on bad
/// weights, on `min_speakers > max_speakers` and on `num_speakers == Some(0)` with at
/// least one embedding.
pub fn cluster<E: AsRef<[f32]>>(
    embeddings: &[E],
    weights: Option<&[f32]>,
    opts: &ClusterOptions,
) -> Result<Clustering> {
    let n = embeddings.len();
    if let Some(w) = weights {
        if w.len() != n {
            return Err(Error::Input(format!(
                "clustering: {} weights for {n} embeddings",
                w.len()
            )));
        }
        if let Some(i) = w.iter().position(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(Error::Input(format!(
                "clustering: weight {i} is {}, must be positive and finite",
                w[i]
            )));
        }
    }
    if let (Some(lo), Some(hi)) = (opts.min_speakers, opts.max_speakers) {
        if lo > hi {
            return Err(Error::Input(format!(
                "clustering: min_speakers {lo} > max_speakers {hi}"
            )));
        }
    }
    if n == 0 {
        return Ok(Clustering {
            labels: Vec::new(),
            num_clusters: 0,
            centroids: Vec::new(),
        });
    }
    if opts.num_speakers == Some(0) {
        return Err(Error::Input("clustering: num_speakers is 0".into()));
    }
    if !opts.threshold.is_finite() {
        return Err(Error::Input("clustering: threshold is not finite".into()));
    }

    // Normalised embeddings, row-major n×dim.
    let dim = embeddings[0].as_ref().len();
    if dim == 0 {
        return Err(Error::Input("clustering: empty embeddings".into()));
    }
    let mut x = Vec::with_capacity(n * dim);
    for (i, e) in embeddings.iter().enumerate() {
        let e = e.as_ref();
        if e.len() != dim {
            return Err(Error::Input(format!(
                "clustering: embedding {i} has {} values, embedding 0 has {dim}",
                e.len()
            )));
        }
        if e.iter().any(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "clustering: embedding {i} is not finite"
            )));
        }
        let norm = e.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Err(Error::Input(format!("clustering: embedding {i} is zero")));
        }
        x.extend(e.iter().map(|&v| (v as f64 / norm) as f32));
    }
    let w: Vec<f64> = match weights {
        Some(w) => w.iter().map(|&v| v as f64).collect(),
        None => vec![1.0; n],
    };

    // Target range of the cluster count.
    let (k_min, k_max) = match opts.num_speakers {
        Some(k) => (k.min(n), k.min(n)),
        None => {
            let lo = opts.min_speakers.unwrap_or(1).clamp(1, n);
            let hi = opts.max_speakers.unwrap_or(n).clamp(lo, n);
            (lo, hi)
        }
    };

    let labels = agglomerate(&x, &w, dim, opts.linkage, opts.threshold, k_min, k_max);
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let (means, _) = weighted_means(&x, &w, &labels, dim);
    let centroids = means.chunks(dim).map(<[f32]>::to_vec).collect();
    Ok(Clustering {
        labels,
        num_clusters: k,
        centroids,
    })
}

/// Above this many embeddings clustering goes in stages, so that its memory stays bounded:
/// one n×n matrix of f32, 36 MB at 3000 (about two hours of conversation).
pub const MAX_DIRECT: usize = 3000;

/// Stage one of staged clustering merges at this fraction of the threshold: only what is
/// surely one voice.
const STAGE_ONE_THRESHOLD: f32 = 0.5;

/// Labels, numbered by first appearance, for the normalised embeddings `x` (n×dim) with
/// weights `w`: merging stops at `k_min` clusters, or at `k_max` or fewer once the closest
/// pair is farther apart than `threshold`.
fn agglomerate(
    x: &[f32],
    w: &[f64],
    dim: usize,
    linkage: Linkage,
    threshold: f32,
    k_min: usize,
    k_max: usize,
) -> Vec<usize> {
    let n = w.len();
    if n > MAX_DIRECT {
        return staged(x, w, dim, linkage, threshold, k_min, k_max);
    }
    // Cosines (Gram matrix of the normalised embeddings).
    let mut m = vec![0.0f32; n * n];
    crate::tensor::matmul(n, dim, n, x, x, true, &mut m, false);
    let mut ahc = Ahc::new(m, w.to_vec(), linkage);
    let mut count = n;
    while count > k_min {
        let (i, j, d) = ahc.closest();
        if count <= k_max && d > threshold {
            break;
        }
        ahc.merge(i, j);
        count -= 1;
    }
    by_first_appearance((0..n).map(|i| ahc.find(i)))
}

/// Clustering in two stages for many embeddings: each run of [`MAX_DIRECT`] consecutive
/// embeddings (a stretch of the recording) is clustered finely, to at most a quarter of its
/// size, then those clusters, each as its weighted mean, are clustered as usual.
fn staged(
    x: &[f32],
    w: &[f64],
    dim: usize,
    linkage: Linkage,
    threshold: f32,
    k_min: usize,
    k_max: usize,
) -> Vec<usize> {
    let n = w.len();
    let (mut rep_x, mut rep_w) = (Vec::new(), Vec::new());
    let mut rep_of = Vec::with_capacity(n);
    for start in (0..n).step_by(MAX_DIRECT) {
        let end = (start + MAX_DIRECT).min(n);
        let labels = agglomerate(
            &x[start * dim..end * dim],
            &w[start..end],
            dim,
            linkage,
            threshold * STAGE_ONE_THRESHOLD,
            1,
            (end - start).div_ceil(4),
        );
        let (means, weights) =
            weighted_means(&x[start * dim..end * dim], &w[start..end], &labels, dim);
        rep_of.extend(labels.iter().map(|&l| rep_w.len() + l));
        rep_x.extend(means);
        rep_w.extend(weights);
    }
    let rep_labels = agglomerate(&rep_x, &rep_w, dim, linkage, threshold, k_min, k_max);
    by_first_appearance(rep_of.iter().map(|&r| rep_labels[r]))
}

/// Per label (`0..k`), the L2-normalised weighted mean of its members' embeddings (k×dim,
/// row-major) and the sum of its members' weights.
fn weighted_means(x: &[f32], w: &[f64], labels: &[usize], dim: usize) -> (Vec<f32>, Vec<f64>) {
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut sums = vec![0.0f64; k * dim];
    let mut weights = vec![0.0f64; k];
    for (i, &l) in labels.iter().enumerate() {
        weights[l] += w[i];
        let row = &x[i * dim..(i + 1) * dim];
        for (s, &v) in sums[l * dim..(l + 1) * dim].iter_mut().zip(row) {
            *s += w[i] * v as f64;
        }
    }
    let mut means = Vec::with_capacity(k * dim);
    for sum in sums.chunks(dim) {
        let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-30);
        means.extend(sum.iter().map(|v| (v / norm) as f32));
    }
    (means, weights)
}

/// Renames arbitrary cluster ids to 0, 1, ... in order of first appearance.
fn by_first_appearance(ids: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut names: std::collections::HashMap<usize, usize> = Default::default();
    ids.map(|id| {
        let next = names.len();
        *names.entry(id).or_insert(next)
    })
    .collect()
}

/// The merge state, one slot per embedding: merging cluster `j` into cluster `i` keeps
/// slot `i` and retires slot `j`.
struct Ahc {
    n: usize,
    linkage: Linkage,
    /// Average: cosine distances between clusters. Centroid: dot products of the clusters'
    /// weighted sums of normalised embeddings (so distances follow from the diagonal).
    m: Vec<f32>,
    /// Cluster weights (sum of member weights), per slot.
    w: Vec<f64>,
    active: Vec<bool>,
    /// Nearest active neighbour of each active slot and its distance. Where `stale`,
    /// `nnd` is only a lower bound of the distance to the nearest neighbour (and `nn` is
    /// meaningless): the row is rescanned when it comes out as the closest.
    nn: Vec<usize>,
    nnd: Vec<f32>,
    stale: Vec<bool>,
    parent: Vec<usize>,
}

impl Ahc {
    fn new(mut m: Vec<f32>, w: Vec<f64>, linkage: Linkage) -> Ahc {
        let n = w.len();
        match linkage {
            Linkage::Average => {
                for v in m.iter_mut() {
                    *v = 1.0 - *v;
                }
            }
            Linkage::Centroid => {
                for i in 0..n {
                    for j in 0..n {
                        m[i * n + j] = (w[i] * w[j] * m[i * n + j] as f64) as f32;
                    }
                }
            }
        }
        let mut a = Ahc {
            n,
            linkage,
            m,
            w,
            active: vec![true; n],
            nn: vec![usize::MAX; n],
            nnd: vec![f32::INFINITY; n],
            stale: vec![false; n],
            parent: (0..n).collect(),
        };
        for i in 0..n {
            a.rescan(i);
        }
        a
    }

    fn dist(&self, a: usize, b: usize) -> f32 {
        let n = self.n;
        match self.linkage {
            Linkage::Average => self.m[a * n + b],
            Linkage::Centroid => {
                let g = self.m[a * n + b] as f64;
                let (ga, gb) = (self.m[a * n + a] as f64, self.m[b * n + b] as f64);
                (1.0 - g / (ga * gb).sqrt().max(1e-300)) as f32
            }
        }
    }

    fn rescan(&mut self, i: usize) {
        let (mut best, mut bd) = (usize::MAX, f32::INFINITY);
        for k in 0..self.n {
            if k != i && self.active[k] {
                let d = self.dist(i, k);
                if d < bd {
                    bd = d;
                    best = k;
                }
            }
        }
        self.nn[i] = best;
        self.nnd[i] = bd;
        self.stale[i] = false;
    }

    /// The closest pair (lowest slot first on ties) and its distance. Needs ≥ 2 clusters.
    /// A stale row that comes out smallest is rescanned and the search repeated: its
    /// lower bound was below every other candidate, so only its exact value can decide.
    fn closest(&mut self) -> (usize, usize, f32) {
        loop {
            let mut best = usize::MAX;
            let mut bd = f32::INFINITY;
            for i in 0..self.n {
                if self.active[i] && (best == usize::MAX || self.nnd[i] < bd) {
                    best = i;
                    bd = self.nnd[i];
                }
            }
            if self.stale[best] {
                self.rescan(best);
                continue;
            }
            return (best, self.nn[best], bd);
        }
    }

    fn merge(&mut self, i: usize, j: usize) {
        let n = self.n;
        let (wi, wj) = (self.w[i], self.w[j]);
        match self.linkage {
            Linkage::Average => {
                for k in 0..n {
                    if self.active[k] && k != i && k != j {
                        let v = ((wi * self.m[i * n + k] as f64 + wj * self.m[j * n + k] as f64)
                            / (wi + wj)) as f32;
                        self.m[i * n + k] = v;
                        self.m[k * n + i] = v;
                    }
                }
            }
            Linkage::Centroid => {
                let gii = self.m[i * n + i] as f64
                    + 2.0 * self.m[i * n + j] as f64
                    + self.m[j * n + j] as f64;
                for k in 0..n {
                    if self.active[k] && k != i && k != j {
                        let v = self.m[i * n + k] + self.m[j * n + k];
                        self.m[i * n + k] = v;
                        self.m[k * n + i] = v;
                    }
                }
                self.m[i * n + i] = gii as f32;
            }
        }
        self.w[i] = wi + wj;
        self.active[j] = false;
        self.parent[j] = i;
        self.rescan(i);
        // Every other distance of row k is unchanged and was >= nnd[k] (exact or a lower
        // bound), so if the merged cluster is at most that far it is the nearest; if not,
        // nnd[k] stays a lower bound, exact unless the old nearest was i or j.
        for k in 0..n {
            if !self.active[k] || k == i {
                continue;
            }
            let d = self.dist(k, i);
            if d <= self.nnd[k] {
                self.nnd[k] = d;
                self.nn[k] = i;
                self.stale[k] = false;
            } else if self.nn[k] == i || self.nn[k] == j {
                self.stale[k] = true;
            }
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        let mut root = i;
        while self.parent[root] != root {
            root = self.parent[root];
        }
        while self.parent[i] != root {
            let next = self.parent[i];
            self.parent[i] = root;
            i = next;
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 → uniform and (Box–Muller) normal numbers.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f32 {
            let (u, v) = (self.uniform(), self.uniform());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        }
    }

    const DIM: usize = 192;

    /// `per` noisy embeddings around each of `k` random directions, interleaved in a
    /// shuffled order; returns embeddings and their true cluster.
    fn blobs(k: usize, per: usize, noise: f32, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = Rng(seed);
        let centers: Vec<Vec<f32>> = (0..k)
            .map(|_| (0..DIM).map(|_| rng.normal()).collect())
            .collect();
        let mut truth: Vec<usize> = (0..k * per).map(|i| i % k).collect();
        for i in (1..truth.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            truth.swap(i, j);
        }
        let emb = truth
            .iter()
            .map(|&c| {
                centers[c]
                    .iter()
                    .map(|&v| v + noise * rng.normal())
                    .collect()
            })
            .collect();
        (emb, truth)
    }

    /// Same partition up to renaming.
    fn same_partition(a: &[usize], b: &[usize]) -> bool {
        a.len() == b.len()
            && (0..a.len()).all(|i| (0..a.len()).all(|j| (a[i] == a[j]) == (b[i] == b[j])))
    }

    fn first_appearance_order(labels: &[usize]) -> bool {
        let mut next = 0;
        for &l in labels {
            if l > next {
                return false;
            }
            if l == next {
                next += 1;
            }
        }
        true
    }

    #[test]
    fn many_embeddings_are_clustered_in_stages_with_the_same_result() {
        // Past MAX_DIRECT, in three chunks; both stages and the count constraints.
        let (emb, truth) = blobs(3, 2 * MAX_DIRECT / 3 + 100, 0.08, 11);
        assert!(emb.len() > 2 * MAX_DIRECT);
        for opts in [
            ClusterOptions::default(),
            ClusterOptions {
                num_speakers: Some(3),
                ..Default::default()
            },
        ] {
            let c = cluster(&emb, None, &opts).unwrap();
            assert_eq!(c.num_clusters, 3);
            assert!(same_partition(&c.labels, &truth));
            assert!(first_appearance_order(&c.labels));
            assert_eq!(c.centroids.len(), 3);
        }
    }

    #[test]
    fn separated_clusters_found_by_threshold() {
        for linkage in [Linkage::Average, Linkage::Centroid] {
            let (emb, truth) = blobs(4, 15, 0.5, 7);
            let opts = ClusterOptions {
                linkage,
                threshold: 0.5,
                ..Default::default()
            };
            let c = cluster(&emb, None, &opts).unwrap();
            assert_eq!(c.num_clusters, 4, "{linkage:?}");
            assert!(same_partition(&c.labels, &truth), "{linkage:?}");
            assert!(first_appearance_order(&c.labels));
            assert_eq!(c.labels[0], 0);
            assert_eq!(c.centroids.len(), 4);
        }
    }

    #[test]
    fn separated_clusters_found_with_num_speakers() {
        for linkage in [Linkage::Average, Linkage::Centroid] {
            let (emb, truth) = blobs(3, 10, 0.5, 11);
            let opts = ClusterOptions {
                linkage,
                threshold: 0.0, // would keep everything apart; num_speakers overrides
                num_speakers: Some(3),
                ..Default::default()
            };
            let c = cluster(&emb, None, &opts).unwrap();
            assert_eq!(c.num_clusters, 3);
            assert!(same_partition(&c.labels, &truth), "{linkage:?}");
            // and with a threshold that would merge everything
            let opts = ClusterOptions {
                threshold: 2.0,
                ..opts
            };
            let c = cluster(&emb, None, &opts).unwrap();
            assert!(same_partition(&c.labels, &truth), "{linkage:?}");
        }
    }

    #[test]
    fn num_speakers_above_count_stops_at_n() {
        let (emb, _) = blobs(2, 2, 0.1, 3);
        let opts = ClusterOptions {
            num_speakers: Some(10),
            ..Default::default()
        };
        let c = cluster(&emb, None, &opts).unwrap();
        assert_eq!(c.num_clusters, 4);
        assert_eq!(c.labels, vec![0, 1, 2, 3]);
    }

    #[test]
    fn min_and_max_speakers_are_honoured() {
        let (emb, truth) = blobs(4, 8, 0.5, 5);
        let opts = ClusterOptions {
            max_speakers: Some(2),
            ..Default::default()
        };
        let c = cluster(&emb, None, &opts).unwrap();
        assert_eq!(c.num_clusters, 2);
        // true clusters are never split when forced to merge
        for i in 0..emb.len() {
            for j in 0..emb.len() {
                if truth[i] == truth[j] {
                    assert_eq!(c.labels[i], c.labels[j]);
                }
            }
        }
        let opts = ClusterOptions {
            min_speakers: Some(6),
            ..Default::default()
        };
        let c = cluster(&emb, None, &opts).unwrap();
        assert_eq!(c.num_clusters, 6);
        // a max above the natural count and a min below it change nothing
        let opts = ClusterOptions {
            min_speakers: Some(2),
            max_speakers: Some(7),
            ..Default::default()
        };
        let c = cluster(&emb, None, &opts).unwrap();
        assert!(same_partition(&c.labels, &truth));
        let bad = ClusterOptions {
            min_speakers: Some(3),
            max_speakers: Some(2),
            ..Default::default()
        };
        assert!(cluster(&emb, None, &bad).is_err());
    }

    #[test]
    fn degenerate_inputs() {
        let none: Vec<Vec<f32>> = Vec::new();
        let c = cluster(&none, None, &ClusterOptions::default()).unwrap();
        assert_eq!((c.num_clusters, c.labels.len()), (0, 0));
        let one = vec![vec![0.5f32; DIM]];
        let c = cluster(&one, Some(&[2.0]), &ClusterOptions::default()).unwrap();
        assert_eq!((c.num_clusters, c.labels.clone()), (1, vec![0]));
        let opts = ClusterOptions {
            num_speakers: Some(3),
            ..Default::default()
        };
        assert_eq!(cluster(&one, None, &opts).unwrap().num_clusters, 1);
        assert!(cluster(&[vec![0.0f32; DIM]], None, &ClusterOptions::default()).is_err());
        assert!(cluster(&[vec![f32::NAN; DIM]], None, &ClusterOptions::default()).is_err());
        assert!(cluster(&[vec![1.0f32; 3], vec![1.0; 4]], None, &Default::default()).is_err());
        assert!(cluster(&one, Some(&[0.0]), &ClusterOptions::default()).is_err());
        assert!(cluster(&one, Some(&[1.0, 1.0]), &ClusterOptions::default()).is_err());
    }

    #[test]
    fn labels_in_first_appearance_order() {
        // two directions, the first embedding belongs to the second-defined direction
        let a: Vec<f32> = (0..DIM).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
        let b: Vec<f32> = (0..DIM).map(|i| if i == 1 { 1.0 } else { 0.0 }).collect();
        let emb = vec![b.clone(), a.clone(), a.clone(), b.clone(), a];
        let c = cluster(&emb, None, &ClusterOptions::default()).unwrap();
        assert_eq!(c.labels, vec![0, 1, 1, 0, 1]);
        assert!((c.centroids[0][1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn weights_move_the_centroid() {
        // x at 0°, y at 30°, z at 70°: x and y merge first; whether z joins them depends
        // on how far the merged cluster leans towards y, i.e. on the weights.
        let at = |deg: f32| vec![deg.to_radians().cos(), deg.to_radians().sin()];
        let emb = vec![at(0.0), at(30.0), at(70.0)];
        for linkage in [Linkage::Average, Linkage::Centroid] {
            let opts = ClusterOptions {
                linkage,
                threshold: 0.35,
                ..Default::default()
            };
            let equal = cluster(&emb, None, &opts).unwrap();
            assert_eq!(equal.labels, vec![0, 0, 1], "{linkage:?}");
            let heavy_y = cluster(&emb, Some(&[1.0, 10.0, 1.0]), &opts).unwrap();
            assert_eq!(heavy_y.labels, vec![0, 0, 0], "{linkage:?}");
        }
        // the centroid is the weighted mean direction
        let opts = ClusterOptions {
            num_speakers: Some(1),
            ..Default::default()
        };
        let c = cluster(&[at(0.0), at(90.0)], Some(&[3.0, 1.0]), &opts).unwrap();
        let norm = 10f32.sqrt();
        assert!((c.centroids[0][0] - 3.0 / norm).abs() < 1e-6);
        assert!((c.centroids[0][1] - 1.0 / norm).abs() < 1e-6);
    }

    #[test]
    fn matches_naive_implementation() {
        // O(N³) reference implementations of both weighted linkages on random, noisy data:
        // the merge order (hence the partition at every k) must agree.
        for (seed, noise) in [(99, 2.0), (5, 1.0), (17, 4.0)] {
            let (emb, _) = blobs(5, 8, noise, seed);
            let mut rng = Rng(seed + 1);
            let w: Vec<f32> = (0..emb.len()).map(|_| 0.5 + rng.uniform() as f32).collect();
            for linkage in [Linkage::Average, Linkage::Centroid] {
                for k in [1, 2, 3, 5, 8, 20] {
                    let opts = ClusterOptions {
                        linkage,
                        num_speakers: Some(k),
                        ..Default::default()
                    };
                    let c = cluster(&emb, Some(&w), &opts).unwrap();
                    let naive = naive_ahc(&emb, &w, k, linkage);
                    assert!(
                        same_partition(&c.labels, &naive),
                        "{linkage:?} k={k} seed={seed}"
                    );
                }
            }
        }
    }

    fn naive_ahc(emb: &[Vec<f32>], w: &[f32], k: usize, linkage: Linkage) -> Vec<usize> {
        let unit: Vec<Vec<f64>> = emb
            .iter()
            .map(|e| {
                let n = e.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                e.iter().map(|&v| v as f64 / n).collect()
            })
            .collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let d = |a: &Vec<usize>, b: &Vec<usize>| match linkage {
            Linkage::Average => {
                let (mut s, mut ws) = (0.0, 0.0);
                for &i in a {
                    for &j in b {
                        let ww = w[i] as f64 * w[j] as f64;
                        s += ww * (1.0 - dot(&unit[i], &unit[j]));
                        ws += ww;
                    }
                }
                s / ws
            }
            Linkage::Centroid => {
                let sum = |c: &Vec<usize>| {
                    let mut v = vec![0.0; unit[0].len()];
                    for &i in c {
                        for (x, y) in v.iter_mut().zip(&unit[i]) {
                            *x += w[i] as f64 * y;
                        }
                    }
                    v
                };
                let (sa, sb) = (sum(a), sum(b));
                1.0 - dot(&sa, &sb) / (dot(&sa, &sa) * dot(&sb, &sb)).sqrt()
            }
        };
        let mut clusters: Vec<Vec<usize>> = (0..emb.len()).map(|i| vec![i]).collect();
        while clusters.len() > k {
            let mut best = (0, 1, f64::INFINITY);
            for a in 0..clusters.len() {
                for b in a + 1..clusters.len() {
                    let v = d(&clusters[a], &clusters[b]);
                    if v < best.2 {
                        best = (a, b, v);
                    }
                }
            }
            let moved = clusters.remove(best.1);
            clusters[best.0].extend(moved);
        }
        let mut labels = vec![0; emb.len()];
        for (l, c) in clusters.iter().enumerate() {
            for &i in c {
                labels[i] = l;
            }
        }
        labels
    }
}
