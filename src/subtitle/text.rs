//! Text helpers of the engine: counting characters, joining words, telling where a line or
//! cue may break, and balanced line breaking.

use unicode_segmentation::UnicodeSegmentation;

/// Chinese and Japanese characters (Han, kana, CJK punctuation, full-width forms). Korean is
/// left out on purpose: Hangul text puts spaces between words.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3000}'..='\u{303F}'   // CJK symbols and punctuation
        | '\u{3040}'..='\u{30FF}' // hiragana, katakana
        | '\u{3400}'..='\u{4DBF}' // Han extension A
        | '\u{4E00}'..='\u{9FFF}' // Han
        | '\u{F900}'..='\u{FAFF}' // compatibility ideographs
        | '\u{FF00}'..='\u{FFEF}' // full-width forms
        | '\u{20000}'..='\u{2FA1F}')
}

/// The separator between two consecutive words: nothing between CJK characters (those
/// scripts do not use spaces), a space everywhere else.
pub(crate) fn joiner(left: &str, right: &str) -> &'static str {
    match (left.chars().last(), right.chars().next()) {
        (Some(a), Some(b)) if is_cjk(a) && is_cjk(b) => "",
        _ => " ",
    }
}

/// Characters a viewer reads, for the reading-speed rule: every character but line breaks,
/// and in text with CJK characters also without spaces (CJK reading speed is counted in
/// characters, and spaces there are only layout).
pub(crate) fn reading_chars(text: &str) -> usize {
    let cjk = text.chars().any(is_cjk);
    text.graphemes(true)
        .filter(|g| !(g.starts_with(['\n', '\r']) || cjk && g.chars().all(char::is_whitespace)))
        .count()
}

/// Characters of a line as it is displayed (for the line-length rule): grapheme clusters, so
/// a letter with a combining accent (Unicode NFD, as macOS writes file names) counts once.
pub(crate) fn line_chars(line: &str) -> usize {
    line.graphemes(true).count()
}

/// Closing quotes and brackets that may follow a sentence's final punctuation.
fn trim_closers(word: &str) -> &str {
    word.trim_end_matches(['"', '\'', ')', ']', '»', '”', '’', '」', '』', '）'])
}

/// Titles and abbreviations that end with a dot without ending a sentence.
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "sr", "jr", "vs", "etc", "no", "gen", "capt",
    "sgt", "lt", "col", "rev", "hon", "e.g", "i.e",
];

/// Words a line or cue should never end with: they belong to the words after them
/// (articles, prepositions, conjunctions, possessives, titles).
const WEAK: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "nor", "of", "to", "in", "on", "at", "by", "for", "with",
    "from", "into", "onto", "upon", "about", "as", "than", "if", "my", "your", "his", "her", "its",
    "our", "their", "this", "these", "those", "mr", "mrs", "ms", "dr", "prof", "st", "mt", "very",
    "not",
];

/// Units and number words that stay on the same line as the number before them.
const UNITS: &[&str] = &[
    "%",
    "percent",
    "per",
    "km",
    "m",
    "cm",
    "mm",
    "kg",
    "g",
    "mg",
    "lb",
    "lbs",
    "oz",
    "t",
    "s",
    "ms",
    "h",
    "min",
    "mph",
    "km/h",
    "°",
    "°c",
    "°f",
    "ft",
    "l",
    "ml",
    "kb",
    "mb",
    "gb",
    "tb",
    "hz",
    "khz",
    "mhz",
    "ghz",
    "kw",
    "w",
    "v",
    "kwh",
    "am",
    "pm",
    "a.m",
    "p.m",
    "dollars",
    "euros",
    "pounds",
    "yen",
    "million",
    "billion",
    "trillion",
    "thousand",
    "hundred",
    "meters",
    "metres",
    "kilometers",
    "kilometres",
    "miles",
    "feet",
    "inches",
    "kilograms",
    "grams",
    "degrees",
    "seconds",
    "minutes",
    "hours",
    "days",
    "weeks",
    "months",
    "years",
    "points",
    "people",
    "times",
];

/// Whether `word` is a weak word (see [`WEAK`]); a weak word with a comma or other
/// punctuation after it ends a clause and is no longer weak (titles keep their dot).
pub(crate) fn is_weak(word: &str) -> bool {
    let lower = word.to_lowercase();
    let core = lower.trim_end_matches('.');
    let ends_in_punct = lower.ends_with(|c: char| !c.is_alphanumeric() && c != '.');
    if ends_in_punct {
        return false;
    }
    if lower.ends_with('.') {
        // "Dr." is weak; "to." ends a sentence.
        return TITLES.contains(&core) && WEAK.contains(&core);
    }
    WEAK.contains(&core)
}

