//! `barista._barista`: the native half of the Python package. The Python half
//! (`python/barista/__init__.py`) wraps these classes with numpy arrays, docstrings and types.
//!
//! Every call that encodes, searches or writes releases the GIL (`Python::detach`) while Rust
//! works, so Python threads run meanwhile and several searches proceed in parallel. Inputs are
//! converted once into the engine's own serde types (`Document`, `SearchRequest`) through
//! `pythonize`, so they pass the very checks the REST API applies. Engine errors become
//! `barista.InvalidRequestError` (a `ValueError`: the caller can fix the input) or
//! `barista.BaristaError` (a `RuntimeError`: the engine, its files or the model failed), with the
//! engine's message unchanged.

use barista_engine::{
    CreateOptions, Document, DocumentBatch, EncoderOptions, Error, OpenOptions, Rung, RungRows, SearchRequest,
    Similarity, TextKind,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use pythonize::{depythonize, pythonize};
use std::path::PathBuf;
use std::sync::Mutex;

create_exception!(_barista, BaristaError, PyRuntimeError, "The engine, its files or the model failed.");
create_exception!(_barista, InvalidRequestError, PyValueError, "A request Barista refuses as it is: fix the input.");

/// An engine error as a Python exception with the same message.
fn py_err(e: Error) -> PyErr {
    match e {
        Error::InvalidRequest(message) => InvalidRequestError::new_err(message),
        other => BaristaError::new_err(other.to_string()),
    }
}

/// A conversion error (a wrong Python type or shape) as `InvalidRequestError`.
fn shape_err(what: &str, e: impl std::fmt::Display) -> PyErr {
    InvalidRequestError::new_err(format!("{what}: {e}"))
}

fn encoder_options(threads: Option<usize>) -> EncoderOptions {
    EncoderOptions { threads, ..EncoderOptions::default() }
}

fn text_kind(kind: &str) -> PyResult<TextKind> {
    match kind {
        "query" => Ok(TextKind::Query),
        "passage" | "document" => Ok(TextKind::Passage),
        other => Err(InvalidRequestError::new_err(format!("kind must be \"query\" or \"passage\", not {other:?}"))),
    }
}

/// One search hit.
#[pyclass(frozen, get_all, module = "barista._barista")]
pub struct Hit {
    /// The document's id.
    id: String,
    /// Its score at the final rung (the model's similarity: cosine or dot product).
    score: f32,
    /// The rung the score comes from, as (layer, dim).
    rung: (usize, usize),
    /// Its title, when stored and asked for.
    title: Option<String>,
    /// Its text, when asked for.
    text: Option<String>,
    /// Its metadata (a dict), when stored and asked for.
    metadata: Option<Py<PyAny>>,
}

#[pymethods]
impl Hit {
    fn __repr__(&self) -> String {
        format!("Hit(id={:?}, score={})", self.id, self.score)
    }
}

/// Vectors per rung: `(layer, dim, n, little-endian f32 bytes of shape (n, dim))`.
type RawRungs = Vec<(usize, usize, usize, Vec<u8>)>;

fn embed_raw(
    encoder: &barista_engine::Encoder,
    texts: &[String],
    kind: TextKind,
    rungs: Option<Vec<(usize, usize)>>,
) -> Result<RawRungs, Error> {
    let rungs: Vec<Rung> = match rungs {
        Some(r) => r.into_iter().map(Rung::from).collect(),
        None => encoder.profile().rungs.clone(),
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embeddings = encoder.encode(&refs, kind, &rungs)?;
    Ok(rungs
        .iter()
        .enumerate()
        .map(|(r, rung)| {
            let bytes = embeddings.block(r).iter().flat_map(|x| x.to_le_bytes()).collect();
            (rung.layer, rung.dim, texts.len(), bytes)
        })
        .collect())
}

/// Documents from Python (`[{"id", "text", "title"?, "metadata"?}, ...]`), converted once.
fn documents(documents: &Bound<'_, PyAny>) -> PyResult<Vec<Document>> {
    depythonize(documents)
        .map_err(|e| shape_err("documents must be a list of dicts {\"id\", \"text\", \"title\"?, \"metadata\"?}", e))
}

/// Vectors per rung from Python (`(layer, dim, n, little-endian f32 bytes)`, as `raw_to_py`
/// gives them), checked for shape: `n` rows of `dim` values each.
fn raw_from_py<'a>(raw: impl Iterator<Item = (usize, usize, usize, &'a [u8])>) -> PyResult<Vec<RungRows>> {
    raw.map(|(layer, dim, n, bytes)| {
        if n.checked_mul(dim).and_then(|v| v.checked_mul(4)) != Some(bytes.len()) {
            return Err(InvalidRequestError::new_err(format!(
                "the vectors for rung ({layer},{dim}) hold {} bytes, not {n} rows × {dim} float32 values",
                bytes.len()
            )));
        }
        let values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(RungRows { rung: Rung::new(layer, dim), values })
    })
    .collect()
}

