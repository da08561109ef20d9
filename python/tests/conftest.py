"""Shared fixtures: the real model and SciFact documents from ../shared, real index folders."""

import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
MODEL = str(SHARED / "models" / "minilm-l6-2d")


def scifact(n):
    """The first ``n`` SciFact abstracts as Barista documents (with a ``lang`` field)."""
    docs = []
    with open(SHARED / "datasets" / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i == n:
                break
            d = json.loads(line)
            docs.append(
                {"id": d["_id"], "title": d["title"], "text": d["text"], "metadata": {"lang": "en" if i % 2 == 0 else "fr"}}
            )
    return docs


@pytest.fixture(scope="session")
def model():
    if not os.path.isdir(MODEL):
        pytest.fail(f"the shared model is missing: {MODEL}")
    return MODEL


@pytest.fixture(scope="session")
def docs():
    return scifact(60)


@pytest.fixture(scope="session")
def barista_bin():
    path = os.environ.get("BARISTA_BIN")
    if not path:
        pytest.fail("set BARISTA_BIN to the barista binary (the cargo test that runs these sets it)")
    return path


@pytest.fixture()
def engine(tmp_path, model, docs):
    import barista

    engine = barista.Engine.create(tmp_path / "idx", model)
    engine.add(docs)
    return engine
