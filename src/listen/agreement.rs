//! Agreement between successive dictation hypotheses: which leading words two (or three)
//! re-transcriptions of the growing utterance agree on (LocalAgreement-2 and its extensions),
//! and where the committed words end in a new hypothesis. Pure word logic, unit-tested without a
//! model; the dictation state machine ([`super::dictation`]) decides when to use which.

use crate::engine::guard::normalize_word as norm;
use crate::Word;

/// LocalAgreement-2: how many leading words two consecutive hypotheses share.
pub fn agreement(previous: &[Word], current: &[Word]) -> usize {
    previous
        .iter()
        .zip(current)
        .take_while(|(a, b)| norm(&a.text) == norm(&b.text) && !norm(&a.text).is_empty())
        .count()
}

/// Agreement around disputed words, for an utterance whose hypotheses keep disagreeing on a
/// word near their start ("everyone who is turbulent", "everyone whose trebement", "everyone
/// who's turbulent" for 30 s of the long file): LocalAgreement-2 then commits
/// nothing at all. The two hypotheses are aligned word by word (longest common subsequence);
/// a stretch where they differ by at most three words on either side counts as agreed
/// when at least three agreeing words follow it, and the current hypothesis's reading of it
/// is the one committed (it has heard the most audio). Returns how many leading words of
/// `current` are agreed in this sense (at least the plain agreement).
pub fn agreement_across(previous: &[Word], current: &[Word]) -> usize {
    const DISPUTED: usize = 3;
    const RUN: usize = 3;
    let a: Vec<String> = previous.iter().map(|w| norm(&w.text)).collect();
    let b: Vec<String> = current.iter().map(|w| norm(&w.text)).collect();
    // lcs[i][j]: longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] && !a[i].is_empty() {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // Walk the alignment: runs of matched words separated by gaps (words of one or the other
    // that are not matched).
    let (mut i, mut j) = (0, 0);
    let mut agreed = 0;
    let (mut gap_a, mut gap_b) = (0, 0);
    let mut run = 0;
    // Whether the current run follows a gap (and so must reach `RUN` words to count).
    let mut after_gap = false;
    while i < a.len() && j < b.len() {
        if a[i] == b[j] && !a[i].is_empty() && lcs[i][j] == lcs[i + 1][j + 1] + 1 {
            run += 1;
            i += 1;
            j += 1;
            if !after_gap || run >= RUN {
                agreed = j;
                after_gap = false;
            }
            continue;
        }
        if run > 0 && after_gap {
            // A run too short to vouch for the gap before it: stop at that gap.
            break;
        }
        if run > 0 {
            gap_a = 0;
            gap_b = 0;
        }
        run = 0;
        after_gap = true;
        if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
            gap_a += 1;
        } else {
            j += 1;
            gap_b += 1;
        }
        if gap_a > DISPUTED || gap_b > DISPUTED {
            break;
        }
    }
    agreed.max(agreement(previous, current))
}

/// How many leading words of `hypothesis` agreement commits: those `previous` agrees on
/// (LocalAgreement-2), except that from word `done` on (the first uncommitted one), a word
/// whose probability is below `confirm_below` needs `before_previous` to agree on it as well,
/// and stops the commit there if it does not (see [`DictationOptions::confirm_below`](super::dictation::DictationOptions::confirm_below)).
pub fn confirmed(
    before_previous: &[Word],
    previous: &[Word],
    hypothesis: &[Word],
    done: usize,
    confirm_below: f32,
) -> usize {
    let twice = agreement(previous, hypothesis);
    if confirm_below <= 0.0 {
        return twice;
    }
    let thrice = twice.min(agreement(before_previous, hypothesis));
    (thrice.max(done)..twice)
        .find(|&i| hypothesis[i].probability < confirm_below)
        .unwrap_or(twice)
}

/// How many leading words of `hypothesis` end by `before` (seconds): the words agreement may
/// commit (see [`DictationOptions::hold_back`](super::dictation::DictationOptions::hold_back)).
pub fn settled_prefix(hypothesis: &[Word], before: f64) -> usize {
    hypothesis.iter().take_while(|w| w.end <= before).count()
}

