"""The index: choosing a FAISS index, the folder on disk, building it and searching it.

    choose.py       choose_index(n, dim, max_memory) -> [IndexSpec]: a pure function, named thresholds
    faiss_index.py  build / tune / add / remove / search over L2-normalised global vectors (GPU if any)
    store.py        the index folder: IndexWriter (atomic, locked), load_index (checked), TokenStore
    build.py        build_index(paths, model_dir, out, add=...) -> summary       (`slsearch index`)
    remove.py       remove_clips(index_dir, ids) -> summary                       (`slsearch remove`)
    search.py       Searcher(index_dir).search_text / .search_video; query_index   (`slsearch query`):
                    FAISS candidates and their stored states, ranked by slsearch.rank
"""
