"""Tests of the grounding model on random tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stg_cli.models import ATTENTION_STACKS, GroundingModel, ModelConfig
from stg_cli.models.grounding import CPU_NATIVE_MIN_LOGITS, uses_native_attention, video_means
from stg_cli.ops import SELECTION_MODES

DV, DW, D, GRID = 12, 10, 16, (2, 3)


def make_model(**overrides) -> GroundingModel:
    torch.manual_seed(0)
    config = ModelConfig(visual_dim=DV, text_dim=DW, dim=D, grid=GRID, frames_u=6, frames_t=3, **overrides)
    return GroundingModel(config)


def make_batch(batch=4, frames=6, words=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    cells = GRID[0] * GRID[1]
    frame_mask = torch.ones(batch, frames, dtype=torch.bool)
    frame_mask[1, 4:] = False
    frame_mask[2, 2:] = False  # fewer real frames than T
    word_mask = torch.ones(batch, words, dtype=torch.bool)
    word_mask[0, 3:] = False
    return dict(
        global_feats=torch.randn(batch, frames, DV, generator=g),
        grid_feats=torch.randn(batch, frames, cells, DV, generator=g),
        frame_mask=frame_mask,
        sentence=torch.randn(batch, DW, generator=g),
        words=torch.randn(batch, words, DW, generator=g),
        word_mask=word_mask,
        boundary=torch.tensor([[1, 4]] * batch),
    )


def test_config_round_trip_and_validation():
    config = ModelConfig(visual_dim=3, text_dim=4, grid=(7, 7))
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="attention"):
        ModelConfig(visual_dim=3, text_dim=4, attention="self-self")
    with pytest.raises(ValueError, match="select"):
        ModelConfig(visual_dim=3, text_dim=4, select="random")
    with pytest.raises(ValueError, match="frames_t"):
        ModelConfig(visual_dim=3, text_dim=4, frames_u=4, frames_t=8)
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"visual_dim": 3, "text_dim": 4, "bogus": 1})
    for field, value in (
        ("dim", 2_000_000),
        ("dim", 12.5),
        ("visual_dim", True),
        ("frames_u", 0),
        ("text_dim", "300"),
    ):
        with pytest.raises(ValueError, match=f"{field} must be a whole number from 1 to"):
            ModelConfig(**{"visual_dim": 3, "text_dim": 4, field: value})
    for grid in ((7, 7.5), (7,), (65, 7), (0, 7)):
        with pytest.raises(ValueError, match="grid"):
            ModelConfig(visual_dim=3, text_dim=4, grid=grid)
    assert config.center_video
    # a configuration written before the setting existed was trained without centring
    assert not ModelConfig.from_dict({"visual_dim": 3, "text_dim": 4}).center_video


def test_embeddings_are_normalised():
    model = make_model()
    f = model.frame_embeddings(torch.randn(7, DV))
    g = model.sentence_embeddings(torch.randn(2, 3, DW))
    assert f.shape == (7, D) and g.shape == (2, 3, D)
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(7))
    torch.testing.assert_close(g.norm(dim=-1), torch.ones(2, 3))


@pytest.mark.parametrize("attention", list(ATTENTION_STACKS))
@pytest.mark.parametrize("select", SELECTION_MODES)
def test_forward_shapes_and_gradients(attention, select):
    model = make_model(attention=attention, select=select)
    out = model(**make_batch(), local_chunk=3)
    assert out.video_global.shape == out.sentence_global.shape == (4, D)
    assert [tuple(s.shape) for s in out.local_similarity] == [(3, 3), (1, 1)]
    assert out.selection.indices.shape == (4, 3)
    assert out.selection.mask[2].tolist() == [True, True, False]
    loss = out.video_global.sum() + out.sentence_global.sum()
    loss = loss + sum(s.sum() for s in out.local_similarity)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.video_self.parameters()) or "self" not in attention


def test_selection_has_no_gradient_and_respects_frame_mask():
    model = make_model()
    batch = make_batch()
    out = model(**batch)
    assert not out.selection.scores.requires_grad
    for sample in range(4):
        chosen = out.selection.indices[sample][out.selection.mask[sample]]
        assert batch["frame_mask"][sample, chosen].all()


def test_local_similarity_entry_matches_single_pair():
    """Entry [k, j] of the chunk matrix is video k attended with sentence j alone."""
    model = make_model()
    batch = make_batch()
    out = model(**batch, local_chunk=4)
    sel = out.selection
    cells = GRID[0] * GRID[1]
    k, j = 1, 3
    grid = batch["grid_feats"][k, sel.indices[k]]
    regions = model.region_tokens(grid).reshape(1, -1, D)
    region_mask = sel.mask[k][:, None].expand(-1, cells).reshape(1, -1)
    words = model.word_tokens(batch["words"][j : j + 1])
    single = model.local_stack(regions, words, region_mask, batch["word_mask"][j : j + 1])
    v = torch.nn.functional.normalize(model.pool(single.video, region_mask), dim=-1)
    s = torch.nn.functional.normalize(model.pool(single.words, batch["word_mask"][j : j + 1]), dim=-1)
    torch.testing.assert_close(out.local_similarity[0][k, j], (v * s).sum(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention", list(ATTENTION_STACKS))
@pytest.mark.parametrize("cross_logits", ["cosine", "dot"])
def test_pairing_inside_the_stack_equals_pairing_before_it(attention, cross_logits):
    """``pairs`` gathers inside the stack (after the first layer's normalisation): the same
    outputs, maps and gradients as running the gathered pairs."""
    model = make_model(attention=attention, cross_logits=cross_logits)
    generator = torch.Generator().manual_seed(3)
    regions = torch.randn(3, 8, D, generator=generator, requires_grad=True)
    words = torch.randn(2, 5, D, generator=generator, requires_grad=True)
    region_mask = torch.ones(3, 8, dtype=torch.bool)
    region_mask[2, 5:] = False
    word_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    pairs = (torch.tensor([0, 1, 2, 2, 0]), torch.tensor([1, 0, 1, 0, 0]))
    inside = model.local_stack(regions, words, region_mask, word_mask, return_maps=True, pairs=pairs)
    before = model.local_stack(
        regions[pairs[0]], words[pairs[1]], region_mask[pairs[0]], word_mask[pairs[1]], return_maps=True
    )
    torch.testing.assert_close(inside.video, before.video)
    torch.testing.assert_close(inside.words, before.words)
    for ours, theirs in zip(inside.maps, before.maps):
        for key in ours:
            if key != "kind":
                torch.testing.assert_close(ours[key], theirs[key])
    grads = torch.autograd.grad(inside.video.sum() + inside.words.sum(), (regions, words))
    expected = torch.autograd.grad(before.video.sum() + before.words.sum(), (regions, words))
    for ours, theirs in zip(grads, expected):
        torch.testing.assert_close(ours, theirs)


FACTORABLE_STACKS = [name for name, layers in ATTENTION_STACKS.items() if layers[0] == "cross"]


@pytest.mark.parametrize("attention", FACTORABLE_STACKS)
@pytest.mark.parametrize("cross_logits", ["cosine", "dot"])
@pytest.mark.parametrize("ops", ["native", "reference"])
def test_factored_similarity_equals_the_layers_as_written(attention, cross_logits, ops):
    """The factored local branch is the same arithmetic reordered: in float64 its similarities
    and every gradient match the literal stack to rounding, with padded regions and words, a
    video without frames and a sentence without words."""
    torch.manual_seed(0)
    config = ModelConfig(
        visual_dim=DV, text_dim=DW, dim=32, grid=GRID, frames_u=6, frames_t=3,
        attention=attention, cross_logits=cross_logits,
    )  # fmt: skip
    model = GroundingModel(config, ops=ops).double()
    generator = torch.Generator().manual_seed(4)
    regions = torch.randn(4, 9, 32, generator=generator, dtype=torch.float64, requires_grad=True)
    words = torch.randn(4, 5, 32, generator=generator, dtype=torch.float64, requires_grad=True)
    region_mask = torch.ones(4, 9, dtype=torch.bool)
    region_mask[1, 6:] = False
    region_mask[3] = False
    word_mask = torch.ones(4, 5, dtype=torch.bool)
    word_mask[0, 3:] = False
    word_mask[2] = False
    assert model.factorable(5)
    inputs = [regions, words, *model.parameters()]
    results = []
    for factored in (True, False):
        model.factored = factored
        similarity = model.local_similarity(regions, region_mask, words, word_mask)
        assert torch.isfinite(similarity).all()
        weights = torch.randn(4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        grads = torch.autograd.grad((similarity * weights).sum(), inputs, allow_unused=True)
        results.append((similarity, grads))
    (factored_sim, factored_grads), (literal_sim, literal_grads) = results
    torch.testing.assert_close(factored_sim, literal_sim, rtol=1e-10, atol=1e-12)
    for ours, theirs in zip(factored_grads, literal_grads):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-11)


def test_factoring_needs_a_first_cross_layer_and_a_span_narrower_than_d():
    assert make_model(attention="cross-self-cross").factorable(5)  # 2 · (5 + 1) = 12 < 16
    assert not make_model(attention="cross-self-cross").factorable(7)  # 16 is not < 16
    assert make_model(attention="cross-cross").factorable(14)
    assert not make_model(attention="self-cross").factorable(1)


def test_factored_similarity_under_bfloat16_autocast_stays_close():
    model = make_model()
    model.ops = "reference"  # the CPU has no bfloat16 kernel
    batch = make_batch()
    exact = model(**batch, local_chunk=4).local_similarity[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(**batch, local_chunk=4).local_similarity[0]
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, exact, rtol=0.0, atol=0.05)


def test_auto_attention_runs_the_native_kernels_on_cuda_and_for_large_cpu_calls():
    assert uses_native_attention("auto", "cuda", 12, 12)
    assert not uses_native_attention("auto", "cpu", 196, 196)
    assert uses_native_attention("auto", "cpu", 392, 392)
    assert uses_native_attention("auto", "cpu", 1, CPU_NATIVE_MIN_LOGITS)
    assert not uses_native_attention("auto", "cpu", 1, CPU_NATIVE_MIN_LOGITS - 1)
    assert uses_native_attention("native", "cpu", 1, 1) and not uses_native_attention(
        "reference", "cuda", 9, 9
    )


def test_auto_attention_computes_what_either_kernel_computes():
    batch = make_batch()
    results = {}
    for ops in ("auto", "native", "reference"):
        model = make_model()
        model.ops = ops
        results[ops] = model(**batch).local_similarity[0]
    torch.testing.assert_close(results["auto"], results["reference"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results["auto"], results["native"], rtol=1e-4, atol=1e-5)


def test_fully_masked_words_give_finite_outputs():
    model = make_model()
    batch = make_batch()
    batch["word_mask"][3] = False
    out = model(**batch)
    assert torch.isfinite(out.video_global).all()
    assert all(torch.isfinite(s).all() for s in out.local_similarity)


def test_native_and_reference_ops_agree():
    model = make_model()
    batch = make_batch()
    native = model(**batch).local_similarity[0]
    model.ops = "reference"
    ref = model(**batch).local_similarity[0]
    torch.testing.assert_close(native, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention", list(ATTENTION_STACKS))
@pytest.mark.parametrize("mode", ["paper", "rollout", "global"])
def test_heatmaps_are_probabilities(attention, mode):
    model = make_model(attention=attention)
    g = torch.Generator().manual_seed(3)
    grid = torch.randn(7, GRID[0] * GRID[1], DV, generator=g)  # 7 frames: clips of 3, 3, 1
    words = torch.randn(4, DW, generator=g)
    mask = torch.tensor([True, True, True, False])
    query = model.sentence_embeddings(torch.randn(DW, generator=g))
    heat = model.heatmaps(grid, words, mask, mode=mode, query=query)
    assert heat.shape == (7, 6) and heat.dtype == torch.float32
    assert (heat >= 0).all()
    torch.testing.assert_close(heat.sum(1), torch.ones(7))
    # padded words do not change the map
    again = model.heatmaps(grid, words[:3], None, mode=mode, query=query)
    torch.testing.assert_close(heat, again, rtol=1e-4, atol=1e-6)


def test_heatmaps_use_the_training_layers():
    """Changing the local stack's self-attention weights changes the heatmap."""
    model = make_model()
    grid = torch.randn(3, 6, DV)
    words = torch.randn(3, DW)
    before = model.heatmaps(grid, words, mode="paper")
    with torch.no_grad():
        model.word_self[0].key.weight.mul_(5.0)
    after = model.heatmaps(grid, words, mode="paper")
    assert not torch.allclose(before, after)


def test_heatmaps_follow_the_matching_region():
    """A region whose projected token equals the query word gets the most mass."""
    model = make_model(attention="cross-cross")
    with torch.no_grad():
        model.region_proj.linear.weight.zero_()
        model.region_proj.linear.bias.zero_()
        model.region_proj.linear.weight[:DV, :DV] = torch.eye(DV) * 3
        model.word_proj.linear.weight.zero_()
        model.word_proj.linear.bias.zero_()
        model.word_proj.linear.weight[:DW, :DW] = torch.eye(DW) * 3
    grid = torch.zeros(1, 6, DV)
    grid[0, 4, 2] = 4.0
    words = torch.zeros(1, DW)
    words[0, 2] = 4.0
    heat = model.heatmaps(grid, words, mode="paper")
    assert int(heat[0].argmax()) == 4


def test_heatmaps_reject_bad_mode():
    model = make_model()
    with pytest.raises(ValueError, match="mode"):
        model.heatmaps(torch.zeros(1, 6, DV), torch.zeros(1, DW), mode="magic")


def test_uniform_dot_attention_makes_every_pair_identical():
    """Why cosine cross logits are the default: uniform dot attention gives v_l = s_l."""
    model = make_model(attention="cross-cross", cross_logits="dot", attention_scale=0.0)
    sims = model(**make_batch(), local_chunk=4).local_similarity[0]
    torch.testing.assert_close(sims, torch.ones(4, 4), rtol=1e-5, atol=1e-5)
    cosine = make_model(attention="cross-cross")
    sims = cosine(**make_batch(), local_chunk=4).local_similarity[0]
    assert sims.std() > 1e-3


def test_cross_logits_validation():
    with pytest.raises(ValueError, match="cross_logits"):
        ModelConfig(visual_dim=3, text_dim=4, cross_logits="l2")
    with pytest.raises(ValueError, match="cross_temperature"):
        ModelConfig(visual_dim=3, text_dim=4, cross_temperature=0)


def test_feature_norm_standardises_inputs_and_is_saved():
    model = make_model()
    mean, std = torch.full((DV,), 3.0), torch.full((DV,), 2.0)
    model.set_feature_stats({"global": (mean, std)})
    x = torch.randn(5, DV)
    torch.testing.assert_close(model.frame_norm(x * 2 + 3), x)
    assert "frame_norm.mean" in model.state_dict()


def test_activation_map_shares_add_up_to_the_frame_cosine():
    """Each cell's share of the cosine: their mean is cos(f(mean cell), g(q)) for an affine f."""
    model = make_model()
    g = torch.Generator().manual_seed(5)
    grid = torch.randn(4, 6, DV, generator=g)
    query = model.sentence_embeddings(torch.randn(DW, generator=g))
    heat = model.activation_maps(grid, query)
    torch.testing.assert_close(heat.sum(1), torch.ones(4))
    # softmax inverse up to a per-frame constant: shares = T·log p + c
    from stg_cli.models.grounding import ACTIVATION_TEMPERATURE

    shares = ACTIVATION_TEMPERATURE * heat.log()
    frame = model.frame_embeddings(grid.mean(1))
    cells = model.frame_proj(model.frame_norm(grid))
    norm = model.frame_proj(model.frame_norm(grid.mean(1))).norm(dim=-1, keepdim=True)
    expected = (cells @ query) / norm
    torch.testing.assert_close(
        shares - shares.mean(1, keepdim=True), expected - expected.mean(1, keepdim=True), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(expected.mean(1), frame @ query, rtol=1e-4, atol=1e-5)
    # the cell that holds what the query matches gets the most mass
    target = torch.zeros(6, DV)
    target[2] = 5 * torch.linalg.pinv(model.frame_proj.linear.weight.detach())[:, :] @ query
    boosted = model.activation_maps(grid[:1] + target, query)
    assert int(boosted[0].argmax()) == 2
    # a zero query (no known word) gives a uniform map
    torch.testing.assert_close(model.activation_maps(grid, torch.zeros(D)), torch.full((4, 6), 1 / 6))
    with pytest.raises(ValueError, match="sentence embedding"):
        model.heatmaps(grid, torch.zeros(1, DW), mode="global")


def test_video_means_skip_damaged_frames():
    global_feats = np.array([[1.0, 2.0], [3.0, 4.0], [np.inf, 0.0]])
    grid_feats = np.stack([np.full((3, 2), v) for v in (1.0, 3.0, 5.0)])
    global_mean, grid_mean = video_means(global_feats, grid_feats)
    np.testing.assert_allclose(global_mean, [2.0, 3.0])
    np.testing.assert_allclose(grid_mean, np.full((3, 2), 2.0))
    assert global_mean.dtype == np.float32
    empty = video_means(np.zeros((0, 2)), np.zeros((0, 3, 2)))
    assert empty[0].shape == (2,) and empty[1].shape == (3, 2) and not empty[0].any()


def test_centring_offsets_are_the_means_when_on_and_zero_when_off():
    from stg_cli.models.grounding import centring_offsets

    global_feats = np.arange(6, dtype=np.float32).reshape(3, 2)
    grid_feats = np.arange(18, dtype=np.float32).reshape(3, 3, 2)
    on = centring_offsets(True, global_feats, grid_feats)
    off = centring_offsets(False, torch.from_numpy(global_feats), torch.from_numpy(grid_feats))
    np.testing.assert_array_equal(on[0], global_feats.mean(0))
    np.testing.assert_array_equal(on[1], grid_feats.mean(0))
    assert off[0].shape == (2,) and off[1].shape == (3, 2) and not off[0].any() and not off[1].any()


def test_shared_projections_are_the_global_branchs_f_and_g():
    """``local_projections="shared"``: the local branch's region and word tokens are f and g of
    the global branch (with its input statistics), the model has no f' or g' of its own, and
    the heatmaps still come from the local stack."""
    own, shared = make_model(), make_model(local_projections="shared")
    assert {"region_proj.linear.weight", "word_proj.linear.weight"} <= set(own.state_dict())
    assert not any(key.startswith(("region_proj.", "word_proj.")) for key in shared.state_dict())
    shared.set_feature_stats(
        {
            "global": (torch.full((DV,), 1.0), torch.full((DV,), 2.0)),
            "words": (torch.zeros(DW), torch.ones(DW) * 3),
        }
    )
    grid, words = torch.randn(3, 6, DV), torch.randn(4, DW)
    torch.testing.assert_close(shared.region_tokens(grid), shared.frame_proj(shared.frame_norm(grid)))
    torch.testing.assert_close(shared.word_tokens(words), shared.sentence_proj(shared.word_norm(words)))
    # the cell embedding the activation map scores is the local branch's region token
    assert torch.allclose(
        F.normalize(shared.region_tokens(grid), dim=-1), shared.frame_embeddings(grid), atol=1e-6
    )
    heat = shared.heatmaps(grid, words, mode="paper")
    assert heat.shape == (3, 6) and torch.allclose(heat.sum(1), torch.ones(3))


def test_shared_projections_let_the_local_loss_train_f_and_g():
    """With shared projections the local similarity's gradient reaches f and g (the global
    branch's projections); with its own f', g' it does not."""
    for mode, reaches in (("own", False), ("shared", True)):
        model = make_model(local_projections=mode)
        similarity = model(**make_batch(), local_chunk=4, compute_global=False).local_similarity[0]
        similarity.diagonal().sum().backward()
        for name in ("frame_proj.linear.weight", "sentence_proj.linear.weight"):
            grad = model.get_parameter(name).grad
            assert (grad is not None and grad.abs().sum() > 0) == reaches, (mode, name)


@pytest.mark.parametrize("factored", [True, False])
def test_shared_projections_factor_exactly(factored):
    """The factored local branch gives the written layers' similarities with shared
    projections too (the projections are applied before the stack)."""
    model = make_model(local_projections="shared").double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in make_batch().items()}
    model.factored = factored
    ours = model(**batch, local_chunk=4).local_similarity[0]
    model.factored = not factored
    theirs = model(**batch, local_chunk=4).local_similarity[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_local_projections_validation_and_older_configs():
    with pytest.raises(ValueError, match="local_projections"):
        ModelConfig(visual_dim=3, text_dim=4, local_projections="tied")
    shared = ModelConfig(visual_dim=3, text_dim=4, local_projections="shared")
    assert ModelConfig.from_dict(shared.to_dict()) == shared
    older = shared.to_dict()
    del older["local_projections"]
    assert ModelConfig.from_dict(older).local_projections == "own"
