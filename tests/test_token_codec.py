"""The compressed token store (issue 19): codecs, an index built with one, --add and remove keeping it,
search ranking as with float16, and codec files that are damaged or not the index's own refused."""

import json
import shutil

import numpy as np
import pytest

from gloss_poses import make_corpus
from slsearch.data.manifest import read_manifest
from slsearch.errors import InputError, SlsearchError
from slsearch.index import store
from slsearch.index.build import build_index
from slsearch.index.remove import remove_clips
from slsearch.index.search import Searcher
from slsearch.index.store import load_index
from slsearch.index.token_codec import TokenCodec, factory_for, sample_rows
from slsearch.rank import load_retrieval_model


def _tokens(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Token-like states: a low-rank signal with per-token scale, plus noise."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((8, d))
    x = rng.standard_normal((n, 8)) @ basis + 0.3 * rng.standard_normal((n, d))
    return (x * rng.uniform(4, 12, (n, 1))).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# --- the codec ------------------------------------------------------------------------------------

def test_factory_names_and_bad_values():
    assert factory_for("fp16", 64) is None and factory_for("FP16", 64) is None
    assert factory_for("pq", 64) == "IVF256,PQ16" and factory_for("pq-small", 128) == "IVF256,PQ16"
    assert factory_for("opq", 128) == "OPQ32,PQ32" and factory_for("PQ8", 64) == "PQ8"
    with pytest.raises(SlsearchError, match="--tokens zip: not a FAISS factory string for 64-dimensional"):
        factory_for("zip", 64)
    with pytest.raises(SlsearchError, match="--tokens PQ7: not a FAISS factory string"):
        factory_for("PQ7", 64)  # 64 dims do not split into 7 sub-vectors
    with pytest.raises(SlsearchError, match="needs a token dim divisible by 8"):
        factory_for("pq", 60)


@pytest.mark.parametrize("spec, code_size, max_rel_err", [("pq", 17, 0.2), ("pq-small", 9, 0.3), ("PQ32", 32, 0.15)])
def test_codec_round_trip_error_and_bytes_per_vector(spec, code_size, max_rel_err):
    d = 64
    x, held_out = np.split(_tokens(4000, d), [3000])
    codec = TokenCodec.train(factory_for(spec, d), x)
    codes = codec.encode(x)
    assert codes.dtype == np.uint8 and codes.shape == (3000, code_size) and codec.code_size == code_size
    assert code_size < d * 2 / 3  # float16 is 2 bytes a dimension
    y = codec.decode(codes)
    rel = np.linalg.norm(x - y) / np.linalg.norm(x)
    assert y.shape == x.shape and y.dtype == np.float32 and rel < max_rel_err, rel
    assert _cos(x, y).mean() > 1 - max_rel_err ** 2  # the direction is what CiCo scores
    # rows it was not trained on (as --add encodes them) decode almost as well
    held_rel = np.linalg.norm(held_out - codec.decode(codec.encode(held_out))) / np.linalg.norm(held_out)
    assert held_rel < max_rel_err * 1.5, held_rel
    # empty in, empty out; the bytes written are the bytes loaded
    assert codec.encode(x[:0]).shape == (0, code_size) and codec.decode(codes[:0]).shape == (0, d)


def test_codec_trains_on_a_tiny_first_build_and_samples_large_ones():
    x = _tokens(50, 32)  # fewer rows than centroids: trained on jittered copies
    codec = TokenCodec.train("PQ8", x)
    assert codec.trained_on == 50 and np.linalg.norm(x - codec.decode(codec.encode(x))) / np.linalg.norm(x) < 0.3
    parts = [_tokens(700, 16, seed=s) for s in range(3)]
    picked = sample_rows(parts, limit=1000)
    assert picked.shape == (1000, 16) and picked.dtype == np.float32
    rows = {r.tobytes() for r in np.concatenate(parts)}
    assert all(r.tobytes() in rows for r in picked)
    assert sample_rows(parts[:1], limit=1000).shape == (700, 16)


# --- an index with a compressed store --------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_retrieval_model(tiny_checkpoint)


@pytest.fixture(scope="module")
def indexes(tiny_corpus, tiny_checkpoint, model, tmp_path_factory):
    """(fp16 index, pq index) of the tiny corpus, built once for the module."""
    root = tmp_path_factory.mktemp("token-codec")
    fp16 = root / "fp16"
    pq = root / "pq"
    build_index([tiny_corpus[0]], tiny_checkpoint, fp16, progress=False, model=model)
    summary = build_index([tiny_corpus[0]], tiny_checkpoint, pq, progress=False, model=model, tokens="pq")
    return fp16, pq, summary


def _copy(src, dst):
    shutil.copytree(src.resolve(), dst)
    return dst


def test_build_writes_codes_and_codec_and_records_them(indexes, model):
    fp16, pq, summary = indexes
    d = model.net.token_dim
    names = {p.name for p in pq.iterdir()}
    assert {"tokens.pq.npy", "tokens.codec.faiss", "text_tokens.pq.npy", "text_tokens.codec.faiss"} <= names
    assert not any(n.endswith(".f16.npy") or "pending" in n for n in names)
    info = json.loads((pq / "index.json").read_text())
    assert info["format_version"] == store.CODEC_FORMAT_VERSION and info["tokens"] == "pq"
    codec = info["clips"]["token_codec"]
    assert codec["factory"] == f"IVF256,PQ{d // 4}" and codec["code_size"] == 1 + d // 4
    assert codec["file"] == "tokens.codec.faiss" and len(codec["sha256"]) == 64
    assert info["texts"]["token_codec"]["file"] == "text_tokens.codec.faiss"
    # a float16 index stays format 2, readable by an older slsearch
    assert json.loads((fp16 / "index.json").read_text())["format_version"] == store.FORMAT_VERSION
    codes = np.load(pq / "tokens.pq.npy")
    f16 = np.load(fp16 / "tokens.f16.npy")
    assert codes.dtype == np.uint8 and codes.shape == (len(f16), 1 + d // 4)
    a, b = load_index(fp16), load_index(pq)
    assert a.token_store("clips").stored_bytes() / b.token_store("clips").stored_bytes() == pytest.approx(
        2 * d / (1 + d // 4))
    assert summary["tokens"] == f"IVF256,PQ{d // 4}" and summary["token_store_bytes"] == b.token_store_bytes()
    # the decoded rows are close to the float16 ones, item by item at the same offsets
    cols = [b.clips.column(c) for c in ("token_segment", "token_offset", "token_count")]
    decoded = b.token_store("clips").gather_flat(*cols)
    exact = a.token_store("clips").gather_flat(*(a.clips.column(c) for c in ("token_segment", "token_offset",
                                                                              "token_count")))
    assert decoded.shape == exact.shape and _cos(decoded, exact).mean() > 0.9


def test_search_through_the_codes_ranks_as_float16(indexes, model, tiny_corpus):
    fp16, pq, _ = indexes
    exact, coded = Searcher(fp16, model=model), Searcher(pq, model=model)
    clips = read_manifest(tiny_corpus[0])
    texts = [c.text for c in clips]
    top_exact = [h[0].id for h in exact.search_text(texts, k=5)]
    top_coded = [h[0].id for h in coded.search_text(texts, k=5)]
    same = np.mean([a == b for a, b in zip(top_exact, top_coded)])
    assert same >= 0.85, same  # T2V: top-1 as with float16 for most queries
    correct = np.mean([t == c.id for t, c in zip(top_coded, clips)])
    assert correct >= np.mean([t == c.id for t, c in zip(top_exact, clips)]) - 0.1
    v2t_exact = [exact.search_video(c.path, k=1)[0].text for c in clips[:15]]
    v2t_coded = [coded.search_video(c.path, k=1)[0].text for c in clips[:15]]
    assert np.mean([a == b for a, b in zip(v2t_exact, v2t_coded)]) >= 0.8  # V2T, the sentences' codes


def test_add_reuses_the_codec_and_remove_keeps_it(indexes, tiny_checkpoint, model, tmp_path):
    _, pq, _ = indexes
    out = _copy(pq, tmp_path / "pq")
    before = json.loads((out / "index.json").read_text())
    extra = make_corpus(tmp_path / "extra", 5, seed=7, name="extra")
    with pytest.raises(SlsearchError, match=r"stores token states as pq; adding to an index keeps its token codec"):
        build_index([extra], tiny_checkpoint, out, add=True, progress=False, model=model, tokens="fp16")
    s = build_index([extra], tiny_checkpoint, out, add=True, progress=False, model=model)
    assert s["clips_added"] == 5 and s["clips_total"] == 45
    after = load_index(out)
    assert after.info["clips"]["token_codec"] == before["clips"]["token_codec"]  # same codec file (SHA-256)
    assert after.clips.token_files == ["tokens.pq.npy", "tokens.1.pq.npy"]
    assert (np.load(after.path / "tokens.1.pq.npy").shape[1]) == before["clips"]["token_codec"]["code_size"]
    searcher = Searcher(out, model=model)
    assert searcher.search_video(read_manifest(extra)[2].path, k=1, target="clips")[0].id == "extra002"
    # removing most clips compacts the codes into one segment, encoded with the same codec
    keep = {"extra002", "train001"}
    remove_clips(out, [i for i in after.clips.column("id").tolist() if i not in keep])
    small = load_index(out)
    assert small.info["clips"]["token_codec"] == before["clips"]["token_codec"] and len(small.clips) == 2
    assert Searcher(out, model=model).search_video(read_manifest(extra)[2].path, k=1, target="clips")[0].id == \
        "extra002"


def test_damaged_or_foreign_codec_files_are_refused_in_one_line(indexes, tmp_path):
    _, pq, _ = indexes
    d = _copy(pq, tmp_path / "garbage")
    (d / "tokens.codec.faiss").write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match=r"token codec tokens\.codec\.faiss is not the codec the index was built "
                                         r"with .*; the index is damaged, rebuild it") as e:
        load_index(d)
    assert "\n" not in str(e.value) and str(d) in str(e.value)
    # another index's codec (here: the sentences' codec in the clips' place)
    d = _copy(pq, tmp_path / "swapped")
    shutil.copy(d / "text_tokens.codec.faiss", d / "tokens.codec.faiss")
    with pytest.raises(InputError, match=r"tokens\.codec\.faiss is not the codec the index was built with"):
        load_index(d)
    # the recorded hash matches, the contents do not deserialize as a codec
    d = _copy(pq, tmp_path / "hashed-garbage")
    (d / "tokens.codec.faiss").write_bytes(b"IxPQ" + b"\1" * 60)
    info = json.loads((d / "index.json").read_text())
    import hashlib

    info["clips"]["token_codec"]["sha256"] = hashlib.sha256((d / "tokens.codec.faiss").read_bytes()).hexdigest()
    (d / "index.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"token codec tokens\.codec\.faiss is not a readable FAISS codec") as e:
        load_index(d)
    assert "\n" not in str(e.value)
    # a codec of the wrong shape, however it got a matching hash
    d = _copy(pq, tmp_path / "other-dim")
    other = TokenCodec.train("PQ4", _tokens(300, 16))
    other.write(d / "tokens.codec.faiss")
    info = json.loads((d / "index.json").read_text())
    info["clips"]["token_codec"]["sha256"] = other.sha256
    (d / "index.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"tokens\.codec\.faiss holds a trained codec of 16 dimensions and 4-byte "
                                         r"codes, index.json says"):
        load_index(d)
    # codes that are not the codec's width; a missing codec file
    d = _copy(pq, tmp_path / "width")
    np.save(d / "tokens.pq.npy", np.zeros((np.load(d / "tokens.pq.npy").shape[0], 3), np.uint8))
    with pytest.raises(InputError, match=r"token file tokens\.pq\.npy has rows of 3 bytes, index.json says the "
                                         r"token codes are"):
        load_index(d)
    d = _copy(pq, tmp_path / "missing")
    (d / "tokens.codec.faiss").unlink()
    with pytest.raises(SlsearchError, match="incomplete index, missing tokens.codec.faiss"):
        load_index(d)


def test_codec_records_and_format_versions_are_checked(indexes, tmp_path):
    fp16, pq, _ = indexes
    d = _copy(pq, tmp_path / "v2-with-codec")
    info = json.loads((d / "index.json").read_text())
    (d / "index.json").write_text(json.dumps({**info, "format_version": 2}))
    with pytest.raises(InputError, match=r"clips\.token_codec should be absent in format 2"):
        load_index(d)
    bad = json.loads(json.dumps(info))
    bad["clips"]["token_codec"]["code_size"] = "17"
    (d / "index.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"clips\.token_codec\.code_size should be a positive integer"):
        load_index(d)
    (d / "index.json").write_text(json.dumps({**info, "format_version": 4}))
    with pytest.raises(SlsearchError, match=r"index format 4 is newer than this slsearch reads \(2, 3\); upgrade "
                                            r"slsearch, or rebuild it with `slsearch index"):
        load_index(d)
    # a codec value the writer cannot build is refused before anything is embedded
    with pytest.raises(SlsearchError, match="--tokens nonsense: not a FAISS factory string"):
        build_index([fp16], None, tmp_path / "never", tokens="nonsense", model=load_retrieval_model(
            load_index(fp16).info["checkpoint"]["path"]))
    assert not (tmp_path / "never").exists()
