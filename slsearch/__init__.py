"""slsearch: a search engine for sign-language video."""

__version__ = "0.1.0"

# Heavy imports (torch, transformers) load on first use, so `import slsearch` stays fast.
_LAZY = {
    "encode_videos": "slsearch.encode",
    "encode_texts": "slsearch.encode",
    "Encoded": "slsearch.encode",
    "load_model": "slsearch.models.checkpoint",
    "save_model": "slsearch.models.checkpoint",
    "load_retrieval_model": "slsearch.rank",
    "RetrievalModel": "slsearch.rank",
    "RankingPipeline": "slsearch.rank",
    "Searcher": "slsearch.index.search",
    "build_index": "slsearch.index.build",
    "remove_clips": "slsearch.index.remove",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slsearch' has no attribute {name!r}")
