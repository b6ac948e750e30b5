"""The synthetic signer's lexicon: every gloss -> a sign built from a phonological inventory.

A sign is a combination of components (handshape, location, movement, palm orientation, one- or
two-handedness, a non-manual part), drawn deterministically from the gloss string and a lexicon
seed. The inventories are small and skewed (a few handshapes and locations are common, as in real
sign languages), so many signs share components and minimal pairs exist: no single channel
identifies a gloss, the combination does.

Coordinates are "hand space": body units (shoulder width = 1), origin between the shoulders,
x towards the image right (the signer's left), y down, z towards the camera negative. A sign is
described for a hand on the signer's right side; the other hand and left-handed signers mirror x.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

# --- handshapes ---------------------------------------------------------------------------------
# Parameter vector (HANDSHAPE_DIM,): flexion in degrees of (MCP, PIP, DIP) for index, middle, ring,
# pinky; finger spread 0..1; thumb abduction 0..1 (0 = along the index, 1 = out to the side);
# thumb opposition 0..1 (1 = in front of the palm); thumb flexion in degrees.
HANDSHAPE_DIM = 16
_EXT = (0, 0, 0)  # straight finger
_FIST = (90, 100, 70)  # curled into the palm
_BENT = (85, 5, 5)  # bent at the knuckle only
_HOOK = (15, 95, 70)
_CLAW = (30, 60, 45)
_CUP = (40, 45, 20)  # C shape
_ROUND = (60, 70, 40)  # O shape


def _hs(index, middle, ring, pinky, spread, thumb_abd, thumb_opp, thumb_flex) -> np.ndarray:
    return np.array([*index, *middle, *ring, *pinky, spread, thumb_abd, thumb_opp, thumb_flex], np.float32)


HANDSHAPES: dict[str, np.ndarray] = {
    "B": _hs(_EXT, _EXT, _EXT, _EXT, 0.0, 0.1, 0.3, 15),
    "5": _hs(_EXT, _EXT, _EXT, _EXT, 1.0, 0.9, 0.0, 0),
    "A": _hs(_FIST, _FIST, _FIST, _FIST, 0.0, 0.15, 0.0, 0),
    "S": _hs(_FIST, _FIST, _FIST, _FIST, 0.0, 0.3, 0.8, 45),
    "1": _hs(_EXT, _FIST, _FIST, _FIST, 0.2, 0.3, 0.8, 40),
    "V": _hs(_EXT, _EXT, _FIST, _FIST, 1.0, 0.3, 0.8, 40),
    "W": _hs(_EXT, _EXT, _EXT, _FIST, 0.8, 0.3, 0.8, 45),
    "Y": _hs(_FIST, _FIST, _FIST, _EXT, 0.6, 1.0, 0.0, 0),
    "L": _hs(_EXT, _FIST, _FIST, _FIST, 0.2, 1.0, 0.0, 0),
    "I": _hs(_FIST, _FIST, _FIST, _EXT, 0.3, 0.3, 0.8, 40),
    "C": _hs(_CUP, _CUP, _CUP, _CUP, 0.1, 0.5, 0.6, 15),
    "O": _hs(_ROUND, _ROUND, _ROUND, _ROUND, 0.0, 0.3, 1.0, 35),
    "F": _hs(_ROUND, _EXT, _EXT, _EXT, 0.8, 0.3, 1.0, 35),
    "bent-B": _hs(_BENT, _BENT, _BENT, _BENT, 0.0, 0.2, 0.3, 10),
    "claw-5": _hs(_CLAW, _CLAW, _CLAW, _CLAW, 1.0, 0.8, 0.2, 20),
    "X": _hs(_HOOK, _FIST, _FIST, _FIST, 0.1, 0.3, 0.8, 40),
    "H": _hs(_EXT, _EXT, _FIST, _FIST, 0.0, 0.3, 0.8, 40),
    "flat-O": _hs((60, 15, 10), (60, 15, 10), (60, 15, 10), (60, 15, 10), 0.0, 0.2, 1.0, 20),
    "3": _hs(_EXT, _EXT, _FIST, _FIST, 1.0, 1.0, 0.0, 0),
    "open-8": _hs(_EXT, (60, 10, 5), _EXT, _EXT, 0.9, 0.8, 0.3, 10),
    "horns": _hs(_EXT, _FIST, _FIST, _EXT, 0.7, 0.3, 0.8, 40),
    "bent-V": _hs(_HOOK, _HOOK, _FIST, _FIST, 1.0, 0.3, 0.8, 40),
}
# How often each handshape is drawn (unmarked shapes dominate, as in real lexicons).
_HANDSHAPE_WEIGHTS = {
    "B": 10, "5": 9, "1": 9, "A": 6, "S": 5, "bent-B": 4, "C": 4, "O": 4, "V": 4, "flat-O": 3, "L": 3,
    "claw-5": 3, "Y": 3, "F": 2, "X": 2, "H": 2, "I": 2, "W": 2, "3": 2, "open-8": 2, "horns": 1, "bent-V": 1,
}

# --- locations (hand space, body units; where the palm centre goes) ------------------------------
LOCATIONS: dict[str, tuple[float, float, float]] = {
    "neutral": (-0.15, 0.6, -0.75),
    "neutral-high": (-0.15, 0.1, -0.75),
    "neutral-side": (-0.6, 0.5, -0.6),
    "neutral-low": (-0.1, 0.95, -0.6),
    "chest": (0.0, 0.45, -0.4),
    "chest-side": (-0.3, 0.35, -0.4),
    "shoulder-contra": (0.45, 0.1, -0.35),
    "stomach": (0.0, 0.95, -0.45),
    "chin": (0.0, -0.35, -0.45),
    "mouth": (0.0, -0.45, -0.5),
    "nose": (0.0, -0.58, -0.52),
    "eye": (-0.12, -0.68, -0.5),
    "cheek": (-0.22, -0.52, -0.42),
    "forehead": (0.0, -0.85, -0.45),
    "temple": (-0.3, -0.78, -0.3),
    "ear": (-0.38, -0.62, -0.15),
    "above-head": (-0.2, -1.2, -0.35),
    "weak-hand": (0.05, 0.45, -0.75),  # on the passive hand (only for "base" signs)
}
_LOCATION_WEIGHTS = {
    "neutral": 14, "neutral-high": 4, "neutral-side": 4, "neutral-low": 3, "chest": 5, "chest-side": 2,
    "shoulder-contra": 2, "stomach": 2, "chin": 4, "mouth": 3, "nose": 2, "eye": 2, "cheek": 3,
    "forehead": 3, "temple": 3, "ear": 1, "above-head": 2,
}
# Locations on the head or body, where the hand moves in small touches rather than big paths.
_CONTACT_LOCATIONS = {"chest", "chest-side", "shoulder-contra", "stomach", "chin", "mouth", "nose", "eye", "cheek",
                      "forehead", "temple", "ear"}

# --- palm orientation: (finger direction, palm normal) in hand space ------------------------------
ORIENTATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "up-out": ((0, -1, 0), (0, 0, -1)),  # fingers up, palm to the camera
    "up-in": ((0, -1, 0), (0, 0, 1)),  # fingers up, palm to the signer
    "up-contra": ((0, -1, 0), (1, 0, 0)),
    # "Forward" fingers also point a little up or across: seen straight on, a hand shrinks to a dot.
    "forward-down": ((0.4, 0.15, -0.9), (0, 1, 0)),
    "forward-up": ((0.4, -0.25, -0.88), (0, -1, 0)),
    "forward-contra": ((0.25, -0.45, -0.86), (1, 0, 0)),
    "contra-down": ((1, 0, 0), (0, 1, 0)),
    "contra-in": ((1, 0, 0), (0, 0, 1)),
    "contra-out": ((1, 0, 0), (0, 0, -1)),
    "diag-up-in": ((0.6, -0.8, 0), (0, 0, 1)),
    "down-in": ((0, 1, 0), (0, 0, 1)),
}
_ORIENTATION_WEIGHTS = {
    "up-out": 4, "up-in": 4, "up-contra": 5, "forward-down": 5, "forward-up": 3, "forward-contra": 4,
    "contra-down": 3, "contra-in": 4, "contra-out": 2, "diag-up-in": 3, "down-in": 1,
}

# --- movement -------------------------------------------------------------------------------------
MOVEMENTS = ("hold", "straight", "arc", "circle", "zigzag", "tap", "wiggle", "twist", "nod", "open-close")
_MOVEMENT_WEIGHTS = {
    "hold": 2, "straight": 8, "arc": 5, "circle": 4, "zigzag": 2, "tap": 5, "wiggle": 2, "twist": 3, "nod": 2,
    "open-close": 3,
}
DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "up": (0, -1, 0), "down": (0, 1, 0), "forward": (0, 0, -1), "back": (0, 0, 1), "contra": (1, 0, 0),
    "ipsi": (-1, 0, 0), "up-contra": (0.7, -0.7, 0), "down-ipsi": (-0.7, 0.7, 0), "forward-down": (0, 0.6, -0.8),
}
HAND_TYPES = ("one", "sym", "alt", "base")  # base = dominant hand acts on a static passive hand
_HAND_TYPE_WEIGHTS = {"one": 11, "sym": 5, "alt": 2, "base": 3}
NON_MANUALS = ("none", "brows-up", "brows-down", "nod", "shake", "tilt", "puff")
_NON_MANUAL_WEIGHTS = {"none": 10, "brows-up": 3, "brows-down": 2, "nod": 2, "shake": 1, "tilt": 2, "puff": 1}
_BASE_HANDSHAPES = {"B": 5, "S": 2, "1": 2, "5": 1}

# Tokens that are not signs: PHOENIX marks the start and end of signing like this.
REST_GLOSSES = {"__ON__", "__OFF__"}


@dataclass(frozen=True)
class Sign:
    """One lexical sign, described for the dominant hand in hand space."""

    gloss: str
    handshape: str
    handshape_end: str  # same as `handshape` unless the movement is open-close
    location: str
    orientation: str
    movement: str
    direction: str
    size: float  # path size, body units
    reps: int  # repetitions of the movement
    hands: str  # one of HAND_TYPES
    base_handshape: str  # passive hand's shape for "base" signs
    non_manual: str  # one of NON_MANUALS
    mouthing: int  # syllables mouthed with the sign (0 = none)
    frames: float  # citation duration at 25 fps, transitions excluded
    rest: bool = False  # hands go to rest (PHOENIX __ON__/__OFF__)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from strings and numbers, the same on every machine and Python run."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _syllables(word: str) -> int:
    """Rough vowel-group count of a German gloss: drives the mouthing rhythm."""
    vowels, groups, prev = set("AEIOUY"), 0, False
    for ch in word.upper():
        is_vowel = ch in vowels
        groups += is_vowel and not prev
        prev = is_vowel
    return max(1, min(groups, 4))


class Lexicon:
    """gloss -> Sign, deterministic for (gloss, seed); signs are cached."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._cache: dict[str, Sign] = {}

    def __call__(self, gloss: str) -> Sign:
        sign = self._cache.get(gloss)
        if sign is None:
            sign = self._cache[gloss] = self._make(gloss)
        return sign

    def _make(self, gloss: str) -> Sign:
        if gloss in REST_GLOSSES:
            return replace(self._draw("__REST__"), gloss=gloss, rest=True, movement="hold", non_manual="none",
                           mouthing=0, frames=6.0)
        prefix, _, base = gloss.partition("-")
        if base and prefix in ("loc", "neg", "cl", "poss") and prefix.islower():
            return self._modified(prefix, base, gloss)
        return self._draw(gloss)

    def _modified(self, prefix: str, base: str, gloss: str) -> Sign:
        """PHOENIX morphology: loc-X points into space, neg-X adds a head shake, cl-X moves along a path."""
        sign = self(base)
        rng = np.random.default_rng(stable_seed(self.seed, "modifier", gloss))
        if prefix == "loc":
            return replace(sign, gloss=gloss, location=_choice(rng, {"neutral-side": 2, "neutral-high": 1}),
                           movement="straight", direction="forward", size=0.25, reps=1)
        if prefix == "neg":
            return replace(sign, gloss=gloss, non_manual="shake")
        if prefix == "cl":
            return replace(sign, gloss=gloss, movement="straight", direction=_choice(rng, {"contra": 1, "forward": 1}),
                           size=0.45, reps=1)
        return replace(sign, gloss=gloss)

    def _draw(self, gloss: str) -> Sign:
        rng = np.random.default_rng(stable_seed(self.seed, "sign", gloss))
        handshape = _choice(rng, _HANDSHAPE_WEIGHTS)
        hands = _choice(rng, _HAND_TYPE_WEIGHTS)
        location = "weak-hand" if hands == "base" else _choice(rng, _LOCATION_WEIGHTS)
        movement = _choice(rng, _MOVEMENT_WEIGHTS)
        contact = location in _CONTACT_LOCATIONS
        if contact and movement in ("circle", "zigzag", "arc") and rng.random() < 0.6:
            movement = "tap"  # on the body, big paths are rare
        if hands in ("sym", "alt") and location in _CONTACT_LOCATIONS - {"chest", "stomach"}:
            location = _choice(rng, {"neutral": 3, "chest": 1, "neutral-high": 1, "temple": 1})
        handshape_end = handshape
        if movement == "open-close":
            handshape_end = _choice(rng, {"S": 2, "5": 2, "flat-O": 2, "B": 1, "claw-5": 1, "A": 1})
            if handshape_end == handshape:
                handshape_end = "S" if handshape != "S" else "5"
        direction = _choice(rng, {k: 1.0 for k in DIRECTIONS})
        if movement == "tap":
            direction = "back" if contact else _choice(rng, {"down": 2, "forward": 1})
        size = float(rng.uniform(0.12, 0.22) if contact else rng.uniform(0.2, 0.45))
        reps = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        if movement in ("wiggle", "zigzag"):
            reps = max(reps, 2)
        frames = 5.0 + 2.0 * reps + rng.uniform(0, 3) + (2.0 if movement in ("circle", "arc") else 0.0)
        return Sign(
            gloss=gloss,
            handshape=handshape,
            handshape_end=handshape_end,
            location=location,
            orientation=_choice(rng, _ORIENTATION_WEIGHTS),
            movement=movement,
            direction=direction,
            size=size,
            reps=reps,
            hands=hands,
            base_handshape=_choice(rng, _BASE_HANDSHAPES),
            non_manual=_choice(rng, _NON_MANUAL_WEIGHTS),
            mouthing=_syllables(gloss) if rng.random() < 0.75 else 0,  # most DGS signs are mouthed
            frames=float(frames),
        )
