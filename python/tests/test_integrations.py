"""LangChain and LlamaIndex, the real packages from PyPI, over a real Barista index."""

import barista
from barista.langchain import BaristaEmbeddings, BaristaVectorStore
from barista.llama_index import BaristaRetriever


def test_langchain_vector_store(tmp_path, model, docs):
    texts = [d["text"] for d in docs[:20]]
    metadatas = [d["metadata"] for d in docs[:20]]
    ids = [d["id"] for d in docs[:20]]
    store = BaristaVectorStore.from_texts(texts, metadatas=metadatas, ids=ids, path=str(tmp_path / "lc.idx"), model=model)

    found = store.similarity_search(texts[4], k=3)
    assert found[0].id == ids[4] and found[0].page_content == texts[4] and found[0].metadata == metadatas[4]
    scored = store.similarity_search_with_score(texts[4], k=3)
    assert scored[0][0].id == ids[4] and scored[0][1] > scored[1][1]
    assert all(d.metadata["lang"] == "fr" for d in store.similarity_search(texts[4], k=5, filter={"lang": "fr"}))

    new = store.add_texts(["Tea grows at high altitude."], metadatas=[{"lang": "en"}])
    assert len(new) == 1 and store.get_by_ids(new)[0].page_content == "Tea grows at high altitude."
    retriever = store.as_retriever(search_kwargs={"k": 1})
    assert retriever.invoke("where does tea grow")[0].id == new[0]

    assert store.delete([new[0], ids[4]])
    assert store.get_by_ids([new[0], ids[4]]) == []
    assert ids[4] not in [d.id for d in store.similarity_search(texts[4], k=5)]

    relevance = store.similarity_search_with_relevance_scores(texts[5], k=2)
    assert 0.0 <= relevance[1][1] <= relevance[0][1] <= 1.0


def test_langchain_embeddings_at_a_rung(model):
    encoder = barista.Encoder(model)
    embeddings = BaristaEmbeddings(encoder, rung=(2, 64))
    query = embeddings.embed_query("red fruit")
    documents = embeddings.embed_documents(["Apples are red fruit.", "The ocean is salty."])
    assert len(query) == 64 and len(documents) == 2 and len(documents[0]) == 64
    assert documents[0] == encoder.embed(["Apples are red fruit."], rungs=[(2, 64)])[(2, 64)][0].tolist()


def test_llama_index_retriever(engine, docs):
    retriever = BaristaRetriever(engine, similarity_top_k=3)
    nodes = retriever.retrieve(docs[9]["title"])
    assert len(nodes) == 3
    assert nodes[0].node.node_id == docs[9]["id"]
    assert nodes[0].node.get_content() == docs[9]["text"]
    assert nodes[0].node.metadata["title"] == docs[9]["title"] and nodes[0].node.metadata["lang"] == docs[9]["metadata"]["lang"]
    assert nodes[0].score >= nodes[1].score
    filtered = BaristaRetriever(engine, similarity_top_k=5, filter={"lang": "en"}).retrieve("protein")
    assert filtered and all(n.node.metadata["lang"] == "en" for n in filtered)


def test_the_rag_example_runs_offline(model):
    import json
    import pathlib
    import subprocess
    import sys

    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "rag.py"
    out = subprocess.run([sys.executable, str(example), model], check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    assert len(result["retrieved"]) == 3 and result["source"] in result["retrieved"] and result["answer"]
