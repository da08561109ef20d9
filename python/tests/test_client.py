"""barista.Client against a real `barista serve` on loopback: the same hits as the Engine."""

import queue
import re
import subprocess
import threading
import time

import pytest

import barista


@pytest.fixture()
def server(tmp_path, model, docs, barista_bin):
    engine = barista.Engine.create(tmp_path / "idx", model)
    engine.add(docs)
    engine.close()  # gives the index's writer back, for the server to take
    process = subprocess.Popen(
        [barista_bin, "serve", "--index", str(tmp_path / "idx"), "--addr", "127.0.0.1:0", "--write-key", "w1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        url, deadline = None, time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            try:
                found = re.search(r"listening on (http://\S+)", lines.get(timeout=1))
            except queue.Empty:
                continue
            url = found and found.group(1)
        assert url, "the server did not start within 60 s"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_client_search_equals_engine_search(server, tmp_path, docs):
    engine = barista.Engine.open(tmp_path / "idx")
    with barista.Client(server) as client:
        for query in ("vitamin D deficiency", docs[2]["title"]):
            for profile in ("balanced", "exact"):
                remote = client.search(query, k=10, profile=profile)
                local = engine.search(query, k=10, profile=profile)
                assert [h.id for h in remote] == [h.id for h in local]
                assert [h.score for h in remote] == pytest.approx([h.score for h in local], abs=1e-6)
        hit = client.search(docs[2]["title"], k=1, filter={"lang": docs[2]["metadata"]["lang"]})[0]
        assert (hit.id, hit.title, hit.text, hit.metadata) == (docs[2]["id"], docs[2]["title"], docs[2]["text"], docs[2]["metadata"])


def test_client_writes_and_errors(server):
    with barista.Client(server) as reader:
        with pytest.raises(barista.InvalidRequestError, match="401"):
            reader.add([{"id": "n1", "text": "a new passage"}])
        with pytest.raises(barista.InvalidRequestError, match="k must be between"):
            reader.search("q", k=0)
        assert reader.get("n1") is None
    with barista.Client(server, api_key="w1") as writer:
        assert writer.add([{"id": "n1", "text": "Tea grows at high altitude."}])["added"] == 1
        assert writer.search("where does tea grow", k=1)[0].id == "n1"
        assert writer.get("n1")["text"] == "Tea grows at high altitude."
        assert writer.delete(["n1", "n2"]) == {"deleted": 1, "live": 60}
    # A wrong prefix is an error, not a missing document.
    with barista.Client(server + "/nowhere") as lost:
        with pytest.raises(barista.InvalidRequestError, match="404"):
            lost.get("n1")
    with pytest.raises(barista.BaristaError, match="cannot reach"):
        barista.Client("http://127.0.0.1:9").search("q")