fn raw_to_py<'py>(py: Python<'py>, raw: RawRungs) -> PyResult<Bound<'py, PyList>> {
    let items =
        raw.into_iter().map(|(layer, dim, n, bytes)| (layer, dim, n, PyBytes::new(py, &bytes))).collect::<Vec<_>>();
    PyList::new(py, items)
}

/// A 2D Matryoshka encoder on its own (no index): vectors per rung.
#[pyclass(frozen, module = "barista._barista")]
pub struct Encoder {
    inner: barista_engine::Encoder,
}

#[pymethods]
impl Encoder {
    #[new]
    #[pyo3(signature = (model, *, threads = None))]
    fn new(py: Python<'_>, model: String, threads: Option<usize>) -> PyResult<Encoder> {
        let options = encoder_options(threads);
        let inner = py.detach(|| barista_engine::Encoder::load(&model, &options)).map_err(py_err)?;
        Ok(Encoder { inner })
    }

    /// The model's ladder: [(layer, dim), …], small to large.
    #[getter]
    fn rungs(&self) -> Vec<(usize, usize)> {
        self.inner.profile().rungs.iter().map(|r| (r.layer, r.dim)).collect()
    }

    /// The model's name (its folder or Hub id).
    #[getter]
    fn model(&self) -> String {
        self.inner.name().to_string()
    }

    #[pyo3(signature = (texts, kind, rungs = None))]
    fn embed_raw<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        kind: &str,
        rungs: Option<Vec<(usize, usize)>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let kind = text_kind(kind)?;
        let raw = py.detach(|| embed_raw(&self.inner, &texts, kind, rungs)).map_err(py_err)?;
        raw_to_py(py, raw)
    }

    /// Every rung's vectors of documents' passages (the title, a space, the text), as an
    /// index stores them: the other half of `Engine.add_embedded`.
    fn embed_documents_raw<'py>(&self, py: Python<'py>, documents: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let docs = self::documents(documents)?;
        // The rules an index applies, so that what is embedded here can be written elsewhere.
        DocumentBatch::check(&docs).map_err(py_err)?;
        let passages: Vec<String> = docs.iter().map(Document::passage).collect();
        let raw = py.detach(|| embed_raw(&self.inner, &passages, TextKind::Passage, None)).map_err(py_err)?;
        raw_to_py(py, raw)
    }

    /// Token ids of each text as the encoder sees them (`[CLS]` … `[SEP]`, cut at the maximum
    /// length of `kind`).
    fn tokenize(&self, py: Python<'_>, texts: Vec<String>, kind: &str) -> PyResult<Vec<Vec<u32>>> {
        let kind = text_kind(kind)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tokens = py.detach(|| self.inner.tokenize_batch(&refs, kind)).map_err(py_err)?;
        Ok(tokens.into_iter().map(|t| t.ids).collect())
    }
}

/// An index and its model. `close` gives the index (and its writer's lock) back at once;
/// afterwards every call raises.
#[pyclass(frozen, module = "barista._barista")]
pub struct Engine {
    inner: Mutex<Option<barista_engine::Engine>>,
}

impl Engine {
    fn new(inner: barista_engine::Engine) -> Engine {
        Engine { inner: Mutex::new(Some(inner)) }
    }

    /// The open engine (a cheap handle), or an error once closed.
    fn engine(&self) -> PyResult<barista_engine::Engine> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| BaristaError::new_err("this Engine is closed: open the index again"))
    }
}

