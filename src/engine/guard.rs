//! The hallucination guard: rules that catch what Whisper invents on silence, noise and
//! loops. Pure text/number logic, so it is unit-tested without a model.

/// Phrases Whisper is known to invent on non-speech (YouTube outros, subtitle credits).
/// Compared after [`normalize`]; an entry matches the whole segment text.
const PHANTOM_EXACT: &[&str] = &[
    "you",
    "thank you",
    "thanks",
    "thank you very much",
    "thank you so much",
    "thanks for watching",
    "thank you for watching",
    "thanks for watching and see you next time",
    "thank you for watching and see you next time",
    "please subscribe",
    "please like and subscribe",
    "like and subscribe",
    "subscribe to my channel",
    "bye",
    "bye bye",
    "music",
    "applause",
    "silence",
    "the end",
    "ご視聴ありがとうございました",
    "謝謝觀看",
    "谢谢观看",
    "продолжение следует",
    "vielen dank",
    "merci",
    "gracias",
];

/// Fragments that mark a phantom credit line wherever they appear in a segment.
const PHANTOM_CONTAINS: &[&str] = &[
    "amara org",
    "subtitles by",
    "subtitled by",
    "captions by",
    "captioning by",
    "transcribed by",
    "transcript by",
    "translated by",
    "untertitel im auftrag",
    "untertitel der amara",
    "untertitelung",
    "sous titres réalisés",
    "sous titrage",
    "subtítulos realizados",
    "subtítulos por",
    "請不吝點贊",
    "请不吝点赞",
    "字幕由",
    "thanks for watching",
    "thank you for watching",
    "don t forget to subscribe",
    "www ",
];

/// Lower-cases and replaces punctuation with spaces, collapsing runs of whitespace.
pub fn normalize(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when the segment text is one of the known phantom phrases.
pub fn is_phantom_phrase(text: &str) -> bool {
    let norm = normalize(text);
    if norm.is_empty() {
        return false;
    }
    // A trailing space lets fragments such as "www " match at the end of the text too.
    let padded = format!("{norm} ");
    PHANTOM_EXACT.contains(&norm.as_str())
        || PHANTOM_CONTAINS.iter().any(|frag| padded.contains(frag))
}

/// Finds a loop: an n-gram (1 to 32 words: whole sentences loop too, especially when a
/// prompt carries text across windows) repeated back to back. Returns the word range
/// `[start, end)` of the repeats after the first occurrence, so cutting it keeps one copy.
pub fn find_repetition(words: &[&str]) -> Option<(usize, usize)> {
    let norm: Vec<String> = words.iter().map(|w| normalize(w)).collect();
    let n_words = norm.len();
    for n in 1..=32usize {
        // Single words need more repeats: "no, no, no" is speech, ten of them is a loop.
        let min_repeats = match n {
            1 => 5,
            2 => 4,
            _ => 3,
        };
        if n * min_repeats > n_words {
            break;
        }
        let mut i = 0;
        while i + n * min_repeats <= n_words {
            let gram = &norm[i..i + n];
            if gram.iter().all(|w| w.is_empty()) {
                i += 1;
                continue;
            }
            let mut repeats = 1;
            while i + (repeats + 1) * n <= n_words
                && norm[i + repeats * n..i + (repeats + 1) * n] == *gram
            {
                repeats += 1;
            }
            if repeats >= min_repeats {
                return Some((i + n, i + repeats * n));
            }
            i += 1;
        }
    }
    None
}

/// A text that is nothing but two or more copies of one run of at least three words
/// ("Lobsters and lobsters. Lobsters and lobsters.") is a decoding loop, not speech.
fn whole_text_repeats(words: &[&str]) -> Option<usize> {
    let norm: Vec<String> = words.iter().map(|w| normalize(w)).collect();
    let n = norm.len();
    (3..=n / 2).find(|&len| {
        n.is_multiple_of(len)
            && (len..n)
                .step_by(len)
                .all(|i| norm[i..i + len] == norm[..len])
    })
}

/// Words a sentence needs before a verbatim copy of it right after itself counts as an echo.
const ECHO_MIN_WORDS: usize = 5;

/// Whether a segment whose normalized text is `current` merely echoes the segment before it
/// (`previous`, normalized). Whisper, prompted with the text before, sometimes writes a short
/// utterance twice, as two segments (tiny.en did so on a 32-minute recording); a speaker who
/// says the same sentence of five words or more twice in a row is far rarer. Shorter phrases
/// ("No, no." / "Thank you.") are left alone.
pub fn echoes_previous(previous: Option<&str>, current: &str) -> bool {
    previous == Some(current) && current.split_whitespace().count() >= ECHO_MIN_WORDS
}

/// Cuts every repetition loop from `text`. Returns the cleaned text and whether it changed.
pub fn cut_repetitions(text: &str) -> (String, bool) {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let mut changed = false;
    while let Some((start, end)) = find_repetition(&words) {
        words.drain(start..end);
        changed = true;
    }
    if let Some(len) = whole_text_repeats(&words) {
        words.truncate(len);
        changed = true;
    }
    if changed {
        (words.join(" "), true)
    } else {
        (text.to_string(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_phrases_match_after_normalizing() {
        assert!(is_phantom_phrase("Thanks for watching!"));
        assert!(is_phantom_phrase(" Subtitles by the Amara.org community"));
        assert!(is_phantom_phrase("you"));
        assert!(!is_phantom_phrase("Thank you for the report, Mr. Smith."));
        assert!(!is_phantom_phrase("And so my fellow Americans"));
    }

    #[test]
    fn a_sentence_written_twice_in_a_row_is_an_echo() {
        let s = normalize("You don't mean that you thought me so silly.");
        assert!(echoes_previous(Some(&s), &s));
        assert!(!echoes_previous(None, &s));
        assert!(!echoes_previous(Some("something else was said"), &s));
        let short = normalize("Thank you.");
        assert!(!echoes_previous(Some(&short), &short));
    }

    #[test]
    fn loops_are_cut_to_one_copy() {
        let (text, changed) =
            cut_repetitions("I said that I said that I said that I said that we go.");
        assert!(changed);
        assert_eq!(text, "I said that we go.");
        let (text, changed) = cut_repetitions("no, no, no, I won't");
        assert!(!changed);
        assert_eq!(text, "no, no, no, I won't");
        let (text, changed) = cut_repetitions("ha ha ha ha ha ha ha ha ha");
        assert!(changed);
        assert_eq!(text, "ha");
        // A whole sentence looping, as tiny.en did on a prompted window.
        let sentence = "You don't mean that you thought me so silly.";
        let looped = [sentence; 7].join(" ");
        assert_eq!(cut_repetitions(&looped), (sentence.to_string(), true));
        // A whole segment that is one phrase twice is a loop too; inside speech it is not.
        assert_eq!(
            cut_repetitions("Lobsters and lobsters. Lobsters and lobsters."),
            ("Lobsters and lobsters.".to_string(), true)
        );
        let twice = format!("{sentence} {sentence} And then she left.");
        assert!(!cut_repetitions(&twice).1);
    }
}
