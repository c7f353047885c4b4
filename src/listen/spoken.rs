//! Text the way people dictate: spoken punctuation and commands ("comma", "new line") and the
//! user's replacements (names and jargon whisper keeps getting wrong), applied to committed text
//! before anyone sees it.
//!
//! Committed text is final, so a rule that needs the next word ("new" of "new line", the comma
//! whisper wrote after a word the speaker follows with "comma") holds those words back until the
//! next commit or the end of the utterance. The utterance is rewritten from its start at every
//! commit and only the part no later word can change is released, so the pieces released live
//! always add up to the rewrite of the whole utterance.

use std::path::Path;

use regex::Regex;

use crate::error::{Error, Result};
use crate::listen::dictation::Event;

/// Languages with a table of spoken punctuation.
pub const LANGUAGES: [&str; 4] = ["en", "de", "fr", "es"];

/// What a spoken phrase does.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// A punctuation mark attached to the word before it (`,` `.` `?` `!` `:` `;`).
    Mark(&'static str),
    /// A line break (1) or a new paragraph (2).
    Break(usize),
    /// The user's replacement text (may be empty: the words are dropped).
    Replace(String),
}

/// A phrase to find, as normalized words, and what it becomes.
#[derive(Debug, Clone)]
struct Phrase {
    words: Vec<String>,
    action: Action,
}

/// The spoken phrases of each language, and their marks (`\n` a line, `\n\n` a paragraph).
fn table(language: &str) -> &'static [(&'static str, &'static str)] {
    match language {
        "en" => &[
            ("comma", ","),
            ("period", "."),
            ("full stop", "."),
            ("question mark", "?"),
            ("exclamation mark", "!"),
            ("exclamation point", "!"),
            ("colon", ":"),
            ("semicolon", ";"),
            ("new line", "\n"),
            ("newline", "\n"),
            ("new paragraph", "\n\n"),
        ],
        "de" => &[
            ("komma", ","),
            ("punkt", "."),
            ("fragezeichen", "?"),
            ("ausrufezeichen", "!"),
            ("doppelpunkt", ":"),
            ("semikolon", ";"),
            ("neue zeile", "\n"),
            ("neuer absatz", "\n\n"),
        ],
        "fr" => &[
            ("virgule", ","),
            ("point", "."),
            ("point d'interrogation", "?"),
            ("point d'exclamation", "!"),
            ("deux points", ":"),
            ("point virgule", ";"),
            ("point-virgule", ";"),
            ("à la ligne", "\n"),
            ("nouvelle ligne", "\n"),
            ("nouveau paragraphe", "\n\n"),
        ],
        "es" => &[
            ("coma", ","),
            ("punto", "."),
            ("signo de interrogación", "?"),
            ("signo de exclamación", "!"),
            ("dos puntos", ":"),
            ("punto y coma", ";"),
            ("nueva línea", "\n"),
            ("punto y aparte", "\n"),
            ("nuevo párrafo", "\n\n"),
        ],
        _ => &[],
    }
}

/// The rules applied to committed text.
#[derive(Debug, Clone, Default)]
pub struct TextRules {
    phrases: Vec<Phrase>,
    patterns: Vec<(Regex, String)>,
    /// Spoken punctuation is on: a word with whisper's own punctuation after it is held back,
    /// since a spoken mark after it replaces that punctuation.
    spoken: bool,
}

impl TextRules {
    /// No rules: text passes unchanged.
    pub fn new() -> TextRules {
        TextRules::default()
    }

    /// Adds the spoken punctuation and commands of `language` (one of [`LANGUAGES`]).
    pub fn with_spoken_punctuation(mut self, language: &str) -> Result<TextRules> {
        let rows = table(language);
        if rows.is_empty() {
            return Err(Error::Usage(format!(
                "spoken punctuation has no table for language '{language}' (it has {})",
                LANGUAGES.join(", ")
            )));
        }
        for (spoken, mark) in rows {
            let action = match *mark {
                "\n" => Action::Break(1),
                "\n\n" => Action::Break(2),
                m => Action::Mark(m),
            };
            self.phrases.push(Phrase {
                words: spoken.split_whitespace().map(normalize).collect(),
                action,
            });
        }
        self.spoken = true;
        Ok(self)
    }

