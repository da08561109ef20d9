//! Long texts are cut before they are tokenized (only their first tokens are kept), with
//! exactly the tokens the whole text gives: checked against the model's tokenizer run on the
//! whole text, for long prose, long "words" (WordPiece turns a word of more than 100
//! characters into one [UNK]), texts without any whitespace, and short texts.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use barista_engine::{Encoder, EncoderOptions, Rung, TextKind};
use barista_tests::{model_arg, model_dir};
use tokenizers::{Tokenizer, TruncationParams};

/// The model's tokenizer on the whole text, truncated at `max`.
fn reference(text: &str, max: usize) -> Vec<u32> {
    let mut t = Tokenizer::from_file(model_dir().join("tokenizer.json")).unwrap();
    t.with_padding(None);
    t.with_truncation(Some(TruncationParams { max_length: max, ..Default::default() })).unwrap();
    t.encode(text, true).unwrap().get_ids().to_vec()
}

#[test]
fn a_cut_text_tokenizes_exactly_like_the_whole_text() {
    let e = Encoder::load(&model_arg(), &EncoderOptions::default()).unwrap();
    let (passage_max, query_max) = (e.profile().passage_max_length, e.profile().query_max_length);
    let prose = "Calcium channels regulate the release of neurotransmitters at the synapse. ".repeat(30_000);
    let giant_words: String =
        (0..300).map(|i| format!("{} ", char::from(b'a' + (i % 26) as u8).to_string().repeat(150))).collect();
    let no_space = "x".repeat(50_000);
    let mixed = format!("{} {}", "y".repeat(10_000), "short words follow here. ".repeat(500));
    // Form feeds (PDF text): BERT removes them, so "Seite\x0cEnde" is one word to it.
    let form_feeds = "Seite\x0cEnde des Kapitels\x0cund weiter ".repeat(2_000);
    for text in [prose.as_str(), &giant_words, &no_space, &mixed, &form_feeds, "A short passage."] {
        for (kind, max) in [(TextKind::Passage, passage_max), (TextKind::Query, query_max)] {
            let ours = e.tokenize(text, kind).unwrap();
            assert_eq!(ours.ids, reference(text, max), "{kind:?} of a {}-byte text", text.len());
        }
    }
    // Batches cut the same way, and embed the same.
    let texts = [prose.as_str(), &giant_words, &form_feeds, "A short passage."];
    let batch = e.encode(&texts, TextKind::Passage, &[Rung::new(6, 384)]).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let single = e.encode(&[text], TextKind::Passage, &[Rung::new(6, 384)]).unwrap();
        assert_eq!(batch.vector(i, 0), single.vector(0, 0));
        assert_eq!(batch.token_counts()[i], reference(text, passage_max).len());
    }
}
