"""What `slsearch info` reports: library versions and which accelerators are usable."""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

from slsearch import __version__


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def faiss_has_gpu() -> bool:
    """GPU FAISS is usable: a GPU build is installed and sees at least one device."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def system_info() -> dict[str, Any]:
    import torch

    faiss_version = None
    try:
        import faiss

        faiss_version = faiss.__version__
        gpu_faiss = faiss_has_gpu()
    except ImportError:
        gpu_faiss = False
    return {
        "slsearch": __version__,
        "python": os.sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "faiss": faiss_version,
        "mediapipe": _version("mediapipe"),
        "av": _version("av"),
        "numpy": _version("numpy"),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "gpu_faiss": gpu_faiss,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
