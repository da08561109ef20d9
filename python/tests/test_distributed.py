"""barista.distributed on a real multi-process Ray cluster on loopback: a head and a worker node
started with `ray start` (the CLI a user runs), the real model, SciFact, real shard folders and
the Serve application's HTTP router."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import barista
from barista import distributed
from barista.distributed import layout as layout_mod

from conftest import SHARED

CORPUS = SHARED / "datasets" / "scifact" / "corpus.jsonl"
QUERIES = SHARED / "datasets" / "scifact" / "queries.jsonl"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start(args, temp_dir):
    """Runs `ray start ...` (the command a user runs) in a new process group, which its node's
    processes (GCS, raylet, workers) keep; returns the group's id once the node is up."""
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    command = [ray_bin, "start", "--disable-usage-stats", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1"]
    command += [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
    node = subprocess.Popen(command + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = node.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        stop_nodes([node.pid])
        pytest.fail(f"`{' '.join(command + args)}` did not finish in 120 s")
    if node.returncode != 0:
        stop_nodes([node.pid])
        pytest.fail(f"`ray start` failed:\n{output.decode(errors='replace')[-3000:]}")
    return node.pid


def stop_nodes(groups):
    """Stops the nodes' process groups: SIGTERM, then SIGKILL what is left after 10 s."""
    for group in reversed(groups):
        _signal_group(group, signal.SIGTERM)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(g) for g in groups):
        time.sleep(0.2)
    for group in groups:
        _signal_group(group, signal.SIGKILL)


def _alive(group):
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def _signal_group(group, sig):
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def cluster():
    """A head (2 CPUs) and a worker node (2 CPUs) started as separate `ray start` processes."""
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no usage reports (and no Prometheus probes) from tests
    # Ray 2.60 turns token authentication on for `ray start` when ~/.ray/auth_token exists (a
    # local `ray.init()` writes one): a loopback test cluster decides for itself, for all its
    # processes alike (they inherit this environment).
    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp_dir = tempfile.mkdtemp(prefix="rb-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    address = f"127.0.0.1:{port}"
    groups = []
    try:
        head = ["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
        groups.append(ray_start(head + [f"--ray-client-server-port={free_port()}"], temp_dir))
        groups.append(ray_start([f"--address={address}", "--num-cpus=2"], temp_dir))
        ray.init(address=address, log_to_driver=False)
        deadline = time.time() + 60
        while sum(1 for n in ray.nodes() if n["Alive"]) < 2:
            if time.time() > deadline:
                pytest.fail("the Ray worker node did not join")
            time.sleep(0.5)
        yield address
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception:  # noqa: BLE001 (best effort: Serve may not have started)
            pass
        ray.shutdown()
        stop_nodes(groups)
        if not os.environ.get("KEEP_RAY_LOGS"):  # set it to read the nodes' logs after a failure
            shutil.rmtree(temp_dir, ignore_errors=True)


def corpus_file(path, n, start=0):
    """The SciFact corpus's lines [start, start + n) as they are (BEIR: _id, title, text, metadata)."""
    with open(CORPUS, encoding="utf-8") as f, open(path, "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            if i >= start + n:
                break
            if i >= start:
                out.write(line)
    return str(path)


def documents(path):
    with open(path, encoding="utf-8") as f:
        return [distributed.documents.from_json_line(line, path) for line in f if line.strip()]


def queries(n):
    with open(QUERIES, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def shard_sizes(layout):
    """Each shard's live documents, read from its folder by a fresh reader."""
    sizes = []
    for s in range(layout.shards):
        engine = barista.Engine.open(layout.shard_dir(s))
        sizes.append(len(engine))
        engine.close()
    return sizes


@pytest.fixture(scope="module")
def built(cluster, tmp_path_factory, model):
    """300 SciFact abstracts indexed into 3 shards by 2 workers, and the same in one index."""
    tmp = tmp_path_factory.mktemp("dist")
    source = corpus_file(tmp / "corpus.jsonl", 300)
    report = distributed.index(source, tmp / "shards", model=model, shards=3, workers=2, batch_size=32, progress=False)
    single = barista.Engine.create(tmp / "single", model)
    single.add(documents(source))
    return {"tmp": tmp, "source": source, "report": report, "root": tmp / "shards", "single": single}


def test_every_document_lands_in_the_shard_its_id_hashes_to(built):
    report = built["report"]
    assert (report.read, report.added, report.skipped, report.repeated) == (300, 300, 0, 0)
    assert report.documents_per_second > 0
    layout = distributed.ShardLayout.open(built["root"])
    assert layout.shards == 3
    expected = [[] for _ in range(3)]
    for doc in documents(built["source"]):
        expected[layout_mod.shard_of(doc["id"], 3)].append(doc["id"])
    assert shard_sizes(layout) == [len(ids) for ids in expected]
    assert all(len(ids) > 50 for ids in expected), [len(i) for i in expected]
    for s, ids in enumerate(expected):
        engine = barista.Engine.open(layout.shard_dir(s))
        assert all(engine.contains(ids)), f"shard {s} lacks some of its documents"
        engine.close()
    assert [s["documents"] for s in report.shards] == [len(ids) for ids in expected]


def test_a_run_with_another_number_of_shards_or_model_is_refused(built, model, tmp_path):
    with pytest.raises(barista.InvalidRequestError, match="holds 3 shards, not 4"):
        distributed.index(built["source"], built["root"], model=model, shards=4, progress=False)
    other = tmp_path / "other-model"
    os.symlink(model, other)
    with pytest.raises(barista.InvalidRequestError, match="was indexed with the model"):
        distributed.index(built["source"], built["root"], model=str(other), shards=3, progress=False)


def test_parquet_input_indexes_like_jsonl(built, model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = documents(built["source"])[:120]
    table = pa.table(
        {
            "id": [d["id"] for d in docs],
            "title": [d["title"] for d in docs],
            "text": [d["text"] for d in docs],
            "metadata": [{"lang": "en" if i % 2 else "fr"} for i in range(len(docs))],
        }
    )
    pq.write_table(table.slice(0, 60), tmp_path / "part-0.parquet")
    pq.write_table(table.slice(60), tmp_path / "part-1.parquet")
    report = distributed.index(
        [tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"], tmp_path / "shards", model=model, shards=2,
        progress=False,
    )
    assert (report.read, report.added) == (120, 120)
    layout = distributed.ShardLayout.open(tmp_path / "shards")
    owner = layout.shard_of(docs[1]["id"])
    engine = barista.Engine.open(layout.shard_dir(owner))
    assert engine.get(docs[1]["id"]) == {"id": docs[1]["id"], "title": docs[1]["title"], "text": docs[1]["text"], "metadata": {"lang": "en"}}
    hits = engine.search(docs[1]["text"], k=1, profile="exact", filter={"lang": "en"})
    assert hits[0].id == docs[1]["id"]
    engine.close()
    assert sum(shard_sizes(layout)) == 120
    # Workers that would take every CPU leave none for Ray Data's Parquet file listing: refused
    # (it would wait for ever), as is a folder without a format; neither writes anything.
    with pytest.raises(barista.InvalidRequestError, match="lists Parquet files with a task that needs one CPU"):
        distributed.index(tmp_path / "part-0.parquet", tmp_path / "none", model=model, shards=2, workers=4)
    with pytest.raises(barista.InvalidRequestError, match="give --format jsonl|parquet"):
        distributed.index(tmp_path, tmp_path / "none", model=model, shards=2)
    assert not (tmp_path / "none").exists()


def test_a_bad_line_is_refused_naming_its_file(cluster, model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "a", "text": "fine"}\n{"_id": "b", "title": "no text"}\n', encoding="utf-8")
    with pytest.raises(barista.InvalidRequestError, match=r"bad\.jsonl: document 'b' has no `text`"):
        distributed.index(bad, tmp_path / "out", model=model, shards=2, progress=False)


def test_rerunning_resumes_after_a_killed_run(cluster, model, tmp_path):
    source = corpus_file(tmp_path / "corpus.jsonl", 600)
    root = tmp_path / "shards"
    command = [sys.executable, "-m", "barista.distributed", "index", "--input", source, "--out", str(root)]
    command += ["--model", model, "--shards", "2", "--workers", "1", "--batch-size", "8", "--address", cluster, "--json"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    written = 0
    deadline = time.time() + 240
    while written < 48:
        assert driver.poll() is None, f"the run ended before it could be killed: {driver.stderr.read()[-2000:]!r}"
        assert time.time() < deadline, "nothing was written in 240 s"
        time.sleep(0.3)
        written = 0
        for s in range(2):
            folder = root / f"shard-{s:05d}-of-00002"
            if (folder / "MANIFEST").exists() or any(folder.glob("*")):
                try:
                    engine = barista.Engine.open(folder)
                    written += len(engine)
                    engine.close()
                except barista.BaristaError:
                    pass  # being created
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its Ray workers' owner: a crash
    driver.wait()
    layout = distributed.ShardLayout.open(root)
    before = sum(shard_sizes(layout))
    assert 48 <= before < 600, before
    report = distributed.index(source, root, model=model, shards=2, workers=2, batch_size=32, progress=False)
    assert report.read == 600
    assert report.skipped >= before and report.added == 600 - report.skipped, report
    assert sum(s["documents"] for s in report.shards) == 600
    # What was written before the crash and after it searches as one index built at once.
    single = barista.Engine.create(tmp_path / "single", model)
    single.add(documents(source))
    for q in queries(5):
        merged = []
        for s in range(2):
            engine = barista.Engine.open(layout.shard_dir(s))
            merged += [(h.score, h.id) for h in engine.search(q, k=10, profile="exact")]
            engine.close()
        merged.sort(key=lambda x: (-x[0], x[1]))
        assert [i for _, i in merged[:10]] == [h.id for h in single.search(q, k=10, profile="exact")]


@pytest.fixture(scope="module")
def served(built, cluster):
    """The Serve application over the 3 shards, 2 search replicas each, on a loopback port."""
    from ray import serve

    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    app = distributed.build(str(built["root"]), replicas=2, threads=1, searcher_cpus=0.1, writer_cpus=0.1, router_cpus=0.1)
    serve.run(app, name="barista", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.delete("barista")


def test_sharded_search_returns_the_single_index_results(built, served):
    single = built["single"]
    client = barista.Client(served)
    overlaps = []
    for q in queries(20):
        got = client.search(q, k=10, profile="exact")
        want = single.search(q, k=10, profile="exact")
        assert [h.id for h in got] == [h.id for h in want], q
        assert max(abs(a.score - b.score) for a, b in zip(got, want)) <= 1e-6, q
        assert got[0].text == want[0].text and got[0].rung == want[0].rung
        balanced = {h.id for h in client.search(q, k=10)}
        overlaps.append(len(balanced & {h.id for h in single.search(q, k=10)}) / 10)
    assert sum(overlaps) / len(overlaps) >= 0.99, overlaps
    stats = client.stats()
    assert stats["documents"] == 300 and len(stats["shards"]) == 3


def test_the_router_answers_like_barista_serve(served):
    import urllib.error
    import urllib.request

    def call(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(served + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert call("POST", "/search", {"query": " ", "k": 3})[0] == 400
    status, body = call("POST", "/search", {"query": "x", "k": 0})
    assert status == 400 and "k must be between 1 and 1000" in body["error"]["message"]
    status, body = call("POST", "/search", {"query": "x" * (17 << 10)})
    assert status == 400 and "the limit is 16384" in body["error"]["message"]
    status, body = call("POST", "/search", {"query": "x", "profile": "nope"})
    assert status == 400 and body["error"]["code"] == "invalid_request", body
    assert call("GET", "/search")[0] == 405
    status, body = call("POST", "/search", {"query": "x", "adaptive": True})
    assert status == 400 and "shards would stop at different rungs" in body["error"]["message"]
    assert call("GET", "/health") == (200, {"status": "ok"})
    status, body = call("POST", "/search", {"query": "vitamin D", "k": 3, "include_text": False})
    assert status == 200 and len(body["hits"]) == 3 and "text" not in body["hits"][0]
    assert len(body["shards"]) == 3 and body["timings"]["total_ms"] > 0


def test_writes_go_to_the_owning_shard_and_a_bad_batch_writes_nothing(built, served):
    client = barista.Client(served)
    layout = distributed.ShardLayout.open(built["root"])
    doc = {"id": "ray-new/1", "title": "Espresso", "text": "Crema forms when pressurised water emulsifies coffee oils."}
    report = client.add([doc])
    assert report["added"] == 1 and report["live"] == 301
    owner = layout.shard_of(doc["id"])
    for s in range(3):
        engine = barista.Engine.open(layout.shard_dir(s))
        assert engine.contains([doc["id"]]) == [s == owner]
        engine.close()
    assert client.get(doc["id"])["text"] == doc["text"]
    assert client.search("how does crema form on espresso", k=1)[0].id == doc["id"]
    with pytest.raises(barista.InvalidRequestError, match="appears twice"):
        client.add([{"id": "ray-new/2", "text": "fine"}, {"id": "ray-new/2", "text": "again"}])
    with pytest.raises(barista.InvalidRequestError):
        client.add([{"id": "ray-new/3", "text": "fine"}, {"id": "", "text": "no id"}])
    assert client.get("ray-new/2") is None and client.get("ray-new/3") is None
    assert client.delete(doc["id"]) == {"deleted": 1, "live": 300}
    assert client.get(doc["id"]) is None
    assert client.stats()["documents"] == 300


def test_killing_a_shard_replica_under_load_never_gives_a_wrong_answer(built, served):
    from ray import serve

    single = built["single"]
    texts = queries(8)
    expected = {q: [h.id for h in single.search(q, k=10, profile="exact")] for q in texts}

    def replica_pids(shard):
        handle = serve.get_deployment_handle(f"shard-{shard}", app_name="barista")
        pids = set()
        deadline = time.time() + 30
        while len(pids) < 2 and time.time() < deadline:
            pids.add(handle.pid.remote().result())
        assert len(pids) == 2, f"shard {shard} should have 2 replicas"
        return sorted(pids)

    victims = [replica_pids(1)[0], replica_pids(2)[1]]
    results = {"right": 0, "wrong": [], "errors": []}
    stop = threading.Event()

    def load():
        client = barista.Client(served)
        i = 0
        while not stop.is_set():
            q = texts[i % len(texts)]
            i += 1
            try:
                got = [h.id for h in client.search(q, k=10, profile="exact")]
            except barista.BaristaError as e:
                results["errors"].append(str(e))
                continue
            if got == expected[q]:
                results["right"] += 1
            else:
                results["wrong"].append((q, got))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(2)
    before = results["right"]
    os.kill(victims[0], signal.SIGKILL)  # a replica of shard 1, then one of shard 2
    time.sleep(3)
    os.kill(victims[1], signal.SIGKILL)
    time.sleep(5)
    # Then both replicas of shard 0 at once: until Serve has started others, requests wait for
    # them or fail with a clear 503; none is answered from the other shards alone.
    after_single_kills = results["right"]
    for pid in replica_pids(0):
        os.kill(pid, signal.SIGKILL)
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join()
    recovered = None
    deadline = time.time() + 90
    while recovered is None and time.time() < deadline:
        try:
            recovered = [h.id for h in barista.Client(served).search(texts[0], k=10, profile="exact")]
        except barista.BaristaError:
            time.sleep(1)
    assert recovered == expected[texts[0]], "shard 0 did not come back within 90 s"
    assert after_single_kills > before + 10, (before, after_single_kills)
    retried = barista.Client(served).stats()["router"]["shard_calls_retried"]
    print(f"killed 4 search replicas (2 of them a whole shard) under load: {results['right']} right answers, {len(results['errors'])} errors, "
          f"{retried} shard calls retried")
    assert results["wrong"] == []
    assert before > 0 and results["right"] > before + 10, results["right"]
    for message in results["errors"]:
        assert "answered 503" in message and "did not answer after" in message, message
