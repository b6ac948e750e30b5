"""`slsearch demo`: the whole loop on the built-in synthetic German weather corpus.

It only chains the library's own steps (as clip-retrieval's end2end does): synthesise the corpus,
train with the demo recipe, build an index, run example queries (text -> clips, clip ->
sentences), evaluate R@K on the test split and translate a few test clips. Every artefact lands
in one work folder, and each step is skipped when its result is already there, so a second run
only searches, evaluates and translates.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from slsearch.console import console, err_console, plain, progress_if, show_training_event

DEFAULT_WORKDIR = Path("slsearch-demo")
DEMO_RECIPE = "demo"  # the packaged recipe slsearch/recipes/demo.toml
DEFAULT_QUERIES = ("wetter morgen", "am wochenende regnet es im norden", "sonne im süden")


def _step(n: int, total: int, title: str) -> None:
    console.print(Rule(Text(f"{n}/{total} {title}", style="bold"), align="left"))  # titles may name a recipe file


def _corpus(workdir: Path, limit: int | None, progress: bool) -> Path:
    from slsearch.data.synth import synthesize_corpus

    folder = workdir / "corpus"
    done = folder / "manifest.jsonl"
    if done.exists():
        console.print(plain(f"corpus already in {folder}: reused"))
        return folder
    with progress_if(progress) as bars:
        s = synthesize_corpus("demo", folder, limit=limit, progress=bars)
    console.print(plain(f"{s['clips']} clips ({', '.join(f'{k} {v}' for k, v in sorted(s['splits'].items()))}), "
                        f"{s['frames']} frames in {s['seconds']:.0f} s -> {folder}"))
    return folder


def _model(workdir: Path, corpus: Path, recipe: str | Path, overrides: Sequence[str], progress: bool) -> Path:
    from slsearch.training.loop import train

    out = workdir / "model"
    cfg = out / "config.json"
    if cfg.exists() and "best_epoch" in json.loads(cfg.read_text()):
        console.print(plain(f"model already trained in {out}: reused (delete the folder to train again)"))
        return out
    with progress_if(progress, transient=False) as bars:
        r = train(recipe, corpus / "train.jsonl", corpus / "dev.jsonl", out, overrides=overrides, progress=bars,
                  notify=show_training_event)
    console.print(f"trained {r.epochs_run} epochs in {r.train_minutes:.1f} min; best dev epoch {r.best_epoch} "
                  f"(CiCo R@1 T2V {r.best_dev.get('cico_t2v_R@1', 0):.1f}, V2T {r.best_dev.get('cico_v2t_R@1', 0):.1f})")
    return out


def _index(workdir: Path, corpus: Path, model: Path, progress: bool) -> Path:
    from slsearch.index.build import build_index
    from slsearch.models.checkpoint import file_hash

    out = workdir / "index"
    info = out / "index.json"
    if info.exists():
        built_with = json.loads(info.read_text()).get("checkpoint", {}).get("hash")
        if built_with == file_hash(model / "model.safetensors"):
            console.print(plain(f"index already built in {out}: reused"))
            return out
    with progress_if(progress, transient=False) as bars:
        s = build_index([corpus / "manifest.jsonl"], model, out, progress=bars)
    console.print(plain(f"indexed {s['clips_total']} clips and {s['texts_total']} sentences "
                        f"({s['index_type']}) in {s['seconds']:.1f} s -> {out}"))
    return out


def _record(model: Path, index: Path) -> Path | None:
    """Make the demo's model and index the workspace's defaults; a note (not a failure) when the
    workspace file cannot be written."""
    from slsearch.console import labelled
    from slsearch.workspace import try_record

    file, problem = try_record(model=model, index=index)
    if file is None:
        err_console.print(labelled("note:", "yellow", f"the workspace file was not updated: {problem}"),
                          soft_wrap=True)
    return file


def _hits_table(title: str, hits, truth: str | None = None) -> Table:
    table = Table(title=plain(title), title_justify="left")  # queries, ids and sentences: never markup
    for col in ("rank", "score", "id", "text"):
        table.add_column(col, overflow="fold")
    for h in hits:
        text = plain(h.text or "")
        if truth is not None and h.text == truth:
            text.append(" ✓", style="green")
        table.add_row(str(h.rank), f"{h.score:.3f}", plain(h.id), text)
    return table


def run_demo(workdir: str | Path = DEFAULT_WORKDIR, recipe: str | Path | None = None, overrides: Sequence[str] = (),
             limit: int | None = None, queries: Sequence[str] = DEFAULT_QUERIES, k: int = 5,
             n_translate: int = 5, progress: bool = True, workspace: bool = True) -> dict[str, Any]:
    """Run (or resume) the demo in `workdir`; returns the key numbers it printed. With `workspace`, its
    model and index become the workspace's defaults (slsearch.workspace), so that `slsearch query
    "wetter morgen"` and the like need no other argument afterwards."""
    from slsearch.data.manifest import read_manifest
    from slsearch.eval.retrieval import evaluate_index
    from slsearch.index.search import Searcher
    from slsearch.training.recipe import find_recipe
    from slsearch.translation import translate_paths

    t0 = time.perf_counter()
    workdir = Path(workdir)
    recipe = recipe or DEMO_RECIPE
    recipe_name = find_recipe(recipe).name  # a one-line error now, not after the corpus is made
    workdir.mkdir(parents=True, exist_ok=True)
    total = 6
    _step(1, total, "synthetic corpus (German weather reports, signed by a synthetic signer)")
    corpus = _corpus(workdir, limit, progress)
    _step(2, total, f"training the towers ({recipe_name})")
    model_dir = _model(workdir, corpus, recipe, overrides, progress)
    _step(3, total, "building the index")
    index_dir = _index(workdir, corpus, model_dir, progress)
    recorded = _record(model_dir, index_dir) if workspace else None

    _step(4, total, "searching")
    searcher = Searcher(index_dir)
    summary: dict[str, Any] = {"workdir": str(workdir), "queries": {},
                               **({"workspace": str(recorded)} if recorded is not None else {})}
    for q in queries:
        hits = searcher.search_text(q, k=k)
        summary["queries"][q] = [h.to_dict() for h in hits]
        console.print(_hits_table(f'text → clips: "{q}"', hits))
    test = [c for c in read_manifest(corpus / "test.jsonl")]
    probe = test[0]
    hits = searcher.search_video(probe, k=k, target="texts")
    summary["video_query"] = {"id": probe.id, "truth": probe.text, "results": [h.to_dict() for h in hits]}
    console.print(_hits_table(f"clip → sentences: {probe.id} (it says: {probe.text})", hits, truth=probe.text))

    _step(5, total, "evaluating retrieval on the test split")
    with progress_if(progress) as bars:
        report = evaluate_index(index_dir, (1, 5, 10), split="test", progress=bars)
    m = report["metrics"]
    what = {"full": "CiCo + gloss lexicon + decoder likelihood", "fused": "CiCo + gloss lexicon",
            "cico": "CiCo"}.get(report["score"], report["score"])
    table = Table(title=f"R@K on {report['count']} test clips ({what} score, paper protocol)")
    for col in ("direction", "R@1", "R@5", "R@10", "MedR"):
        table.add_column(col)
    for d, name in (("t2v", "text → video"), ("v2t", "video → text")):
        table.add_row(name, *[f"{m[f'paper/{d}_R@{k_}']:.1f}" for k_ in (1, 5, 10)], f"{m[f'paper/{d}_MedR']:.0f}")
    console.print(table)
    chance = 100.0 / report["count"]
    command = "slsearch eval" if recorded is not None else f"slsearch eval --index {index_dir} --split test"
    console.print(plain(f"chance R@1 is {chance:.1f}; `{command}` shows both protocols"), style="dim")
    summary["eval"] = m

    _step(6, total, "translating test clips")
    from slsearch.data.manifest import write_manifest

    sample = workdir / "translate_sample.jsonl"
    write_manifest(test[:n_translate], sample)
    translator = searcher.model  # the index's model, loaded once
    translations, _ = translate_paths(translator.net, [sample], translator.decode.with_overrides(beam=4))
    table = Table(title="translation (beam 4) next to the reference", show_lines=True)
    for col in ("id", "translation", "reference"):
        table.add_column(col, overflow="fold")
    for t in translations:
        table.add_row(plain(t.id), plain(t.text), plain(t.reference or ""))
    console.print(table)
    summary["translations"] = [t.to_dict() for t in translations]
    summary["seconds"] = round(time.perf_counter() - t0, 1)

    console.print(Rule("[bold]go on with the ordinary commands", align="left"))
    if recorded is not None:
        from slsearch.workspace import shown

        console.print(plain(f"(their model and index are the defaults now: {shown(recorded)}; "
                            "`slsearch status` shows them)"), style="dim")
        lines = ('slsearch query "wetter morgen" -k 10', f"slsearch query --video {probe.path}",
                 "slsearch eval --recall 1,5,10", f"slsearch translate {probe.path}")
    else:
        lines = (f'slsearch query "wetter morgen" --index {index_dir} -k 10',
                 f"slsearch query --video {probe.path} --index {index_dir}",
                 f"slsearch eval --recall 1,5,10 --index {index_dir} --split test",
                 f"slsearch translate {probe.path} --model {model_dir}")
    for line in lines:
        console.print(plain(f"  {line}"))
    err_console.print(plain(f"demo finished in {summary['seconds']:.0f} s; everything is in {workdir}"))
    return summary
