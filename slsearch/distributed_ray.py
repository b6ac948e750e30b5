"""Pose extraction and clip embedding on Ray (`slsearch extract --ray`, `slsearch index --ray`).

    clips ──► ActorPool (one task in flight per actor) ──► results as they finish (progress) ──► caller
              each actor: MediaPipe (extract) or the model (embed) loaded once, then clip after clip

The actors run the built-in path's own functions: `slsearch.data.extract.extract_one` per clip (it
writes the shared pose cache, so a run that dies resumes without extracting finished clips again) and
`slsearch.index.build.embed_batch` per batch. A clip that fails is one line naming the file and the
reason, as in the built-in pool; an actor that dies is replaced and the clip it held is retried once,
then reported ("the extractor crashed on this file"). Work is handed out one item per idle actor, so
at most `actors` items are in flight and results arrive as a stream, not all at the end.

Every node must see the clips and the pose cache at the paths the driver uses (a shared file system):
actors work in the driver's folder and cache. Ray is imported only here, and only when `--ray` is given.
"""

from __future__ import annotations

import os
import re
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from slsearch.errors import SlsearchError

RAY_REQUIREMENT = "ray>=2.60,<3"


_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.\-]+:\d+)$")  # what may follow a bare --ray as its value


def optional_address_args(args: Sequence[str], option: str = "--ray") -> list[str]:
    """Command-line arguments with a bare `--ray` (last, or followed by an option or a path rather than an
    address: auto, local, HOST:PORT, ray://HOST:PORT) written as `--ray=auto`, so the option's value is optional."""
    args = list(args)
    out = []
    for i, a in enumerate(args):
        if a == "--":
            return out + args[i:]
        nxt = args[i + 1] if i + 1 < len(args) else None
        out.append(f"{option}=auto" if a == option and (nxt is None or not _ADDRESS.match(nxt)) else a)
    return out


def require_ray():
    """The ray module, or a one-line SlsearchError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SlsearchError(f"--ray needs the ray package, which is not installed: pip install '{RAY_REQUIREMENT}' "
                            "(or pip install 'slsearch[ray]')") from None
    return ray


def connect(address: str | None = None):
    """Join (or start) Ray once per process. None or "auto": the Ray instance this machine runs (`ray start`,
    RAY_ADDRESS), else a new local one; "HOST:PORT" or "ray://HOST:PORT": that cluster. An already
    initialised Ray (a test, a notebook) is used as it is."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=None if address in (None, "", "auto") else address)
        except ConnectionError as e:
            raise SlsearchError(f"--ray {address}: cannot join that Ray cluster ({str(e).splitlines()[0]})") from None
    return ray


def _actors(ray, wanted: int | None) -> int:
    """Actors of one CPU each: `wanted`, at most the cluster's CPUs (more would wait for a CPU forever,
    holding the clips handed to them); all of them by default."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return min(wanted, cpus) if wanted else cpus


class _Worker:
    """What every actor does first: work in the driver's folder and pose cache (relative paths and the
    cache resolve as they do in the driver), and silence stderr as the built-in pool's workers do."""

    def __init__(self, cwd: str, cache_root: str):
        from slsearch.data.extract import silence_worker

        if os.path.isdir(cwd):
            os.chdir(cwd)
        os.environ["SLSEARCH_CACHE"] = cache_root
        silence_worker()


class ExtractActor(_Worker):
    """`extract` is the built-in pool's per-clip body; MediaPipe Holistic is loaded by the first clip that
    needs it and kept for the actor's life (one tracker per process, reset per video)."""

    def extract(self, clip, fps, cache_dir, crops=False):
        from slsearch.data.extract import extract_one

        return extract_one(clip, fps, cache_dir, crops)


class EmbedActor(_Worker):
    """The network (and a gloss reader) loaded once; `embed` is the built-in path's per-batch body."""

    def __init__(self, cwd: str, cache_root: str, model, load_pose, reader):
        super().__init__(cwd, cache_root)
        self.model, self.load_pose, self.reader = model, load_pose, reader  # ray.get of the refs, once

    def embed(self, clips):
        from slsearch.index.build import embed_batch

        return embed_batch(self.model, clips, self.load_pose, self.reader)


def _driver_context() -> tuple[str, str]:
    from slsearch.data.extract import default_cache_dir

    return os.getcwd(), str(default_cache_dir().parent.absolute())


