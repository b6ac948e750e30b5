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
from slsearch.console import (console, err_console, labelled, plain, progress_if, show_training_event,
                              stdout_to_stderr)
from slsearch.errors import (EXIT_ENVIRONMENT, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, SlsearchError,
                             describe_os_error)



def _say(label: str, message: object) -> None:
    """One line on stderr: our red label, then the message as plain text (never markup)."""
    err_console.print(labelled(label, "red", message), soft_wrap=True)


class _Group(typer.core.TyperGroup):
    """The one error boundary: whatever a command raises becomes one line on stderr and an exit code
    (slsearch.errors: 2 bad input, 1 the environment, 3 a bug, 130 Ctrl-C). With --debug the exception
    propagates with its traceback instead.

    Done here rather than around `app()` so that tests through typer's CliRunner see the same.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):
            raise  # typer's own: exit codes, usage errors (exit 2), a closed pipe
        except BaseException as e:
            if ctx.params.get("debug") or not isinstance(e, (Exception, KeyboardInterrupt)):
                raise  # --debug: the original traceback; SystemExit and the like pass through
            if isinstance(e, SlsearchError):
                _say("error:", e)
                code = EXIT_INPUT
            elif isinstance(e, KeyboardInterrupt):
                _say("interrupted", "(Ctrl-C)")
                code = EXIT_INTERRUPTED
            elif isinstance(e, OSError):
                _say("error:", describe_os_error(e))
                code = EXIT_ENVIRONMENT
            elif isinstance(e, MemoryError):
                _say("error:", f"out of memory{': ' + str(e) if str(e) else ''}")
                code = EXIT_ENVIRONMENT
            else:
                message = str(e) if len(str(e)) <= 500 else str(e)[:500] + "..."
                _say("internal error:", f"{type(e).__name__}: {message} (run with --debug for the traceback; "
                                        "please report it)")
                code = EXIT_INTERNAL
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=_Group,
    help="slsearch: search sign-language video with text, and text with video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit; never a traceback for expected failures."""
    _say("error:", message)
    raise typer.Exit(code)


def _remember(**paths) -> None:
    """Record a model / index just made in the workspace file (slsearch.workspace): one line on stderr
    saying so, or a note when it cannot be written (what was made stands)."""
    from slsearch.workspace import shown, try_record

    file, problem = try_record(**paths)
    if file is None:
        err_console.print(labelled("note:", "yellow", f"the workspace file was not updated: {problem}"),
                          soft_wrap=True)
        return
    what = ", ".join(f"{k} = {shown(v)}" for k, v in paths.items())
    err_console.print(plain(f"{shown(file)}: {what} (the default from now on)"), style="dim", soft_wrap=True)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"slsearch {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", envvar="SLSEARCH_DEBUG",
                               help="Show the traceback of any error instead of one line (for bug reports)."),
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
        table.add_row(plain(k), plain(v))
    console.print(table)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show the defaults now: the workspace file (slsearch.toml), its model and its index."""
    from rich.table import Table

    from slsearch.workspace import shown
    from slsearch.workspace import status as workspace_status

    data = workspace_status()
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    ws, m, i = data["workspace"], data["model"], data["index"]
    table = Table(title="slsearch status", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("workspace", plain(shown(ws["file"]) + ("" if ws["exists"] else "  (not written yet: train, "
                                                                                   "index and demo write it)")))
    for name, value in data["env"].items():
        table.add_row(plain(f"${name}"), plain(value))

    def where(d: dict) -> str:
        if d["path"] is None:
            return "none"
        state = "" if d["exists"] else "  NOT THERE"
        source = d["source"] if d["source"].startswith(("$", "--")) else shown(d["source"])
        return f"{shown(d['path'])}  (from {source}){state}"

    table.add_row("model", plain(where(m) if m["path"] or not m.get("falls_back_to")
                                 else f"none (index and translate use the index's: {m['falls_back_to']})"))
    if m["hash"]:
        table.add_row("model hash", m["hash"])
    if m.get("problem"):
        table.add_row("model problem", plain(m["problem"]))
    table.add_row("index", plain(where(i)))
    if i.get("problem"):
        table.add_row("index problem", plain(i["problem"]))
    if "clips" in i:
        table.add_row("clips", str(i["clips"]))
        table.add_row("sentences", str(i["sentences"]))
        table.add_row("splits", plain(", ".join(f"{k} {v}" for k, v in i["splits"].items()) or "none"))
        match = {True: "the model above", False: "NOT the model above", None: "no model to compare"}
        table.add_row("built with", plain(f"{i['checkpoint_hash']} ({match[i['matches_model']]})"))
    console.print(table)
    if m["path"] is None and i["path"] is None:
        console.print("nothing to default to yet: run `slsearch demo`, or `slsearch train` then `slsearch index`",
                      style="dim")


# --- commands ---------------------------------------------------------------------------------

def print_batch_summary(summary, title: str) -> None:
    """A batch's counts as a table, then every failure on its own line."""
    from rich.table import Table

    d = summary.as_dict()
    table = Table(title=title, show_header=False)
    for k in ("total", "ok", "cached", "failed", "frames", "seconds", "frames_per_second"):
        table.add_row(k, plain(d[k]))
    for k, v in summary.extra.items():
        table.add_row(plain(k), plain(v))
    console.print(table)
    for line in summary.failures:  # they name the user's files
        console.print(labelled("failed", "red", line), soft_wrap=True)


