"""Search end to end with a real tiny trained checkpoint: T2V, V2T, V2V, batching, agreement of the
two-stage search with a dense CiCo ranking, and the CLI's one-line errors for bad input."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slsearch import encode_texts, encode_videos, load_model
from slsearch.cli import app
from slsearch.data.manifest import read_manifest
from slsearch.errors import SlsearchError
from slsearch.index.search import Searcher
from slsearch.models.checkpoint import save_model
from slsearch.models.similarity import cico_similarity, pad_tokens
from slsearch.rank import RetrievalModel

runner = CliRunner()


@pytest.fixture(scope="module")
def clips(tiny_corpus):
    return read_manifest(tiny_corpus[0])


@pytest.fixture(scope="module")
def index_dir(tiny_corpus, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "idx"
    r = runner.invoke(app, ["index", str(tiny_corpus[0]), "--model", str(tiny_checkpoint), "--out", str(out),
                            "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["clips_total"] == 40 and summary["index_type"] == "flat"
    return out


@pytest.fixture(scope="module")
def searcher(index_dir):
    return Searcher(index_dir)  # the model comes from the checkpoint index.json names


def test_text_to_video_finds_the_signed_sentence(searcher, clips):
    hits = searcher.search_text([c.text for c in clips], k=5)
    top1 = np.mean([h[0].id == c.id for h, c in zip(hits, clips)])
    top5 = np.mean([c.id in {x.id for x in h} for h, c in zip(hits, clips)])
    assert top1 >= 0.9 and top5 == 1.0  # chance is 1/40 and 5/40
    first = hits[0]
    assert [h.rank for h in first] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(first, first[1:]))
    hit_at, clip = next((h[0], c) for h, c in zip(hits, clips) if h[0].id == c.id)
    assert hit_at.path == str(clip.path) and hit_at.text == clip.text


def test_video_to_text_and_video_to_video(searcher, clips):
    v2t = [searcher.search_video(c.path, k=3)[0] for c in clips[:10]]
    assert np.mean([h.text == c.text for h, c in zip(v2t, clips)]) >= 0.9
    v2v = searcher.search_video(clips[7].path, k=3, target="clips")
    assert v2v[0].id == clips[7].id and v2v[0].score > v2v[1].score
    pose = np.load(clips[7].path)["pose"]
    assert searcher.search_video(pose, k=3, target="clips")[0].id == clips[7].id


def test_batched_queries_equal_single_queries(searcher, clips):
    texts = [c.text for c in clips[:6]]
    batched = searcher.search_text(texts, k=4)
    for text, hits in zip(texts, batched):
        single = searcher.search_text(text, k=4)
        assert [h.id for h in single] == [h.id for h in hits]
        assert np.allclose([h.score for h in single], [h.score for h in hits], atol=1e-5)


def test_two_stage_search_agrees_with_exact_dense_scores(searcher, clips):
    """FAISS over every clip + re-rank == a dense CiCo ranking; FAISS alone == NumPy cosine ranking."""
    assert searcher.score == "cico"  # no gloss head, no trained decoder: CiCo is the last stage
    model = searcher.model.net
    videos = encode_videos(model, clips)
    queries = [clips[i].text for i in (0, 11, 23)]
    texts = encode_texts(model, queries)
    v, vm = pad_tokens(videos.tokens)
    t, tm = pad_tokens(texts.tokens)
    dense = cico_similarity(v, vm, t, tm).numpy()  # (40, 3)
    reranked = searcher.search_text(queries, k=10, n_candidates=len(clips))
    for q in range(len(queries)):
        expected = np.argsort(-dense[:, q], kind="stable")[:10]
        assert [h.id for h in reranked[q]] == [clips[i].id for i in expected]
        # token states went through float16 on disk: scores agree to that precision
        assert np.allclose([h.score for h in reranked[q]], dense[expected, q], atol=2e-3)
    faiss_only = searcher.search_text(queries, k=10, rerank=False)
    cosine = videos.vectors @ texts.vectors.T  # (40, 3)
    for q in range(len(queries)):
        assert [h.id for h in faiss_only[q]] == [clips[i].id for i in np.argsort(-cosine[:, q])[:10]]
        assert np.allclose([h.score for h in faiss_only[q]], np.sort(cosine[:, q])[::-1][:10], atol=1e-5)


def test_fewer_clips_than_k(searcher):
    assert len(searcher.search_text("regen", k=100)) == 40


def test_searcher_refuses_another_checkpoint(index_dir, tiny_checkpoint, tmp_path):
    other = load_model(tiny_checkpoint)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    save_model(other, tmp_path / "other")
    with pytest.raises(SlsearchError, match="built with checkpoint .* the model given is"):
        Searcher(index_dir, model=RetrievalModel(other))
    with pytest.raises(SlsearchError, match="built with checkpoint .* the model given is"):
        Searcher(index_dir, model=tmp_path / "other")
    r = runner.invoke(app, ["query", "regen", "--index", str(index_dir), "--model", str(tmp_path / "other")])
    assert r.exit_code == 2 and "built with checkpoint" in r.stderr


def test_cli_query_outputs(index_dir, clips, tmp_path):
    r = runner.invoke(app, ["query", clips[2].text, "--index", str(index_dir), "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["mode"] == "t2v" and len(answer["results"]) == 3
    hit = answer["results"][0]
    assert set(hit) == {"rank", "score", "id", "path", "text", "glosses", "span"}
    assert hit["span"] is not None and 0 <= hit["span"][0] < hit["span"][1]  # where in the clip it matched
    table = runner.invoke(app, ["query", clips[2].text, "--index", str(index_dir), "-k", "2"])
    assert table.exit_code == 0 and "rank" in table.stdout and "score" in table.stdout
    qfile = tmp_path / "queries.txt"
    qfile.write_text(f"{clips[0].text}\n\n# a comment\n{clips[1].text}\n")
    r = runner.invoke(app, ["query", "--queries", str(qfile), "--index", str(index_dir), "--json", "-k", "2"])
    many = json.loads(r.stdout)
    assert [a["query"] for a in many] == [clips[0].text, clips[1].text]
    r = runner.invoke(app, ["query", "--video", str(clips[4].path), "--index", str(index_dir), "--json",
                            "--clips", "-k", "1"])
    assert json.loads(r.stdout)["results"][0]["id"] == clips[4].id
    r = runner.invoke(app, ["query", "--video", str(clips[4].path), "--index", str(index_dir), "--json"])
    assert json.loads(r.stdout)["mode"] == "v2t"


def test_cli_remove(tiny_corpus, tiny_checkpoint, tmp_path):
    out = tmp_path / "idx"
    assert runner.invoke(app, ["index", str(tiny_corpus[1]), "--model", str(tiny_checkpoint), "--out",
                               str(out)]).exit_code == 0
    r = runner.invoke(app, ["remove", "dev000", "dev001", "--index", str(out), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["clips_total"] == 8
    r = runner.invoke(app, ["remove", "dev000", "--index", str(out)])
    assert r.exit_code == 2 and "no clip with id dev000" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["query", "", "--index", "{idx}"], "empty query"),
    (["query", "   ", "--index", "{idx}"], "empty query"),
    (["query", "regen", "--index", "{tmp}/missing"], "no index here"),
    (["query", "regen", "--index", "{tmp}/incomplete"], "not an slsearch index"),
    (["query", "regen", "--index", "{idx}", "-k", "0"], "k must be a positive"),
    (["query", "regen", "--index", "{idx}", "-k", "-3"], "k must be a positive"),
    (["query", "regen", "--index", "{idx}", "--candidates", "0"], "candidates must be positive"),
    (["query", "--video", "{tmp}/broken.mp4", "--index", "{idx}"], "broken.mp4"),
    (["query", "--video", "{tmp}/nothing.mp4", "--index", "{idx}"], "nothing.mp4: file not found"),
    (["query", "--index", "{idx}"], "give exactly one of"),
    (["query", "--queries", "{tmp}/empty.txt", "--index", "{idx}"], "holds no queries"),
    (["index", "{tmp}/nothing", "--model", "{ckpt}", "--out", "{tmp}/x"], "nothing: not found"),
    (["index", "{idx}/../../", "--model", "{tmp}/nockpt", "--out", "{tmp}/x"], "checkpoint folder not found"),
    (["index", "{tmp}/incomplete", "--model", "{ckpt}", "--out", "{tmp}/x"], "no clips found"),
    (["index", "{idx}/../../", "--model", "{ckpt}", "--out", "{tmp}/x", "--index-type", "btree"],
     "unknown --index-type 'btree'"),
    (["index", "{idx}/../../", "--model", "{ckpt}", "--out", "{tmp}/x", "--max-memory", "lots"], "not a size"),
    (["index", "{train}", "--model", "{ckpt}", "--out", "{tmp}/x", "--max-memory", "1K"], "fits in"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, index_dir, tiny_checkpoint, tiny_corpus, tmp_path):
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01 this is not a video")
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    args = [a.format(idx=index_dir, tmp=tmp_path, ckpt=tiny_checkpoint, train=tiny_corpus[0]) for a in args]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in r.output and len(errors) == 1 and message in errors[0]


def test_real_pose_files_index_and_find_themselves(shared_data, tiny_checkpoint, tmp_path):
    """Real signing (.pose: MediaPipe and OpenPose layouts) from ../shared/data through index and query."""
    out = tmp_path / "real"
    r = runner.invoke(app, ["index", str(shared_data / "pose"), "--model", str(tiny_checkpoint), "--out", str(out),
                            "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["clips_added"] == 15 and s["failures"] == 0 and s["texts_total"] == 0
    searcher = Searcher(out)
    query = shared_data / "pose" / "asl_colin-1-HOUSE.pose"
    assert searcher.search_video(query, k=3, target="clips")[0].id == "asl_colin-1-HOUSE"
    r = runner.invoke(app, ["query", "--video", str(query), "--index", str(out)])
    assert r.exit_code == 2 and f"{out}: no sentences in this index" in r.stderr


@pytest.mark.slow
def test_real_video_frame_folder_and_pose_in_one_index(shared_data, tiny_checkpoint, tmp_path):
    """A real signer video goes through MediaPipe (cached), a 2-frame PHOENIX frame folder is too short
    and is reported, and the video then finds itself."""
    video = shared_data / "video" / "signer_58frames.mp4"
    frames = next((shared_data / "phoenix_frames").iterdir())
    out = tmp_path / "mixed"
    r = runner.invoke(app, ["index", str(video), str(shared_data / "pose" / "asl_colin-SAD.pose"), str(frames),
                            "--model", str(tiny_checkpoint), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["clips_added"], s["failures"]) == (2, 1)
    assert s["failed"][0]["path"] == str(frames) and "fewer than the temporal stride" in s["failed"][0]["reason"]
    meta = Searcher(out).clips.meta_rows()
    row = next(m for m in meta if m["id"] == "signer_58frames")
    from slsearch.data.video import probe

    assert row["fps"] == 25.0 and row["frames"] == round(row["duration"] * 25)  # resampled to the model's rate
    assert abs(row["duration"] - probe(video).duration) < 0.1
    hits = Searcher(out).search_video(video, k=2, target="clips")
    assert hits[0].id == "signer_58frames"
