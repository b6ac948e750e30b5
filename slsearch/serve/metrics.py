"""Request metrics in the Prometheus text format (version 0.0.4), written by hand: no dependency.

Per endpoint (the route's path template, e.g. `/api/clips/{clip_id}`; anything unrouted is `other`, so a
scanner cannot grow the label set): requests by method and status, errors (status >= 400) by status,
and a latency histogram. `MetricsMiddleware` times every request from its first byte in to its last
byte out, an exception counting as a 500.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Iterable

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_CONVERTER = re.compile(r":\w+}")  # {clip_id:path} -> {clip_id}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_label(str(v))}"' for k, v in kv.items()) + "}"


class Metrics:
    """Counters and histograms, updated from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)  # (endpoint, method, status)
        self.errors: dict[tuple[str, int], int] = defaultdict(int)  # (endpoint, status)
        self.buckets: dict[str, list[int]] = {}  # endpoint -> count per bucket (not cumulative)
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[endpoint, method, status] += 1
            if status >= 400:
                self.errors[endpoint, status] += 1
            b = self.buckets.setdefault(endpoint, [0] * (len(BUCKETS) + 1))
            b[next((i for i, le in enumerate(BUCKETS) if seconds <= le), len(BUCKETS))] += 1
            self.sums[endpoint] += seconds
            self.counts[endpoint] += 1

    def render(self, gauges: Iterable[tuple[str, str, float]] = ()) -> str:
        """The exposition text; `gauges` adds (name, help, value) samples of the caller's (counters when
        the name ends in _total)."""
        out: list[str] = []
        with self._lock:
            out += ["# HELP slsearch_http_requests_total HTTP requests answered, by endpoint, method and status.",
                    "# TYPE slsearch_http_requests_total counter"]
            for (ep, method, status), n in sorted(self.requests.items()):
                out.append(f"slsearch_http_requests_total{_labels(endpoint=ep, method=method, status=status)} {n}")
            out += ["# HELP slsearch_http_errors_total HTTP requests answered with a status of 400 or more.",
                    "# TYPE slsearch_http_errors_total counter"]
            for (ep, status), n in sorted(self.errors.items()):
                out.append(f"slsearch_http_errors_total{_labels(endpoint=ep, status=status)} {n}")
            out += ["# HELP slsearch_http_request_duration_seconds Time from request to the last byte of the answer.",
                    "# TYPE slsearch_http_request_duration_seconds histogram"]
            for ep in sorted(self.buckets):
                running = 0
                for le, n in zip((*BUCKETS, float("inf")), self.buckets[ep]):
                    running += n
                    bound = "+Inf" if le == float("inf") else repr(le)
                    out.append(f"slsearch_http_request_duration_seconds_bucket{_labels(endpoint=ep, le=bound)} {running}")
                out.append(f"slsearch_http_request_duration_seconds_sum{_labels(endpoint=ep)} {self.sums[ep]:.6f}")
                out.append(f"slsearch_http_request_duration_seconds_count{_labels(endpoint=ep)} {self.counts[ep]}")
        for name, help_text, value in gauges:
            kind = "counter" if name.endswith("_total") else "gauge"
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """Times each HTTP request and records it under its route's path template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Callable[[], Iterable[Any]] = tuple,
                 clock: Callable[[], float] = time.perf_counter):
        self.app, self.metrics, self.routes, self.clock = app, metrics, routes, clock

    def endpoint(self, scope: Scope, before: Scope) -> str:
        """The route's path template without converters (`/api/clips/{clip_id}`); routes that do not say
        which they are (mounts, /openapi.json) are looked up; anything else is `other`."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes() if r.matches(before)[0] == Match.FULL), None)
        path = getattr(route, "path", None)
        return _CONVERTER.sub("}", path) if path else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = self.clock(), 500
        before = dict(scope)  # as it came: a mount rewrites the paths in `scope` on the way in

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            self.metrics.observe(self.endpoint(scope, before), scope.get("method", "GET"), status, self.clock() - t0)
