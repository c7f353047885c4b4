//! The vocabulary of an import: CTranslate2's token list (vocabulary.json, vocabulary.txt or
//! a Hugging Face tokenizer.json) turned into the BPE byte strings whisper.cpp stores after
//! the mel filters, checked against the model so the special token ids whisper.cpp
//! hard-codes land where it expects them.

use std::path::{Path, PathBuf};

use super::MULTILINGUAL_N_VOCAB;
use crate::error::Error;
use crate::models::ggml::Hparams;

/// Vocabulary files in order of preference: CTranslate2 ≥ 4 writes vocabulary.json, older
/// versions vocabulary.txt; faster-whisper ships tokenizer.json too.
const VOCABULARY_FILES: &[&str] = &["vocabulary.json", "vocabulary.txt", "tokenizer.json"];

pub(super) fn find_vocabulary(dir: &Path) -> Result<PathBuf, Error> {
    VOCABULARY_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::input(
                dir,
                "vocabulary.txt, vocabulary.json or tokenizer.json missing",
            )
        })
}

/// Reads all tokens of a CTranslate2 vocabulary file (GPT-2 byte-level symbols), by id.
pub(super) fn read_vocabulary(path: &Path) -> Result<Vec<String>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let tokens = match name {
        "vocabulary.txt" => {
            let text = String::from_utf8(bytes).map_err(|e| {
                Error::input(
                    path,
                    format!("not UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
                )
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            text.split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
                .collect()
        }
        "vocabulary.json" => serde_json::from_slice::<Vec<String>>(&bytes)
            .map_err(|e| Error::input(path, format!("not a JSON list of tokens: {e}")))?,
        _ => tokenizer_json_tokens(&bytes).map_err(|r| Error::input(path, r))?,
    };
    Ok(tokens)
}

/// Tokens of a Hugging Face `tokenizer.json` (`model.vocab` plus `added_tokens`), by id.
fn tokenizer_json_tokens(bytes: &[u8]) -> Result<Vec<String>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let vocab = doc
        .pointer("/model/vocab")
        .and_then(|v| v.as_object())
        .ok_or("no model.vocab object")?;
    let mut pairs: Vec<(u64, &str)> = Vec::with_capacity(vocab.len());
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| format!("token {token:?} has id {id}, not a number"))?;
        pairs.push((id, token));
    }
    for added in doc
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(id), Some(content)) = (
            added.get("id").and_then(|v| v.as_u64()),
            added.get("content").and_then(|v| v.as_str()),
        ) {
            pairs.push((id, content));
        }
    }
    let n = pairs.iter().map(|p| p.0 + 1).max().unwrap_or(0);
    if n > 1_000_000 {
        return Err(format!("token id {} is implausibly large", n - 1));
    }
    let mut tokens: Vec<Option<String>> = vec![None; n as usize];
    for (id, token) in pairs {
        tokens[id as usize] = Some(token.to_string());
    }
    // The multilingual tokenizer has a nameless token (50256, just before <|endoftext|>)
    // that some exports leave out; whisper.cpp stores it as an empty string. More than a
    // few gaps mean this is not a Whisper tokenizer.
    let gaps: Vec<usize> = (0..tokens.len()).filter(|&i| tokens[i].is_none()).collect();
    if gaps.len() > 4 {
        return Err(format!(
            "{} token ids have no token (the first is {})",
            gaps.len(),
            gaps[0]
        ));
    }
    Ok(tokens.into_iter().map(Option::unwrap_or_default).collect())
}

