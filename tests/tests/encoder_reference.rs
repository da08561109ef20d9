//! The encoder reproduces the PyTorch reference outputs of the shared model.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use barista_engine::{Encoder, EncoderOptions, Isa, Pooling, ProfileSpec, Rung, Similarity, TextKind};
use barista_tests::{cosine, model_arg, model_dir};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Reference {
    max_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    input_ids: Vec<u32>,
    mean: BTreeMap<String, Vec<f32>>,
    cls: BTreeMap<String, Vec<f32>>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(model_dir().join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

/// Every layer at full width, unnormalised: the raw pooled states.
fn raw_layers() -> Vec<Rung> {
    (0..=6).map(|l| Rung::new(l, 384)).collect()
}

fn encoder(pooling: Pooling, isa: Option<Isa>) -> Encoder {
    let options = EncoderOptions {
        profile: ProfileSpec {
            rungs: Some(raw_layers()),
            pooling: Some(pooling),
            similarity: Some(Similarity::Dot),
            ..Default::default()
        },
        isa,
        ..Default::default()
    };
    Encoder::load(&model_arg(), &options).expect("the shared model loads")
}

#[test]
fn token_ids_match_and_long_text_is_truncated() {
    let r = reference();
    let e = encoder(Pooling::Mean, None);
    assert_eq!(e.profile().passage_max_length, r.max_length);
    for item in &r.items {
        let tokens = e.tokenize(&item.text, TextKind::Passage).unwrap();
        assert_eq!(tokens.ids, item.input_ids, "token ids of {:?}", item.text);
    }
    let long = r.items.iter().find(|i| i.input_ids.len() == r.max_length).expect("the reference has a truncated text");
    let words = long.text.split_whitespace().count();
    assert!(words > r.max_length / 2, "the long text really is long");
    assert_eq!(*long.input_ids.last().unwrap(), 102, "truncation keeps [SEP] at the end");
}

/// The largest error of any component, as a share of the vector's largest component, allowed
/// against the PyTorch reference: f32 against f32 with other summation orders, and the
/// reference rounded to 6 decimals (observed: at most 2.1e-6).
const MAX_RELATIVE_ERROR: f64 = 2e-5;

fn check_layers(pooling: Pooling, isa: Option<Isa>) {
    let r = reference();
    let e = encoder(pooling, isa);
    let texts: Vec<&str> = r.items.iter().map(|i| i.text.as_str()).collect();
    let batch = e.encode(&texts, TextKind::Passage, &raw_layers()).unwrap();
    let mut worst = 1.0f64;
    let mut worst_relative = 0.0f64;
    for (t, item) in r.items.iter().enumerate() {
        let want = match pooling {
            Pooling::Mean => &item.mean,
            Pooling::Cls => &item.cls,
        };
        for layer in 0..=6 {
            let got = batch.vector(t, layer);
            let want = &want[&layer.to_string()];
            let c = cosine(got, want);
            worst = worst.min(c);
            assert!(c >= 0.999_999, "{pooling:?} layer {layer} of {:?}: cosine {c}", item.text);
            // Cosine ignores scale, which dot-product profiles rank by: bound every component's
            // error by the vector's largest component too (the reference has 6 decimals).
            let largest = want.iter().fold(0f64, |m, w| m.max(f64::from(w.abs())));
            let error = got.iter().zip(want).fold(0f64, |m, (g, w)| m.max(f64::from((g - w).abs())));
            let relative = error / largest;
            worst_relative = worst_relative.max(relative);
            assert!(
                relative <= MAX_RELATIVE_ERROR,
                "{pooling:?} layer {layer} of {:?}: largest error {error:.2e} is {relative:.2e} of the largest component",
                item.text
            );
        }
    }
    eprintln!(
        "{pooling:?} {isa:?}: worst cosine to the PyTorch reference {worst:.7}, worst relative error {worst_relative:.2e}"
    );
}

#[test]
fn every_layer_matches_pytorch_mean_pooling() {
    check_layers(Pooling::Mean, None);
}

#[test]
fn every_layer_matches_pytorch_cls() {
    check_layers(Pooling::Cls, None);
}

#[test]
fn every_instruction_set_matches_pytorch() {
    for isa in Isa::supported() {
        check_layers(Pooling::Mean, Some(isa));
    }
}

#[test]
fn batches_equal_single_texts() {
    let r = reference();
    let e = encoder(Pooling::Mean, None);
    let texts: Vec<&str> = r.items.iter().map(|i| i.text.as_str()).collect();
    let batch = e.encode(&texts, TextKind::Passage, &raw_layers()).unwrap();
    for (t, text) in texts.iter().enumerate() {
        let single = e.encode(&[text], TextKind::Passage, &raw_layers()).unwrap();
        for layer in 0..=6 {
            assert_eq!(
                single.vector(0, layer),
                batch.vector(t, layer),
                "layer {layer} of text {t}: batch differs from single"
            );
        }
    }
}

#[test]
fn resuming_equals_a_straight_pass() {
    let e = encoder(Pooling::Mean, None);
    let text = "How do coarse-to-fine retrieval cascades trade latency for recall?";
    let mut resumed = e.query(text).unwrap();
    let early = resumed.rung(Rung::new(2, 384)).unwrap();
    assert_eq!(resumed.layer(), 2);
    let late = resumed.rung(Rung::new(6, 384)).unwrap();
    let mut straight = e.query(text).unwrap();
    straight.advance_to(6).unwrap();
    assert_eq!(straight.pooled(6).unwrap(), late.as_slice());
    assert_eq!(straight.pooled(2).unwrap(), early.as_slice());
    // And a query equals the same text encoded in one pass as a query.
    let one_pass = e.encode(&[text], TextKind::Query, &[Rung::new(2, 384), Rung::new(6, 384)]).unwrap();
    assert_eq!(one_pass.vector(0, 0), early.as_slice());
    assert_eq!(one_pass.vector(0, 1), late.as_slice());
}

#[test]
fn results_do_not_depend_on_threads() {
    let load = |threads, query_threads| {
        let options =
            EncoderOptions { threads: Some(threads), query_threads: Some(query_threads), ..Default::default() };
        Encoder::load(&model_arg(), &options).unwrap()
    };
    let (serial, parallel) = (load(1, 1), load(3, 3));
    let texts: Vec<String> =
        (0..40).map(|i| format!("passage number {i} about {}", "retrieval ".repeat(i % 7))).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rungs = serial.profile().rungs.clone();
    let a = serial.encode(&refs, TextKind::Passage, &rungs).unwrap();
    let b = parallel.encode(&refs, TextKind::Passage, &rungs).unwrap();
    for (r, rung) in rungs.iter().enumerate() {
        assert_eq!(a.block(r), b.block(r), "rung {rung}");
    }
    for text in &refs[..5] {
        let mut q1 = serial.query(text).unwrap();
        let mut q3 = parallel.query(text).unwrap();
        for &rung in &rungs {
            assert_eq!(q1.rung(rung).unwrap(), q3.rung(rung).unwrap());
        }
    }
}
