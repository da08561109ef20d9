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
/// average about 4 characters; a cut that leaves too few whole words is widened and tried
/// again.
const CHARS_PER_TOKEN: usize = 16;

/// The first `chars` characters of `text`, or `None` when it has no more than that.
fn prefix(text: &str, chars: usize) -> Option<&str> {
    if text.len() <= chars {
        return None;
    }
    text.char_indices().nth(chars).map(|(end, _)| &text[..end])
}

/// Where the last word of `prefix` begins: after its last ASCII space, tab or line break (the
/// splits every BERT pre-tokenizer makes, whatever its normaliser removes), or 0.
fn last_word_start(prefix: &str) -> usize {
    prefix.rfind([' ', '\t', '\n', '\r']).map_or(0, |i| i + 1)
}

/// One tokenizer per text kind (they differ only in truncation).
///
/// Long texts are cut before tokenizing, since only their first `max_length` tokens are kept:
/// the text's first `max_length × 16` characters are tokenized without truncation, and if the
/// tokens that truncation would keep all end before the prefix's last (possibly cut) word, they
/// are exactly the whole text's first tokens (words before the last are whole, and BERT
/// tokenizes words independently), so the truncated prefix is the answer; otherwise the cut is
/// widened fourfold and tried again, up to the whole text. A 15 MB document thus costs what its
/// first few kilobytes cost.
pub(crate) struct TextTokenizer {
    query: Tokenizer,
    passage: Tokenizer,
    /// Without truncation: for checking where a cut text's kept tokens end.
    whole: Tokenizer,
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
        let mut whole = base.clone();
        whole.with_padding(None);
        whole
            .with_truncation(None)
            .map_err(|e| Error::invalid_file(path, format!("cannot switch truncation off: {e}")))?;
        Ok(Self {
            query: with_max(query_max)?,
            passage: with_max(passage_max)?,
            whole,
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

    /// Whether `cut` (a prefix of a longer text) yields exactly the longer text's first `max`
    /// tokens: every token truncation keeps ends before the cut's last word.
    fn cut_is_safe(&self, cut: &str, max: usize) -> Result<bool> {
        let encoding = self.whole.encode(cut, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let offsets = encoding.get_offsets();
        // Kept: the first max − 1 tokens and the final special token; the last kept content
        // token is at max − 2 (position 0 is [CLS]).
        if max < 2 || offsets.len() <= max {
            return Ok(false);
        }
        Ok(offsets[max - 2].1 <= last_word_start(cut))
    }

    /// Tokenizes `text`, cut first when long (see the type's docs).
    pub(crate) fn encode(&self, text: &str, kind: TextKind) -> Result<Tokens> {
        let max = self.max_length(kind);
        let mut chars = max.saturating_mul(CHARS_PER_TOKEN).max(1);
        loop {
            match prefix(text, chars) {
                Some(cut) if self.cut_is_safe(cut, max)? => return self.check(self.tokenize(cut, kind)?),
                Some(_) => chars = chars.saturating_mul(4),
                None => return self.check(self.tokenize(text, kind)?),
            }
        }
    }

    /// [`TextTokenizer::encode`] for many texts (short ones tokenized as one batch).
    pub(crate) fn encode_batch(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Tokens>> {
        let max = self.max_length(kind);
        let first = max.saturating_mul(CHARS_PER_TOKEN).max(1);
        let short: Vec<&str> = texts.iter().copied().filter(|t| prefix(t, first).is_none()).collect();
        let mut encodings =
            self.for_kind(kind).encode_batch(short, true).map_err(|e| Error::Tokenizer(e.to_string()))?.into_iter();
        texts
            .iter()
            .map(|text| match prefix(text, first) {
                Some(_) => self.encode(text, kind),
                None => {
                    let e = encodings.next().ok_or_else(|| Error::Tokenizer("a batch lost a text".into()))?;
                    self.check(Tokens { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec() })
                }
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
    use super::{last_word_start, prefix};

    #[test]
    fn prefixes_count_characters_and_last_words_start_after_ascii_whitespace() {
        assert_eq!(prefix("short", 10), None);
        assert_eq!(prefix("one two three", 9), Some("one two t"));
        assert_eq!(prefix("éééé éé", 5), Some("éééé "));
        assert_eq!(last_word_start("one two t"), 8);
        assert_eq!(last_word_start("Seite\x0cEnde"), 0, "a form feed is removed by BERT, not a split");
        assert_eq!(last_word_start("nowhitespace"), 0);
    }
}
