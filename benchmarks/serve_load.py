"""`slsearch serve` under load: 16 concurrent clients sending text queries, then the same while
`slsearch index --add` commits twice.

    .venv/bin/python benchmarks/serve_load.py --index DEMO/index [--clients 16] [--duration 60] [--k 10]

The index is copied to a scratch folder first (the commits must not change yours). The server is the
real command (`python -m slsearch serve`) in a subprocess on a free port; each client is a thread with
its own keep-alive httpx connection, sending the demo corpus's test sentences (and pieces of them) one
after another for `--duration` seconds. Run 1: queries only. Run 2: the same, while two
`slsearch index EXTRA --add` commands (a few clips each, made from test clips with a little noise, so
their content is new) commit at a third and two thirds of the run.

An error is any answer that is not 200, any connection failure, and any 200 that is not a whole answer
(k results, each with an id, a score and a media URL; a version the index has had). Prints JSON per run:
requests, requests/s, latency p50/p90/p99/max in ms, errors, the versions that answered, and for run 2
each commit's wall time. The target (issue 16): 0 errors, p99 under 10x p50.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def slsearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "slsearch", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_index(index: Path, scratch: Path) -> Path:
    """The index's current version copied into scratch as `demo -> .demo.v1` (a fresh version history)."""
    version = scratch / ".demo.v1"
    shutil.copytree(index.resolve(), version)
    os.symlink(version.name, scratch / "demo")
    return scratch / "demo"


def extra_clips(index: Path, scratch: Path, batches: int, per_batch: int) -> list[Path]:
    """`batches` manifests of `per_batch` new clips each: test clips of the index with a little noise."""
    from slsearch.data.manifest import Clip, write_manifest
    from slsearch.index.store import load_index

    meta = load_index(index).clips.meta.to_pylist()
    tests = [r for r in meta if r["split"] == "test" and r["path"].endswith(".npz")] or meta
    rng = np.random.default_rng(0)
    manifests = []
    for b in range(batches):
        folder = scratch / f"extra{b}"
        folder.mkdir()
        clips = []
        for i, row in enumerate(tests[b * per_batch:(b + 1) * per_batch]):
            with np.load(row["path"]) as f:
                pose = f["pose"] + rng.normal(0, 0.002, f["pose"].shape).astype(np.float32)
                fps = f["fps"] if "fps" in f else np.float32(25.0)
            path = folder / f"extra{b}-{i:03d}.npz"
            np.savez(path, pose=pose, fps=fps)
            clips.append(Clip(id=path.stem, path=path, text=row["text"], split="extra"))
        manifests.append(write_manifest(clips, folder / "extra.jsonl"))
    return manifests


