import json

import pytest
import torch

from stg_cli.backbones import TEXT_ENCODERS, VISUAL_BACKBONES, load_text, load_text_from, load_visual
from stg_cli.errors import UserError


def test_names():
    assert VISUAL_BACKBONES == ("tiny", "clip-vit-b32", "s3d-milnce", "effnet-lite0", "effnet-lite2")
    assert TEXT_ENCODERS[:3] == ("word2vec", "minilm", "clip")


def test_unknown_names_list_the_choices():
    choices = "tiny, clip-vit-b32, s3d-milnce, effnet-lite0, effnet-lite2"
    with pytest.raises(UserError, match=rf"unknown visual backbone 'vgg'; choose one of {choices}"):
        load_visual("vgg")
    with pytest.raises(UserError, match=r"unknown text encoder 'bert'; choose one of word2vec, minilm, clip"):
        load_text("bert")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_user_error():
    with pytest.raises(UserError, match="no CUDA device"):
        load_visual("tiny", device="cuda")
    with pytest.raises(UserError, match="unknown device"):
        load_visual("tiny", device="tpu9")


def test_load_text_from_bad_folders(tmp_path):
    with pytest.raises(UserError, match="text_encoder.json missing"):
        load_text_from(tmp_path)
    (tmp_path / "text_encoder.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        load_text_from(tmp_path)
    (tmp_path / "text_encoder.json").write_text(json.dumps({"name": "elmo"}))
    with pytest.raises(UserError, match="unknown text encoder 'elmo'"):
        load_text_from(tmp_path)


def test_visual_rejects_wrong_clip_length():
    model = load_visual("tiny")
    with pytest.raises(ValueError, match="clips of 1 frames"):
        model.encode(torch.zeros(2, 4, 112, 112, 3, dtype=torch.uint8))
