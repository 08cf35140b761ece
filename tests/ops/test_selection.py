"""Tests of stg_cli.ops.select_frames."""

from __future__ import annotations

import pytest
import torch

from stg_cli.ops import SELECTION_MODES, select_frames, sinkhorn

pytestmark = pytest.mark.stg_op("sinkhorn")


def make_batch(generator, device):
    """P [3, 4, 10] with padded words, and 10, 6 and 3 real frames."""
    P = torch.randn(3, 4, 10, generator=generator) * 3
    word_mask = torch.ones(3, 4, dtype=torch.bool)
    word_mask[1, 3] = word_mask[2, 2:] = False
    frame_mask = torch.ones(3, 10, dtype=torch.bool)
    frame_mask[1, 6:] = frame_mask[2, 3:] = False
    sentence_sim = torch.randn(3, 10, generator=generator)
    return P.to(device), word_mask.to(device), frame_mask.to(device), sentence_sim.to(device)


@pytest.mark.parametrize("mode", SELECTION_MODES)
def test_selection_is_sorted_real_and_padded(device, generator, mode):
    """Indices ascend over distinct real frames; the tail beyond U_valid is masked out."""
    P, word_mask, frame_mask, sentence_sim = make_batch(generator, device)
    selection = select_frames(P, word_mask, frame_mask, 5, mode, sentence_frame_sim=sentence_sim)
    assert selection.indices.shape == selection.mask.shape == (3, 5)
    assert selection.indices.dtype == torch.int64
    assert selection.mask.tolist() == [[True] * 5, [True] * 5, [True] * 3 + [False] * 2]
    for sample in range(3):
        chosen = selection.indices[sample][selection.mask[sample]]
        assert torch.all(chosen[1:] > chosen[:-1])
        assert frame_mask[sample, chosen].all()
    assert selection.indices[2].tolist() == [0, 1, 2, 2, 2]
    assert torch.isneginf(selection.scores[~frame_mask]).all()
    assert torch.isfinite(selection.scores[frame_mask]).all()


def test_more_frames_than_candidates_pads_with_last_index(device, generator):
    """T > U keeps every real frame and masks the rest."""
    P, word_mask, frame_mask, _ = make_batch(generator, device)
    selection = select_frames(P, word_mask, frame_mask, 12, "local")
    assert selection.indices[0].tolist() == list(range(10)) + [9, 9]
    assert selection.mask.sum(1).tolist() == [10, 6, 3]


def test_none_mode_picks_central_frames_of_boundary(device, generator):
    """`none` keeps the T frames closest to the centre of the ASR boundary, earlier on ties."""
    P, word_mask, frame_mask, _ = make_batch(generator, device)
    boundary = torch.tensor([[2, 6], [0, 5], [0, 2]], device=device)
    selection = select_frames(P, word_mask, frame_mask, 3, "none", boundary=boundary)
    assert selection.indices.tolist() == [[3, 4, 5], [1, 2, 3], [0, 1, 2]]
    even = select_frames(P, word_mask, frame_mask, 4, "none", boundary=boundary)
    assert even.indices[0].tolist() == [2, 3, 4, 5]


def test_none_mode_defaults_to_span_of_real_frames(device, generator):
    """Without a boundary `none` centres on the real frames."""
    P, word_mask, frame_mask, _ = make_batch(generator, device)
    selection = select_frames(P, word_mask, frame_mask, 2, "none")
    assert selection.indices.tolist() == [[4, 5], [2, 3], [0, 1]]


def test_global_mode_needs_sentence_similarity(device, generator):
    """`global` without sentence_frame_sim is a ValueError."""
    P, word_mask, frame_mask, _ = make_batch(generator, device)
    with pytest.raises(ValueError, match="sentence_frame_sim"):
        select_frames(P, word_mask, frame_mask, 2, "global")


def test_global_mode_ranks_by_sentence_similarity(device, generator):
    """`global` keeps the frames most similar to the sentence."""
    P, word_mask, frame_mask, _ = make_batch(generator, device)
    sentence_sim = torch.zeros(3, 10, device=device)
    sentence_sim[:, 7] = sentence_sim[:, 1] = 1.0  # frame 7 is padding in samples 1 and 2
    sentence_sim[1, 4] = sentence_sim[2, 2] = 1.0
    selection = select_frames(P, word_mask, frame_mask, 2, "global", sentence_frame_sim=sentence_sim)
    assert selection.indices.tolist() == [[1, 7], [1, 4], [1, 2]]