def run_pool(make_actor: Callable[[], Any], size: int, items: Sequence[Any], call: Callable[[Any, Any], Any],
             crashed: Callable[[Any], Any], ordered: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield (i, result) for every item: `call(actor, item)` returns an ObjectRef; each actor holds at most
    one item. `ordered`: in the order of `items` (results held back are bounded: no item is handed out
    more than 2 * size places ahead of the next one due). An actor that dies is replaced; its item is
    retried once in a fresh actor and then given `crashed(item)` as its result."""
    ray = require_ray()
    from ray.exceptions import RayActorError, RayTaskError

    n = len(items)
    if n == 0:
        return
    actors = [make_actor() for _ in range(max(1, min(size, n)))]
    idle = list(actors)
    pending = deque(range(n))
    in_flight: dict[Any, tuple[int, Any]] = {}
    strikes: dict[int, int] = {}
    held: dict[int, Any] = {}
    due = 0  # ordered: the next index to yield
    window = 2 * len(actors)
    try:
        while pending or in_flight:
            while pending and idle and (not ordered or pending[0] < due + window):
                i = pending.popleft()
                actor = idle.pop()
                in_flight[call(actor, items[i])] = (i, actor)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                i, actor = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                    idle.append(actor)
                except RayTaskError as e:  # raised by our code in the actor: as it would be raised here
                    cause = getattr(e, "cause", None)
                    raise (cause if isinstance(cause, BaseException) else e) from None
                except RayActorError as e:
                    if getattr(e, "actor_init_failed", False):  # not this item's fault: nothing will run
                        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
                        raise SlsearchError(f"Ray workers could not start ({lines[-1] if lines else e}); is "
                                            "slsearch installed on every node?") from None
                    ray.kill(actor)
                    actors.remove(actor)
                    fresh = make_actor()
                    actors.append(fresh)
                    idle.append(fresh)
                    strikes[i] = strikes.get(i, 0) + 1
                    if strikes[i] < 2:
                        pending.appendleft(i)
                        continue
                    result = crashed(items[i])
                if not ordered:
                    yield i, result
                    continue
                held[i] = result
                while due in held:
                    yield due, held.pop(due)
                    due += 1
    finally:
        for actor in actors:
            ray.kill(actor)


def extract_many_ray(clips: Sequence[Any], workers: int | None = None, fps: float | None = 25.0,
                     cache_dir: str | Path | None = None, on_result: Callable[[Any], None] | None = None,
                     address: str | None = None, crops: bool = False) -> list[Any]:
    """`slsearch.data.extract.extract_many` on Ray: the same results (in the order of `clips`), the same
    cache entries, `on_result` as each clip finishes. `workers`: actors (default: the cluster's CPUs)."""
    from slsearch.data.extract import crashed, default_cache_dir

    ray = connect(address)
    cwd, cache_root = _driver_context()
    cache = str(Path(cache_dir or default_cache_dir()).absolute())
    actor_cls = ray.remote(num_cpus=1)(ExtractActor)
    results: list[Any] = [None] * len(clips)
    pool = run_pool(lambda: actor_cls.remote(cwd, cache_root), _actors(ray, workers), clips,
                    lambda actor, clip: actor.extract.remote(clip, fps, cache, crops), crashed)
    for i, r in pool:
        r.clip = clips[i]  # the caller's own object (the actor returns a copy)
        results[i] = r
        if on_result:
            on_result(r)
    return results


def embed_batches_ray(batches: Sequence[Sequence[Any]], model, load_pose, reader=None,
                      address: str | None = None, actors: int | None = None) -> Iterator[Any]:
    """`slsearch.index.build.embed_batch` over `batches` on Ray, yielded in batch order as they finish.
    The network, the pose loader and the reader go to the object store once; each actor takes them once."""
    ray = connect(address)
    cwd, cache_root = _driver_context()
    refs = ray.put(model), ray.put(load_pose), ray.put(reader)
    actor_cls = ray.remote(num_cpus=1)(EmbedActor)

    def crashed(batch):
        from slsearch.index.build import Failure

        return [], {c.id: Failure(str(c.path), "the embedding worker crashed on this batch") for c in batch}

    for _, result in run_pool(lambda: actor_cls.remote(cwd, cache_root, *refs), _actors(ray, actors),
                              batches, lambda actor, batch: actor.embed.remote(batch), crashed, ordered=True):
        yield result
