"""A small retrieval-augmented pipeline that runs offline with the shared model.

    python python/examples/rag.py [MODEL] [CORPUS.jsonl]

Indexes 300 SciFact abstracts, retrieves with LangChain's retriever interface over Barista,
and answers with the retrieved passages' most relevant sentences (an extractive stand-in for
the LLM a real service would call: swap `answer` for your model's chat call).
"""

import json
import pathlib
import sys
import tempfile

import numpy as np

import barista
from barista.langchain import BaristaVectorStore

HERE = pathlib.Path(__file__).resolve()
SHARED = HERE.parents[3] / "shared"
MODEL = sys.argv[1] if len(sys.argv) > 1 else str(SHARED / "models" / "minilm-l6-2d")
CORPUS = sys.argv[2] if len(sys.argv) > 2 else str(SHARED / "datasets" / "scifact" / "corpus.jsonl")


def load(n):
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def answer(question, passages, encoder):
    """The sentence of the retrieved passages closest to the question, with its source."""
    sentences = [(p.id, s.strip()) for p in passages for s in p.page_content.split(". ") if s.strip()]
    rung = encoder.rungs[-1]
    q = encoder.embed(question, kind="query", rungs=[rung])[rung][0]
    s = encoder.embed([text for _, text in sentences], rungs=[rung])[rung]
    best = int(np.argmax(s @ q))
    return sentences[best]


def main():
    docs = load(300)
    with tempfile.TemporaryDirectory() as folder:
        store = BaristaVectorStore.from_texts(
            [d["text"] for d in docs],
            metadatas=[{"title": d["title"]} for d in docs],
            ids=[d["_id"] for d in docs],
            path=str(pathlib.Path(folder) / "rag.idx"),
            model=MODEL,
        )
        retriever = store.as_retriever(search_kwargs={"k": 3})
        question = "Does vitamin D deficiency affect bone health?"
        passages = retriever.invoke(question)
        source, sentence = answer(question, passages, store.engine)
        print(json.dumps({"question": question, "retrieved": [p.id for p in passages], "answer": sentence, "source": source}))


if __name__ == "__main__":
    main()