    /// Adds the replacements of a file; see [`TextRules::parse_replacements`].
    pub fn with_replacements_file(self, path: &Path) -> Result<TextRules> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Usage(format!(
                "{}: cannot read the replacements file: {e}",
                path.display()
            ))
        })?;
        self.parse_replacements(&text)
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
    }

    /// Adds replacements, one a line: `FROM => TO`. FROM is words matched whole, ignoring case
    /// and the punctuation around them; `re:FROM` is a regular expression (`$1` in TO refers to
    /// its groups). An empty TO deletes. `#` starts a comment line.
    pub fn parse_replacements(mut self, text: &str) -> std::result::Result<TextRules, String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |why: String| format!("line {}: {why}", n + 1);
            let Some((from, to)) = line.split_once("=>") else {
                return Err(at("expected `FROM => TO`".into()));
            };
            let (from, to) = (from.trim(), to.trim());
            if let Some(pattern) = from.strip_prefix("re:") {
                let re = Regex::new(pattern.trim()).map_err(|e| {
                    at(format!(
                        "bad regular expression: {}",
                        e.to_string().lines().last().unwrap_or("")
                    ))
                })?;
                self.patterns.push((re, to.to_string()));
            } else {
                let words: Vec<String> = from
                    .split_whitespace()
                    .map(normalize)
                    .filter(|w| !w.is_empty())
                    .collect();
                if words.is_empty() {
                    return Err(at("nothing to replace before `=>`".into()));
                }
                self.phrases.push(Phrase {
                    words,
                    action: Action::Replace(to.to_string()),
                });
            }
        }
        Ok(self)
    }

    /// No rule at all.
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty() && self.patterns.is_empty()
    }

    /// The rewrite of a whole text (an utterance, or a line of a file).
    pub fn rewrite(&self, text: &str) -> String {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let (units, _) = self.units(&tokens, true);
        self.patterns_on(&render(&units, None))
    }

    /// The units of `tokens`, and how many of them no further token can change.
    fn units(&self, tokens: &[&str], last: bool) -> (Vec<Unit>, usize) {
        let mut units: Vec<Unit> = Vec::new();
        let mut i = 0;
        let mut held_from = None;
        while i < tokens.len() {
            let rest = &tokens[i..];
            let mut best: Option<&Phrase> = None;
            let mut could_grow = false;
            for p in &self.phrases {
                let n = p.words.len();
                if rest.len() >= n {
                    if rest[..n]
                        .iter()
                        .zip(&p.words)
                        .all(|(t, w)| normalize(t) == *w)
                        && best.is_none_or(|b| n > b.words.len())
                    {
                        best = Some(p);
                    }
                } else if !last && rest.iter().zip(&p.words).all(|(t, w)| normalize(t) == *w) {
                    could_grow = true;
                }
            }
            if could_grow {
                held_from = Some(units.len());
                break;
            }
            let Some(p) = best else {
                units.push(Unit::Word(self.cased(&units, rest[0])));
                i += 1;
                continue;
            };
            let n = p.words.len();
            match &p.action {
                Action::Mark(mark) => {
                    // The mark replaces whisper's own punctuation after the word before it.
                    if let Some(Unit::Word(w)) = units.last_mut() {
                        let kept = w.trim_end_matches(is_mark).len();
                        w.truncate(kept);
                    }
                    units.push(Unit::Mark(mark));
                }
                Action::Break(lines) => units.push(Unit::Break(*lines)),
                Action::Replace(to) => {
                    // Punctuation after the last replaced word stays ("whisper cpp." ->
                    // "whisper.cpp."), as does what came before the first.
                    let first = rest[0];
                    let lead = &first[..first.len() - first.trim_start_matches(is_mark).len()];
                    let last_word = rest[n - 1];
                    let trail = &last_word[last_word.trim_end_matches(is_mark).len()..];
                    // An empty replacement drops the words and their punctuation.
                    if !to.is_empty() {
                        let word = format!("{lead}{to}{trail}");
                        units.push(Unit::Word(self.cased(&units, &word)));
                    }
                }
            }
            i += n;
        }
        let mut stable = held_from.unwrap_or(units.len());
        // A word with whisper's punctuation after it waits for the next word: a spoken mark
        // there would replace that punctuation.
        if !last && self.spoken {
            if let Some(Unit::Word(w)) = stable.checked_sub(1).map(|i| &units[i]) {
                if w.ends_with(is_mark) {
                    stable -= 1;
                }
            }
        }
        (units, stable)
    }

    /// `word`, capitalized when a spoken sentence end or line break comes just before it.
    fn cased(&self, units: &[Unit], word: &str) -> String {
        let starts_sentence = matches!(
            units.last(),
            Some(Unit::Mark(".") | Unit::Mark("?") | Unit::Mark("!") | Unit::Break(_))
        );
        if !self.spoken || !starts_sentence {
            return word.to_string();
        }
        let mut chars = word.chars();
        match chars.next() {
            Some(c) => c.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }

    fn patterns_on(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (re, to) in &self.patterns {
            out = re.replace_all(&out, to.as_str()).into_owned();
        }
        out
    }
}

