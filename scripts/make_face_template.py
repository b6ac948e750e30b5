"""Rebuild slsearch/resources/face_template.npy: the synthetic signer's neutral face mesh.

The 468-point face template is the median MediaPipe Holistic face mesh of the MIT-licensed
real clip ../shared/data/video/signer_58frames.mp4, each frame centred, de-rolled, de-yawed and
scaled so that the outer eye corners (mesh points 33 and 263) are 1 apart. x right, y down,
z as MediaPipe gives it (same units as x).

    .venv/bin/python scripts/make_face_template.py
"""

from pathlib import Path

import av
import mediapipe as mp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "video" / "signer_58frames.mp4"
OUT = ROOT / "slsearch" / "resources" / "face_template.npy"


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def main() -> None:
    with av.open(str(VIDEO)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    height, width = frames[0].shape[:2]
    faces = []
    with mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1) as holistic:
        for frame in frames:
            result = holistic.process(frame)
            if result.face_landmarks is None:
                continue
            pts = np.array([[p.x * width, p.y * height, p.z * width] for p in result.face_landmarks.landmark])
            pts -= pts.mean(0)
            eye = pts[263] - pts[33]
            pts = pts @ _rotation("z", -np.arctan2(eye[1], eye[0])).T  # roll: eye line horizontal
            eye = pts[263] - pts[33]
            pts = pts @ _rotation("y", np.arctan2(eye[2], eye[0])).T  # yaw: both eye corners at one depth
            faces.append(pts / np.linalg.norm(pts[263] - pts[33]))
    template = np.median(np.stack(faces), axis=0)
    np.save(OUT, (template - template.mean(0)).astype(np.float32))
    print(f"{OUT}: from {len(faces)} frames")


if __name__ == "__main__":
    main()
