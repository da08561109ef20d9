//! The embedding routes other tools speak, against a real `barista serve` on loopback: OpenAI's
//! `POST /v1/embeddings` through the official `openai` Python client (PyPI), TEI's `POST /embed`
//! over plain HTTP; every vector is compared with `barista embed`'s for the same text and rung.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

mod common;

use common::http::{Server, build_index, call, post};
use common::{barista, model, ok};
use serde_json::{Value, json};

/// `barista embed`'s vector of `text` at `rung` (`--query` or `--passage`).
fn cli_vector(text: &str, kind: &str, rung: &str) -> Vec<f64> {
    let out = ok(barista(&["embed", "--model", &model(), kind, "--rung", rung, text]));
    let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    line["rungs"][0]["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn the_official_openai_client_gets_each_rung_of_the_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 10);
    let server = Server::start(&index, &[]);
    let (status, models, _) = call(ureq::get(&server.url("/v1/models")), None);
    assert_eq!(status, 200, "{models}");
    let name = models["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(name, "minilm-l6-2d", "a local folder is named by its last component, not the server's path");

    let python = common::python::python(&["openai==3.63.0"]);
    let script = r#"
import json, sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)
name = sys.argv[2]
texts = ["what is a matryoshka embedding", "Tea grows at high altitude."]
out = {}
# The client asks for base64 by default and decodes it.
r = client.embeddings.create(model=name, input=texts)
out["default"] = [d.embedding for d in r.data]
out["usage"] = r.usage.prompt_tokens
r = client.embeddings.create(model=name, input=texts[0], dimensions=64, encoding_format="float")
out["dim64"] = r.data[0].embedding
r = client.embeddings.create(model=name, input=texts[0], dimensions=32, extra_body={"layer": 3, "input_type": "query"})
out["layer3_dim32_query"] = r.data[0].embedding
try:
    client.embeddings.create(model="text-embedding-3-small", input="x")
except openai.NotFoundError as e:
    out["wrong_model"] = str(e)
try:
    client.embeddings.create(model=name, input="x", dimensions=100)
except openai.BadRequestError as e:
    out["off_ladder"] = str(e)
print(json.dumps(out))
"#;
    let output = std::process::Command::new(python).args(["-c", script, &server.base, &name]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();

    let default = out["default"].as_array().unwrap();
    assert_eq!(default.len(), 2);
    assert!(close(&floats(&default[0]), &cli_vector("what is a matryoshka embedding", "--passage", "6,384")));
    assert!(close(&floats(&default[1]), &cli_vector("Tea grows at high altitude.", "--passage", "6,384")));
    assert!(out["usage"].as_u64().unwrap() >= 2 * 2, "[CLS] and [SEP] at least: {out}");
    assert!(close(&floats(&out["dim64"]), &cli_vector("what is a matryoshka embedding", "--passage", "2,64")));
    assert!(close(
        &floats(&out["layer3_dim32_query"]),
        &cli_vector("what is a matryoshka embedding", "--query", "3,32")
    ));
    let wrong = out["wrong_model"].as_str().unwrap();
    assert!(wrong.contains("text-embedding-3-small") && wrong.contains("GET /v1/models"), "{wrong}");
    let off = out["off_ladder"].as_str().unwrap();
    assert!(off.contains("no rung of the ladder has 100 dimensions") && off.contains("(2,64)"), "{off}");
}

#[test]
fn tei_embed_answers_normalised_vectors_in_order_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 10);
    let server = Server::start(&index, &["--max-batch", "3"]);
    let texts = ["red fruit", "salt water"];
    let (status, body) = post(&server, "/embed", &json!({"inputs": texts, "dimensions": 96}));
    assert_eq!(status, 200, "{body}");
    for (vector, text) in body.as_array().unwrap().iter().zip(texts) {
        let expected = cli_vector(text, "--passage", "3,96");
        assert!(close(&floats(vector), &expected), "{text}");
        let norm: f64 = floats(vector).iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalised: {norm}");
    }
    let (status, body) = post(&server, "/embed", &json!({"inputs": "red fruit", "layer": 1}));
    assert_eq!(status, 200, "{body}");
    assert!(close(&floats(&body[0]), &cli_vector("red fruit", "--passage", "1,32")));

    // Bad requests: a clear 4xx, in Barista's error shape.
    let cases = [
        (json!({"inputs": []}), 400, "empty list"),
        (json!({"inputs": ["a", "b", "c", "d"]}), 413, "the limit is 3"),
        (json!({"inputs": "a", "layer": 9}), 400, "no rung of the ladder is at layer 9"),
        (json!({"inputs": "a", "layer": 2, "dimensions": 4096}), 400, "4096"),
        (json!({"inputs": [[101, 102]]}), 400, "token arrays are not accepted"),
        (json!({"inputs": [101, 102]}), 400, "token arrays are not accepted"),
        (json!({"inputs": "a", "normalize": false}), 400, "cosine"),
        (json!({"inputs": "a", "pooling": "cls"}), 422, "pooling"),
    ];
    for (request, want, says) in cases {
        let (status, body) = post(&server, "/embed", &request);
        assert_eq!(status, want, "{request}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{request}: {body}");
    }
    let (status, body) = post(&server, "/v1/embeddings", &json!({"input": "a", "model": "x"}));
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("model_not_found")), "{body}");
}

#[test]
fn embedding_routes_need_a_read_key_when_keys_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 10);
    let server = Server::start(&index, &["--read-key", "r3ad"]);
    let body = json!({"inputs": "a"}).to_string();
    let (status, _, _) = call(ureq::post(&server.url("/embed")), Some(&body));
    assert_eq!(status, 401);
    let (status, _, _) = call(ureq::post(&server.url("/embed")).set("Authorization", "Bearer r3ad"), Some(&body));
    assert_eq!(status, 200);
    let (status, _, _) = call(ureq::get(&server.url("/v1/models")), None);
    assert_eq!(status, 401);
}
