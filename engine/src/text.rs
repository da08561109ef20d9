//! Tokenization: the model's own `tokenizer.json`, with its padding switched off (batches are
//! packed without padding) and truncation set per text kind from the 2D profile.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// Whether a text is a query or a passage: they have different maximum lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextKind {
    /// A search query (short; encoded progressively).
    Query,
    /// A document passage (encoded once through every rung).
    Passage,
}

/// Token ids of one text, with `[CLS]` and `[SEP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// Vocabulary ids.
    pub ids: Vec<u32>,
    /// Token type (segment) ids; all zero for single texts.
    pub type_ids: Vec<u32>,
}

impl Tokens {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Characters per token the first cut of a long text allows. WordPiece tokens of English
/// average about 4 characters; a cut that leaves too few tokens is widened and tried again.
const CHARS_PER_TOKEN: usize = 16;

/// The longest prefix of `text` of at most `chars` characters that ends before a whitespace
/// (so that no word is split and its tokens are exactly the first tokens of `text`), or
/// `None` when `text` is not longer than that.
fn prefix(text: &str, chars: usize) -> Option<&str> {
    if text.len() <= chars {
        return None;
    }
    let (end, _) = text.char_indices().nth(chars)?;
    Some(match text[..end].rfind(char::is_whitespace) {
        Some(space) if space > 0 => &text[..space],
        _ => &text[..end],
    })
}

/// One tokenizer per text kind (they differ only in truncation).
///
/// Long texts are cut before tokenizing, since only their first tokens are kept: the text is cut
/// at a whitespace at most `max_length × 16` characters in; if the prefix still yields
/// `max_length` tokens the result is exactly the whole text's (the prefix's tokens are the
/// whole text's first ones), otherwise the cut is widened fourfold and tried again, up to the
/// whole text. A 15 MB document thus costs what its first few kilobytes cost.
pub(crate) struct TextTokenizer {
    query: Tokenizer,
    passage: Tokenizer,
    query_max: usize,
    passage_max: usize,
    vocab_size: usize,
    type_vocab_size: usize,
    max_positions: usize,
}

impl TextTokenizer {
    pub(crate) fn load(
        path: &Path,
        query_max: usize,
        passage_max: usize,
        vocab_size: usize,
        type_vocab_size: usize,
        max_positions: usize,
    ) -> Result<Self> {
        let base = Tokenizer::from_file(path)
            .map_err(|e| Error::invalid_file(path, format!("not a tokenizers JSON file: {e}")))?;
        let with_max = |max_length: usize| -> Result<Tokenizer> {
            let mut t = base.clone();
            t.with_padding(None);
            t.with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::invalid_file(path, format!("cannot set truncation to {max_length}: {e}")))?;
            Ok(t)
        };
        Ok(Self {
            query: with_max(query_max)?,
            passage: with_max(passage_max)?,
            query_max,
            passage_max,
            vocab_size,
            type_vocab_size,
            max_positions,
        })
    }

    fn for_kind(&self, kind: TextKind) -> &Tokenizer {
        match kind {
            TextKind::Query => &self.query,
            TextKind::Passage => &self.passage,
        }
    }

    fn max_length(&self, kind: TextKind) -> usize {
        match kind {
            TextKind::Query => self.query_max,
            TextKind::Passage => self.passage_max,
        }
    }

    fn tokenize(&self, text: &str, kind: TextKind) -> Result<Tokens> {
        let encoding = self.for_kind(kind).encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Tokens { ids: encoding.get_ids().to_vec(), type_ids: encoding.get_type_ids().to_vec() })
    }

    /// Tokenizes `text`, cut first when long (see the type's docs).
    pub(crate) fn encode(&self, text: &str, kind: TextKind) -> Result<Tokens> {
        let max = self.max_length(kind);
        let mut chars = max.saturating_mul(CHARS_PER_TOKEN).max(1);
        loop {
            let Some(cut) = prefix(text, chars) else { return self.check(self.tokenize(text, kind)?) };
            let tokens = self.tokenize(cut, kind)?;
            if tokens.len() >= max {
                return self.check(tokens);
            }
            chars = chars.saturating_mul(4);
        }
    }

    /// [`TextTokenizer::encode`] for many texts (their first cuts tokenized as one batch).
    pub(crate) fn encode_batch(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Tokens>> {
        let max = self.max_length(kind);
        let first = max.saturating_mul(CHARS_PER_TOKEN).max(1);
        let cuts: Vec<&str> = texts.iter().map(|t| prefix(t, first).unwrap_or(t)).collect();
        let encodings =
            self.for_kind(kind).encode_batch(cuts.clone(), true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        encodings
            .into_iter()
            .zip(texts.iter().zip(&cuts))
            .map(|(e, (text, cut))| {
                let tokens = Tokens { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec() };
                // Cut, and the cut left too few tokens: widen it (rare: very long "words").
                if cut.len() < text.len() && tokens.len() < max {
                    return self.encode(text, kind);
                }
                self.check(tokens)
            })
            .collect()
    }

    /// Rejects ids the embedding tables do not have (a tokenizer that does not match the model).
    pub(crate) fn check(&self, tokens: Tokens) -> Result<Tokens> {
        check_tokens(&tokens, self.vocab_size, self.type_vocab_size, self.max_positions)?;
        Ok(tokens)
    }
}

/// Checks token ids against the model's tables.
pub(crate) fn check_tokens(
    tokens: &Tokens,
    vocab_size: usize,
    type_vocab_size: usize,
    max_positions: usize,
) -> Result<()> {
    if tokens.ids.len() != tokens.type_ids.len() {
        return Err(Error::InvalidRequest(format!(
            "{} token ids but {} type ids",
            tokens.ids.len(),
            tokens.type_ids.len()
        )));
    }
    if tokens.is_empty() {
        return Err(Error::InvalidRequest("a text must have at least one token".into()));
    }
    if tokens.len() > max_positions {
        return Err(Error::InvalidRequest(format!(
            "{} tokens, but the model has only {max_positions} positions",
            tokens.len()
        )));
    }
    if let Some(bad) = tokens.ids.iter().find(|&&id| id as usize >= vocab_size) {
        return Err(Error::InvalidRequest(format!(
            "token id {bad} is outside the model's vocabulary of {vocab_size}: does tokenizer.json belong to this model?"
        )));
    }
    if let Some(bad) = tokens.type_ids.iter().find(|&&id| id as usize >= type_vocab_size) {
        return Err(Error::InvalidRequest(format!("token type {bad} is outside the model's {type_vocab_size} types")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn prefixes_end_before_a_whitespace_and_respect_characters() {
        assert_eq!(prefix("short", 10), None);
        assert_eq!(prefix("one two three", 9), Some("one two"));
        assert_eq!(prefix("éééé éé", 5), Some("éééé"));
        assert_eq!(prefix("abcdefgh", 4), Some("abcd"), "no whitespace: cut at the character bound");
    }
}