/// A piece of rewritten text.
#[derive(Debug, Clone, PartialEq)]
enum Unit {
    Word(String),
    Mark(&'static str),
    Break(usize),
}

/// Units as text. `before` is the unit just before them (already released), which decides
/// whether the first needs a space.
fn render(units: &[Unit], before: Option<&Unit>) -> String {
    let mut out = String::new();
    let mut prev = before;
    for u in units {
        match u {
            Unit::Word(w) => {
                if matches!(prev, Some(Unit::Word(_) | Unit::Mark(_))) {
                    out.push(' ');
                }
                out.push_str(w);
            }
            Unit::Mark(m) => out.push_str(m),
            Unit::Break(n) => {
                for _ in 0..*n {
                    out.push('\n');
                }
            }
        }
        prev = Some(u);
    }
    out
}

/// Punctuation whisper writes after or before a word.
fn is_mark(c: char) -> bool {
    matches!(
        c,
        ',' | '.' | '?' | '!' | ':' | ';' | '"' | '“' | '”' | '¿' | '¡' | '…'
    )
}

/// A word as phrases are matched: lower case, without punctuation around it.
fn normalize(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// How a piece of committed text joins the text delivered before it: a space, except before
/// punctuation or after a line break.
pub fn separator(before: &str, piece: &str) -> &'static str {
    let glued = piece.starts_with([',', '.', '?', '!', ':', ';', '\n']);
    if before.is_empty() || before.ends_with('\n') || glued || piece.is_empty() {
        ""
    } else {
        " "
    }
}

/// Applies [`TextRules`] to a stream of dictation events: commits carry the rewritten text as
/// far as it is final, and each utterance end the rewrite of the whole utterance.
#[derive(Debug)]
pub struct Rewriter {
    rules: TextRules,
    /// The utterance's committed text, as whisper wrote it.
    raw: String,
    /// Units released so far in this utterance.
    released: usize,
    /// The text released so far in this utterance.
    text: String,
    /// The latency of the last commit, for the words released at the utterance's end.
    latency: f64,
    /// The text delivered so far ends with punctuation.
    after_mark: bool,
}

impl Rewriter {
    /// A rewriter with `rules`.
    pub fn new(rules: TextRules) -> Rewriter {
        Rewriter {
            rules,
            raw: String::new(),
            released: 0,
            text: String::new(),
            latency: 0.0,
            after_mark: false,
        }
    }

    /// The events with the rules applied; a commit whose words are all held back is left out.
    pub fn apply(&mut self, events: Vec<Event>) -> Vec<Event> {
        if self.rules.is_empty() {
            return events;
        }
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            match event {
                Event::Partial { .. } => out.push(event),
                Event::Commit {
                    text,
                    start,
                    end,
                    latency,
                } => {
                    if !self.raw.is_empty() {
                        self.raw.push(' ');
                    }
                    self.raw.push_str(&text);
                    self.latency = latency;
                    let piece = self.release(false);
                    if !piece.is_empty() {
                        out.push(Event::Commit {
                            text: piece,
                            start,
                            end,
                            latency,
                        });
                    }
                }
                Event::UtteranceEnd { start, end, .. } => {
                    let piece = self.release(true);
                    if !piece.is_empty() {
                        out.push(Event::Commit {
                            text: piece,
                            start,
                            end,
                            latency: self.latency,
                        });
                    }
                    out.push(Event::UtteranceEnd {
                        text: std::mem::take(&mut self.text),
                        start,
                        end,
                    });
                    self.raw.clear();
                    self.released = 0;
                }
            }
        }
        out
    }