class _RayCommand(typer.core.TyperCommand):
    """A command whose `--ray` may come without its address (`--ray` alone means `--ray auto`)."""

    def parse_args(self, ctx, args):
        from slsearch.distributed_ray import optional_address_args

        return super().parse_args(ctx, optional_address_args(args))


_RAY_HELP = ("Run on Ray: `--ray` alone (or auto) joins the Ray instance of this machine or starts one; "
             "`--ray HOST:6379` joins that cluster (every node must see the files and the pose cache).")


@app.command(cls=_RayCommand)
def extract(
    paths: list[str] = typer.Argument(..., help="Videos, frame folders, pose files, folders or manifests."),
    out: str = typer.Option(..., "--out", help="Folder for one .npz pose per clip and manifest.jsonl."),
    workers: Optional[int] = typer.Option(None, help="Worker processes for MediaPipe (default: all cores; "
                                          "with --ray, actors: all CPUs of the cluster)."),
    fps: float = typer.Option(25.0, help="Resample every clip to this frame rate (0 keeps the source rate)."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any clip fails."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]", help=_RAY_HELP),
) -> None:
    """Extract MediaPipe Holistic poses (cached) from videos into .npz files and a manifest."""
    from slsearch.data.extract_corpus import extract_corpus

    with progress_if(not as_json, transient=False) as progress:
        summary = extract_corpus(paths, out, workers=workers, fps=fps or None, progress=progress, ray=ray)
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
    from slsearch.training.recipe import load_recipe

    recognizer = load_recipe(recipe, sets).train.kind == "recognizer"  # CVT-SLR (issue 17)
    if recognizer and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SlsearchError("the recognizer recipe trains in one process; run it without torchrun")
    with stdout_to_stderr() if as_json else contextlib.nullcontext():  # the epoch tables must not mix with the JSON
        with progress_if(not as_json, transient=False) as progress:
            if recognizer:
                from slsearch.training.recognizer import train_recognizer

                result = train_recognizer(load_recipe(recipe, sets), manifest, dev, out, progress=progress,
                                          notify=show_training_event)
            else:
                result = train_model(recipe, manifest, dev, out, overrides=sets, resume=resume, progress=progress,
                                     notify=show_training_event)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports and records for all
        return
    if recognizer:  # not the workspace's model: index and search need a retrieval model
        err_console.print(plain(f"read glosses with: slsearch recognize CLIP --model {result.out}"), style="dim",
                          soft_wrap=True)
    else:
        _remember(model=result.out)
    if as_json:
        print(json.dumps({"out": str(result.out), "best_epoch": result.best_epoch, "best_dev": result.best_dev,
                          "epochs_run": result.epochs_run, "train_minutes": result.train_minutes,
                          "stopped": result.stopped}))