/// Whether the text between `left` and `right` holds a number and its unit or currency
/// (`5 km`, `10 %`, `$ 5`, `3 million`), which must stay together.
pub(crate) fn is_number_unit(left: &str, right: &str) -> bool {
    let number = |w: &str| {
        let w = w.trim_end_matches([',', '.', ';', ':']);
        w.chars().any(|c| c.is_ascii_digit())
            && w.chars().last().is_some_and(|c| c.is_ascii_digit())
    };
    let currency = |w: &str| matches!(w, "$" | "€" | "£" | "¥" | "US$" | "USD" | "EUR");
    if currency(left) && right.starts_with(|c: char| c.is_ascii_digit()) {
        return true;
    }
    if !number(left) || left.ends_with([',', '.', ';', ':']) {
        return false;
    }
    let unit = right
        .trim_end_matches([',', '.', ';', ':', '!', '?'])
        .to_lowercase();
    UNITS.contains(&unit.as_str()) || currency(right)
}

/// Whether the word ends a sentence (`.`, `?`, `!`, `…`, `。` ...), not counting titles
/// (`Dr.`) and initials (`J.`).
pub(crate) fn ends_sentence(word: &str) -> bool {
    let w = trim_closers(word);
    if w.ends_with(['?', '!', '…', '。', '？', '！']) {
        return true;
    }
    if !w.ends_with('.') {
        return false;
    }
    let core = w.trim_end_matches('.').to_lowercase();
    let initial = core.chars().count() == 1 && core.chars().all(char::is_alphabetic);
    !(TITLES.contains(&core.as_str()) || initial)
}

/// Whether the word ends a clause (`,`, `;`, `:`, dashes, CJK commas).
pub(crate) fn ends_clause(word: &str) -> bool {
    trim_closers(word).ends_with([',', ';', ':', '—', '–', '-', '、', '，', '；', '：'])
}

/// How bad it is to break (a line or a cue) after `words[k]`: 0 for a sentence end, more for
/// a clause, more still for a plain word; pauses (`gap` seconds before the next word) make a
/// break better. Weak words and numbers split from their units cost [`AVOID`].
pub(crate) fn break_cost(words: &[&str], k: usize, gap: f64) -> f64 {
    let Some(next) = words.get(k + 1) else {
        return 0.0;
    };
    let w = words[k];
    let base = if ends_sentence(w) {
        0.0
    } else if ends_clause(w) {
        8.0
    } else {
        // A pause of a second is as good a break as a comma.
        30.0 - 22.0 * gap.clamp(0.0, 1.0)
    };
    let mut cost = base;
    if is_weak(w) {
        cost += AVOID;
    }
    if is_number_unit(w, next) {
        cost += AVOID;
    }
    // Never separate a word from the opening punctuation before it.
    if w.chars().all(|c| !c.is_alphanumeric()) && !ends_sentence(w) && !ends_clause(w) {
        cost += 50.0;
    }
    cost
}

/// Cost of a break that should (almost) never happen.
pub(crate) const AVOID: f64 = 300.0;

