"""barista.Engine and barista.Encoder against the real model, real index folders and the CLI."""

import json
import subprocess
import threading
import time

import numpy as np
import pytest

import barista

from conftest import MODEL, scifact


def cli_json(barista_bin, *args):
    out = subprocess.run([barista_bin, *args], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_search_returns_hits_with_text_title_and_metadata(engine, docs):
    target = docs[7]
    hits = engine.search(target["title"], k=5)
    assert hits[0].id == target["id"]
    assert hits[0].title == target["title"] and hits[0].text == target["text"]
    assert hits[0].metadata == target["metadata"]
    assert hits[0].rung == engine.rungs[-1]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    bare = engine.search(target["title"], k=5, include_text=False, include_metadata=False)
    assert [h.id for h in bare] == [h.id for h in hits] and bare[0].text is None and bare[0].metadata is None


def test_the_same_results_as_the_cli_on_the_same_index(tmp_path, engine, docs, barista_bin):
    engine.flush()
    for profile in ("balanced", "exact"):
        for query in ("vitamin D deficiency", docs[3]["title"], "cell biology of the immune system"):
            ours = engine.search(query, k=10, profile=profile)
            args = [barista_bin, "search", "--index", str(tmp_path / "idx"), "--profile", profile, "--json", query]
            theirs = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
            assert [h.id for h in ours] == [h["id"] for h in theirs["hits"]], (profile, query)
            assert [h.score for h in ours] == pytest.approx([h["score"] for h in theirs["hits"]], abs=1e-6)


def test_filter_get_delete_and_len(engine, docs):
    assert len(engine) == len(docs)
    hits = engine.search("protein", k=20, filter={"lang": "fr"})
    assert hits and all(h.metadata["lang"] == "fr" for h in hits)
    assert engine.get(docs[0]["id"])["text"] == docs[0]["text"]
    assert engine.get("no-such-id") is None
    report = engine.delete([docs[0]["id"], "no-such-id"])
    assert report["deleted"] == 1 and report["live"] == len(docs) - 1
    assert engine.get(docs[0]["id"]) is None
    assert docs[0]["id"] not in [h.id for h in engine.search(docs[0]["title"], k=10)]


def test_bad_input_raises_the_engines_message_and_changes_nothing(engine, docs):
    before = len(engine)
    with pytest.raises(barista.InvalidRequestError, match="appears twice in the batch"):
        engine.add([{"id": "x1", "text": "a"}, {"id": "x1", "text": "b"}])
    with pytest.raises(barista.InvalidRequestError, match="documents must be a list of dicts"):
        engine.add([{"id": "x2"}])
    with pytest.raises(ValueError):  # InvalidRequestError is a ValueError
        engine.add([{"id": "", "text": "empty id"}])
    assert len(engine) == before and engine.get("x1") is None
    with pytest.raises(barista.InvalidRequestError, match="k must be between 1 and 10000, not 0"):
        engine.search("q", k=0)
    with pytest.raises(barista.InvalidRequestError, match="nope"):
        engine.search("q", profile="nope")
    with pytest.raises(barista.InvalidRequestError, match="kind must be"):
        engine.embed("q", kind="question")


def test_close_gives_the_writer_back(tmp_path, model):
    with barista.Engine.create(tmp_path / "c.idx", model) as first:
        first.add([{"id": "a", "text": "Tea grows at high altitude."}])
        assert first.similarity == "cosine"
    with pytest.raises(barista.BaristaError, match="closed"):
        first.search("tea")
    second = barista.Engine.open(tmp_path / "c.idx")
    second.add([{"id": "b", "text": "The ocean is salty."}])  # takes the writer the first gave back
    assert len(second) == 2


def test_open_errors_name_the_path(tmp_path):
    with pytest.raises(barista.BaristaError, match="missing.idx"):
        barista.Engine.open(tmp_path / "missing.idx")


def test_embed_gives_float32_arrays_per_rung_equal_to_the_cli(model, barista_bin):
    encoder = barista.Encoder(model)
    texts = ["what is a matryoshka embedding", "Tea grows at high altitude."]
    vectors = encoder.embed(texts)
    assert list(vectors) == encoder.rungs
    for (layer, dim), array in vectors.items():
        assert array.dtype == np.float32 and array.shape == (2, dim)
    lines = cli_json(barista_bin, "embed", "--model", model, *texts)
    tokens = encoder.tokenize(texts)
    assert [len(t) for t in tokens] == [line["tokens"] for line in lines]
    assert all(t[0] == 101 and t[-1] == 102 for t in tokens)  # [CLS] … [SEP] in this vocabulary
    for i, line in enumerate(lines):
        for rung in line["rungs"]:
            np.testing.assert_allclose(vectors[(rung["layer"], rung["dim"])][i], rung["vector"], atol=1e-6)
    query = encoder.embed(texts[0], kind="query", rungs=[(3, 32)])
    (line,) = cli_json(barista_bin, "embed", "--model", model, "--query", "--rung", "3,32", texts[0])
    np.testing.assert_allclose(query[(3, 32)][0], line["rungs"][0]["vector"], atol=1e-6)


def test_the_gil_is_released_while_rust_encodes(engine, docs):
    texts = [d["text"] for d in docs] * 3
    done = threading.Event()

    def work():
        engine.embed(texts)
        done.set()

    worker = threading.Thread(target=work)
    start = last = time.perf_counter()
    longest_gap = 0.0
    worker.start()
    while not done.is_set():
        now = time.perf_counter()
        longest_gap = max(longest_gap, now - last)
        last = now
    worker.join()
    took = time.perf_counter() - start
    # Holding the GIL, the embedding call would stop this loop for its whole duration; released,
    # the loop only waits for the interpreter's switch interval (5 ms) now and then.
    assert took > 0.2, f"the call must be long enough to tell: {took:.3f} s"
    assert longest_gap < took / 4, f"the loop stalled {longest_gap:.3f} s of {took:.3f} s"


def test_an_index_built_by_the_cli_opens_in_python(tmp_path, barista_bin):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in scifact(30)), encoding="utf-8")
    index = tmp_path / "cli.idx"
    subprocess.run(
        [barista_bin, "index", "--model", MODEL, "--input", str(corpus), "--out", str(index)],
        check=True,
        capture_output=True,
    )
    engine = barista.Engine.open(index)
    assert len(engine) == 30 and engine.model.endswith("minilm-l6-2d")
    first = scifact(1)[0]
    assert engine.search(first["title"], k=1)[0].id == first["id"]


