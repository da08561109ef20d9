//! Models load from every supported layout: single or sharded safetensors, f16 / f32 / bf16
//! weights, profiles from 2d_matryoshka.json, the sentence-transformers files or flags, and
//! Hub ids resolved from the local cache.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use barista_engine::{
    Encoder, EncoderOptions, Pooling, ProfileSpec, Rung, Similarity, TextKind, WeightPrecision, WeightsChoice,
};
use barista_tests::{cosine, model_arg, model_dir};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

const TEXTS: [&str; 3] = [
    "what is a matryoshka embedding",
    "The mitochondrial genome is inherited maternally in most animals.",
    "Café naïve résumé — Zürich straße 東京 😀",
];

fn copy_side_files(to: &Path, with_profile: bool) {
    let mut files = vec!["config.json", "tokenizer.json", "sentence_bert_config.json", "modules.json"];
    if with_profile {
        files.push("2d_matryoshka.json");
    }
    for f in files {
        std::fs::copy(model_dir().join(f), to.join(f)).unwrap();
    }
    std::fs::create_dir_all(to.join("1_Pooling")).unwrap();
    std::fs::copy(model_dir().join("1_Pooling/config.json"), to.join("1_Pooling/config.json")).unwrap();
}

/// Writes the shared model's weights converted to `dtype`, in `shards` files.
fn write_model(to: &Path, dtype: DType, shards: usize) {
    copy_side_files(to, true);
    let tensors = candle_core::safetensors::load(model_dir().join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    if shards == 1 {
        let converted: HashMap<String, Tensor> =
            names.iter().map(|n| ((*n).clone(), tensors[*n].to_dtype(dtype).unwrap())).collect();
        candle_core::safetensors::save(&converted, to.join("model.safetensors")).unwrap();
        return;
    }
    let mut weight_map = serde_json::Map::new();
    for (s, chunk) in names.chunks(names.len().div_ceil(shards)).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", s + 1);
        let converted: HashMap<String, Tensor> =
            chunk.iter().map(|n| ((*n).clone(), tensors[*n].to_dtype(dtype).unwrap())).collect();
        candle_core::safetensors::save(&converted, to.join(&file)).unwrap();
        for n in chunk {
            weight_map.insert((*n).clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(to.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

fn embed(model: &str, options: &EncoderOptions) -> (Encoder, barista_engine::Embeddings) {
    let encoder = Encoder::load(model, options).unwrap();
    let rungs = encoder.profile().rungs.clone();
    let out = encoder.encode(&TEXTS, TextKind::Passage, &rungs).unwrap();
    (encoder, out)
}

#[test]
fn f32_sharded_and_bf16_weights_load() {
    let (original, want) = embed(&model_arg(), &EncoderOptions::default());
    assert_eq!(original.weight_precision(), WeightPrecision::F16, "f16 weights are kept as published");
    let last = want.rungs().len() - 1;

    // The same values in f32, in three shards: bit-identical results (f16 → f32 is exact).
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), DType::F32, 3);
    let (f32_encoder, got) = embed(dir.path().to_str().unwrap(), &EncoderOptions::default());
    assert_eq!(f32_encoder.weight_precision(), WeightPrecision::F32);
    for t in 0..TEXTS.len() {
        assert_eq!(got.vector(t, last), want.vector(t, last), "f32 copy of text {t}");
    }

    // Rounded to bf16: close, not identical.
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), DType::BF16, 1);
    let (bf16_encoder, got) = embed(dir.path().to_str().unwrap(), &EncoderOptions::default());
    assert_eq!(bf16_encoder.weight_precision(), WeightPrecision::Bf16);
    for t in 0..TEXTS.len() {
        let c = cosine(got.vector(t, last), want.vector(t, last));
        assert!(c > 0.99, "bf16 copy of text {t}: cosine {c}");
    }

    // Widening at load time changes nothing either.
    let (_, widened) = embed(&model_arg(), &EncoderOptions { weights: WeightsChoice::F32, ..Default::default() });
    assert_eq!(widened.block(last), want.block(last));
}

#[test]
fn damaged_weights_are_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    copy_side_files(dir.path(), true);
    let bytes = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = Encoder::load(dir.path().to_str().unwrap(), &EncoderOptions::default()).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");

    // A tensor of the wrong shape.
    let tensors = candle_core::safetensors::load(model_dir().join("model.safetensors"), &Device::Cpu).unwrap();
    let mut tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
    tensors
        .insert("encoder.layer.2.intermediate.dense.bias".into(), Tensor::zeros(7, DType::F16, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let err = Encoder::load(dir.path().to_str().unwrap(), &EncoderOptions::default()).unwrap_err().to_string();
    assert!(err.contains("encoder.layer.2.intermediate.dense.bias") && err.contains("shape"), "{err}");
}

#[test]
fn profile_comes_from_sentence_transformers_files_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    copy_side_files(dir.path(), false);
    std::os::unix::fs::symlink(model_dir().join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let model = dir.path().to_str().unwrap();
    // Without a 2d_matryoshka.json nothing names the rungs.
    let err = Encoder::load(model, &EncoderOptions::default()).unwrap_err().to_string();
    assert!(err.contains("no rungs") && err.contains("--rungs"), "{err}");
    // Rungs from flags; pooling and length from the sentence-transformers files.
    let options = EncoderOptions {
        profile: ProfileSpec { rungs: Some(vec![Rung::new(3, 96), Rung::new(6, 384)]), ..Default::default() },
        ..Default::default()
    };
    let encoder = Encoder::load(model, &options).unwrap();
    let p = encoder.profile();
    assert_eq!(
        (p.pooling, p.similarity, p.passage_max_length, p.query_max_length),
        (Pooling::Mean, Similarity::Cosine, 256, 256)
    );
    assert_eq!(encoder.layers(), 6);
    // A CLS sentence-transformers config is honoured; flags beat files.
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true}"#,
    )
    .unwrap();
    let encoder = Encoder::load(model, &options).unwrap();
    assert_eq!(encoder.profile().pooling, Pooling::Cls);
    let forced = EncoderOptions {
        profile: ProfileSpec {
            pooling: Some(Pooling::Mean),
            similarity: Some(Similarity::Dot),
            ..options.profile.clone()
        },
        ..Default::default()
    };
    let encoder = Encoder::load(model, &forced).unwrap();
    assert_eq!((encoder.profile().pooling, encoder.profile().similarity), (Pooling::Mean, Similarity::Dot));
    // Unsupported sentence-transformers pooling needs an explicit choice.
    std::fs::write(dir.path().join("1_Pooling/config.json"), r#"{"pooling_mode_max_tokens": true}"#).unwrap();
    let err = Encoder::load(model, &options).unwrap_err().to_string();
    assert!(err.contains("not plain cls or mean"), "{err}");
    assert!(Encoder::load(model, &forced).is_ok());
}

#[test]
fn shallow_profiles_load_only_the_layers_they_need() {
    let options = EncoderOptions {
        profile: ProfileSpec { rungs: Some(vec![Rung::new(1, 32), Rung::new(3, 96)]), ..Default::default() },
        ..Default::default()
    };
    let encoder = Encoder::load(&model_arg(), &options).unwrap();
    assert_eq!(encoder.layers(), 3);
    let mut q = encoder.query("a query").unwrap();
    let err = q.rung(Rung::new(4, 128)).unwrap_err().to_string();
    assert!(err.contains("only the layers up to the profile's deepest rung are loaded"), "{err}");
    assert!(q.rung(Rung::new(3, 384)).is_ok(), "any dim of a loaded layer is available");
}

#[test]
fn a_hub_id_resolves_from_the_local_cache_offline() {
    // Lay the shared model out as the Hugging Face cache does, then ask for it by id, offline,
    // in a child process (HF_HOME is process-wide).
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--barista-test--minilm-l6-2d");
    let snapshot = repo.join("snapshots/0123456789abcdef0123456789abcdef01234567");
    std::fs::create_dir_all(snapshot.join("1_Pooling")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123456789abcdef0123456789abcdef01234567").unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "2d_matryoshka.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::os::unix::fs::symlink(model_dir().join(f), snapshot.join(f)).unwrap();
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hub_child", "--nocapture", "--include-ignored"])
        .env("HF_HOME", home.path())
        .env("BARISTA_TEST_HUB_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run by a_hub_id_resolves_from_the_local_cache_offline in a child process"]
fn hub_child() {
    assert_eq!(std::env::var("BARISTA_TEST_HUB_CHILD").as_deref(), Ok("1"), "only meant to run as a child");
    let options = EncoderOptions { offline: true, ..Default::default() };
    let encoder = Encoder::load("barista-test/minilm-l6-2d", &options).unwrap();
    assert_eq!(encoder.name(), "barista-test/minilm-l6-2d");
    let (_, want) = embed(&model_arg(), &EncoderOptions::default());
    let got = encoder.encode(&TEXTS, TextKind::Passage, &encoder.profile().rungs).unwrap();
    assert_eq!(got.block(5), want.block(5));
    let err = Encoder::load("barista-test/not-cached", &options).unwrap_err().to_string();
    assert!(err.contains("offline") && err.contains("--model"), "{err}");
}
