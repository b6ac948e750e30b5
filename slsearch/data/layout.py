"""The 543-landmark MediaPipe Holistic layout that every pose in slsearch uses.

A pose sequence is a float32 array (T, 543, 3): x, y in image-normalised coordinates
(0..1 across the frame), z as MediaPipe gives it; a landmark that was not detected is NaN.
"""

from __future__ import annotations

N_POSE = 33
N_FACE = 468
N_HAND = 21
N_LANDMARKS = N_POSE + N_FACE + 2 * N_HAND  # 543

POSE = slice(0, N_POSE)
FACE = slice(N_POSE, N_POSE + N_FACE)
LEFT_HAND = slice(N_POSE + N_FACE, N_POSE + N_FACE + N_HAND)
RIGHT_HAND = slice(N_POSE + N_FACE + N_HAND, N_LANDMARKS)

# MediaPipe pose landmark indices (within the 33 pose points).
POSE_NAMES = [
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE",
    "RIGHT_EYE_OUTER", "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER",
    "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY",
    "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX", "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP",
    "RIGHT_HIP", "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE", "LEFT_HEEL",
    "RIGHT_HEEL", "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX",
]
HAND_NAMES = [
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP", "INDEX_FINGER_MCP",
    "INDEX_FINGER_PIP", "INDEX_FINGER_DIP", "INDEX_FINGER_TIP", "MIDDLE_FINGER_MCP",
    "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP", "MIDDLE_FINGER_TIP", "RING_FINGER_MCP",
    "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP", "PINKY_MCP", "PINKY_PIP",
    "PINKY_DIP", "PINKY_TIP",
]
NOSE = 0
LEFT_SHOULDER = 11
RIGHT_SHOULDER = 12
LEFT_WRIST_POSE = 15
RIGHT_WRIST_POSE = 16

# Face-mesh indices (within the 468 face points) of the parts that carry non-manual signals.
FACE_LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
FACE_LIPS_INNER = [78, 13, 308, 14]
FACE_RIGHT_EYE = [33, 160, 158, 133, 153, 144, 159, 145]
FACE_LEFT_EYE = [263, 387, 385, 362, 380, 373, 386, 374]
FACE_RIGHT_BROW = [70, 63, 105, 66, 107]
FACE_LEFT_BROW = [300, 293, 334, 296, 336]


def face(i: int) -> int:
    """Index in the 543 layout of face-mesh point i."""
    return N_POSE + i


def left_hand(i: int) -> int:
    return LEFT_HAND.start + i


def right_hand(i: int) -> int:
    return RIGHT_HAND.start + i