/// How many leading words of `hypothesis` the committed words cover. The letters are
/// compared, not the words, so whisper re-splitting or re-punctuating committed words
/// ("so, my" for "so my") does not shift the seam. If whisper now reads some of them
/// differently ("human path" committed, "King Man's path" now), the seam is where the
/// committed words align best with a prefix of the hypothesis (fewest word edits, then the
/// prefix whose length is closest to the committed count): counting words instead would
/// shift the seam by the difference and repeat or lose words after it.
pub fn aligned_prefix(committed: &[Word], hypothesis: &[Word]) -> usize {
    if committed.is_empty() {
        return 0;
    }
    let a: Vec<String> = committed.iter().map(|w| norm(&w.text)).collect();
    let target = a.concat();
    let mut acc = String::new();
    for (i, w) in hypothesis.iter().enumerate() {
        acc.push_str(&norm(&w.text));
        if acc.len() >= target.len() {
            if acc == target {
                return i + 1;
            }
            break;
        }
    }
    let b: Vec<String> = hypothesis.iter().map(|w| norm(&w.text)).collect();
    // Edit distance between all of `a` and each prefix of `b` (one row at a time).
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, wa) in a.iter().enumerate() {
        let mut next = vec![i + 1; b.len() + 1];
        for (j, wb) in b.iter().enumerate() {
            let substitute = row[j] + usize::from(wa != wb);
            next[j + 1] = substitute.min(row[j + 1] + 1).min(next[j] + 1);
        }
        row = next;
    }
    (0..=b.len())
        .min_by_key(|&j| (row[j], j.abs_diff(a.len())))
        .unwrap_or(0)
}