/// The BPE part of the vocabulary as bytes, the way whisper.cpp wants it: every token
/// before `<|endoftext|>` (whisper.cpp names the special tokens itself).
pub(super) fn whisper_vocabulary(
    tokens: &[String],
    hp: &Hparams,
    path: &Path,
) -> Result<Vec<Vec<u8>>, String> {
    let eot = tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .ok_or("no <|endoftext|> token: not a Whisper vocabulary")?;
    let multilingual = hp.n_vocab >= MULTILINGUAL_N_VOCAB;
    // whisper.cpp hard-codes the special token ids from here.
    let expected = if multilingual { 50257 } else { 50256 };
    if eot != expected {
        return Err(format!(
            "<|endoftext|> is token {eot}, but whisper.cpp expects it at {expected} for a{} model \
             with {} tokens",
            if multilingual {
                " multilingual"
            } else {
                "n English-only"
            },
            hp.n_vocab
        ));
    }
    let is_tokenizer_json = path.file_name().is_some_and(|n| n == "tokenizer.json");
    let total_ok = if is_tokenizer_json {
        tokens.len() <= hp.n_vocab as usize
    } else {
        tokens.len() == hp.n_vocab as usize
    };
    if !total_ok {
        return Err(format!(
            "{} tokens, but the model's embedding has {} rows",
            tokens.len(),
            hp.n_vocab
        ));
    }
    tokens[..eot]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            gpt2_token_bytes(t).ok_or_else(|| {
                format!("token {i} {t:?} has a character outside GPT-2's byte alphabet")
            })
        })
        .collect()
}

/// GPT-2's byte-level BPE alphabet: byte `b` is shown as `GPT2_CHARS[b]` (printable Latin-1
/// bytes as themselves, the rest shifted to U+0100 and up), as `bytes_to_unicode` in
/// GPT-2's `encoder.py` defines it.
fn gpt2_byte_to_char() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut n = 0;
    for b in 0..256u32 {
        let code = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(code).unwrap_or('\0');
    }
    table
}

/// The bytes a GPT-2 byte-level token stands for (`"Ġthe"` → `b" the"`), or `None` if it
/// has a character outside the alphabet.
pub fn gpt2_token_bytes(token: &str) -> Option<Vec<u8>> {
    // Inverse of the table: code points 0x21..=0x143 only.
    let mut inverse = [None; 0x144];
    for (b, ch) in gpt2_byte_to_char().iter().enumerate() {
        if let Some(slot) = inverse.get_mut(*ch as usize) {
            *slot = Some(b as u8);
        }
    }
    token
        .chars()
        .map(|ch| inverse.get(ch as usize).copied().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn gpt2_alphabet_covers_every_byte_once() {
        let table = gpt2_byte_to_char();
        let mut seen = HashSet::new();
        for (b, ch) in table.iter().enumerate() {
            assert!(seen.insert(*ch));
            assert_eq!(gpt2_token_bytes(&ch.to_string()), Some(vec![b as u8]));
        }
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[0], 'Ā');
        assert_eq!(table[0xad], 'Ń');
    }

    #[test]
    fn gpt2_tokens_decode_to_bytes() {
        assert_eq!(gpt2_token_bytes("Ġthe").unwrap(), b" the");
        assert_eq!(gpt2_token_bytes("ĠÃ©").unwrap(), " é".as_bytes());
        assert_eq!(gpt2_token_bytes("hello"), Some(b"hello".to_vec()));
        assert_eq!(gpt2_token_bytes("日本"), None);
        assert_eq!(gpt2_token_bytes(" "), None); // a raw space is not in the alphabet
    }

    #[test]
    fn tokenizer_json_tokens_by_id() {
        let json = br#"{"model": {"vocab": {"a": 0, "\u0120b": 2}},
            "added_tokens": [{"id": 3, "content": "<|endoftext|>", "special": true}]}"#;
        let tokens = tokenizer_json_tokens(json).unwrap();
        assert_eq!(tokens, ["a", "", "\u{120}b", "<|endoftext|>"]);
        assert!(tokenizer_json_tokens(br#"{"model": {"vocab": {"a": 9}}}"#)
            .unwrap_err()
            .contains("9 token ids have no token"));
        assert!(tokenizer_json_tokens(b"[1,2]")
            .unwrap_err()
            .contains("model.vocab"));
    }
}
