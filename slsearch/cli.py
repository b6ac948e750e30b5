"""The `slsearch` command line: a thin shell over the library; each command calls one function."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Optional

# Before torch (imported inside the commands) starts OpenMP: threads that sleep rather than spin
# while they wait. Spinning threads slowed training ~4x as soon as another process wanted a core
# (benchmarks/RESULTS.md, "Demo training under load"). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
import typer.core

from slsearch import __version__
from slsearch.console import console, err_console, progress_if, show_training_event, stdout_to_stderr
from slsearch.errors import SlsearchError



class _Group(typer.core.TyperGroup):
    """Turns SlsearchError from any command into a one-line message and exit code 2.

    Done here rather than around `app()` so that tests through typer's CliRunner see the same.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SlsearchError as e:
            err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    help="slsearch: search sign-language video with text, and text with video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit; never a traceback for expected failures."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"slsearch {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """slsearch: search sign-language video with text, and text with video."""


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show versions of torch/faiss/mediapipe, GPU availability and thread counts."""
    from rich.table import Table

    from slsearch.info import system_info

    data = system_info()
    if as_json:
        print(json.dumps(data))
        return
    table = Table(title="slsearch info", show_header=False)
    for k, v in data.items():
        table.add_row(k, str(v))
    console.print(table)


# --- commands ---------------------------------------------------------------------------------

def print_batch_summary(summary, title: str) -> None:
    """A batch's counts as a table, then every failure on its own line."""
    from rich.table import Table

    d = summary.as_dict()
    table = Table(title=title, show_header=False)
    for k in ("total", "ok", "cached", "failed", "frames", "seconds", "frames_per_second"):
        table.add_row(k, str(d[k]))
    for k, v in summary.extra.items():
        table.add_row(k, str(v))
    console.print(table)
    for line in summary.failures:
        console.print(f"[red]failed[/red] {line}", highlight=False, soft_wrap=True)