    /// The newly final part of the utterance, patterns applied, without its separator.
    fn release(&mut self, last: bool) -> String {
        let tokens: Vec<&str> = self.raw.split_whitespace().collect();
        let (units, stable) = self.rules.units(&tokens, last);
        if stable <= self.released {
            return String::new();
        }
        let mut from = self.released;
        // A mark said after a pause opens the next utterance, when the last one is delivered
        // with whisper's own punctuation: that stays, and the spoken mark is not doubled.
        if from == 0 && self.after_mark && matches!(units.first(), Some(Unit::Mark(_))) {
            from = 1;
        }
        let before = from.checked_sub(1).map(|i| &units[i]);
        let rendered = render(&units[from..stable], before);
        let piece = self.rules.patterns_on(rendered.trim_start_matches(' '));
        self.released = stable;
        if let Some(c) = piece.chars().last() {
            self.after_mark = is_mark(c) || c == '\n';
        }
        let sep = separator(&self.text, &piece);
        self.text.push_str(sep);
        self.text.push_str(&piece);
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn en() -> TextRules {
        TextRules::new().with_spoken_punctuation("en").unwrap()
    }

    fn commit(text: &str) -> Event {
        Event::Commit {
            text: text.into(),
            start: 0.0,
            end: 0.0,
            latency: 0.0,
        }
    }

    /// Feeds commits one by one and returns the released pieces, joined as a consumer joins
    /// them, and the utterance text.
    fn stream(rules: TextRules, commits: &[&str]) -> (String, String) {
        let mut r = Rewriter::new(rules);
        let mut joined = String::new();
        let mut events = Vec::new();
        for c in commits {
            events.extend(r.apply(vec![commit(c)]));
        }
        events.extend(r.apply(vec![Event::UtteranceEnd {
            text: commits.join(" "),
            start: 0.0,
            end: 0.0,
        }]));
        let mut utterance = String::new();
        for e in events {
            match e {
                Event::Commit { text, .. } => {
                    joined.push_str(separator(&joined, &text));
                    joined.push_str(&text);
                }
                Event::UtteranceEnd { text, .. } => utterance = text,
                Event::Partial { .. } => {}
            }
        }
        (joined, utterance)
    }

    #[test]
    fn spoken_marks_replace_whispers_own_punctuation() {
        let r = en();
        assert_eq!(
            r.rewrite("Dear John, comma, how are you question mark"),
            "Dear John, how are you?"
        );
        assert_eq!(
            r.rewrite("It works. Period. then new line thanks"),
            "It works. Then\nThanks"
        );
        assert_eq!(r.rewrite("one new paragraph two"), "one\n\nTwo");
        assert_eq!(r.rewrite("Full stop."), ".");
    }

    #[test]
    fn streamed_pieces_add_up_to_the_whole_rewrite() {
        let cases: [&[&str]; 4] = [
            &["Hello,", "comma world", "new", "line and so on period"],
            &["is it", "question", "mark", "yes exclamation", "point"],
            &["new"],
            &["a full", "stop. b"],
        ];
        for commits in cases {
            let whole = en().rewrite(&commits.join(" "));
            let (joined, utterance) = stream(en(), commits);
            assert_eq!(joined, whole, "{commits:?}");
            assert_eq!(utterance, whole, "{commits:?}");
        }
    }

    #[test]
    fn words_that_may_start_a_phrase_wait_for_the_next_commit() {
        let mut r = Rewriter::new(en());
        assert_eq!(
            r.apply(vec![commit("this is new")]),
            vec![commit("this is")]
        );
        assert_eq!(r.apply(vec![commit("line")]), vec![commit("\n")]);
    }

    #[test]
    fn a_mark_after_a_pause_is_not_doubled() {
        let mut r = Rewriter::new(en());
        let end = |t: &str| Event::UtteranceEnd {
            text: t.into(),
            start: 0.0,
            end: 0.0,
        };
        let first = r.apply(vec![commit("Are you coming?"), end("")]);
        assert_eq!(first.last(), Some(&end("Are you coming?")));
        let second = r.apply(vec![commit("Question mark. See you."), end("")]);
        assert_eq!(second.last(), Some(&end("See you.")));
    }

    #[test]
    fn replacements_match_whole_words_and_patterns() {
        let rules = TextRules::new()
            .parse_replacements(
                "# names\nwhisper cpp => whisper.cpp\num =>\nre:(?i)\\bverba ?team\\b => verbatim\n",
            )
            .unwrap();
        assert_eq!(
            rules.rewrite("I use Whisper CPP. Um, with Verba team"),
            "I use whisper.cpp. with verbatim"
        );
        let (joined, _) = stream(rules.clone(), &["I use whisper", "cpp daily"]);
        assert_eq!(joined, "I use whisper.cpp daily");
        assert!(TextRules::new()
            .parse_replacements("a => b\nno arrow")
            .unwrap_err()
            .contains("line 2"));
        assert!(TextRules::new()
            .parse_replacements("re:( => x")
            .unwrap_err()
            .contains("line 1: bad regular expression"));
    }

    #[test]
    fn other_languages_and_unicode() {
        let de = TextRules::new().with_spoken_punctuation("de").unwrap();
        assert_eq!(de.rewrite("Grüße Komma Jürgen Punkt"), "Grüße, Jürgen.");
        let es = TextRules::new().with_spoken_punctuation("es").unwrap();
        assert_eq!(es.rewrite("hola punto y coma adiós"), "hola; adiós");
        assert!(TextRules::new().with_spoken_punctuation("ja").is_err());
    }

    #[test]
    fn separators() {
        assert_eq!(separator("", "a"), "");
        assert_eq!(separator("a", "b"), " ");
        assert_eq!(separator("a", ","), "");
        assert_eq!(separator("a\n", "b"), "");
    }
}
