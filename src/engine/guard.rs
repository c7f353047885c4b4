//! The hallucination guard: rules that catch what Whisper invents on silence, noise and
//! loops. Pure text/number logic, so it is unit-tested without a model.
//!
//! Offline transcription applies them per segment (`engine::segments`); live dictation applies
//! the same echo rules to its growing hypotheses (`listen::dictation`), with its own thresholds.

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

/// Each word [`normalize`]d: the form the loop rules compare.
fn normalize_each(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| normalize(w)).collect()
}

/// A word reduced for comparison: its letters and digits only, lower-cased. Unlike
/// [`normalize`], punctuation inside a word is dropped, not made a space, so that whisper
/// re-splitting or re-punctuating a word ("fellow-Americans," / "fellow Americans") leaves the
/// same letters; dictation compares hypotheses word by word in this form.
pub fn normalize_word(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
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
    let norm = normalize_each(words);
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
    let norm = normalize_each(words);
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

/// Whether a segment whose normalized text is `current` repeats the segments kept before it
/// (`recent`, normalized, oldest first): the same sentence a third time in a row is a loop,
/// not speech, and a long one a second time is an echo of the prompt ([`echoes_previous`]).
pub fn repeats_recent(recent: &[String], current: &str) -> bool {
    echoes_previous(recent.last().map(String::as_str), current)
        || (recent.len() >= 2 && recent.iter().rev().take(2).all(|t| *t == current))
}

/// Whether a segment's `words` repeat what came just before them (`context`; both as
/// [`normalize_word`] words): they are the last words of the context, or, three words or more,
/// they occur in it word for word. Whisper's echo of its prompt or of its own last sentence
/// looks like this; speech rarely repeats a phrase within a few seconds. Dictation uses it on
/// its hypotheses, whose context is the prompt and the segments kept before.
pub fn repeats_context(context: &[String], words: &[String]) -> bool {
    if words.is_empty() || words.len() > context.len() {
        return false;
    }
    context.ends_with(words)
        || (words.len() >= 3 && context.windows(words.len()).any(|w| w == words))
}

/// Whether a segment's `words` echo the `context` before them ([`repeats_context`]). `cut_off`
/// marks a segment whose audio may end mid-word (the last of a dictation step): it echoes if
/// all but its last word do, three words at least ("... to the Hebrews. The absence of the
/// Hebrew" read two steps before "is therefore perfectly natural"; the cut word differs).
pub fn echoes_context(context: &[String], words: &[String], cut_off: bool) -> bool {
    repeats_context(context, words)
        || (cut_off && words.len() >= 4 && repeats_context(context, &words[..words.len() - 1]))
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
    fn a_sentence_three_times_in_a_row_is_a_loop() {
        let s = normalize("Thank you.");
        assert!(!repeats_recent(&[], &s));
        assert!(!repeats_recent(std::slice::from_ref(&s), &s));
        assert!(repeats_recent(&[s.clone(), s.clone()], &s));
        assert!(!repeats_recent(&[s.clone(), "no".into()], &s));
        let long = normalize("You don't mean that you thought me so silly.");
        assert!(repeats_recent(&["no".into(), long.clone()], &long));
    }

    #[test]
    fn words_are_compared_by_their_letters() {
        assert_eq!(normalize_word("So,"), "so");
        assert_eq!(normalize_word("fellow-Americans!"), "fellowamericans");
        assert_eq!(normalize_word("don't"), "dont");
        assert_eq!(normalize_word("..."), "");
    }

    #[test]
    fn echoed_segments_are_recognised() {
        let v = |t: &str| t.split_whitespace().map(normalize_word).collect::<Vec<_>>();
        let context = v("the later traditions tend to extend the period.");
        assert!(repeats_context(
            &context,
            &v("The later traditions tend to extend the period.")
        ));
        assert!(repeats_context(&context, &v("the period.")));
        assert!(repeats_context(
            &context,
            &v("The later traditions tend to")
        ));
        assert!(!repeats_context(&context, &v("But I am")));
        // Two words are only an echo at the very end: "the later" may well be said again.
        assert!(!repeats_context(&context, &v("the later")));
        assert!(!repeats_context(&[], &v("And so")));
        assert!(!repeats_context(&context, &[]));
    }

    #[test]
    fn a_cut_off_echo_is_recognised_at_the_end_of_a_step_only() {
        let v = |t: &str| t.split_whitespace().map(normalize_word).collect::<Vec<_>>();
        let context = v("The absence of the detailed reference to the Hebrews.");
        let cut = v("The absence of the Hebrew");
        assert!(echoes_context(&context, &cut, true));
        assert!(!echoes_context(&context, &cut, false));
        // Three words and a new one are not enough: "of the Hebrews" may be said again.
        assert!(!echoes_context(&context, &v("of the Hebrews came"), true));
        assert!(!echoes_context(
            &context,
            &v("The absence of their names"),
            true
        ));
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