@app.command()
def extract(
    paths: list[str] = typer.Argument(..., help="Videos, frame folders, pose files, folders or manifests."),
    out: str = typer.Option(..., "--out", help="Folder for one .npz pose per clip and manifest.jsonl."),
    workers: Optional[int] = typer.Option(None, help="Worker processes for MediaPipe (default: all cores)."),
    fps: float = typer.Option(25.0, help="Resample every clip to this frame rate (0 keeps the source rate)."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any clip fails."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Extract MediaPipe Holistic poses (cached) from videos into .npz files and a manifest."""
    from slsearch.data.extract_corpus import extract_corpus

    summary = extract_corpus(paths, out, workers=workers, fps=fps or None, progress=not as_json)
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        print_batch_summary(summary, "slsearch extract")
    if summary.ok == 0 or (strict and summary.failures):
        raise typer.Exit(1)


@app.command()
def train(
    manifest: str = typer.Option(..., "--manifest", help="Training manifest (clips with sentences)."),
    dev: str = typer.Option(..., "--dev", help="Dev manifest: selects the best checkpoint (never test)."),
    out: str = typer.Option(..., "--out", help="Checkpoint folder, e.g. runs/NAME."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="A packaged recipe by name (cpu, gpu, demo, tiny, "
                                         "translate) or a TOML path; defaults if omitted."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value (repeatable)."),
    text_model: Optional[str] = typer.Option(None, "--text-model",
                                             help="Local pretrained mBART folder for the text tower (vocab trimmed)."),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Continue an interrupted run in --out (default), or start over."),
    stage: Optional[str] = typer.Option(None, "--stage", help="joint (default) or translate: fine-tune the video "
                                                              "encoder + decoder for translation, best by dev BLEU-4."),
    init: Optional[str] = typer.Option(None, "--init", help="Checkpoint to start from (the translate stage's joint run)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Train the video and text towers (CiCo + global contrastive + C²RL LM loss) and keep the best on dev."""
    from slsearch.training.loop import train as train_model

    sets = list(overrides) + ([f'tokenizer.pretrained="{text_model}"'] if text_model else [])
    if stage == "translate" and recipe is None:
        recipe = "translate"  # the packaged recipe
    sets += [f'train.stage="{stage}"'] if stage else []
    sets += [f'train.init="{init}"'] if init else []
    with stdout_to_stderr() if as_json else contextlib.nullcontext():  # the epoch tables must not mix with the JSON
        with progress_if(not as_json, transient=False) as progress:
            result = train_model(recipe, manifest, dev, out, overrides=sets, resume=resume, progress=progress,
                                 notify=show_training_event)
    if as_json:
        print(json.dumps({"out": str(result.out), "best_epoch": result.best_epoch, "best_dev": result.best_dev,
                          "epochs_run": result.epochs_run, "train_minutes": result.train_minutes,
                          "stopped": result.stopped}))


@app.command()
def lexicon(
    model: str = typer.Option(..., "--model", help="Checkpoint with a gloss head (its lexicon.npz is replaced)."),
    manifest: str = typer.Option(..., "--manifest", help="Training manifest with a gloss column."),
    dev: str = typer.Option(..., "--dev", help="Dev manifest: picks the fusion weights (never test)."),
    prefix: int = typer.Option(5, "--prefix", help="Cut sentence words to this many characters (0 = whole words)."),
    iterations: int = typer.Option(5, "--iterations", help="EM iterations (IBM Model 1, then the diagonal model)."),
    smoothing: float = typer.Option(0.1, "--smoothing", help="Weight of the unit prior, between 0 and 1."),
    alignment: str = typer.Option("diagonal", "--alignment",
                                  help="diagonal: words and glosses at similar positions align; ibm1: any order."),
    tension: float = typer.Option(4.0, "--tension", help="Diagonal alignment: how sharply it prefers equal positions."),
    as_json: bool = typer.Option(False, "--json", help="Print the lexicon's summary as JSON on stdout."),
) -> None:
    """Learn a checkpoint's gloss lexicon again (what `train` does at the end of a joint run with glosses)."""
    from slsearch.training.calibration import relearn_lexicon
    from slsearch.training.recipe import LexiconConfig

    if prefix < 0 or iterations < 1 or not 0 < smoothing < 1 or tension <= 0:
        raise SlsearchError("--prefix must be >= 0, --iterations >= 1, --smoothing between 0 and 1 and --tension > 0")
    if alignment not in ("ibm1", "diagonal"):
        raise SlsearchError(f"--alignment must be 'ibm1' or 'diagonal', not {alignment!r}")
    config = LexiconConfig(True, prefix, iterations, smoothing, alignment, tension)
    with progress_if(not as_json) as progress:
        lex = relearn_lexicon(model, manifest, dev, config, progress=progress).lexicon
    summary = {"model": model, **lex.describe()}
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    f = lex.fusion
    console.print(f"gloss lexicon of {model} ({lex.alignment} alignment): {len(lex.units)} word units x "
                  f"{len(lex.glosses)} glosses; dev R@1 with "
                  f"CiCo + lexicon T2V {f['t2v']['dev_R@1']:.1f} V2T {f['v2t']['dev_R@1']:.1f} "
                  f"(weights {f['t2v']['weight']:g} / {f['v2t']['weight']:g})", highlight=False)


@app.command()
def calibrate(
    model: str = typer.Option(..., "--model", help="Joint-run checkpoint (its likelihood.json is replaced)."),
    dev: str = typer.Option(..., "--dev", help="Dev manifest: picks the re-ranking weights (never test)."),
    depth: int = typer.Option(20, "--depth", help="Re-rank this many of each query's first candidates."),
    as_json: bool = typer.Option(False, "--json", help="Print the weights and dev R@1 as JSON on stdout."),
) -> None:
    """Pick the decoder-likelihood re-ranking weights of a checkpoint on dev (what `train` does at the end
    of a joint run)."""
    from rich.table import Table

    from slsearch.training.calibration import recalibrate

    if depth < 1:
        raise SlsearchError(f"--depth must be at least 1, got {depth}")
    with progress_if(not as_json) as progress:
        reranker = recalibrate(model, dev, depth, progress=progress).likelihood
    if as_json:
        print(json.dumps({"model": model, "depth": reranker.depth, "fusion": reranker.fusion}))
        return
    table = Table(title=f"decoder-likelihood re-ranking of the first {reranker.depth} candidates ({model})")
    for col in ("direction", "weight", "dev R@1 before", "dev R@1 after"):
        table.add_column(col)
    for direction in ("t2v", "v2t"):
        f = reranker.fusion.get(direction)
        if f is None:
            table.add_row(direction.upper(), "-", "", "not re-ranked: no sentence prior (model.lm_prior_rate = 0)")
        else:
            table.add_row(direction.upper(), f"{f['weight']:g}", f"{f['dev_R@1_before']:.1f}", f"{f['dev_R@1']:.1f}")
    console.print(table)


@app.command()
def synth(
    corpus: str = typer.Option("demo", "--corpus", help="demo (built-in weather reports), phoenix (SynPhoenix) "
                                                        "or a manifest FILE / folder with a gloss column."),
    out: str = typer.Option(..., "--out", help="Folder for poses/<split>/<id>.npz and the manifests."),
    split: Optional[str] = typer.Option(None, "--split", help="Comma-separated splits to render (default: all)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N clips per split."),
    seed: int = typer.Option(0, "--seed", help="Seed of signers and of every clip's variation and noise."),
    difficulty: float = typer.Option(1.0, "--difficulty", help="Detection noise and variation: 0 clean, "
                                                               "1 realistic (default), 2 bad video."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (default: all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Render a synthetic-signer corpus: one MediaPipe-layout pose (.npz) per clip, and manifests."""
    from rich.table import Table

    from slsearch.data.synth import synthesize_corpus

    splits = [s.strip() for s in split.split(",") if s.strip()] if split else None
    s = synthesize_corpus(corpus, out, splits=splits, limit=limit, seed=seed, difficulty=difficulty,
                          workers=workers, progress=not as_json)
    if as_json:
        print(json.dumps(s))
        return
    table = Table(title=f"slsearch synth {corpus}", show_header=False)
    for key in ("clips", "frames", "splits", "workers", "seconds", "clips_per_second", "manifest"):
        table.add_row(key, str(s[key]))
    console.print(table)


@app.command()
def render(
    pose_file: str = typer.Argument(..., help="Pose to draw: .npz, .npy, .pose (or a video, extracted first)."),
    out: str = typer.Argument(..., help="Output video, e.g. preview.mp4."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate (default: the pose's own)."),
    size: Optional[str] = typer.Option(None, "--size", help="WIDTHxHEIGHT in pixels (default 420x520, or the "
                                                            ".pose file's aspect)."),
) -> None:
    """Draw a pose sequence as a skeleton video, to look at synthetic or real poses."""
    from slsearch.render import render_file

    dims = None
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
            dims = (w, h)
        except ValueError:
            fail(f"--size must look like 420x520, got {size!r}")
    path = render_file(pose_file, out, fps=fps, size=dims)
    console.print(f"wrote {path}", highlight=False)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


@app.command()
def index(
    paths: list[str] = typer.Argument(..., help="Folders of videos / frame folders / pose files, manifests, or files."),
    model: str = typer.Option(..., "--model", help="Checkpoint folder (from slsearch train)."),
    out: str = typer.Option(..., "--out", help="Index folder, e.g. indexes/NAME."),
    add: bool = typer.Option(False, "--add", help="Add to the existing index: embed only clips with new content."),
    index_type: Optional[str] = typer.Option(None, "--index-type",
                                             help="flat, ivf, hnsw, ivfpq, opq or a FAISS factory string "
                                                  "(default: chosen by corpus size and --max-memory)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="RAM budget of the index, e.g. 512M, 4G."),
    batch_size: int = typer.Option(32, "--batch-size", help="Clips per encoder batch."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Embed clips into a searchable index folder (atomic; --add for incremental updates)."""
    from rich.table import Table

    from slsearch.index.build import build_index

    with progress_if(not as_json, transient=False) as progress:
        s = build_index(paths, model, out, add=add, index_type=index_type, max_memory=max_memory,
                        batch_size=batch_size, progress=progress)
    if as_json:
        print(json.dumps(s))
        return
    table = Table(title=f"slsearch index {s['out']}", show_header=False)
    for key in ("action", "clips_seen", "clips_added", "clips_unchanged", "clips_replaced", "failures",
                "clips_total", "texts_total", "index_type", "factory", "search_params", "recall_at_10"):
        table.add_row(key, str(s[key]))
    table.add_row("size", _size(s["size_bytes"]))
    table.add_row("time", f"{s['seconds']:.1f} s")
    console.print(table)


@app.command()
def query(
    text: Optional[str] = typer.Argument(None, help="Words to search for (text -> clips)."),
    index_dir: str = typer.Option(..., "--index", help="Index folder (from slsearch index)."),
    k: int = typer.Option(10, "-k", "--top-k", help="Number of results per query."),
    video: Optional[str] = typer.Option(None, "--video", help="Search with a clip: its sentences (or --clips)."),
    clips: bool = typer.Option(False, "--clips", help="With --video: return similar clips instead of sentences."),
    queries: Optional[str] = typer.Option(None, "--queries", help="File with one text query per line (batched)."),
    candidates: int = typer.Option(100, "--candidates", help="FAISS candidates re-ranked with the CiCo score "
                                   "(fused with the gloss lexicon's, for models that have one)."),
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint (default: the one index.json names)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Search an index with text (T2V) or with a clip (V2T, or V2V with --clips)."""
    from rich.table import Table

    from slsearch.index.search import query_index

    answers = query_index(index_dir, text=text, video=video, queries_file=queries, k=k,
                          n_candidates=candidates, clips=clips, model=model)
    if as_json:
        print(json.dumps(answers if len(answers) > 1 or queries else answers[0], ensure_ascii=False))
        return
    for a in answers:
        table = Table(title=f"{a['mode']}: {a['query']}")
        with_glosses = any(h.get("glosses") for h in a["results"])
        for col in ("rank", "score", "id", "path", "text") + (("glosses",) if with_glosses else ()):
            table.add_column(col, overflow="fold")
        for h in a["results"]:
            row = [str(h["rank"]), f"{h['score']:.4f}", h["id"], h["path"] or "", h["text"] or ""]
            table.add_row(*row, *([h.get("glosses") or ""] if with_glosses else []))
        console.print(table)


@app.command()
def remove(
    ids: list[str] = typer.Argument(..., help="Clip ids to drop from the index."),
    index_dir: str = typer.Option(..., "--index", help="Index folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Drop clips from an index without rebuilding it."""
    from slsearch.index.remove import remove_clips

    s = remove_clips(index_dir, ids)
    if as_json:
        print(json.dumps(s))
    else:
        console.print(f"removed {s['removed']} clip(s) from {s['index']}: {s['clips_total']} clips, "
                      f"{s['texts_total']} sentences left")


@app.command()
def translate(
    paths: list[str] = typer.Argument(..., help="Video files, pose files, folders or manifests."),
    model: str = typer.Option(..., "--model", help="Checkpoint folder (best after `train --stage translate`)."),
    beam: Optional[int] = typer.Option(None, "--beam", help="Beam size, 1 = greedy (default: the model's, 4)."),
    length_penalty: Optional[float] = typer.Option(
        None, "--length-penalty", help="Score = log-prob / length^x; > 1 favours longer sentences (default: the model's)."),
    no_repeat_ngram: Optional[int] = typer.Option(
        None, "--no-repeat-ngram", help="Forbid any n-gram twice in a sentence; 0 = off (default: the model's)."),
    max_len: Optional[int] = typer.Option(None, "--max-len", help="Longest sentence in tokens (default: the model's)."),
    attention: Optional[str] = typer.Option(None, "--attention",
                                            help="Draw the first clip's cross-attention to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Translate clips into sentences with the mBART decoder over the video encoder."""
    from rich.table import Table

    from slsearch.rank import load_retrieval_model
    from slsearch.translation import decode_settings, plot_attention, translate_paths

    m = load_retrieval_model(model)
    settings = decode_settings(m.decode, beam, length_penalty, no_repeat_ngram)
    beam = settings.beam
    results, failures = translate_paths(m.net, paths, settings, max_len=max_len, with_attention=attention is not None)
    for line in failures:
        err_console.print(f"[yellow]skipped[/yellow] {line}", highlight=False, soft_wrap=True)
    if attention and results:
        err_console.print(f"attention of {results[0].id} drawn to {plot_attention(results[0], m.net, attention)}")
    if as_json:
        print(json.dumps({"translations": [r.to_dict() for r in results], "failures": failures,
                          "beam": beam, "length_penalty": settings.length_penalty,
                          "no_repeat_ngram": settings.no_repeat_ngram, "model": m.hash}, ensure_ascii=False))
    elif len(results) == 1 and results[0].reference is None:
        console.print(results[0].text, highlight=False)
        if results[0].glosses is not None:
            console.print(f"glosses (read): {results[0].glosses}", style="dim", highlight=False)
    else:
        table = Table(title=f"slsearch translate (beam {beam})")
        with_ref = any(r.reference for r in results)
        with_glosses = any(r.glosses is not None for r in results)
        cols = ["id", "translation"] + (["glosses (read)"] if with_glosses else []) + (["reference"] if with_ref else [])
        for col in cols:
            table.add_column(col, overflow="fold")
        for r in results:
            table.add_row(r.id, r.text, *([r.glosses or ""] if with_glosses else []),
                          *([r.reference or ""] if with_ref else []))
        console.print(table)
    if not results:
        raise typer.Exit(1)


def _print_recall(report: dict) -> None:
    from rich.table import Table

    m, ks = report["metrics"], report["ks"]
    table = Table(title=f"retrieval ({report['score']} score, {report['count']} clips"
                        f"{', split ' + report['split'] if report['split'] else ''})")
    for col in ["protocol", "direction", *[f"R@{k}" for k in ks], "MedR", "MeanR"]:
        table.add_column(col, justify="right" if col not in ("protocol", "direction") else "left")
    for proto in ("paper", "dedup"):
        for d, name in (("t2v", "text→video"), ("v2t", "video→text")):
            table.add_row(proto, name, *[f"{m[f'{proto}/{d}_R@{k}']:.1f}" for k in ks],
                          f"{m[f'{proto}/{d}_MedR']:.1f}", f"{m[f'{proto}/{d}_MeanR']:.1f}")
    console.print(table)
    console.print(f"paper: only the paired item counts; dedup: any clip with the same sentence counts "
                  f"({int(m['distinct_texts'])} distinct sentences)", style="dim")


def _print_bleu(report: dict) -> None:
    from rich.table import Table

    table = Table(title=f"translation (beam {report['beam']}, length penalty {report['length_penalty']}, "
                        f"no-repeat n-gram {report['no_repeat_ngram'] or 'off'}, {report['count']} clips)")
    for k in report["metrics"]:
        table.add_column(k, justify="right")
    table.add_row(*[f"{v:.2f}" for v in report["metrics"].values()])
    console.print(table)
    ex = Table(title="examples", show_lines=True)
    for col in ("id", "reference", "hypothesis"):
        ex.add_column(col, overflow="fold")
    for e in report["examples"]:
        ex.add_row(e["id"], e["reference"], e["hypothesis"])
    console.print(ex)


@app.command("eval")
def evaluate(
    index_dir: Optional[str] = typer.Option(None, "--index", help="Evaluate an index's clips that have text."),
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint (with --manifest; no index needed)."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="Test manifest (with --model)."),
    recall: str = typer.Option("1,5,10", "--recall", help="Comma-separated K values for R@K."),
    split: Optional[str] = typer.Option(None, "--split", help="Only clips of this split (e.g. test)."),
    score: Optional[str] = typer.Option(None, "--score", help="full (what search ranks by: CiCo + gloss lexicon, "
                                        "then the decoder likelihood on each query's first 20), fused (CiCo + "
                                        "lexicon), cico, lexical (the lexicon alone) or global (first-stage "
                                        "vectors). Default: the best the model has (full, fused, cico)."),
    bleu: bool = typer.Option(False, "--bleu", help="Translation quality instead: BLEU-1..4, chrF, ROUGE-L."),
    beam: Optional[int] = typer.Option(None, "--beam", help="Beam size for --bleu (default: the model's, 4)."),
    length_penalty: Optional[float] = typer.Option(None, "--length-penalty",
                                                   help="Length penalty for --bleu (default: the model's)."),
    no_repeat_ngram: Optional[int] = typer.Option(None, "--no-repeat-ngram",
                                                  help="N-gram blocking for --bleu, 0 = off (default: the model's)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N clips (with --bleu)."),
    as_json: bool = typer.Option(False, "--json", help="Print every number and the settings as JSON on stdout "
                                                       "(no table)."),
    json_out: Optional[str] = typer.Option(None, "--json-out", help="Also write every number and the settings "
                                                                    "to FILE (JSON)."),
) -> None:
    """Measure retrieval (R@K, MedR, MeanR, both directions, two protocols) or translation (BLEU)."""
    try:
        ks = sorted({int(k) for k in recall.split(",") if k.strip()})
    except ValueError:
        raise SlsearchError(f"--recall takes comma-separated integers, got {recall!r}") from None
    if not ks or ks[0] <= 0:
        raise SlsearchError(f"--recall values must be positive, got {recall!r}")
    if bleu:
        if not (model and manifest):
            raise SlsearchError("--bleu needs --model and --manifest")
        from slsearch.eval.translation import evaluate_translation

        from slsearch.translation import check_decode_options

        check_decode_options(beam, length_penalty, no_repeat_ngram)
        report = evaluate_translation(model, manifest, beam=beam, split=split, limit=limit,
                                      length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram)
        show = _print_bleu
    elif index_dir:
        from slsearch.eval.retrieval import evaluate_index

        with progress_if(not as_json) as progress:
            report = evaluate_index(index_dir, ks, split=split, score=score, progress=progress)
        show = _print_recall
    elif model and manifest:
        from slsearch.eval.retrieval import evaluate_model

        with progress_if(not as_json) as progress:
            report = evaluate_model(model, manifest, ks, split=split, score=score, progress=progress)
        show = _print_recall
    else:
        raise SlsearchError("give --index DIR, or --model CKPT with --manifest FILE")
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        show(report)
    if json_out:
        from pathlib import Path

        Path(json_out).write_text(json.dumps(report, indent=2, ensure_ascii=False))
        err_console.print(f"wrote {json_out}")


@app.command()
def demo(
    workdir: str = typer.Option("slsearch-demo", "--workdir", help="Folder for every artefact (reused next time)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Training recipe: a packaged name or a TOML path "
                                                                "(default: demo)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Clips per split (a smaller, faster demo)."),
    as_json: bool = typer.Option(False, "--json", help="Print the demo's numbers as JSON on stdout (its tables go "
                                                       "to stderr)."),
    json_out: Optional[str] = typer.Option(None, "--json-out", help="Also write the demo's numbers to FILE (JSON)."),
) -> None:
    """The whole loop on a built-in synthetic corpus: synthesise, train, index, search, evaluate, translate."""
    from slsearch.demo import run_demo

    with stdout_to_stderr() if as_json else contextlib.nullcontext():
        summary = run_demo(workdir, recipe=recipe, overrides=overrides, limit=limit)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
    if json_out:
        from pathlib import Path

        Path(json_out).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        err_console.print(f"wrote {json_out}")


def run() -> None:
    """Console-script entry point."""
    app()
