//! Embedding routes that other tools already speak: OpenAI's `POST /v1/embeddings` (with
//! `GET /v1/models`) and Hugging Face text-embeddings-inference's `POST /embed`.
//!
//! Both choose the rung from the request: `dimensions` (OpenAI's field, also accepted by TEI)
//! takes the ladder's rung with that many dimensions, Barista's `layer` extension the rung at
//! that encoder depth, both together any `(layer, dim)` the model can produce (off-ladder pairs
//! were not trained as such), neither the largest rung. No other embedding server lets a client
//! choose the encoder's depth: a client that needs cheap vectors asks for an early layer, and the
//! forward pass stops there. Texts are cut at the model's maximum length for their kind
//! (`input_type`: `passage`, the default, or `query`), as TEI does with `truncate: true`.
//!
//! Sources: OpenAI's API reference for embeddings (request, response, `encoding_format:
//! base64` as little-endian f32 bytes, which the official Python client asks for by default);
//! TEI's OpenAPI document for `/embed` (`inputs`, `normalize` defaulting to true, an array of
//! vectors in the order of the inputs).

use super::auth::Access;
use super::error::ApiError;
use super::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use barista_engine::{Encoder, Rung, TextKind};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One text or several.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Input {
    /// One text.
    One(String),
    /// Several texts, embedded in one batch; the answer keeps their order.
    Many(Vec<String>),
    /// Token ids (OpenAI accepts them; refused here with a clear message: ids of another
    /// tokenizer mean nothing to this model).
    Tokens(Vec<serde_json::Value>),
}

impl Input {
    fn texts(&self) -> Result<Vec<&str>, ApiError> {
        match self {
            Input::One(text) => Ok(vec![text.as_str()]),
            Input::Many(texts) => Ok(texts.iter().map(String::as_str).collect()),
            Input::Tokens(_) => Err(ApiError::bad_request(
                "token arrays are not accepted: send text (a string or a list of strings); with LangChain's \
                 OpenAIEmbeddings set check_embedding_ctx_length=False",
            )),
        }
    }
}

/// How the texts are encoded: as queries or as passages (documents), which differ in maximum
/// length (and, for models with instructions, in prefix).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// A search query.
    Query,
    /// A passage to be indexed (the default).
    #[default]
    Passage,
    /// The same as `passage` (the name other embedding APIs use).
    Document,
}

impl From<InputType> for TextKind {
    fn from(t: InputType) -> TextKind {
        match t {
            InputType::Query => TextKind::Query,
            InputType::Passage | InputType::Document => TextKind::Passage,
        }
    }
}

/// How vectors are written in the answer.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON numbers.
    #[default]
    Float,
    /// Base64 of the vector's little-endian f32 bytes (4 bytes per dimension).
    Base64,
}

/// Body of `POST /v1/embeddings` (OpenAI's fields, and Barista's `layer` and `input_type`).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// The text, or a list of texts (token arrays are not accepted: send text).
    pub input: Input,
    /// The served model's name (see `GET /v1/models`).
    pub model: String,
    /// Dimensions of the vectors: the ladder's rung with that many dimensions (with `layer`: any
    /// dimension up to the hidden size). Default: the largest rung's.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// Barista's extension: the encoder layer the vectors are pooled from (1 is the first
    /// transformer block, 0 the embedding output); the forward pass stops there. Default: the
    /// chosen rung's layer.
    #[serde(default)]
    pub layer: Option<usize>,
    /// `float` (the default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Barista's extension: `passage` (the default; also `document`) or `query`.
    #[serde(default)]
    pub input_type: Option<InputType>,
    /// An end-user id (accepted and ignored).
    #[serde(default)]
    pub user: Option<String>,
}

/// One vector as JSON numbers or base64.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Embedding {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// One entry of [`EmbeddingsResponse::data`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmbeddingItem {
    /// Always `embedding`.
    pub object: &'static str,
    /// Position of the text in `input`.
    pub index: usize,
    /// The vector.
    pub embedding: Embedding,
}

