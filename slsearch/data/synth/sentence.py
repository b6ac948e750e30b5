"""A gloss sequence -> a clean (T, 543, 3) pose: signs in order with co-articulated transitions.

Each sign is a track: per-frame channels (palm positions, hand orientations, handshapes, head
angles, mouth and brows) as functions of the sign's phase u in 0..1. Between signs the channels
blend smoothly (handshapes change early, as signers anticipate the next sign) and a light
temporal blur rounds the corners. Every occurrence varies a little (speed, size, place, angle,
finger flexion, holds); all of it comes from the `rng` passed in. Detection noise is added
afterwards (noise.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slsearch.data import layout as L
from slsearch.data.synth import body
from slsearch.data.synth.lexicon import DIRECTIONS, HANDSHAPES, LOCATIONS, ORIENTATIONS, Lexicon, Sign
from slsearch.data.synth.signer import Signer

BASE_FPS = 25.0  # durations in the lexicon are frames at this rate

# Where hands wait: at rest on the lap (usually below the frame) and, for one-handed signs, the
# passive hand held low in front of the body.
_REST = (np.array([-0.3, 1.6, -0.3]), np.array([0.5, 0.3, -0.8]), np.array([0.0, 1.0, 0.0]))
_IDLE = (np.array([-0.28, 0.95, -0.6]), np.array([0.6, 0.2, -0.75]), np.array([0.0, 0.8, 0.6]))
_LAX = HANDSHAPES["B"] + np.array([25, 30, 15] * 4 + [0.3, 0, 0, 10], np.float32)
_CONTACT = {"chest", "chest-side", "shoulder-contra", "stomach", "chin", "mouth", "nose", "eye", "cheek",
            "forehead", "temple", "ear", "weak-hand"}
_VOWEL_MOUTH = {"A": (1.0, 0.0), "E": (0.6, 0.7), "I": (0.4, 1.0), "O": (0.7, -0.8), "U": (0.4, -1.0),
                "Y": (0.4, -0.6)}  # (opening, width) of a mouthed vowel


@dataclass(frozen=True)
class Variation:
    """How much one occurrence of a sign differs from another (standard deviations)."""

    speed: float = 0.15  # log of the duration factor
    amplitude: float = 0.15  # log of the movement-size factor
    place: float = 0.05  # body units, location shift (less on the body)
    angle: float = 10.0  # degrees, hand orientation
    shape: float = 7.0  # degrees, finger flexion
    hold: float = 0.2  # chance of a short hold after a sign
    path: float = 0.04  # body units, bow of a path

    def scaled(self, k: float) -> "Variation":
        return Variation(*(getattr(self, f) * k for f in self.__dataclass_fields__))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _perpendicular(d: np.ndarray) -> np.ndarray:
    ref = np.array([0.0, 0.0, -1.0]) if abs(d[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    return _unit(np.cross(d, ref))


def _rotate(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: rotate (n, 3) vectors about a unit axis ((3,) or (n, 3)) by (n,) angles."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    axis = np.broadcast_to(axis, v.shape)
    return v * c + np.cross(axis, v) * s + axis * np.sum(axis * v, -1, keepdims=True) * (1 - c)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _mouth_plan(gloss: str) -> list[tuple[float, float]]:
    """(opening, width) per mouthed syllable, from the gloss's vowels (mouthing the German word)."""
    plan, prev = [], False
    for ch in gloss.upper():
        if ch in _VOWEL_MOUTH and not prev:
            plan.append(_VOWEL_MOUTH[ch])
        prev = ch in _VOWEL_MOUTH
    return plan[:4] or [(0.5, 0.0)]


