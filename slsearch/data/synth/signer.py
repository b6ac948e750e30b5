"""Synthetic signers: body proportions, placement in the frame, handedness and signing style.

Everything about a person that stays the same across their clips. A signer is drawn
deterministically from a name and a seed, so "Signer03" looks the same in every clip and run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slsearch.data.synth.lexicon import stable_seed

# Frame shape (width / height) of the virtual camera: a portrait crop of a news video, as PHOENIX.
FRAME_ASPECT = 210 / 260


@dataclass(frozen=True)
class Signer:
    """One synthetic person. Lengths are body units (shoulder width = 1) unless said otherwise."""

    name: str
    left_handed: bool = False  # dominant hand is the left one: all manual movement is mirrored
    # Placement in the image (image-normalised units).
    shoulder_width: float = 0.35  # in image widths, like a MediaPipe output on a news video
    centre_x: float = 0.5  # x of the point between the shoulders
    shoulder_y: float = 0.6  # y of the point between the shoulders
    # Body proportions.
    upper_arm: float = 0.8
    forearm: float = 0.72
    hand_size: float = 0.3  # wrist -> middle-finger knuckle
    neck: float = 0.65  # shoulder line -> eye line
    face_scale: float = 0.27  # outer eye corner distance
    face_stretch: float = 1.07  # face height / width relative to the template
    torso: float = 1.45  # shoulder line -> hip line
    hip_width: float = 0.62
    # Style.
    tempo: float = 1.0  # > 1 signs faster
    amplitude: float = 1.0  # size of the signing space and of movements
    space_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # habitual shift of neutral space
    laxness: float = 8.0  # degrees added to finger flexion of extended fingers (relaxed hands)
    mouthing: float = 1.0  # how wide the mouth opens when mouthing
    sway: float = 1.0  # idle body and head motion
    head_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)  # habitual yaw, pitch, roll (radians)

    @classmethod
    def from_name(cls, name: str, seed: int = 0, left_handed: bool | None = None) -> "Signer":
        """A signer drawn from the name and seed (about one in eight is left-handed)."""
        rng = np.random.default_rng(stable_seed(seed, "signer", name))
        lefty = bool(rng.random() < 0.125) if left_handed is None else left_handed
        drawn = {key: float(rng.uniform(low, high)) for key, low, high in _BODY_AND_TEMPO}
        drawn["space_offset"] = tuple(float(rng.normal(0, s)) for s in (0.05, 0.07, 0.05))
        drawn.update({key: float(rng.uniform(low, high)) for key, low, high in _HANDS_AND_FACE})
        drawn["head_pose"] = tuple(float(rng.normal(0, s)) for s in (0.05, 0.05, 0.03))
        return cls(name=name, left_handed=lefty, **drawn)


# Ranges of a drawn signer's values, in the order they are drawn: the order fixes every synthetic
# corpus (SynPhoenix, the demo), so new values go at the end.
_BODY_AND_TEMPO = (("shoulder_width", 0.31, 0.39), ("centre_x", 0.46, 0.54), ("shoulder_y", 0.57, 0.64),
                   ("upper_arm", 0.74, 0.86), ("forearm", 0.66, 0.78), ("hand_size", 0.27, 0.33),
                   ("neck", 0.6, 0.7), ("face_scale", 0.25, 0.29), ("face_stretch", 1.0, 1.15),
                   ("torso", 1.35, 1.55), ("hip_width", 0.55, 0.7), ("tempo", 0.85, 1.2),
                   ("amplitude", 0.85, 1.15))
_HANDS_AND_FACE = (("laxness", 0, 15), ("mouthing", 0.5, 1.3), ("sway", 0.5, 1.5))


def signer_pool(n: int, seed: int = 0, prefix: str = "synth") -> list[Signer]:
    """n distinct signers named prefix01.. ; the second one is always left-handed, so a pool of
    two or more has both kinds."""
    return [Signer.from_name(f"{prefix}{i + 1:02d}", seed, left_handed=True if i == 1 else None) for i in range(n)]