/// Tokens encoded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Tokens of every text, `[CLS]` and `[SEP]` included, after truncation.
    pub prompt_tokens: usize,
    /// The same as `prompt_tokens`.
    pub total_tokens: usize,
}

/// Answer of `POST /v1/embeddings`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: &'static str,
    /// One vector per input text, in order.
    pub data: Vec<EmbeddingItem>,
    /// The served model's name.
    pub model: String,
    /// Tokens encoded.
    pub usage: Usage,
}

/// Body of `POST /embed` (TEI's fields, and Barista's `layer` and `input_type`).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// The text, or a list of texts.
    pub inputs: Input,
    /// L2-normalise the vectors (default true, as TEI). `false` is refused for cosine profiles,
    /// whose vectors are normalised by definition.
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Accepted for compatibility: texts are always cut at the model's maximum length.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// As in `POST /v1/embeddings`.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// As in `POST /v1/embeddings`.
    #[serde(default)]
    pub layer: Option<usize>,
    /// As in `POST /v1/embeddings`.
    #[serde(default)]
    pub input_type: Option<InputType>,
}

/// One model, as `GET /v1/models` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelCard {
    /// The name to send as `model`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Always 0 (unknown).
    pub created: u64,
    /// Always `barista`.
    pub owned_by: &'static str,
}

/// Answer of `GET /v1/models`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The served model.
    pub data: Vec<ModelCard>,
}

/// The rung a request asks for (see the module documentation).
pub fn choose_rung(encoder: &Encoder, dimensions: Option<usize>, layer: Option<usize>) -> Result<Rung, ApiError> {
    let rungs = &encoder.profile().rungs;
    let ladder = || rungs.iter().map(Rung::to_string).collect::<Vec<_>>().join(" ");
    let rung = match (dimensions, layer) {
        (None, None) => *rungs.last().ok_or_else(|| ApiError::internal("the model's ladder is empty"))?,
        (Some(dim), None) => *rungs.iter().rev().find(|r| r.dim == dim).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no rung of the ladder has {dim} dimensions; the ladder (layer,dim): {}; add `layer` to take the \
                 first {dim} dimensions of any layer",
                ladder()
            ))
        })?,
        (None, Some(layer)) => *rungs.iter().rev().find(|r| r.layer == layer).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no rung of the ladder is at layer {layer}; the ladder (layer,dim): {}; add `dimensions` to take any \
                 layer up to {}",
                ladder(),
                encoder.layers()
            ))
        })?,
        (Some(dim), Some(layer)) => Rung::new(layer, dim),
    };
    encoder.check_rung(rung)?;
    Ok(rung)
}

/// The texts of a request, checked against the server's limits.
fn checked_texts<'a>(input: &'a Input, state: &AppState, field: &str) -> Result<Vec<&'a str>, ApiError> {
    let texts = input.texts()?;
    if texts.is_empty() {
        return Err(ApiError::bad_request(format!("`{field}` is an empty list: send at least one text")));
    }
    if texts.len() > state.limits.max_batch {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("{} texts in one request; the limit is {}: split the batch", texts.len(), state.limits.max_batch),
        ));
    }
    Ok(texts)
}

/// Vectors of `texts` at `rung` and the tokens encoded, on the write pool (which encodes
/// documents too), so that long embedding batches do not hold the search threads.
async fn embed(
    state: &Arc<AppState>,
    texts: Vec<String>,
    kind: TextKind,
    rung: Rung,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let engine = state.engine.clone();
    super::routes::run(state, &state.writes, move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let embeddings = engine.encoder().encode(&refs, kind, &[rung])?;
        let vectors = (0..refs.len()).map(|i| embeddings.vector(i, 0).to_vec()).collect();
        Ok((vectors, embeddings.token_counts().iter().sum()))
    })
    .await
}

