"""choose_index: a pure function of corpus size, dimension and memory budget, as a table."""

import pytest

from slsearch.errors import SlsearchError
from slsearch.index.choose import (FLAT_MAX_VECTORS, FULL_VECTOR_MAX_VECTORS, choose_index, ivf_nlist,
                                   parse_memory, spec_for_type)

GiB = 2**30


@pytest.mark.parametrize("n, dim, budget, first, kinds", [
    (0, 256, None, "Flat", ["flat"]),
    (500, 256, None, "Flat", ["flat"]),
    (FLAT_MAX_VECTORS - 1, 256, None, "Flat", ["flat"]),
    (FLAT_MAX_VECTORS, 256, None, "IVF256,Flat", ["ivf", "hnsw", "opq", "ivfpq"]),
    (100_000, 256, None, "IVF512,Flat", ["ivf", "hnsw", "opq", "ivfpq"]),
    (FULL_VECTOR_MAX_VECTORS, 256, None, "IVF2048,Flat", ["ivf", "hnsw", "opq", "ivfpq"]),
    (FULL_VECTOR_MAX_VECTORS + 1, 256, None, "OPQ64,IVF2048,PQ64x8", ["opq", "ivfpq"]),
    (10_000_000, 256, None, "OPQ64,IVF8192,PQ64x8", ["opq", "ivfpq"]),
    # 1M x 256 float32 is 1 GiB: a 512 MiB budget forces compression, with the widest code that fits
    (1_000_000, 256, GiB // 2, "OPQ128,IVF2048,PQ128x8", ["opq", "ivfpq"]),
    (1_000_000, 256, 2 * GiB, "IVF2048,Flat", ["ivf", "hnsw", "opq", "ivfpq"]),
    # HNSW's links make it bigger than IVF-Flat: a budget between the two keeps IVF, drops HNSW
    (1_000_000, 256, int(1.1 * GiB), "IVF2048,Flat", ["ivf", "opq", "ivfpq"]),
    (50_000_000, 768, 4 * GiB, "OPQ64,IVF16384,PQ64x8", ["opq", "ivfpq"]),
])
def test_choice_table(n, dim, budget, first, kinds):
    specs = choose_index(n, dim, budget)
    assert specs[0].factory == first
    assert [s.kind for s in specs] == kinds
    assert all(budget is None or s.memory_bytes <= budget for s in specs)
    assert specs[0].reason


def test_tuned_parameter_per_kind():
    by_kind = {s.kind: s for s in choose_index(200_000, 128)}
    assert by_kind["ivf"].tune == "nprobe" and by_kind["hnsw"].tune == "efSearch"
    assert by_kind["opq"].tune == "nprobe"
    assert choose_index(10, 128)[0].tune is None  # exact: nothing to tune


def test_nothing_fits_is_an_error_that_says_how_much_is_needed():
    with pytest.raises(SlsearchError, match=r"no index for 100000 vectors of dim 256 fits in 512\.0 KiB.*needs .* MiB"):
        choose_index(100_000, 256, 2**19)
    with pytest.raises(SlsearchError, match="fits in"):
        choose_index(5_000, 256, 1000)  # below the flat threshold nothing smaller is offered


@pytest.mark.parametrize("n, nlist", [(100, 16), (20_000, 256), (250_000, 1024), (4_000_000, 4096)])
def test_ivf_lists_grow_with_sqrt_n_and_stay_trainable(n, nlist):
    assert ivf_nlist(n) == nlist
    assert nlist == 16 or n >= 39 * nlist


def test_index_type_override():
    assert spec_for_type("flat", 1_000_000, 64).factory == "Flat"
    assert spec_for_type("HNSW", 500, 64).factory == "HNSW32"
    assert spec_for_type("ivf", 20_000, 64).factory == "IVF256,Flat"
    assert spec_for_type("IVF64,Flat", 5000, 64).tune == "nprobe"
    with pytest.raises(SlsearchError, match="needs at least 624 clips"):
        spec_for_type("ivf", 100, 64)
    with pytest.raises(SlsearchError, match="unknown --index-type 'btree'"):
        spec_for_type("btree", 100, 64)


@pytest.mark.parametrize("text, value", [("512M", 512 * 2**20), ("4G", 4 * GiB), ("1.5GiB", int(1.5 * GiB)),
                                         ("1000", 1000), (None, None)])
def test_parse_memory(text, value):
    assert parse_memory(text) == value


def test_parse_memory_rejects_nonsense():
    with pytest.raises(SlsearchError, match="not a size"):
        parse_memory("lots")