/// A balanced line layout of words whose widths are `widths` (`seps[k]` separator
/// characters sit between word `k` and `k + 1`; `break_costs[k]` is the cost of a line break
/// after word `k`).
///
/// Returns the indices where a new line starts and the layout's cost, or `None` when the
/// words do not fit in `max_lines` lines of `max_chars` (`extra` characters are reserved at
/// the start of the first line, for a speaker label).
///
/// One line is used whenever the text fits on one line, and in general the fewest lines
/// that fit. Lines are balanced: each line costs its distance from the average width, plus
/// the quality of each break. Ties go bottom-heavy (a shorter top line, the "pyramid"
/// Netflix prefers): the eye moves down to the longer line and not back up.
pub(crate) fn break_lines(
    widths: &[usize],
    seps: &[usize],
    break_costs: &[f64],
    max_chars: usize,
    max_lines: usize,
    extra: usize,
) -> Option<(Vec<usize>, f64)> {
    let n = widths.len();
    if n == 0 {
        return Some((Vec::new(), 0.0));
    }
    let mut prefix = vec![0usize; n + 1];
    for k in 0..n {
        prefix[k + 1] = prefix[k] + widths[k] + if k > 0 { seps[k - 1] } else { 0 };
    }
    // Width of words a..b on one line (the separator before `a` is dropped at a break).
    let line_width = |a: usize, b: usize| {
        let sep_a = if a > 0 { seps[a - 1] } else { 0 };
        prefix[b] - prefix[a] - sep_a + if a == 0 { extra } else { 0 }
    };
    if line_width(0, n) <= max_chars {
        return Some((Vec::new(), 0.0));
    }
    for lines in 2..=max_lines.min(n) {
        let target = (prefix[n] + extra) as f64 / lines as f64;
        // cost[k][p]: best cost of words 0..p on k lines; from[k][p]: where line k starts.
        let mut cost = vec![vec![f64::INFINITY; n + 1]; lines + 1];
        let mut from = vec![vec![0usize; n + 1]; lines + 1];
        cost[0][0] = 0.0;
        for k in 1..=lines {
            for p in 1..=n {
                for q in (k - 1..p).rev() {
                    let w = line_width(q, p);
                    if w > max_chars {
                        break;
                    }
                    if !cost[k - 1][q].is_finite() {
                        continue;
                    }
                    let mut c = cost[k - 1][q] + (w as f64 - target).abs();
                    if k < lines {
                        c += 0.1 * w as f64; // bottom-heavy tie-break
                    }
                    if q > 0 {
                        c += break_costs[q - 1];
                    }
                    if c < cost[k][p] {
                        cost[k][p] = c;
                        from[k][p] = q;
                    }
                }
            }
        }
        if cost[lines][n].is_finite() {
            let mut starts = Vec::new();
            let mut p = n;
            for k in (2..=lines).rev() {
                p = from[k][p];
                starts.push(p);
            }
            starts.reverse();
            return Some((starts, cost[lines][n]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_words_and_titles() {
        for w in ["the", "The", "of", "and", "Mr.", "Dr.", "a", "to"] {
            assert!(is_weak(w), "{w}");
        }
        for w in ["the,", "cat", "of.", "to!", "running", "Dr.,"] {
            assert!(!is_weak(w), "{w}");
        }
    }

    #[test]
    fn sentence_and_clause_ends() {
        assert!(ends_sentence("end."));
        assert!(ends_sentence("really?\""));
        assert!(ends_sentence("好。"));
        assert!(!ends_sentence("Dr."));
        assert!(!ends_sentence("J."));
        assert!(!ends_sentence("word,"));
        assert!(ends_clause("word,"));
        assert!(ends_clause("然后，"));
    }

    #[test]
    fn numbers_stay_with_units() {
        assert!(is_number_unit("5", "km"));
        assert!(is_number_unit("10", "%"));
        assert!(is_number_unit("3.5", "million."));
        assert!(is_number_unit("$", "5"));
        assert!(is_number_unit("20", "dollars,"));
        assert!(!is_number_unit("5,", "km"));
        assert!(!is_number_unit("five", "km"));
        assert!(!is_number_unit("5", "cats"));
    }

    #[test]
    fn cjk_counting_and_joining() {
        assert_eq!(joiner("你好", "世界"), "");
        assert_eq!(joiner("hello", "世界"), " ");
        assert_eq!(joiner("안녕", "하세요"), " ");
        assert_eq!(reading_chars("你好 世界"), 4);
        assert_eq!(reading_chars("ab cd\nef"), 7);
        // "é" as e + U+0301 (NFD) is one character on screen.
        let nfd = "Cafe\u{301} re\u{301}sume\u{301}";
        assert_eq!(line_chars(nfd), 11);
        assert_eq!(reading_chars(nfd), 11);
    }

    fn layout(words: &[&str], max: usize) -> Option<Vec<String>> {
        let widths: Vec<usize> = words.iter().map(|w| line_chars(w)).collect();
        let seps = vec![1; words.len().saturating_sub(1)];
        let costs: Vec<f64> = (0..words.len())
            .map(|k| break_cost(words, k, 0.0))
            .collect();
        let (starts, _) = break_lines(&widths, &seps, &costs, max, 2, 0)?;
        let mut bounds = vec![0];
        bounds.extend(starts);
        bounds.push(words.len());
        Some(
            bounds
                .windows(2)
                .map(|b| words[b[0]..b[1]].join(" "))
                .collect(),
        )
    }

    #[test]
    fn lines_are_balanced_bottom_heavy_and_avoid_weak_words() {
        let words: Vec<&str> = "one two three four five six seven eight nine ten eleven"
            .split(' ')
            .collect();
        let lines = layout(&words, 42).unwrap();
        assert_eq!(lines.len(), 2);
        let (a, b) = (lines[0].len(), lines[1].len());
        assert!(a <= b && b - a <= 8, "{lines:?}");
        // Fits one line: stays on one line.
        assert_eq!(layout(&["short", "text"], 42).unwrap().len(), 1);
        // The balanced break would end line 1 on "the": it moves.
        let words: Vec<&str> = "we walked along the river bank until the sun went down"
            .split(' ')
            .collect();
        let lines = layout(&words, 30).unwrap();
        assert!(!is_weak(lines[0].rsplit(' ').next().unwrap()), "{lines:?}");
        // A comma is a better break than a perfectly balanced one.
        let words: Vec<&str> = "Well, I suppose that we could go to the market tomorrow"
            .split(' ')
            .collect();
        let lines = layout(&words, 50).unwrap();
        assert_eq!(lines.len(), 2);
        // Number and unit stay together.
        let words: Vec<&str> = "the road is exactly 5 km long and it goes all the way"
            .split(' ')
            .collect();
        for max in 20..40 {
            if let Some(lines) = layout(&words, max) {
                assert!(!lines[0].ends_with(" 5"), "{lines:?}");
            }
        }
        // Too long for two lines.
        assert!(layout(&words, 10).is_none());
    }
}