/// Whether `hypothesis` reads the committed words as they were committed, up to `done` (its
/// [`aligned_prefix`]): the same letters, or at least the same last word. A hypothesis that
/// re-reads the seam differently ("And the Moses" after "Then" was committed, "Now that's how
/// faith" after "Let's have faith") is another reading of the audio, and where its words after
/// the seam begin is a guess: agreement on them would commit a word twice or one the committed
/// text already stands for. Agreement waits for a hypothesis that keeps the seam.
pub fn seam_kept(committed: &[Word], hypothesis: &[Word], done: usize) -> bool {
    let Some(last) = committed.last() else {
        return true;
    };
    if done == 0 || done > hypothesis.len() {
        return false;
    }
    let letters = |words: &[Word]| words.iter().map(|w| norm(&w.text)).collect::<String>();
    letters(committed) == letters(&hypothesis[..done])
        || norm(&last.text) == norm(&hypothesis[done - 1].text)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A word with these times and probability 1 (the dictation's tests use it too).
    pub(in crate::listen) fn w(text: &str, start: f64, end: f64) -> Word {
        Word {
            speaker: None,
            text: text.into(),
            start,
            end,
            probability: 1.0,
        }
    }

    #[test]
    fn doubtful_words_wait_for_a_third_agreeing_hypothesis() {
        let p = |text: &str, probability: f32| Word {
            probability,
            ..w(text, 0.0, 0.0)
        };
        let first = vec![p("only", 0.9), p("put", 0.4)];
        let second = vec![p("only", 0.9), p("put", 0.5), p("in", 0.3)];
        let third = vec![p("only", 0.9), p("put", 0.3), p("in", 0.8), p("the", 0.9)];
        // Two agree on "only put": "put" is doubtful, so only "only" is committed.
        assert_eq!(confirmed(&[], &first, &second, 0, 0.6), 1);
        // Without the rule, plain LocalAgreement-2.
        assert_eq!(confirmed(&[], &first, &second, 0, 0.0), 2);
        // The third hypothesis agrees on "put" too; "in" (confident now) has two.
        assert_eq!(confirmed(&first, &second, &third, 1, 0.6), 3);
        // A doubtful word that the hypothesis before did not share stops the commit.
        let other = vec![p("only", 0.9), p("part", 0.4)];
        assert_eq!(confirmed(&other, &second, &third, 1, 0.6), 1);
    }

    #[test]
    fn words_ending_near_the_end_of_the_audio_are_held_back() {
        let h = vec![w("and", 0.0, 0.2), w("so", 0.2, 0.4), w("my", 0.4, 0.9)];
        assert_eq!(settled_prefix(&h, 1.0), 3);
        assert_eq!(settled_prefix(&h, 0.5), 2);
        assert_eq!(settled_prefix(&h, 0.1), 0);
        assert_eq!(settled_prefix(&[], 5.0), 0);
    }

    fn words(text: &str) -> Vec<Word> {
        text.split_whitespace()
            .enumerate()
            .map(|(i, t)| w(t, i as f64 * 0.3, i as f64 * 0.3 + 0.25))
            .collect()
    }

    #[test]
    fn agreement_bridges_a_disputed_word_followed_by_agreeing_words() {
        let a = words("everyone who is turbulent has been found by human path. The");
        let b = words("Everyone whose trebement has been found by human path. The testimony");
        // Plain agreement stops after "everyone"; the dispute is bridged and the agreement
        // runs to the end of the shorter hypothesis.
        assert_eq!(agreement(&a, &b), 1);
        assert_eq!(agreement_across(&a, &b), 10);
        let c = words("everyone who's turbulent has been found by King Man at the path.");
        // "human path" against "King Man at the path": four words, not bridged.
        assert_eq!(agreement_across(&b, &c), 7);
        // Agreement after a dispute needs three words: two are not enough to vouch for it.
        let a = words("a b c x d e y f g h");
        let b = words("a b c z d e w f g h i");
        assert_eq!(agreement_across(&a, &b), 3);
        // Nor is a dispute of four words bridged.
        let a = words("a b c d e f g h i");
        let b = words("a w x y z f g h i");
        assert_eq!(agreement_across(&a, &b), 1);
        assert_eq!(agreement_across(&a, &a), a.len());
        assert_eq!(agreement_across(&[], &a), 0);
    }

    #[test]
    fn agreement_is_the_common_prefix_ignoring_case_and_punctuation() {
        let a = vec![w("And", 0.0, 0.2), w("so,", 0.2, 0.4), w("my", 0.4, 0.5)];
        let b = vec![w("and", 0.0, 0.2), w("so", 0.2, 0.4), w("by", 0.4, 0.5)];
        assert_eq!(agreement(&a, &b), 2);
        assert_eq!(agreement(&[], &b), 0);
        assert_eq!(agreement(&a, &a), 3);
    }

    #[test]
    fn agreement_waits_for_a_hypothesis_that_keeps_the_seam() {
        // The long file's opening: "Then" committed, then two hypotheses read it "And the
        // Moses" / "And the moment"; their shared "the" must not be committed after "Then".
        let committed = words("Then");
        let hyp = words("And the moment it was afraid");
        let done = aligned_prefix(&committed, &hyp);
        assert_eq!(done, 1);
        assert!(!seam_kept(&committed, &hyp, done));
        assert!(seam_kept(&committed, &words("Then Moses was"), 1));
        // "Let's have faith" committed, "Now that's how faith that right" now: whichever seam
        // the alignment picks, the hypothesis does not keep it.
        let committed = words("Let's have faith");
        let hyp = words("Now that's how faith that right");
        assert!(!seam_kept(
            &committed,
            &hyp,
            aligned_prefix(&committed, &hyp)
        ));
        // Re-punctuated, re-split or re-read inside with the same last word: kept.
        let committed = words("fellow Americans");
        assert!(seam_kept(&committed, &words("fellow-Americans, ask"), 1));
        let committed = words("by human path. The Hebrews");
        let hyp = words("by King Man's path. The Hebrews in Egypt");
        assert!(seam_kept(
            &committed,
            &hyp,
            aligned_prefix(&committed, &hyp)
        ));
        // Nothing committed yet: nothing to keep.
        assert!(seam_kept(&[], &hyp, 0));
    }

    #[test]
    fn the_committed_prefix_is_found_by_its_letters() {
        let committed = vec![w("And", 0.0, 0.2), w("so", 0.2, 0.4), w("my", 0.4, 0.5)];
        let hyp = vec![
            w("And", 0.0, 0.2),
            w("so,", 0.2, 0.4),
            w("my", 0.4, 0.5),
            w("fellow", 0.5, 0.9),
        ];
        assert_eq!(aligned_prefix(&committed, &hyp), 3);
        // Re-split: "fellow Americans" committed, "fellow-Americans" re-read as one word.
        let committed = vec![w("fellow", 0.0, 0.3), w("Americans", 0.3, 0.8)];
        let hyp = vec![w("fellow-Americans,", 0.0, 0.8), w("ask", 0.9, 1.1)];
        assert_eq!(aligned_prefix(&committed, &hyp), 1);
        // Changed outright, same word count: the seam stays after two words.
        let hyp = vec![
            w("yellow", 0.0, 0.3),
            w("Americas", 0.3, 0.8),
            w("ask", 0.9, 1.1),
        ];
        assert_eq!(aligned_prefix(&committed, &hyp), 2);
        assert_eq!(aligned_prefix(&[], &hyp), 0);
        // Re-read with another word count: the seam follows the best alignment, so the
        // words after it are neither repeated nor lost.
        let committed = vec![
            w("by", 0.0, 0.1),
            w("human", 0.1, 0.4),
            w("path.", 0.4, 0.8),
            w("The", 0.9, 1.0),
            w("Hebrews", 1.0, 1.5),
        ];
        let hyp = vec![
            w("by", 0.0, 0.1),
            w("King", 0.1, 0.3),
            w("Man's", 0.3, 0.5),
            w("path.", 0.5, 0.8),
            w("The", 0.9, 1.0),
            w("Hebrews", 1.0, 1.5),
            w("in", 1.6, 1.7),
            w("Egypt", 1.7, 2.0),
        ];
        assert_eq!(aligned_prefix(&committed, &hyp), 6);
    }
}
