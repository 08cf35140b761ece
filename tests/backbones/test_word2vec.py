import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from stg_cli.backbones import TEXT_ENCODERS, load_text, load_text_from, train_word2vec
from stg_cli.backbones.word2vec import Word2VecEncoder
from stg_cli.errors import UserError

CORPUS = [
    "Crack the egg into the bowl.",
    "Now whisk the egg with a fork",
    "Pour the milk into the pan, um, slowly",
    "Cut the onion and the tomato",
    "Add salt to the pan",
] * 20


@pytest.fixture(scope="module")
def trained() -> Word2VecEncoder:
    return train_word2vec(CORPUS, dim=16, seed=3)


def test_encode_shapes_mask_and_mean(trained):
    feats = trained.encode(["Crack the EGG!", "pour milk zzzunknownzzz", "qqq xxx", ""])
    assert trained.dim == 16 and "word2vec" in TEXT_ENCODERS
    assert feats.sentence.shape == (4, 16) and feats.sentence.dtype == torch.float32
    assert feats.words.shape == (4, 3, 16) and feats.mask.shape == (4, 3)
    assert feats.tokens == [["crack", "the", "egg"], ["pour", "milk"], [], []]
    assert feats.mask.tolist() == [[True] * 3, [True, True, False], [False] * 3, [False] * 3]
    egg = torch.tensor(trained.vectors["egg"])
    torch.testing.assert_close(feats.words[0, 2], egg)
    torch.testing.assert_close(feats.sentence[1], feats.words[1, :2].mean(0))
    assert (feats.words[1, 2] == 0).all()
    assert (feats.sentence[2:] == 0).all() and torch.isfinite(feats.sentence).all()


def test_all_unknown_batch_has_one_masked_column(trained):
    feats = trained.encode(["zzz", "yyy"])
    assert feats.words.shape == (2, 1, 16) and not feats.mask.any()
    empty = trained.encode([])
    assert empty.sentence.shape == (0, 16) and empty.words.shape == (0, 1, 16) and empty.tokens == []


def test_max_words_truncates(trained):
    trained.max_words = 2
    try:
        feats = trained.encode(["cut the onion and the tomato"])
    finally:
        trained.max_words = 32
    assert feats.tokens == [["cut", "the"]] and feats.words.shape == (1, 2, 16)


def test_save_and_reload_trained(trained, tmp_path):
    trained.save(tmp_path / "text")
    config = json.loads((tmp_path / "text" / "text_encoder.json").read_text())
    assert config["name"] == "word2vec" and config["dim"] == 16
    again = load_text_from(tmp_path / "text")
    assert again.fingerprint == trained.fingerprint
    a, b = trained.encode(CORPUS[:5]), again.encode(CORPUS[:5])
    torch.testing.assert_close(a.words, b.words)
    torch.testing.assert_close(a.sentence, b.sentence)
    assert load_text("word2vec", tmp_path / "text").fingerprint == trained.fingerprint


def test_googlenews_binary_round_trip_and_capitalised_lookup(trained, tmp_path):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=4)
    kv.add_vectors(["Paris", "egg", "the"], np.arange(12, dtype=np.float32).reshape(3, 4))
    path = tmp_path / "GoogleNews-small.bin"
    kv.save_word2vec_format(str(path), binary=True)
    enc = load_text("word2vec", path)
    feats = enc.encode(["paris the egg cat"])
    assert feats.tokens == [["Paris", "the", "egg"]]
    torch.testing.assert_close(feats.sentence[0], torch.tensor([4.0, 5.0, 6.0, 7.0]))
    enc.save(tmp_path / "saved")
    assert not (tmp_path / "saved" / "word2vec.bin").exists()  # referenced, not copied
    assert load_text_from(tmp_path / "saved").fingerprint == enc.fingerprint
    path.write_bytes(path.read_bytes()[:-5] + b"xxxxx")
    with pytest.raises(UserError, match="no longer matches"):
        load_text_from(tmp_path / "saved")


@pytest.mark.parametrize("vectors", ["/etc/passwd", "../outside.bin", "link.bin"])
def test_a_saved_config_cannot_read_files_outside_its_folder(trained, tmp_path, vectors):
    (tmp_path / "outside.bin").write_text("secret line\n")
    trained.save(tmp_path / "text")
    (tmp_path / "text" / "link.bin").symlink_to(tmp_path / "outside.bin")
    config_path = tmp_path / "text" / "text_encoder.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "vectors": vectors}))
    with pytest.raises(UserError, match="outside") as refused:
        load_text_from(tmp_path / "text")
    assert "secret" not in str(refused.value) and "root:" not in str(refused.value)


def test_unreadable_saved_vectors_are_not_quoted_in_the_error(trained, tmp_path):
    trained.save(tmp_path / "text")
    (tmp_path / "text" / "word2vec.bin").write_text("secret line\n")
    with pytest.raises(UserError, match="not a binary word2vec file") as refused:
        load_text_from(tmp_path / "text")
    assert "secret" not in str(refused.value)


def test_bad_inputs_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="needs --weights"):
        load_text("word2vec")
    with pytest.raises(UserError, match="not found"):
        load_text("word2vec", tmp_path / "missing.bin")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a word2vec file at all\x00\x01")
    with pytest.raises(UserError, match="cannot read"):
        load_text("word2vec", junk)
    with pytest.raises(UserError, match="word2vec, minilm, clip"):
        load_text("glove")
    with pytest.raises(UserError, match="no words"):
        train_word2vec(["", "..."], dim=8)
    with pytest.raises(UserError, match="missing"):
        load_text_from(tmp_path)


def test_training_is_deterministic_across_interpreters():
    """Same seed → same vectors even with different PYTHONHASHSEED (gensim's default is hash)."""
    code = (
        "from stg_cli.backbones import train_word2vec\n"
        "import sys\n"
        f"enc = train_word2vec({CORPUS[:5]!r} * 10, dim=8, seed=1)\n"
        "sys.stdout.write(enc.fingerprint)\n"
    )
    prints = []
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        prints.append(out.stdout)
    assert prints[0] == prints[1]
    other = train_word2vec(CORPUS[:5] * 10, dim=8, seed=2)
    assert other.fingerprint != prints[0]