/// The served model's name as clients see it: a Hub id as it is, a local folder by its last
/// component (the server's paths are not the clients' business).
fn public_name(encoder: &Encoder) -> String {
    let name = encoder.name();
    let path = std::path::Path::new(name);
    match path.file_name() {
        Some(last) if path.is_dir() => last.to_string_lossy().into_owned(),
        _ => name.to_string(),
    }
}

/// Whether `name` names the served model: its public name or its full name (folder or Hub id).
fn is_served(encoder: &Encoder, name: &str) -> bool {
    name == encoder.name() || name == public_name(encoder)
}

/// `GET /v1/models`
pub async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<ModelList>, ApiError> {
    state.keys.check(&headers, Access::Read)?;
    let card = ModelCard { id: public_name(state.engine.encoder()), object: "model", created: 0, owned_by: "barista" };
    Ok(Json(ModelList { object: "list", data: vec![card] }))
}

/// `POST /v1/embeddings`
pub async fn openai(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    state.keys.check(&headers, Access::Read)?;
    let Json(request) = body?;
    let encoder = state.engine.encoder();
    if !is_served(encoder, &request.model) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "the model {:?} is not served here; this server serves {:?} (see GET /v1/models)",
                request.model,
                public_name(encoder)
            ),
        ));
    }
    let rung = choose_rung(encoder, request.dimensions, request.layer)?;
    let texts = checked_texts(&request.input, &state, "input")?.into_iter().map(str::to_string).collect();
    let kind = request.input_type.unwrap_or_default().into();
    let (vectors, tokens) = embed(&state, texts, kind, rung).await?;
    let format = request.encoding_format.unwrap_or_default();
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingItem { object: "embedding", index, embedding: encode(vector, format) })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: public_name(encoder),
        usage: Usage { prompt_tokens: tokens, total_tokens: tokens },
    }))
}

/// `POST /embed`
pub async fn tei(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<EmbedRequest>, JsonRejection>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    state.keys.check(&headers, Access::Read)?;
    let Json(request) = body?;
    let encoder = state.engine.encoder();
    if request.normalize == Some(false) && encoder.profile().similarity == barista_engine::Similarity::Cosine {
        return Err(ApiError::bad_request(
            "this model's profile is cosine: its vectors are L2-normalised after truncation, so `normalize: false` \
             cannot be honoured; omit it (or send true)",
        ));
    }
    let rung = choose_rung(encoder, request.dimensions, request.layer)?;
    let texts = checked_texts(&request.inputs, &state, "inputs")?.into_iter().map(str::to_string).collect();
    let kind = request.input_type.unwrap_or_default().into();
    let (mut vectors, _) = embed(&state, texts, kind, rung).await?;
    if request.normalize.unwrap_or(true) {
        vectors.iter_mut().for_each(|v| barista_engine::normalize(v));
    }
    Ok(Json(vectors))
}

/// A vector as the request's `encoding_format` asks.
fn encode(vector: Vec<f32>, format: EncodingFormat) -> Embedding {
    match format {
        EncodingFormat::Float => Embedding::Float(vector),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            Embedding::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let Embedding::Base64(text) = encode(vec![1.0, -2.5], EncodingFormat::Base64) else { panic!("not base64") };
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    }

    #[test]
    fn input_is_one_text_or_a_list() {
        let one: EmbedRequest = serde_json::from_str(r#"{"inputs": "a"}"#).unwrap();
        assert_eq!(one.inputs.texts().unwrap(), ["a"]);
        let many: EmbeddingsRequest = serde_json::from_str(r#"{"input": ["a", "b"], "model": "m"}"#).unwrap();
        assert_eq!(many.input.texts().unwrap(), ["a", "b"]);
        let tokens: EmbeddingsRequest = serde_json::from_str(r#"{"input": [1, 2], "model": "m"}"#).unwrap();
        assert!(tokens.input.texts().unwrap_err().message.contains("token arrays are not accepted"));
    }
}