class SignTrack:
    """One occurrence of a sign: its channels as functions of the phase u (n,)."""

    def __init__(self, sign: Sign, signer: Signer, rng: np.random.Generator, var: Variation):
        self.sign = sign
        contact = sign.location in _CONTACT
        loc = np.array(LOCATIONS[sign.location], float)
        if not contact:
            loc = loc + np.array(signer.space_offset)
            loc[0] *= signer.amplitude
        self.loc = loc + rng.normal(0, var.place * (0.4 if contact else 1.0), 3)
        self.size = sign.size * signer.amplitude * float(np.exp(rng.normal(0, var.amplitude)))
        self.dir = _unit(np.array(DIRECTIONS[sign.direction], float))
        self.perp = _perpendicular(self.dir)
        self.bow = rng.normal(0, var.path)
        fingers, palm = (np.array(v, float) for v in ORIENTATIONS[sign.orientation])
        axis = _unit(rng.normal(size=3))
        turn = np.radians(rng.normal(0, var.angle, 1))
        self.fingers = _rotate(fingers[None], axis, turn)[0]
        self.palm = _rotate(palm[None], axis, turn)[0]
        self.shape0 = self._shape(sign.handshape, signer, rng, var)
        self.shape1 = self._shape(sign.handshape_end, signer, rng, var) if sign.handshape_end != sign.handshape \
            else self.shape0
        base = HANDSHAPES[sign.base_handshape] + rng.normal(0, var.shape, 16) * _FLEX_MASK
        self.base_shape = base
        self.mouth = _mouth_plan(sign.gloss) if sign.mouthing else []
        self.mouth_gain = signer.mouthing * float(rng.uniform(0.7, 1.1))
        self.wiggle_phase = rng.uniform(0, 2 * np.pi, 4)

    @staticmethod
    def _shape(name: str, signer: Signer, rng: np.random.Generator, var: Variation) -> np.ndarray:
        shape = HANDSHAPES[name].astype(float).copy()
        flex = shape[:12]
        flex += np.where(flex < 20, signer.laxness, 0.0)  # relaxed signers never fully straighten
        shape += rng.normal(0, var.shape, 16) * _FLEX_MASK
        return shape

    def path(self, u: np.ndarray) -> np.ndarray:
        """(n,) phase -> (n, 3) offset of the dominant palm from the sign's location."""
        s, reps, mv = self.size, self.sign.reps, self.sign.movement
        d, p = self.dir, self.perp
        col = lambda v: v[:, None]  # noqa: E731
        bow = col(self.bow * np.sin(np.pi * u)) * p
        if mv == "straight":
            w = _smoothstep(u) if reps == 1 else 0.5 - 0.5 * np.cos(2 * np.pi * reps * u)
            return col(w - 0.5) * s * d + bow
        if mv == "arc":
            return col(_smoothstep(u) - 0.5) * s * d + col(0.35 * s * np.sin(np.pi * u)) * p + bow
        if mv == "circle":
            a = 2 * np.pi * reps * u
            q = np.cross(d, p)
            return 0.5 * s * (col(np.cos(a) - 1) * p + col(np.sin(a)) * q)
        if mv == "zigzag":
            return col(u - 0.5) * s * d + col(0.25 * s * np.sin(2 * np.pi * (reps + 0.5) * u)) * p
        if mv == "tap":
            return col(0.5 * s * (0.5 - 0.5 * np.cos(2 * np.pi * reps * u))) * d
        if mv == "wiggle":
            return col(0.08 * s * np.sin(2 * np.pi * (reps + 1) * u)) * p + bow
        return bow  # hold, twist, nod, open-close: the hand stays in place

    def orientation(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(u)
        fingers, palm = np.tile(self.fingers, (n, 1)), np.tile(self.palm, (n, 1))
        if self.sign.movement == "twist":  # forearm rotation: the palm turns about the fingers
            palm = _rotate(palm, _unit(self.fingers), np.radians(70) * np.sin(np.pi * self.sign.reps * u))
        elif self.sign.movement == "nod":  # wrist flexion: fingers bend towards the palm side
            axis = _unit(np.cross(self.fingers, self.palm))
            angle = np.radians(45) * np.abs(np.sin(np.pi * self.sign.reps * u))
            fingers, palm = _rotate(fingers, axis, angle), _rotate(palm, axis, angle)
        return fingers, palm

    def shape(self, u: np.ndarray) -> np.ndarray:
        if self.sign.movement == "open-close":
            w = _smoothstep(u) if self.sign.reps == 1 else 0.5 - 0.5 * np.cos(2 * np.pi * self.sign.reps * u)
            return (1 - w)[:, None] * self.shape0 + w[:, None] * self.shape1
        shape = np.tile(self.shape0, (len(u), 1))
        if self.sign.movement == "wiggle":  # fingers flutter out of phase
            for f in range(4):
                shape[:, 3 * f] += 25 * np.sin(2 * np.pi * (self.sign.reps + 1) * u + self.wiggle_phase[f])
        return shape

    def channels(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """Every channel at phases u (n,)."""
        n, sign = len(u), self.sign
        pos = np.zeros((n, 2, 3))
        fingers, palm, shape = np.zeros((n, 2, 3)), np.zeros((n, 2, 3)), np.zeros((n, 2, 16))
        dom_pos = self.loc + self.path(u)
        dom_f, dom_p = self.orientation(u)
        pos[:, 0], fingers[:, 0], palm[:, 0], shape[:, 0] = dom_pos, dom_f, dom_p, self.shape(u)
        if sign.hands in ("sym", "alt"):  # the other hand mirrors the dominant one (its own hand space)
            shift = np.array([min(-abs(self.loc[0]) - 0.22 - self.loc[0], 0.0), 0.0, 0.0])
            pos[:, 0] += shift
            lag = 0.5 / max(sign.reps, 1) if sign.hands == "alt" else 0.0
            u2 = (u + lag) % 1.0 if lag else u
            pos[:, 1] = self.loc + shift + self.path(u2)
            f2, p2 = self.orientation(u2)
            fingers[:, 1], palm[:, 1], shape[:, 1] = f2, p2, self.shape(u2)
        elif sign.hands == "base":  # passive hand held still under the active one
            pos[:, 1] = np.array([-0.05, 0.58, -0.72])
            fingers[:, 1] = (0.7, -0.2, -0.7)
            palm[:, 1] = (0.0, -1.0, 0.0) if sign.base_handshape in ("B", "5") else (1.0, 0.0, 0.0)
            shape[:, 1] = self.base_shape
        else:
            pos[:, 1], fingers[:, 1], palm[:, 1], shape[:, 1] = _IDLE[0], _IDLE[1], _IDLE[2], _LAX
        env = np.sin(np.pi * np.clip(u, 0, 1))
        head, brows, puff = np.zeros((n, 3)), np.zeros(n), np.zeros(n)
        nm = sign.non_manual
        if nm == "brows-up":
            brows = env
        elif nm == "brows-down":
            brows = -env
        elif nm == "nod":
            head[:, 1] = 0.12 * np.sin(2 * np.pi * 2 * u)
        elif nm == "shake":
            head[:, 0] = 0.2 * np.sin(2 * np.pi * 2.5 * u) * env
        elif nm == "tilt":
            head[:, 2] = 0.12 * env
        elif nm == "puff":
            puff = env
        mouth, wide = np.zeros(n), np.zeros(n)
        if self.mouth:
            k = len(self.mouth)
            idx = np.minimum((u * k).astype(int), k - 1)
            syllable = np.abs(np.sin(np.pi * (u * k - idx)))  # open-close per syllable
            plan = np.array(self.mouth)
            mouth = self.mouth_gain * plan[idx, 0] * syllable
            wide = plan[idx, 1] * syllable
        # The head leans a little towards where the hands sign.
        head[:, 0] += 0.08 * np.tanh(dom_pos[:, 0])
        head[:, 1] += -0.05 * np.tanh(dom_pos[:, 1] - 0.3)
        return {"pos": pos, "fingers": fingers, "palm": palm, "shape": shape, "head": head, "mouth": mouth,
                "wide": wide, "brows": brows, "puff": puff}


_FLEX_MASK = np.array([1.0] * 12 + [0.0, 0.0, 0.0, 1.0])  # noise on joint angles, not on spread / thumb mix


def _static(pos: tuple, shape: np.ndarray) -> dict[str, np.ndarray]:
    """Both hands waiting (rest or idle), face neutral."""
    return {
        "pos": np.stack([pos[0], pos[0]])[None], "fingers": np.stack([pos[1], pos[1]])[None],
        "palm": np.stack([pos[2], pos[2]])[None], "shape": np.stack([shape, shape])[None],
        "head": np.zeros((1, 3)), "mouth": np.zeros(1), "wide": np.zeros(1), "brows": np.zeros(1),
        "puff": np.zeros(1),
    }


def _blend(a: dict, b: dict, v: np.ndarray) -> dict[str, np.ndarray]:
    """Transition from state a to state b (single frames) over phases v (n,)."""
    s = _smoothstep(v)
    out = {}
    for k in a:
        w = _smoothstep(v * 1.6) if k == "shape" else s  # handshapes change early (anticipation)
        w = w.reshape(-1, *([1] * (a[k].ndim - 1)))
        out[k] = (1 - w) * a[k] + w * b[k]
    for k in ("fingers", "palm"):  # turn through a sideways axis, never through a zero vector
        side = _unit(np.cross(a["fingers"], a["palm"]))
        opposed = np.clip(-np.sum(a[k] * b[k], -1, keepdims=True), 0, None)
        out[k] = out[k] + np.sin(np.pi * s).reshape(-1, 1, 1) * opposed * side
    arc = np.sin(np.pi * s).reshape(-1, 1)
    out["pos"] = out["pos"] + arc[..., None] * np.array([0.0, 0.0, -0.08])  # hands travel slightly forward
    return out


def _gauss_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Blur along time (axis 0) with edge padding."""
    if sigma <= 0 or len(x) < 3:
        return x
    r = int(np.ceil(2.5 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.concatenate([np.repeat(x[:1], r, 0), x, np.repeat(x[-1:], r, 0)])
    return sum(k[i] * pad[i: i + len(x)] for i in range(2 * r + 1))


def _idle_motion(T: int, rng: np.random.Generator, signer: Signer, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Slow body sway (T, 3) and head drift (T, 3) of a person standing in front of a camera."""
    t = np.arange(T) / fps
    sway, head = np.zeros((T, 3)), np.zeros((T, 3))
    for k in range(3):
        freq = rng.uniform(0.1, 0.5, 3)
        phase = rng.uniform(0, 2 * np.pi, 3)
        sway += 0.015 * signer.sway * np.sin(2 * np.pi * freq * t[:, None] + phase)
        head += 0.02 * signer.sway * np.sin(2 * np.pi * rng.uniform(0.2, 0.8, 3) * t[:, None] + phase)
    return sway, head


def _blinks(T: int, rng: np.random.Generator, fps: float) -> np.ndarray:
    blink = np.zeros(T)
    t = rng.uniform(0, 2.0) * fps
    while t < T:
        i = int(t)
        blink[i: i + 3] = np.array([0.6, 1.0, 0.5])[: len(blink[i: i + 3])]
        t += rng.uniform(1.5, 5.0) * fps
    return blink


def sign_sentence(glosses: list[str], signer: Signer, lexicon: Lexicon, rng: np.random.Generator,
                  num_frames: int | None = None, fps: float = BASE_FPS,
                  variation: Variation = Variation()) -> np.ndarray:
    """Glosses -> clean (T, 543, 3) float32 pose; T = num_frames when given."""
    tracks = [SignTrack(lexicon(g), signer, rng, variation) for g in glosses]
    rest = _static(_REST, _LAX)
    # Timeline in frames at BASE_FPS: (start state or track, duration, kind).
    segments: list[tuple[object, float, str]] = [(rest, 2.0 + rng.uniform(0, 3), "rest")]
    prev_end = rest
    for track in tracks:
        if track.sign.rest:
            start = end = rest
            dur = track.sign.frames
        else:
            start = track.channels(np.zeros(1))
            end = track.channels(np.ones(1))
            dur = track.sign.frames / signer.tempo * float(np.exp(rng.normal(0, variation.speed)))
        dist = float(np.abs(start["pos"][0] - prev_end["pos"][0]).max())
        segments.append(((prev_end, start), (2.5 + 4.0 * min(dist, 1.0)) / signer.tempo, "trans"))
        segments.append((rest, dur, "rest") if track.sign.rest else (track, dur, "sign"))
        if not track.sign.rest and rng.random() < variation.hold:
            segments.append((end, rng.uniform(1.5, 4.0), "hold"))
        prev_end = end
    segments.append(((prev_end, rest), 5.0 / signer.tempo, "trans"))
    segments.append((rest, 2.0 + rng.uniform(0, 3), "rest"))
    natural = sum(d for _, d, _ in segments)
    if num_frames is not None:
        T = int(num_frames)
        extra = T * BASE_FPS / fps - natural
        if extra > 0:  # a long clip: half of the slack becomes rest at the ends, half slower signing
            segments[0] = (segments[0][0], segments[0][1] + 0.25 * extra, "rest")
            segments[-1] = (segments[-1][0], segments[-1][1] + 0.25 * extra, "rest")
            natural += 0.5 * extra
    else:
        T = max(1, int(round(natural * fps / BASE_FPS)))
    if T < 1:
        raise ValueError("num_frames must be at least 1")
    tau = (np.arange(T) + 0.5) * natural / T  # (T,) natural time of every output frame
    ch = _evaluate(segments, tau)
    return _render(ch, signer, rng, fps)


def _evaluate(segments, tau: np.ndarray) -> dict[str, np.ndarray]:
    T = len(tau)
    out: dict[str, np.ndarray] = {}
    start = 0.0
    for i, (what, dur, kind) in enumerate(segments):
        end = start + dur
        sel = np.nonzero((tau >= start) & ((tau < end) | (i == len(segments) - 1)))[0]
        start = end
        if len(sel) == 0:
            continue
        u = np.clip((tau[sel] - (end - dur)) / max(dur, 1e-6), 0, 1)
        if kind == "sign":
            vals = what.channels(u)
        elif kind == "trans":
            vals = _blend(what[0], what[1], u)
        else:
            vals = {k: np.repeat(v, len(sel), 0) for k, v in what.items()}
        for k, v in vals.items():
            if k not in out:
                out[k] = np.zeros((T, *v.shape[1:]))
            out[k][sel] = v
    return out


def _render(ch: dict[str, np.ndarray], signer: Signer, rng: np.random.Generator, fps: float) -> np.ndarray:
    T = len(ch["pos"])
    blur = 0.9 * fps / BASE_FPS
    for k in ("pos", "fingers", "palm", "shape", "head", "mouth", "wide", "brows", "puff"):
        ch[k] = _gauss_smooth(ch[k], blur)
    sway, head_drift = _idle_motion(T, rng, signer, fps)
    hands = []
    for h in range(2):
        pts = body.place_hand(ch["pos"][:, h], ch["fingers"][:, h], ch["palm"][:, h], ch["shape"][:, h],
                              signer.hand_size)
        hands.append(pts)
    dominant, other = hands
    mirror = np.array([-1.0, 1.0, 1.0])
    if signer.left_handed:
        right, left = other, dominant * mirror
    else:
        right, left = dominant, other * mirror
    right, left = right + sway[:, None], left + sway[:, None]
    head = ch["head"] + head_drift + np.array(signer.head_pose)
    if signer.left_handed:
        head[:, 0] *= -1  # leaning towards the hands: the other side
        head[:, 2] *= -1
    head_rot = body.rotation(head[:, 0], head[:, 1], head[:, 2])
    face = body.face_points(np.clip(ch["mouth"], 0, None), ch["wide"], ch["brows"], _blinks(T, rng, fps),
                            ch["puff"], signer.face_stretch)
    # Shoulders lift a little when a hand works high up.
    lift = 0.06 * np.clip(-(np.stack([right[:, 0, 1], left[:, 0, 1]], -1) - 0.2), 0, 1)
    pose = body.assemble(signer, sway, head_rot, face, right, left, lift)
    assert pose.shape == (T, L.N_LANDMARKS, 3)
    return pose.astype(np.float32)
