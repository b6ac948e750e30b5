"""Long videos (issue 20): segmentation and time-localised T2V on programmes whose truth is known.

Programmes: the sentences of one split of a synthetic corpus, grouped by signer into programmes of 20-40
sentences, joined with 0.3-1.5 s of rest between them (slsearch.data.synth.programme), each written as a
pose file with an .srt of its true sentences and one whose cues come 1.5 s early (the signing lags the
cues, as an interpreter lags the speech the subtitles follow).

Reports
1. segmentation: precision / recall of sentence boundaries (starts and ends, matched one-to-one) within
   0.5 s, by activity, by subtitles (exact; 1.5 s early as they are; with --subtitle-shift 1.5; with auto);
2. T2V over the segmented programmes: R@1 / R@5 where a hit counts if its span (seconds in the programme)
   overlaps a true interval of the query sentence with IoU >= 0.5; against the same sentences indexed as
   pre-cut clips (the upper bound, a hit counts if its clip carries the sentence);
3. index and query time per hour of video.

    python benchmarks/long_video.py --model /work/newdemo/model --manifest /work/newdemo/corpus/test.jsonl \
        --workdir /work/longbench/test
    python benchmarks/long_video.py ... --manifest dev.jsonl --sweep        # pick the activity defaults on dev
    python benchmarks/long_video.py ... --manifest dev.jsonl --span-sweep   # pick rank/span.py's SPAN_MASS on dev
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slsearch.data.long_media import SegmentOptions  # noqa: E402
from slsearch.data.manifest import read_manifest  # noqa: E402
from slsearch.data.pose_files import read_npz, save_pose_npz  # noqa: E402
from slsearch.data.segments import Segment, SegmentParams, plan_segments  # noqa: E402
from slsearch.data.subtitles import read_subtitles  # noqa: E402
from slsearch.data.synth.programme import join_clips, write_srt  # noqa: E402

LAG = 1.5  # seconds the signing comes after its cue in the "lagging" subtitle files


def boundary_pr(pred: list[Segment], truth: list[Segment], tol: float = 0.5) -> tuple[int, int, int]:
    """(matched, predicted, true) boundaries; a boundary is a segment start or end, matched one-to-one
    to the nearest unmatched true boundary within `tol` seconds."""
    pb = sorted([s.start for s in pred] + [s.end for s in pred])
    tb = np.array(sorted([s.start for s in truth] + [s.end for s in truth]))
    used = np.zeros(len(tb), bool)
    hits = 0
    for b in pb:
        d = np.where(used, np.inf, np.abs(tb - b))
        j = int(np.argmin(d)) if len(d) else -1
        if j >= 0 and d[j] <= tol:
            used[j] = True
            hits += 1
    return hits, len(pb), len(tb)


def make_programmes(manifest: Path, out: Path, seed: int = 0) -> list[dict]:
    """Programme pose files + .srt (true) + .lag.srt (cues 1.5 s early) in out/; returns their truth."""
    clips = read_manifest(manifest)
    by_signer: dict[str, list] = defaultdict(list)
    for c in clips:
        by_signer[c.signer or "?"].append(c)
    rng = np.random.default_rng(seed)
    programmes = []
    for signer, mine in sorted(by_signer.items()):
        parts = max(1, len(mine) // 40 + (len(mine) % 40 > 0))
        for k, group in enumerate(np.array_split(np.arange(len(mine)), parts)):
            seq, truth = join_clips([(read_npz(Path(mine[i].path)), mine[i].text) for i in group], rng)
            name = f"{signer}-{k}"
            for d in ("plain", "subs", "lag"):
                (out / d).mkdir(parents=True, exist_ok=True)
                save_pose_npz(out / d / f"{name}.npz", seq.data, seq.fps)
            write_srt(truth, out / "subs" / f"{name}.srt")
            write_srt(truth, out / "lag" / f"{name}.srt", shift=-LAG)
            programmes.append({"name": name, "seq": seq, "truth": truth})
    return programmes


def segmentation_table(programmes: list[dict], out: Path, params: SegmentParams) -> list[tuple[str, float, float, int]]:
    rows = []
    for label, subs, shift in (("activity (no subtitles)", None, 0.0), ("subtitles, exact", "subs", 0.0),
                               (f"subtitles {LAG} s early, no shift", "lag", 0.0),
                               (f"subtitles {LAG} s early, --subtitle-shift {LAG}", "lag", LAG),
                               (f"subtitles {LAG} s early, --subtitle-shift auto", "lag", "auto")):
        m = p = t = n = 0
        shifts = []
        for prog in programmes:
            cues = read_subtitles(out / subs / f"{prog['name']}.srt") if subs else None
            plan = plan_segments(prog["seq"], cues, params, shift=shift)
            a, b, c = boundary_pr(plan.segments, prog["truth"])
            m, p, t, n = m + a, p + b, t + c, n + len(plan.segments)
            shifts.append(plan.shift)
        if shift == "auto":
            label += f" (estimated {min(shifts):+.1f} to {max(shifts):+.1f} s)"
        rows.append((label, 100 * m / max(p, 1), 100 * m / t, n))
    return rows


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def t2v(index_dir: Path, programmes: list[dict] | None, queries: list[str], truth_of: dict | None,
        k: int = 5) -> dict:
    """R@1/R@5 (the hit's span has IoU >= 0.5 with a true interval of the query; pre-cut clips: the clip
    carries the query), R@1 judged by the hit's whole segment instead of its span, and query time."""
    from slsearch.index.search import Searcher

    searcher = Searcher(index_dir)
    meta = searcher.clips.meta_rows()
    extent = {r["id"]: (r["start"] or 0.0, r["end"] if r["end"] is not None else r["duration"]) for r in meta}
    searcher.search_text(queries[:4], k=k)  # warm
    r1 = r5 = seg1 = 0
    times = []
    for q in queries:
        t0 = time.perf_counter()
        hits = searcher.search_text(q, k=k)
        times.append(time.perf_counter() - t0)
        if truth_of is None:  # pre-cut clips
            ok = seg_ok = [h.text == q for h in hits]
        else:
            spans = [truth_of[q].get(Path(h.path).stem, []) for h in hits]
            ok = [any(iou(h.span, s) >= 0.5 for s in sp) for h, sp in zip(hits, spans)]
            seg_ok = [any(iou(extent[h.id], s) >= 0.5 for s in sp) for h, sp in zip(hits, spans)]
        r1 += bool(ok and ok[0])
        r5 += any(ok[:5])
        seg1 += bool(seg_ok and seg_ok[0])
    n = len(queries)
    return {"R@1": 100 * r1 / n, "R@5": 100 * r5 / n, "segment R@1": 100 * seg1 / n,
            "query_ms_p50": 1000 * float(np.median(times)), "query_ms_p99": 1000 * float(np.percentile(times, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True, help="sentences to build the programmes from (one split)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--sweep", action="store_true", help="activity parameters: boundary P/R per setting (tune on dev)")
    ap.add_argument("--span-sweep", action="store_true",
                    help="span IoU R@1 per SPAN_MASS over activity segments and windows (tune on dev)")
    ap.add_argument("--skip-index", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir)
    if work.exists():
        shutil.rmtree(work)
    progs = make_programmes(Path(args.manifest), work / "programmes")
    hours = sum(p["seq"].duration for p in progs) / 3600
    print(f"{len(progs)} programmes, {sum(len(p['truth']) for p in progs)} sentences, {hours * 60:.1f} min")
    if args.sweep:
        print("| raised | min_pause | min_segment | pad | P % | R % |")
        for raised in (0.15, 0.25, 0.35):
            for min_pause in (0.25, 0.35, 0.5, 0.7):
                for pad in (0.1, 0.2, 0.3):
                    params = SegmentParams(raised=raised, min_pause=min_pause, pad=pad)
                    m = p = t = 0
                    for prog in progs:
                        a, b, c = boundary_pr(plan_segments(prog["seq"], None, params).segments, prog["truth"])
                        m, p, t = m + a, p + b, t + c
                    print(f"| {raised} | {min_pause} | 0.6 | {pad} | {100 * m / p:.1f} | {100 * m / t:.1f} |", flush=True)
        return
    params = SegmentParams()
    print("\n| segmentation | boundary P % | boundary R % | segments |\n|---|---|---|---|")
    for label, p, r, n in segmentation_table(progs, work / "programmes", params):
        print(f"| {label} | {p:.1f} | {r:.1f} | {n} |")
    if args.skip_index:
        return
    from slsearch.index.build import build_index
    from slsearch.rank.model import load_retrieval_model

    model = load_retrieval_model(args.model)
    truth_of: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for prog in progs:
        for s in prog["truth"]:
            truth_of[s.text][prog["name"]].append((s.start, s.end))
    queries = sorted(truth_of)
    if args.span_sweep:
        import functools

        import slsearch.index.search as search_module
        from slsearch.rank.span import match_span

        print("| segments | span mass | R@1 % (span IoU >= 0.5) | R@5 % |\n|---|---|---|---|")
        for label, options in (("activity", SegmentOptions(params=SegmentParams(longer_than=10))),
                               ("windows", SegmentOptions(method="windows", params=SegmentParams(longer_than=10)))):
            out = work / "index" / label
            build_index([work / "programmes" / "plain"], None, out, model=model, segmenting=options)
            for mass in (0.7, 0.8, 0.9, 0.95):
                search_module.match_span = functools.partial(match_span, mass=mass)
                m = t2v(out, progs, queries, truth_of)
                print(f"| {label} | {mass} | {m['R@1']:.1f} | {m['R@5']:.1f} |", flush=True)
        return
    results = []
    runs = (("pre-cut clips (upper bound)", [Path(args.manifest)], SegmentOptions(method="off")),
            ("activity", [work / "programmes" / "plain"], SegmentOptions(params=SegmentParams(longer_than=10))),
            ("subtitles, exact", [work / "programmes" / "subs"], SegmentOptions()),
            (f"subtitles {LAG} s early, auto shift", [work / "programmes" / "lag"], SegmentOptions(shift="auto")),
            ("windows 8 s / stride 4 s", [work / "programmes" / "plain"],
             SegmentOptions(method="windows", params=SegmentParams(longer_than=10))))
    for label, paths, options in runs:
        out = work / "index" / label.split()[0]
        t0 = time.perf_counter()
        s = build_index(paths, None, out, model=model, segmenting=options)
        seconds = time.perf_counter() - t0
        m = t2v(out, progs, queries, None if options.method == "off" else truth_of)
        results.append((label, s["clips_total"], seconds / hours / 60, m))
    print("\n| index | clips / segments | R@1 % (span IoU >= 0.5) | R@5 % | R@1 % by segment extent | "
          "index min per hour of video | query ms p50 / p99 |\n|---|---|---|---|---|---|---|")
    for label, n, per_hour, m in results:
        print(f"| {label} | {n} | {m['R@1']:.1f} | {m['R@5']:.1f} | {m['segment R@1']:.1f} | {per_hour:.2f} | "
              f"{m['query_ms_p50']:.1f} / {m['query_ms_p99']:.1f} |")
    print(json.dumps({"programmes": len(progs), "hours": hours,
                      "t2v": {label: m for label, _, _, m in results}}, indent=1))


if __name__ == "__main__":
    main()