def test_local_mode_ignores_padded_words(device, generator):
    """`local` ranks by the mean over real words: a padded word matching a frame is ignored."""
    P = torch.zeros(1, 3, 6, device=device)
    P[0, 0, 4] = P[0, 1, 4] = 1.0  # the real words match frame 4
    P[0, 2, 1] = 100.0  # the padded word matches frame 1
    word_mask = torch.tensor([[True, True, False]], device=device)
    selection = select_frames(P, word_mask, None, 1, "local")
    assert selection.indices.tolist() == [[4]]
    assert selection.scores[0, 4].item() == pytest.approx(1.0)


@pytest.mark.parametrize("iters", [3, 50])
def test_sinkhorn_mode_ranks_frame_all_words_match_first(device, generator, iters):
    """A frame that every word matches strongly gets the highest score."""
    P = torch.randn(2, 5, 12, generator=generator).to(device)
    P[:, :, 7] = 9.0
    selection = select_frames(P, None, None, 1, "sinkhorn", iters=iters)
    assert selection.indices.tolist() == [[7], [7]]
    assert torch.equal(selection.scores.argmax(1), torch.tensor([7, 7], device=device))


def test_sinkhorn_mode_scores_are_plan_weighted_similarities(device, generator):
    """s_u = Σ_k Q[k, u]·P[k, u] over real words, with the plan of sinkhorn and its n_iter."""
    P, word_mask, frame_mask, _ = make_batch(generator, device)
    selection = select_frames(P, word_mask, frame_mask, 3, "sinkhorn", eps=0.5, iters=7, tol=1e-3)
    log_plan, n_iter = sinkhorn(P, word_mask, frame_mask, eps=0.5, iters=7, tol=1e-3)
    scores = (log_plan.exp() * P.masked_fill(~word_mask[:, :, None], 0)).sum(1)
    expected = scores.masked_fill(~frame_mask, float("-inf"))
    torch.testing.assert_close(selection.scores, expected)
    assert torch.equal(selection.n_iter, n_iter)


@pytest.mark.parametrize("mode", ["none", "global", "local"])
def test_other_modes_report_zero_iterations(device, generator, mode):
    """Only the sinkhorn mode iterates."""
    P, word_mask, frame_mask, sentence_sim = make_batch(generator, device)
    selection = select_frames(P, word_mask, frame_mask, 3, mode, sentence_frame_sim=sentence_sim)
    assert selection.n_iter.tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"mode": "random"}, "mode", id="mode-unknown"),
        pytest.param({"num_frames": 0}, "num_frames", id="num_frames-zero"),
        pytest.param({"word_frame_sim": torch.zeros(4, 10)}, "word_frame_sim", id="sim-rank"),
        pytest.param({"word_frame_sim": [[0.0]]}, "word_frame_sim", id="sim-list"),
        pytest.param({"word_mask": torch.ones(2, 4)}, "word_mask", id="word_mask-float"),
        pytest.param({"frame_mask": torch.ones(2, 9).bool()}, "frame_mask", id="frame_mask-shape"),
        pytest.param(
            {"mode": "global", "sentence_frame_sim": torch.zeros(2, 9)},
            "sentence_frame_sim",
            id="sentence_frame_sim-shape",
        ),
        pytest.param({"mode": "none", "boundary": torch.tensor([1, 3])}, "boundary", id="boundary-shape"),
    ],
)
def test_bad_arguments_raise_value_error(overrides, name):
    """Each bad argument gives a ValueError that names it."""
    arguments = {
        "word_frame_sim": torch.zeros(2, 4, 10),
        "word_mask": None,
        "frame_mask": None,
        "num_frames": 3,
        "mode": "sinkhorn",
    }
    arguments.update(overrides)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        select_frames(**arguments)


@pytest.mark.parametrize("mode", SELECTION_MODES)
def test_meta_tensors_give_shapes(mode):
    """Meta tensors (shapes only) give the selection's shapes in every mode."""
    sentence_sim = torch.empty(2, 6, device="meta")
    selection = select_frames(
        torch.empty(2, 3, 6, device="meta"), None, None, 4, mode, sentence_frame_sim=sentence_sim
    )
    assert selection.indices.shape == (2, 4) and selection.mask.shape == (2, 4)
    assert selection.scores.shape == (2, 6)