def test_documents_embedded_elsewhere_index_as_if_encoded_here(tmp_path, model, engine, docs):
    """Encode on one side (a pipeline's encoder worker), write on the other (a shard writer):
    the same hits and scores as documents the engine encodes itself; bad shapes and missing
    rungs are refused and write nothing."""
    encoder = barista.Encoder(model)
    vectors = encoder.embed_documents(docs)
    assert sorted(vectors) == sorted(engine.rungs)
    assert all(v.shape == (len(docs), dim) and v.dtype == np.float32 for (_, dim), v in vectors.items())
    other = barista.Engine.create(tmp_path / "elsewhere", model)
    smallest = engine.rungs[0]
    with pytest.raises(barista.InvalidRequestError, match="no vectors for the stored rung"):
        other.add_embedded(docs, {r: v for r, v in vectors.items() if r != smallest})
    with pytest.raises(barista.InvalidRequestError, match="one row per document"):
        other.add_embedded(docs, {**vectors, smallest: vectors[smallest][:-1]})
    with pytest.raises(barista.InvalidRequestError, match="is not a rung"):
        other.add_embedded(docs, {"6,384": vectors[engine.rungs[-1]], **vectors})
    with pytest.raises(barista.InvalidRequestError, match="must be a dict"):
        other.add_embedded(docs, list(vectors.values()))
    with pytest.raises(barista.InvalidRequestError, match="holds int32 values"):
        other.add_embedded(docs, {**vectors, smallest: (vectors[smallest] * 100).astype(np.int32)})
    with pytest.raises(barista.InvalidRequestError, match="L2-normalised"):
        other.add_embedded(docs, {**vectors, smallest: vectors[smallest] * 3})
    assert len(other) == 0
    assert other.add_embedded(docs, vectors)["added"] == len(docs)
    for profile in ("exact", "balanced"):
        for query in ("vitamin D deficiency", docs[3]["title"]):
            ours = [(h.id, h.score) for h in other.search(query, k=10, profile=profile)]
            theirs = [(h.id, h.score) for h in engine.search(query, k=10, profile=profile)]
            assert ours == theirs, (profile, query)
