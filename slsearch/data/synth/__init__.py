"""The synthetic signer: glosses -> MediaPipe-Holistic-like pose sequences, and corpora built with it.

    from slsearch.data.synth import SynthSigner, synthesize_corpus
    pose = SynthSigner(seed=0).sign("MORGEN NORD REGEN STARK", signer="synth01", clip_id="x")  # (T, 543, 3)
    synthesize_corpus("demo", "data/demo")  # poses/<split>/<id>.npz + manifests

Modules: lexicon (gloss -> sign components), signer (people), sentence (glosses -> clean pose),
body (geometry), noise (detection noise), weather (the demo grammar), corpora (corpora, rendering).
"""

from slsearch.data.synth.corpora import (
    SynthSigner,
    demo_corpus,
    load_corpus,
    manifest_corpus,
    phoenix_corpus,
    synthesize_corpus,
)
from slsearch.data.synth.lexicon import Lexicon, Sign
from slsearch.data.synth.noise import DetectionNoise, apply_detection_noise
from slsearch.data.synth.sentence import Variation, sign_sentence
from slsearch.data.synth.signer import Signer, signer_pool

__all__ = [
    "DetectionNoise", "Lexicon", "Sign", "Signer", "SynthSigner", "Variation", "apply_detection_noise",
    "demo_corpus", "load_corpus", "manifest_corpus", "phoenix_corpus", "sign_sentence", "signer_pool",
    "synthesize_corpus",
]