def queries(index: Path, n: int = 400) -> list[str]:
    """Sentences of the index's test split and their first halves: what people type, roughly."""
    from slsearch.index.store import load_index

    texts = [t for t in load_index(index).clips.column("text").tolist() if t]
    rng = np.random.default_rng(1)
    picked = [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]
    return [t if i % 2 else " ".join(t.split()[:max(2, len(t.split()) // 2)]) for i, t in enumerate(picked)]


def start_server(index: Path, port: int, log) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(slsearch("serve", "--index", str(index), "--port", str(port)), stdout=log, stderr=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see its log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit("the server did not answer /healthz within 180 s")


def client(base: str, texts: list[str], k: int, until: float, seed: int, out: list) -> None:
    import httpx

    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=base, timeout=30) as http:
        while time.monotonic() < until:
            q = texts[int(rng.integers(len(texts)))]
            t0 = time.perf_counter()
            try:
                r = http.get("/api/search", params={"q": q, "k": k})
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    out.append((t0, ms, f"status {r.status_code}: {r.text[:200]}", None, None))
                    continue
                a = r.json()
                whole = len(a["results"]) == k and all(h["id"] and h["media_url"] and isinstance(h["score"], float)
                                                       for h in a["results"])
                out.append((t0, ms, None if whole else f"partial answer: {json.dumps(a)[:200]}", a["version"],
                            a["took_ms"]))
            except (httpx.HTTPError, ValueError, KeyError) as e:
                out.append((t0, (time.perf_counter() - t0) * 1000, f"{type(e).__name__}: {e}", None, None))


def commit(index: Path, manifest: Path, model: str, log, done: list) -> None:
    t0 = time.perf_counter()
    r = subprocess.run(slsearch("index", str(manifest), "--add", "--out", str(index), "--model", model, "--json"),
                       stdout=subprocess.PIPE, stderr=log, text=True)
    summary = json.loads(r.stdout) if r.returncode == 0 else {}
    done.append({"manifest": manifest.parent.name, "rc": r.returncode, "seconds": round(time.perf_counter() - t0, 1),
                 "clips_added": summary.get("clips_added"), "clips_total": summary.get("clips_total")})


def run(base: str, texts: list[str], clients: int, duration: float, k: int,
        commits: list[tuple[float, Path]] = (), index: Path | None = None, model: str | None = None, log=None) -> dict:
    import httpx

    before = httpx.get(f"{base}/healthz").json()
    results: list[list] = [[] for _ in range(clients)]
    start = time.monotonic()
    until = start + duration
    threads = [threading.Thread(target=client, args=(base, texts, k, until, i, results[i])) for i in range(clients)]
    for t in threads:
        t.start()
    done: list[dict] = []
    for at, manifest in commits:
        time.sleep(max(0.0, start + at - time.monotonic()))
        commit(index, manifest, model, log, done)
    for t in threads:
        t.join()
    after = httpx.get(f"{base}/healthz").json()
    flat = sorted((x for r in results for x in r), key=lambda x: x[0])
    ms = np.array([x[1] for x in flat])
    errors = [x[2] for x in flat if x[2]]
    versions: dict[str, int] = {}
    for x in flat:
        if x[3]:
            versions[x[3]] = versions.get(x[3], 0) + 1
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    took = np.array([x[4] for x in flat if x[4] is not None] or [0.0])  # the server's own time per query
    return {"clients": clients, "seconds": duration, "requests": len(flat),
            "requests_per_s": round(len(flat) / duration, 1), "p50_ms": round(p50, 1), "p90_ms": round(p90, 1),
            "p99_ms": round(p99, 1), "max_ms": round(float(ms.max()), 1), "p99_over_p50": round(p99 / p50, 2),
            "server_took_ms_p50": round(float(np.percentile(took, 50)), 1),
            "server_took_ms_p99": round(float(np.percentile(took, 99)), 1), "errors": len(errors), "first_errors": errors[:5], "versions": versions,
            "before": before, "after": after, **({"commits": done} if commits else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True, help="An index folder (the demo's: DIR/index of `slsearch demo`).")
    ap.add_argument("--model", help="Its checkpoint (default: the one index.json names).")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="Seconds per run.")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--extra", type=int, default=10, help="Clips per --add commit.")
    ap.add_argument("--log", help="Server and indexer output (default: a file in the scratch folder).")
    args = ap.parse_args()

    load_before = os.getloadavg()
    index = Path(args.index)
    model = args.model or json.loads((index / "index.json").read_text())["checkpoint"]["path"]
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        scratch = Path(tmp)
        copy = copy_index(index, scratch)
        manifests = extra_clips(copy, scratch, 2, args.extra)
        texts = queries(copy)
        log_path = Path(args.log) if args.log else scratch / "server.log"
        port = free_port()
        with open(log_path, "ab") as log:
            server = start_server(copy, port, log)
            try:
                base = f"http://127.0.0.1:{port}"
                run(base, texts, args.clients, min(5.0, args.duration), args.k)  # warm-up, not reported
                quiet = run(base, texts, args.clients, args.duration, args.k)
                d = args.duration
                busy = run(base, texts, args.clients, d, args.k, [(d / 3, manifests[0]), (2 * d / 3, manifests[1])],
                           copy, model, log)
            finally:
                server.terminate()
                server.wait(timeout=30)
        print(json.dumps({"index": str(index), "cpus": os.cpu_count(), "load_average_before": load_before,
                          "load_average_after": os.getloadavg(),
                          "queries_only": quiet, "with_two_commits": busy}, indent=2, ensure_ascii=False))
        if quiet["errors"] or busy["errors"]:
            print(open(log_path, errors="replace").read()[-3000:], file=sys.stderr)


if __name__ == "__main__":
    main()