#[pymethods]
impl Engine {
    #[staticmethod]
    #[pyo3(signature = (path, model, *, store = "f16", store_coarse = "i8", graph_rungs = None, threads = None))]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        model: String,
        store: &str,
        store_coarse: &str,
        graph_rungs: Option<Vec<(usize, usize)>>,
        threads: Option<usize>,
    ) -> PyResult<Engine> {
        let mut options = CreateOptions::new(model);
        options.encoder = encoder_options(threads);
        options.element = store.parse().map_err(|e| shape_err("store", e))?;
        options.coarse_element = store_coarse.parse().map_err(|e| shape_err("store_coarse", e))?;
        options.graph_rungs = graph_rungs.unwrap_or_default().into_iter().map(Rung::from).collect();
        let inner = py.detach(|| barista_engine::Engine::create(&path, &options)).map_err(py_err)?;
        Ok(Engine::new(inner))
    }

    #[staticmethod]
    #[pyo3(signature = (path, *, model = None, threads = None, write = false))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        model: Option<String>,
        threads: Option<usize>,
        write: bool,
    ) -> PyResult<Engine> {
        let options = OpenOptions { model, encoder: encoder_options(threads), write, ..OpenOptions::default() };
        let inner = py.detach(|| barista_engine::Engine::open(&path, &options)).map_err(py_err)?;
        Ok(Engine::new(inner))
    }

    /// The index's ladder: [(layer, dim), …], small to large.
    #[getter]
    fn rungs(&self) -> PyResult<Vec<(usize, usize)>> {
        Ok(self.engine()?.encoder().profile().rungs.iter().map(|r| (r.layer, r.dim)).collect())
    }

    /// The model's name (its folder or Hub id).
    #[getter]
    fn model(&self) -> PyResult<String> {
        Ok(self.engine()?.encoder().name().to_string())
    }

    /// The profile's similarity: "cosine" or "dot".
    #[getter]
    fn similarity(&self) -> PyResult<&'static str> {
        Ok(match self.engine()?.encoder().profile().similarity {
            Similarity::Cosine => "cosine",
            Similarity::Dot => "dot",
        })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let engine = self.engine()?;
        Ok(py.detach(|| engine.index().snapshot().len() as usize))
    }

    /// Gives the index back now (the writer's lock included); later calls raise.
    fn close(&self, py: Python<'_>) {
        let engine = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(|| drop(engine));
    }

    fn add<'py>(&self, py: Python<'py>, documents: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let docs = self::documents(documents)?;
        let batch = DocumentBatch::check(&docs).map_err(py_err)?;
        let engine = self.engine()?;
        let report = py.detach(|| engine.add_batch(&batch)).map_err(py_err)?;
        Ok(pythonize(py, &report)?)
    }

    /// `add` with vectors embedded elsewhere: per rung `(layer, dim, n, f32 bytes)`.
    fn add_embedded<'py>(
        &self,
        py: Python<'py>,
        documents: &Bound<'py, PyAny>,
        vectors: Vec<(usize, usize, usize, Bound<'py, PyBytes>)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let docs = self::documents(documents)?;
        let vectors = raw_from_py(vectors.iter().map(|(l, d, n, b)| (*l, *d, *n, b.as_bytes())))?;
        let engine = self.engine()?;
        let report = py.detach(|| engine.add_embedded(&docs, &vectors)).map_err(py_err)?;
        Ok(pythonize(py, &report)?)
    }

    fn delete<'py>(&self, py: Python<'py>, ids: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let engine = self.engine()?;
        let report = py.detach(|| engine.delete(&refs)).map_err(py_err)?;
        Ok(pythonize(py, &report)?)
    }

    /// Picks up what another process committed since open (or the last reload).
    fn reload(&self, py: Python<'_>) -> PyResult<bool> {
        let engine = self.engine()?;
        py.detach(|| engine.reload()).map_err(py_err)
    }

    /// Whether each id is a live document.
    fn contains(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<Vec<bool>> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let engine = self.engine()?;
        py.detach(|| engine.contains(&refs)).map_err(py_err)
    }

    fn get<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let engine = self.engine()?;
        let doc = py.detach(|| engine.get(id)).map_err(py_err)?;
        doc.map(|d| pythonize(py, &d).map_err(PyErr::from)).transpose()
    }

    /// Runs a search from a request dict shaped as `POST /search`'s body; returns the hits and
    /// the engine's own time for the search in milliseconds (`timings.total_ms`, which the
    /// Python benchmark subtracts from the call's wall time).
    fn search<'py>(&self, py: Python<'py>, request: &Bound<'py, PyDict>) -> PyResult<(Bound<'py, PyList>, f64)> {
        let request: SearchRequest = depythonize(request).map_err(|e| shape_err("search request", e))?;
        let engine = self.engine()?;
        let response = py.detach(|| engine.search(&request)).map_err(py_err)?;
        let total_ms = response.timings.total_ms;
        let hits = response
            .hits
            .into_iter()
            .map(|h| {
                let metadata = h.metadata.as_ref().map(|m| pythonize(py, m).map(Bound::unbind)).transpose()?;
                Ok(Hit {
                    id: h.id,
                    score: h.score,
                    rung: (h.rung.layer, h.rung.dim),
                    title: h.title,
                    text: h.text,
                    metadata,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok((PyList::new(py, hits)?, total_ms))
    }

    /// Runs a search and returns the whole response as `POST /search` answers it (hits,
    /// stages, stopped_early, timings) as plain Python values: a shard behind a router.
    fn search_response<'py>(&self, py: Python<'py>, request: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyAny>> {
        let request: SearchRequest = depythonize(request).map_err(|e| shape_err("search request", e))?;
        let engine = self.engine()?;
        let response = py.detach(|| engine.search(&request)).map_err(py_err)?;
        Ok(pythonize(py, &response)?)
    }

    #[pyo3(signature = (texts, kind, rungs = None))]
    fn embed_raw<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        kind: &str,
        rungs: Option<Vec<(usize, usize)>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let kind = text_kind(kind)?;
        let engine = self.engine()?;
        let raw = py.detach(|| embed_raw(engine.encoder(), &texts, kind, rungs)).map_err(py_err)?;
        raw_to_py(py, raw)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine()?;
        let stats = py.detach(|| engine.stats());
        Ok(pythonize(py, &stats)?)
    }

    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine()?;
        let report = py.detach(|| engine.flush()).map_err(py_err)?;
        Ok(pythonize(py, &report)?)
    }

    fn compact<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine()?;
        let report = py.detach(|| engine.compact(&|_, _, _| {})).map_err(py_err)?;
        Ok(pythonize(py, &report)?)
    }
}

/// The native module.
#[pymodule]
fn _barista(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<Encoder>()?;
    m.add_class::<Hit>()?;
    m.add("BaristaError", m.py().get_type::<BaristaError>())?;
    m.add("InvalidRequestError", m.py().get_type::<InvalidRequestError>())?;
    Ok(())
}