@app.command()
def lexicon(
    model: str = typer.Option(..., "--model", help="Checkpoint with a gloss head (its lexicon.npz is replaced)."),
    manifest: str = typer.Option(..., "--manifest", help="Training manifest with a gloss column (or its sentences' "
                                 "pseudo-glosses, for a model trained on them; any with --from-readings)."),
    dev: str = typer.Option(..., "--dev", help="Dev manifest: picks the fusion weights (never test)."),
    prefix: int = typer.Option(5, "--prefix", help="Cut sentence words to this many characters (0 = whole words)."),
    iterations: int = typer.Option(5, "--iterations", help="EM iterations (IBM Model 1, then the diagonal model)."),
    smoothing: float = typer.Option(0.1, "--smoothing", help="Weight of the unit prior, between 0 and 1."),
    alignment: str = typer.Option("diagonal", "--alignment",
                                  help="diagonal: words and glosses at similar positions align; ibm1: any order."),
    tension: float = typer.Option(4.0, "--tension", help="Diagonal alignment: how sharply it prefers equal positions."),
    from_readings: bool = typer.Option(False, "--from-readings", help="Pair each training sentence with the model's "
                                       "own reading of its clip, not the manifest's glosses: the table learns "
                                       "what the readings it scores say, errors included."),
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
        lex = relearn_lexicon(model, manifest, dev, config, progress=progress, from_readings=from_readings).lexicon
    summary = {"model": model, **lex.describe()}
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    f = lex.fusion
    console.print(plain(f"gloss lexicon of {model} ({lex.alignment} alignment): {len(lex.units)} word units x "
                        f"{len(lex.glosses)} glosses; dev R@1 with "
                        f"CiCo + lexicon T2V {f['t2v']['dev_R@1']:.1f} V2T {f['v2t']['dev_R@1']:.1f} "
                        f"(weights {f['t2v']['weight']:g} / {f['v2t']['weight']:g})"))


@app.command()
def calibrate(
    model: str = typer.Option(..., "--model", help="Joint-run checkpoint (its likelihood.json is replaced)."),
    dev: str = typer.Option(..., "--dev", help="Dev manifest: picks the re-ranking weights (never test)."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Re-rank this many of each query's first candidates "
                                                               "(default 20, the stage's)."),
    bank: Optional[str] = typer.Option(None, "--bank", help="Training manifest: fit a new V2T hubness stage on a "
                                                             "sample of its clips (a model trained before it existed)."),
    # 1000 = slsearch.rank.hubness_stage.BANK_SIZE, not imported: slsearch.rank loads torch, too slow for --help
    bank_size: int = typer.Option(1000, "--bank-size", help="Clips in the hubness bank (with --bank)."),
    reader: Optional[str] = typer.Option(None, "--reader", help="Translate-stage checkpoint (train --recipe "
                                                                 "translate --init MODEL): it re-reads V2T candidates; "
                                                                 "copied into the model's folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the weights and dev R@1 as JSON on stdout."),
) -> None:
    """Pick the decoder-likelihood re-ranking weights of a checkpoint on dev (what `train` does at the end
    of a joint run); with --bank, the V2T hubness stage's too; with --reader, a V2T reader stage's."""
    from rich.table import Table

    from slsearch.rank.likelihood_stage import DEFAULT_DEPTH
    from slsearch.training.calibration import recalibrate

    depth = DEFAULT_DEPTH if depth is None else depth
    if depth < 1:
        raise SlsearchError(f"--depth must be at least 1, got {depth}")
    if bank_size < 1:
        raise SlsearchError(f"--bank-size must be at least 1, got {bank_size}")
    with progress_if(not as_json) as progress:
        fitted = recalibrate(model, dev, depth, bank, bank_size, progress=progress, reader=reader)
    reranker, hubness = fitted.likelihood, fitted.hubness
    hub = hubness.fusion.get("v2t") if hubness is not None else None
    read = fitted.reader.scorer.fusion.get("v2t") if fitted.reader is not None else None
    if as_json:
        print(json.dumps({"model": model, "depth": reranker.depth, "fusion": reranker.fusion,
                          "hubness": None if hub is None else {"bank": len(hubness.bank_tokens), **hub},
                          "reader": read}))
        return
    if hub is not None:
        console.print(plain(f"V2T hubness against a bank of {len(hubness.bank_tokens)} training clips: weight share "
                            f"{hub['share']:g}, dev R@1 {hub['dev_R@1_before']:.1f} -> {hub['dev_R@1']:.1f}"))
    table = Table(title=plain(f"decoder-likelihood re-ranking of the first {reranker.depth} candidates ({model})"))
    for col in ("direction", "weight", "dev R@1 before", "dev R@1 after"):
        table.add_column(col)
    for direction in ("t2v", "v2t"):
        f = reranker.fusion.get(direction)
        if f is None:
            table.add_row(direction.upper(), "-", "", "not re-ranked: no sentence prior (model.lm_prior_rate = 0)")
        else:
            table.add_row(direction.upper(), f"{f['weight']:g}", f"{f['dev_R@1_before']:.1f}", f"{f['dev_R@1']:.1f}")
    console.print(table)
    if read is not None:
        console.print(plain(f"V2T re-read by the translate-stage model ({fitted.reader.folder}): weight "
                            f"{read['weight']:g}, dev R@1 {read['dev_R@1_before']:.1f} -> {read['dev_R@1']:.1f}, "
                            f"MRR {read['dev_MRR_before']:.1f} -> {read['dev_MRR']:.1f}"))


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
    with progress_if(not as_json, transient=False) as progress:
        s = synthesize_corpus(corpus, out, splits=splits, limit=limit, seed=seed, difficulty=difficulty,
                              workers=workers, progress=progress)
    if as_json:
        print(json.dumps(s))
        return
    table = Table(title=plain(f"slsearch synth {corpus}"), show_header=False)
    for key in ("clips", "frames", "splits", "workers", "seconds", "clips_per_second", "manifest"):
        table.add_row(key, plain(s[key]))
    console.print(table)


@app.command()
def render(
    pose_file: str = typer.Argument(..., help="Pose to draw: .npz, .npy, .pose (or a video, extracted first)."),
    out: str = typer.Argument(..., help="Output video, e.g. preview.mp4."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate (default: the pose's own)."),
    size: Optional[str] = typer.Option(None, "--size", help="WIDTHxHEIGHT in pixels (default 420x520, or the "
                                                            ".pose file's aspect)."),
    glosses: bool = typer.Option(False, "--glosses", help="Caption each frame with the glosses `recognize` "
                                 "reads (the one signed at that moment highlighted)."),
    model: Optional[str] = typer.Option(None, "--model", help="With --glosses: a recogniser run or a checkpoint "
                                        "with a gloss head (default: the workspace's model)."),
    beam: int = typer.Option(5, "--beam", help="With --glosses: CTC beam width."),
) -> None:
    """Draw a pose sequence as a skeleton video, to look at synthetic or real poses (and what was read in them)."""
    from slsearch.render import render_file

    reading = None
    if glosses:
        from slsearch.recognition import load_gloss_reader, recognize_paths
        from slsearch.workspace import resolve_model

        found, failures = recognize_paths(load_gloss_reader(resolve_model(model, via_index=True)), [pose_file],
                                          beam=beam)
        if not found:
            fail(failures[0] if failures else f"{pose_file}: no clip to read")
        reading = [(i["gloss"], i["start"], i["end"]) for i in found[0].reading.to_dict()["items"]]
        console.print(plain(f"glosses: {found[0].glosses or '(none read)'}"))
    dims = None
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
            dims = (w, h)
        except ValueError:
            fail(f"--size must look like 420x520, got {size!r}")
    path = render_file(pose_file, out, fps=fps, size=dims, glosses=reading)
    console.print(plain(f"wrote {path}"))


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


@app.command(cls=_RayCommand)
def index(
    paths: list[str] = typer.Argument(..., help="Folders of videos / frame folders / pose files, manifests, or files."),
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint folder (default: the workspace's "
                                                              "model, the last one `train` or `demo` made; "
                                                              "with --add the one the index was built with)."),
    out: Optional[str] = typer.Option(None, "--out", help="Index folder (default: indexes/NAME beside "
                                      "slsearch.toml, NAME the first folder or manifest; with --add the "
                                      "workspace's index)."),
    add: bool = typer.Option(False, "--add", help="Add to the existing index: embed only clips with new content."),
    index_type: Optional[str] = typer.Option(None, "--index-type",
                                             help="flat, ivf, hnsw, ivfpq, opq or a FAISS factory string "
                                                  "(default: chosen by corpus size and --max-memory)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="RAM budget of the index, e.g. 512M, 4G."),
    batch_size: int = typer.Option(32, "--batch-size", help="Clips per encoder batch."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Token store for the re-rank: fp16 (exact, the "
                                         "default), pq (centroid + residual PQ codes, ~8x smaller), pq-small "
                                         "(~15x), opq, or a FAISS codec factory string. --add keeps the index's own."),
    segment: str = typer.Option("auto", "--segment", help="How long media are cut into searchable segments: "
                                "auto (by the subtitle file beside them, else by signing activity), subtitles, "
                                "activity, windows, or off (index every file whole)."),
    segment_over: float = typer.Option(60.0, "--segment-over", help="Seconds: media longer than this are "
                                       "segmented (media with a subtitle file always)."),
    subtitle_shift: str = typer.Option("0", "--subtitle-shift", help="Seconds added to every subtitle cue "
                                       "(positive: the signing comes later, as an interpreter lags the speech), "
                                       "or auto: estimated from the signing."),
    window: float = typer.Option(8.0, "--window", help="Seconds per window (--segment windows, and phrases "
                                 "too long to cut at a pause)."),
    stride: float = typer.Option(4.0, "--stride", help="Seconds between window starts."),
    readings: Optional[str] = typer.Option(None, "--readings", help="A recogniser run (`train --recipe "
                                           "recognizer`) whose gloss readings the index stores for the lexicon and "
                                           "gloss search, instead of the model's gloss head."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]", help=_RAY_HELP),
    shard: Optional[str] = typer.Option(None, "--shard", help="Build (with --add: grow) the shard NAME of the "
                                        "shard set --out, searched with the set's other shards as one index; the "
                                        "others are not touched."),
) -> None:
    """Embed clips into a searchable index folder (atomic; --add for incremental updates).

    Long videos (and pose files) are cut into segments, each a clip of the index with its start and end.
    With --shard NAME, --out is a shard set and the clips go into its shard NAME."""
    from rich.table import Table

    from slsearch.data.long_media import SegmentOptions
    from slsearch.data.segments import SegmentParams
    from slsearch.index.build import build_index
    from slsearch.index.shards import build_shard
    from slsearch.workspace import index_model, index_out

    segmenting = SegmentOptions(segment, subtitle_shift,
                                SegmentParams(longer_than=segment_over, window=window, stride=stride))
    out = index_out(paths, out, add)
    model = index_model(model, out / shard if shard else out, add)
    with progress_if(not as_json, transient=False) as progress:
        build = build_shard if shard else build_index
        where = {"set_dir": out, "name": shard} if shard else {"out": out}
        s = build(paths, model, **where, add=add, index_type=index_type, max_memory=max_memory,
                  batch_size=batch_size, progress=progress, segmenting=segmenting, tokens=tokens,
                  readings=readings, ray=ray)
    _remember(index=out)
    if as_json:
        print(json.dumps(s))
        return
    for failed in s["failed"]:
        err_console.print(labelled("skipped", "yellow", failed["reason"]), soft_wrap=True)
    for note in s["notes"]:
        err_console.print(labelled("note:", "yellow", note), soft_wrap=True)
    table = Table(title=plain(f"slsearch index {s['out']}"), show_header=False)
    for key in ("action", "clips_seen", "clips_added", "clips_unchanged", "clips_replaced", "failures",
                "clips_total", "texts_total", "index_type", "factory", "search_params", "recall_at_10"):
        table.add_row(key, plain(s[key]))
    table.add_row("size", _size(s["size_bytes"]))
    table.add_row("token store", plain(f"{_size(s['token_store_bytes'])} ({s['tokens']})"))
    table.add_row("time", f"{s['seconds']:.1f} s")
    if shard:
        table.add_row("shard set", plain(f"{s['set']}: {s['shards']} shards, {s['set_clips']} clips"))
    console.print(table)


@app.command()
def shards(
    set_dir: str = typer.Argument(..., help="A shard set folder (made by `slsearch index ... --out SET --shard NAME`)."),
    add: Optional[str] = typer.Option(None, "--add", help="Register this index folder (built elsewhere, with the "
                                      "set's model) as a shard, its data staying where they are; or the URL of "
                                      "`slsearch serve INDEX --shard-api` on another machine."),
    name: Optional[str] = typer.Option(None, "--name", help="With --add: the shard's name (default: the folder's)."),
    drop: Optional[str] = typer.Option(None, "--drop", help="Take the shard NAME out of the set (its folder stays)."),
    as_json: bool = typer.Option(False, "--json", help="Print the set as JSON on stdout."),
) -> None:
    """List a shard set's shards, register an index as a shard (--add) or take one out (--drop)."""
    from rich.table import Table

    from slsearch.index.shards import describe, drop_shard, register_shard

    if add is not None and drop is not None:
        raise SlsearchError("give --add or --drop, not both")
    if add is not None:
        from slsearch.index.remote import is_url

        if name is None and is_url(add):
            raise SlsearchError("--add URL needs --name: the shard's name in the set")
        register_shard(set_dir, name or os.path.basename(os.path.abspath(add)), add)
    elif drop is not None:
        drop_shard(set_dir, drop)
    d = describe(set_dir)
    if as_json:
        print(json.dumps(d))
        return
    table = Table(title=plain(f"slsearch shards {d['set']} (checkpoint {d['checkpoint']['hash']})"))
    for col in ("shard", "clips", "sentences", "version", "updated", "folder"):
        table.add_column(col)
    for r in d["shards"]:
        table.add_row(plain(r["name"]), plain(r.get("clips", "?")), plain(r.get("texts", "?")),
                      plain(r.get("version", "?")), plain(r.get("updated") or ""),
                      plain(r["path"] if r.get("ok") else f"{r['path']} ({r.get('error', 'another checkpoint')})"))
    console.print(table)
    console.print(f"{len(d['shards'])} shards, {d['clips']} clips")


@app.command()
def query(
    text: Optional[str] = typer.Argument(None, help="Words to search for (text -> clips)."),
    index_dir: Optional[str] = typer.Option(None, "--index", help="Index folder (default: the workspace's "
                                            "index, the last one `index` or `demo` built)."),
    k: int = typer.Option(10, "-k", "--top-k", help="Number of results per query."),
    video: Optional[str] = typer.Option(None, "--video", help="Search with a clip: its sentences (or --clips)."),
    clips: bool = typer.Option(False, "--clips", help="With --video: return similar clips instead of sentences."),
    queries: Optional[str] = typer.Option(None, "--queries", help="File with one text query per line (batched)."),
    gloss: Optional[str] = typer.Option(None, "--gloss", help="Search clips by gloss sequence, e.g. \"MORGEN "
                                        "REGEN\": ranked by their gloss readings (models with a gloss head)."),
    candidates: int = typer.Option(100, "--candidates", help="FAISS candidates re-ranked with the CiCo score "
                                   "(fused with the gloss lexicon's, for models that have one)."),
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint (default: the one index.json names)."),
    score: Optional[str] = typer.Option(None, "--score", help="Rank by full (CiCo + gloss lexicon, then the decoder "
                                        "likelihood on the first 20), fused (CiCo + lexicon: no decoder, 11-18 ms "
                                        "faster on a CPU), cico or lexical. Default: the best the model has."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Search an index with text (T2V), with a clip (V2T, or V2V with --clips) or with glosses (G2V, --gloss)."""
    from rich.table import Table

    from slsearch.index.search import query_index
    from slsearch.workspace import resolve

    answers = query_index(resolve("index", index_dir), text=text, video=video, queries_file=queries, k=k,
                          n_candidates=candidates, clips=clips, model=model, glosses=gloss, score=score)
    for a in answers:
        if a.get("unknown_glosses"):
            err_console.print(labelled("note:", "yellow", "glosses the model does not know, left out: "
                                       + " ".join(a["unknown_glosses"])), soft_wrap=True)
    if as_json:
        print(json.dumps(answers if len(answers) > 1 or queries else answers[0], ensure_ascii=False))
        return
    for a in answers:
        table = Table(title=plain(f"{a['mode']}: {a['query']}"))  # the user's words: never markup
        with_glosses = any(h.get("glosses") for h in a["results"])
        with_span = any(h.get("span") for h in a["results"])
        for col in (("rank", "score", "id", "path") + (("span",) if with_span else ()) + ("text",)
                    + (("glosses",) if with_glosses else ())):
            table.add_column(col, overflow="fold")
        for h in a["results"]:
            row = [str(h["rank"]), f"{h['score']:.4f}", h["id"], h["path"] or ""]
            if with_span:
                row.append(f"{h['span'][0]:.1f}-{h['span'][1]:.1f} s" if h.get("span") else "")
            row.append(h["text"] or "")
            table.add_row(*map(plain, row), *([plain(h.get("glosses") or "")] if with_glosses else []))
        console.print(table)


@app.command()
def remove(
    ids: list[str] = typer.Argument(..., help="Clip ids to drop from the index."),
    index_dir: Optional[str] = typer.Option(None, "--index", help="Index folder (default: the workspace's index)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Drop clips from an index without rebuilding it."""
    from slsearch.index.remove import remove_clips
    from slsearch.workspace import resolve

    s = remove_clips(resolve("index", index_dir), ids)
    if as_json:
        print(json.dumps(s))
    else:
        console.print(plain(f"removed {s['removed']} clip(s) from {s['index']}: {s['clips_total']} clips, "
                            f"{s['texts_total']} sentences left"))


@app.command()
def translate(
    paths: list[str] = typer.Argument(..., help="Video files, pose files, folders or manifests."),
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint folder (best after `train --stage "
                                        "translate`; default: the workspace's model, else its index's)."),
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
    from slsearch.workspace import resolve_model

    m = load_retrieval_model(resolve_model(model, via_index=True))
    settings = decode_settings(m.decode, beam, length_penalty, no_repeat_ngram)
    beam = settings.beam
    results, failures = translate_paths(m.net, paths, settings, max_len=max_len, with_attention=attention is not None)
    for line in failures:
        err_console.print(labelled("skipped", "yellow", line), soft_wrap=True)
    if attention and results:
        err_console.print(plain(f"attention of {results[0].id} drawn to "
                                f"{plot_attention(results[0], m.net, attention)}"))
    if as_json:
        print(json.dumps({"translations": [r.to_dict() for r in results], "failures": failures,
                          "beam": beam, "length_penalty": settings.length_penalty,
                          "no_repeat_ngram": settings.no_repeat_ngram, "model": m.hash}, ensure_ascii=False))
    elif len(results) == 1 and results[0].reference is None:
        console.print(plain(results[0].text))
        if results[0].glosses is not None:
            console.print(plain(f"glosses (read): {results[0].glosses}"), style="dim")
    else:
        table = Table(title=f"slsearch translate (beam {beam})")
        with_ref = any(r.reference for r in results)
        with_glosses = any(r.glosses is not None for r in results)
        cols = ["id", "translation"] + (["glosses (read)"] if with_glosses else []) + (["reference"] if with_ref else [])
        for col in cols:
            table.add_column(col, overflow="fold")
        for r in results:
            table.add_row(plain(r.id), plain(r.text), *([plain(r.glosses or "")] if with_glosses else []),
                          *([plain(r.reference or "")] if with_ref else []))
        console.print(table)
    if not results:
        raise typer.Exit(1)


@app.command()
def recognize(
    paths: list[str] = typer.Argument(..., help="Video files, pose files, folders or manifests."),
    model: Optional[str] = typer.Option(None, "--model", help="A CVT-SLR recogniser run (train --recipe recognizer) "
                                        "or a checkpoint with a gloss head (default: the workspace's model, else its "
                                        "index's)."),
    beam: int = typer.Option(5, "--beam", help="CTC prefix beam size, 1 = greedy."),
    lm_weight: float = typer.Option(0.0, "--lm-weight", help="Fuse a gloss bigram LM into the beam search with "
                                    "this weight (0 = off)."),
    lm: Optional[str] = typer.Option(None, "--lm", help="The gloss LM: a training manifest (its gloss column) or "
                                     "an lm.json (default: a recogniser run's own)."),
    lm_bonus: float = typer.Option(0.0, "--lm-bonus", help="With --lm-weight: a score bonus per gloss (offsets the "
                                   "LM's cost of each gloss, which else favours deletions; negative: a penalty "
                                   "against insertions). Pick it on dev."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Read the glosses each clip signs (a CVT-SLR recogniser run or a retrieval model's gloss CTC head), with
    time spans and confidences."""
    from rich.table import Table

    from slsearch.recognition import load_gloss_lm, load_gloss_reader, recognize_paths
    from slsearch.workspace import resolve_model

    folder = resolve_model(model, via_index=True)
    net = load_gloss_reader(folder)
    gloss_lm = load_gloss_lm(folder, net, lm, lm_weight)
    results, failures = recognize_paths(net, paths, beam=beam, lm=gloss_lm, lm_weight=lm_weight,
                                        lm_bonus=lm_bonus)
    for line in failures:
        err_console.print(labelled("skipped", "yellow", line), soft_wrap=True)
    if as_json:
        print(json.dumps({"recognitions": [r.to_dict() for r in results], "failures": failures, "beam": beam,
                          "lm_weight": lm_weight, "model": net.checkpoint_hash,
                          "model_kind": "recognizer" if getattr(net, "is_recognizer", False) else "retrieval"},
                         ensure_ascii=False))
    else:
        table = Table(title=f"slsearch recognize (beam {beam}{f', LM x{lm_weight:g}' if lm_weight else ''})")
        with_ref = any(r.reference for r in results)
        for col in ["id", "glosses", "spans (s) and confidence"] + (["reference"] if with_ref else []):
            table.add_column(col, overflow="fold")
        for r in results:
            spans = " ".join(f"{g}[{a:.2f}-{b:.2f} {c:.2f}]" for g, (a, b), c in
                             zip(r.reading.glosses, r.reading.spans, r.reading.confidences))
            table.add_row(plain(r.id), plain(r.glosses), plain(spans), *([plain(r.reference or "")] if with_ref else []))
        console.print(table)
    if not results:
        raise typer.Exit(1)


def _print_recall(report: dict) -> None:
    from rich.table import Table

    m, ks = report["metrics"], report["ks"]
    table = Table(title=plain(f"retrieval on {report['source']} ({report['score']} score, {report['count']} clips"
                              f"{', split ' + report['split'] if report['split'] else ''})"))
    for col in ["protocol", "direction", *[f"R@{k}" for k in ks], "MedR", "MeanR"]:
        table.add_column(col, justify="right" if col not in ("protocol", "direction") else "left")
    for proto in ("paper", "dedup"):
        for d, name in (("t2v", "text→video"), ("v2t", "video→text")):
            table.add_row(proto, name, *[f"{m[f'{proto}/{d}_R@{k}']:.1f}" for k in ks],
                          f"{m[f'{proto}/{d}_MedR']:.1f}", f"{m[f'{proto}/{d}_MeanR']:.1f}")
    console.print(table)
    console.print(f"paper: only the paired item counts; dedup: any clip with the same sentence counts "
                  f"({int(m['distinct_texts'])} distinct sentences)", style="dim")
    if report.get("stages"):
        console.print(plain("stages: " + "; ".join(f"{d.upper()} {' + '.join(s)}" for d, s in report["stages"].items())),
                      style="dim")
    if report.get("split_note"):
        console.print(plain(f"clips: {report['split_note']}"), style="dim")


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
        ex.add_row(plain(e["id"]), plain(e["reference"]), plain(e["hypothesis"]))
    console.print(ex)


def _print_wer(report: dict) -> None:
    m = report["metrics"]
    if m is None:
        console.print(plain(f"no clip of {report['source']} could be read"))
        return
    console.print(plain(f"WER {m['wer']:.2f} % on {report['count']} clips of {report['source']} (beam "
                        f"{report['beam']}{', LM x%g bonus %g' % (report['lm_weight'], report['lm_bonus']) if report.get('lm_weight') else ''}): {m['substitutions']} substitutions, {m['deletions']} deletions "
                        f"(DEL {m['del_rate']:.2f} %), {m['insertions']} insertions (INS {m['ins_rate']:.2f} %) "
                        f"in {m['reference_glosses']} reference glosses"))
    for line in report["failures"]:
        err_console.print(labelled("skipped", "yellow", line), soft_wrap=True)


@app.command("eval")
def evaluate(
    index_dir: Optional[str] = typer.Option(None, "--index", help="Evaluate an index's clips that have text "
                                            "(default: the workspace's index)."),
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint (with --manifest; no index needed; "
                                        "default: the workspace's model)."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="Test manifest: evaluate a model on it "
                                           "instead of an index."),
    recall: str = typer.Option("1,5,10", "--recall", help="Comma-separated K values for R@K."),
    split: Optional[str] = typer.Option(None, "--split", help="Only clips of this split. Default for an index: "
                                        "its test split when it has one, else every clip with text (--split all)."),
    score: Optional[str] = typer.Option(None, "--score", help="full (what search ranks by: CiCo + gloss lexicon, "
                                        "then the decoder likelihood on each query's first 20), fused (CiCo + "
                                        "lexicon), cico, lexical (the lexicon alone) or global (first-stage "
                                        "vectors). Default: the best the model has (full, fused, cico)."),
    bleu: bool = typer.Option(False, "--bleu", help="Translation quality instead: BLEU-1..4, chrF, ROUGE-L."),
    wer: bool = typer.Option(False, "--wer", help="Gloss recognition instead: WER with substitutions, deletions, "
                             "insertions against the manifest's gloss column."),
    beam: Optional[int] = typer.Option(None, "--beam", help="Beam size for --bleu (default: the model's, 4) or "
                                       "the CTC beam for --wer (default 5, 1 = greedy)."),
    length_penalty: Optional[float] = typer.Option(None, "--length-penalty",
                                                   help="Length penalty for --bleu (default: the model's)."),
    no_repeat_ngram: Optional[int] = typer.Option(None, "--no-repeat-ngram",
                                                  help="N-gram blocking for --bleu, 0 = off (default: the model's)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N clips (with --bleu)."),
    lm_weight: float = typer.Option(0.0, "--lm-weight", help="--wer: fuse a gloss bigram LM into the CTC beam "
                                    "search with this weight (0 = off)."),
    lm: Optional[str] = typer.Option(None, "--lm", help="--wer: the gloss LM, a training manifest (its gloss "
                                     "column) or an lm.json (default: a recogniser run's own)."),
    lm_bonus: float = typer.Option(0.0, "--lm-bonus", help="--wer with --lm-weight: a score bonus per gloss "
                                   "(negative: a penalty against insertions)."),
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
    from slsearch.workspace import resolve, resolve_model

    if wer:
        if not manifest:
            raise SlsearchError("--wer needs --manifest FILE (clips with reference glosses)")
        from slsearch.eval.recognition import evaluate_wer

        report = evaluate_wer(resolve_model(model, via_index=True), manifest, beam=5 if beam is None else beam,
                              split=None if split == "all" else split, limit=limit, lm=lm, lm_weight=lm_weight,
                              lm_bonus=lm_bonus)
        show = _print_wer
    elif bleu:
        if not manifest:
            raise SlsearchError("--bleu needs --manifest FILE (clips with reference sentences)")
        from slsearch.eval.translation import evaluate_translation

        from slsearch.translation import check_decode_options

        check_decode_options(beam, length_penalty, no_repeat_ngram)
        report = evaluate_translation(resolve_model(model, via_index=True), manifest, beam=beam,
                                      split=None if split == "all" else split, limit=limit,
                                      length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram)
        show = _print_bleu
    elif index_dir or not (model or manifest):  # an index: --index, else the workspace's
        from slsearch.eval.retrieval import evaluate_index

        index_dir = resolve("index", index_dir)  # the table's title names it
        with progress_if(not as_json) as progress:
            report = evaluate_index(index_dir, ks, split=None if split == "all" else split, score=score,
                                    progress=progress, prefer_split=None if split else "test")
        show = _print_recall
    elif manifest:
        from slsearch.eval.retrieval import evaluate_model

        with progress_if(not as_json) as progress:
            report = evaluate_model(resolve_model(model), manifest, ks, split=None if split == "all" else split,
                                    score=score, progress=progress)
        show = _print_recall
    else:
        raise SlsearchError("--model needs --manifest FILE (or evaluate an index: --index DIR, or none for the "
                            "workspace's)")
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        show(report)
    if json_out:
        from pathlib import Path

        Path(json_out).write_text(json.dumps(report, indent=2, ensure_ascii=False))
        err_console.print(plain(f"wrote {json_out}"))


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
        err_console.print(plain(f"wrote {json_out}"))


@app.command()
def serve(
    index_dir: Optional[str] = typer.Option(None, "--index", help="Index folder (default: the workspace's "
                                            "index, the last one `index` or `demo` built)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on: 127.0.0.1 is this machine only; "
                                                         "0.0.0.0 every network interface."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    model: Optional[str] = typer.Option(None, "--model", help="Checkpoint (default: the one index.json names)."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", help="Largest clip upload accepted (413 above)."),
    score: Optional[str] = typer.Option(None, "--score", help="What searches rank by: full, fused (no decoder "
                                        "likelihood: 11-18 ms less a query on a CPU), cico or lexical. Default: the "
                                        "best the model has."),
    shard_api: bool = typer.Option(False, "--shard-api", help="Also answer a shard set's front (`slsearch shards SET "
                                   "--add http://HOST:PORT`): this index's metadata rows, with their folders, and "
                                   "token states; for the machines of one deployment, not the public. Beyond this "
                                   "machine it needs a shared key in SLSEARCH_SHARD_KEY, the same on the front."),
    tls_cert: Optional[str] = typer.Option(None, "--tls-cert", help="Serve HTTPS with this PEM certificate (chain); "
                                           "with --tls-key. A front trusts a private authority's certificates "
                                           "through SLSEARCH_SHARD_CA."),
    tls_key: Optional[str] = typer.Option(None, "--tls-key", help="The PEM private key of --tls-cert."),
) -> None:
    """Serve an index over HTTP: the search page at /, the JSON API documented at /docs (Ctrl-C stops)."""
    import logging
    from pathlib import Path

    import uvicorn

    from slsearch.index.remote import SHARD_KEY_ENV
    from slsearch.serve.app import create_app
    from slsearch.serve.limits import ServeSettings
    from slsearch.workspace import resolve

    if not 0 <= port <= 65535:
        raise SlsearchError(f"--port must be between 0 and 65535, got {port}")
    if not max_upload_mb > 0:
        raise SlsearchError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    if (tls_cert is None) != (tls_key is None):
        raise SlsearchError("--tls-cert and --tls-key go together: the certificate and its private key")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not Path(path).is_file():
            raise SlsearchError(f"{path}: no such file ({flag})")
    shard_key = os.environ.get(SHARD_KEY_ENV) or None
    local = host in ("127.0.0.1", "localhost", "::1")
    if shard_api and shard_key is None and not local:
        raise SlsearchError(f"--shard-api on {host} answers raw token states and file paths to the network: set "
                            f"{SHARD_KEY_ENV} to a shared secret (the same on the front), or listen on 127.0.0.1")
    if shard_api and not local and tls_cert is None:
        err_console.print(plain("note: without --tls-cert the shard key and token states cross the network "
                                "unencrypted; fine on a private network only"), soft_wrap=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    application = create_app(resolve("index", index_dir), model=model,
                             settings=ServeSettings(max_upload_mb=max_upload_mb, score=score), shard_api=shard_api,
                             shard_key=shard_key)
    v = application.state.live.current()
    shown_host = f"[{host}]" if ":" in host else host
    scheme = "https" if tls_cert else "http"
    err_console.print(plain(f"serving {application.state.live.index_dir} ({v.clips} clips, version {v.name}) at "
                            f"{scheme}://{shown_host}:{port}/  (API docs: /docs; Ctrl-C stops)"), soft_wrap=True)
    uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=5,
                ssl_certfile=tls_cert, ssl_keyfile=tls_key)


@app.command()
def manifest(
    paths: list[str] = typer.Argument(..., help="Folders of videos (or pose files), or single files."),
    subtitles: bool = typer.Option(True, "--subtitles", help="One row per subtitle cue (talk.mp4 + talk.srt, "
                                   "talk.vtt, talk.ass or talk.de.srt beside it); the only mode so far."),
    shift: float = typer.Option(0.0, "--shift", help="Seconds added to every cue (interpreters sign after the "
                                "speech: a positive shift moves cues later)."),
    min_duration: float = typer.Option(0.0, "--min-duration", help="Drop cues shorter than this (seconds)."),
    pseudo_glosses: bool = typer.Option(False, "--pseudo-glosses", help="Instead: copy one manifest with its "
                                        "gloss column replaced by the content words of each sentence, for "
                                        "training a gloss head on a corpus without glosses."),
    method: str = typer.Option("lemmas", "--method", help="With --pseudo-glosses: 'lemmas' (the content words' "
                               "lemmas, by a tagger where one is installed) or 'frequency' (the words without "
                               "the frequent short ones)."),
    language: str = typer.Option("", "--language", help="With --pseudo-glosses: the sentences' language (de, en, "
                                 "...); told from the sentences when not given."),
    out: str = typer.Option("manifest.jsonl", "--out", help="The JSONL manifest to write."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Write a manifest of subtitle segments (id, path, start, end, text) for `index` and `train`, or
    (--pseudo-glosses) a manifest's copy with pseudo-glosses."""
    if pseudo_glosses:
        from slsearch.data.pseudo_glosses import pseudo_gloss_manifest

        if len(paths) != 1:
            raise SlsearchError("--pseudo-glosses takes one manifest")
        s = pseudo_gloss_manifest(paths[0], out, method=method, language=language)
        if as_json:
            print(json.dumps(s, ensure_ascii=False))
            return
        skipped = f"; left out as function words: {', '.join(s['function_words'])}" if s["function_words"] else ""
        console.print(plain(f"wrote {s['out']}: {s['with_pseudo_glosses']} of {s['rows']} rows with pseudo-glosses, "
                            f"{s['described']} ({s['vocabulary']} distinct{skipped})"), soft_wrap=True)
        return
    from slsearch.data.subtitles import subtitle_manifest

    s = subtitle_manifest(paths, out=out, shift=shift, min_duration=min_duration)
    if as_json:
        print(json.dumps(s, ensure_ascii=False))
        return
    for failed in s["failed"]:
        err_console.print(labelled("skipped", "yellow", failed["reason"]), soft_wrap=True)
    for line in s["skipped"] + s["notes"]:
        err_console.print(labelled("note:", "yellow", line), soft_wrap=True)
    for path in s["without_subtitles"]:
        err_console.print(labelled("no subtitles:", "yellow", path), soft_wrap=True)
    console.print(plain(f"wrote {s['out']}: {s['segments']} segments from {s['with_subtitles']} of "
                        f"{s['media']} videos (shift {s['shift']:+g} s)"), soft_wrap=True)


def run() -> None:
    """Console-script entry point."""
    app()
