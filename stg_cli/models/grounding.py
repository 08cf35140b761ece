"""The global-local grounding model: projections, frame selection and the local attention stack.

Global branch (when): f maps a frame's global token, g a sentence token to d; both are
L2-normalised. Local branch (where): f' maps grid tokens, g' word tokens to d, and a stack of
masked attention layers (cross → self → cross by default) contextualises them; the pooled
outputs are compared. Training and inference (``heatmaps``) run the very same layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor, nn

from stg_cli.models.config import ATTENTION_STACKS, ModelConfig
from stg_cli.ops import FrameSelection, reference, rollout, rollout_paper, select_frames, xattn

HEATMAP_MODES = ("global", "paper", "rollout")
OPS_CHOICES = ("auto", "native", "reference")
# logits per pair (queries × keys) from which "auto" runs the native attention on the CPU
CPU_NATIVE_MIN_LOGITS = 120_000
# Softmax temperature of the global activation maps, the NCE temperature of training: cells whose
# share of the cosine differs by 0.07 differ by a factor e in probability.
ACTIVATION_TEMPERATURE = 0.07


def uses_native_attention(ops: str, device_type: str, queries: int, keys: int) -> bool:
    """Whether an attention call of ``queries`` × ``keys`` logits per pair runs the native
    ``xattn`` (else the bmm formulation) under ``ops``.

    "auto" (what ``stg train`` runs) takes the native kernels off the CPU, and on the CPU from
    :data:`CPU_NATIVE_MIN_LOGITS` logits per pair on: there, per call, forward + backward, the
    native op beat the bmm formulation 1.24-1.55x at 392 × 392 and was level or behind up to
    300 × 300 (0.84-1.07x; ``benchmarks/xattn_calls.py``, benchmarks/RESULTS.md, "xattn on
    the CPU"). Both compute the same attention.
    """
    if ops == "auto":
        return device_type != "cpu" or queries * keys >= CPU_NATIVE_MIN_LOGITS
    return ops == "native"


def _affine_rows(basis: Tensor, linear: nn.Linear) -> Tensor:
    """A linear layer on factored tokens X = C B whose last coefficient column is all ones:
    layer(X) = C · _affine_rows(B), the weight applied to every basis row [S, m, d] and the
    bias added to the last (constant) row only."""
    rows = basis @ linear.weight.t()
    return torch.cat([rows[:, :-1], rows[:, -1:] + linear.bias], 1)


def _coefficient_norms(coeffs: Tensor, basis: Tensor) -> Tensor:
    """‖C B‖ of each factored token, from B's Gram matrix, floored like ``F.normalize``.

    coeffs [V, S, R, m], basis [S, m, d] → [V, S, R] (in at least float32, even under
    autocast: the quadratic form cancels)."""
    dtype = torch.promote_types(torch.promote_types(coeffs.dtype, basis.dtype), torch.float32)
    with torch.autocast(coeffs.device.type, enabled=False):
        coeffs, basis = coeffs.to(dtype), basis.to(dtype)
        squared = ((coeffs @ (basis @ basis.transpose(1, 2))) * coeffs).sum(-1)
        return squared.clamp(min=1e-24).sqrt()


def video_means(global_feats: ArrayLike, grid_feats: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """A video's mean features, which ``center_video`` subtracts (float64 sums).

    Frames with a non-finite value are left out of the means (a damaged frame must not spoil
    the others); without a finite frame the means are zero.

    Args:
        global_feats: [F, Dv] every frame's global token; grid_feats: [F, N, Dv] its grid.

    Returns:
        (mean global token [Dv], mean of each grid cell [N, Dv]), float32.
    """
    global_feats = np.asarray(global_feats)
    grid_feats = np.asarray(grid_feats)
    finite = np.isfinite(global_feats).all(axis=1) & np.isfinite(grid_feats).all(axis=(1, 2))
    if not finite.any():
        return (np.zeros(global_feats.shape[1:], np.float32), np.zeros(grid_feats.shape[1:], np.float32))
    return (
        global_feats[finite].mean(axis=0, dtype=np.float64).astype(np.float32),
        grid_feats[finite].mean(axis=0, dtype=np.float64).astype(np.float32),
    )


def centring_offsets(
    center_video: bool, global_feats: ArrayLike, grid_feats: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """What the model's preprocessing subtracts from a video's features before the model sees
    them, in training and in grounding alike: the video's means (:func:`video_means`) when the
    model centres videos (``ModelConfig.center_video``), else zeros.

    Returns:
        (global offset [Dv], grid offset [N, Dv]), float32.
    """
    if center_video:
        return video_means(global_feats, grid_feats)
    global_shape = np.shape(global_feats)[1:]
    grid_shape = np.shape(grid_feats)[1:]
    return np.zeros(global_shape, np.float32), np.zeros(grid_shape, np.float32)


class Projection(nn.Module):
    """Linear map to d, optionally a gated unit: y = W x + b; y ← y · σ(W_g y + b_g)."""

    def __init__(self, in_dim: int, out_dim: int, gated: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.gate = nn.Linear(out_dim, out_dim) if gated else None

    def forward(self, x: Tensor) -> Tensor:
        """[..., in_dim] → [..., out_dim]."""
        y = self.linear(x)
        if self.gate is not None:
            y = y * torch.sigmoid(self.gate(y))
        return y


class FeatureNorm(nn.Module):
    """Per-channel standardisation (x - mean) / std with statistics of the training features.

    Frozen backbone features can be far from centred and unit-scaled (word2vec trained on a few
    captions gives vectors of norm ~0.03; grid features share a large common component), which
    would leave the projections dominated by their biases. The statistics are buffers: they are
    saved with the weights and applied identically at inference. Identity until set.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    def set(self, mean: Tensor, std: Tensor, min_std: float = 1e-6) -> None:
        """mean, std: [dim]."""
        self.mean.copy_(mean.to(self.mean))
        self.inv_std.copy_(1.0 / std.to(self.inv_std).clamp(min=min_std))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) * self.inv_std.to(x.dtype)


class SelfAttention(nn.Module):
    """Single-head self-attention with Q/K/V/out projections and a residual connection."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)


@dataclass
class LocalOutput:
    """What the local stack produces for a batch of (video, sentence) pairs.

    Attributes:
        video: [P, R, d] contextualised region tokens. words: [P, K, d] word tokens.
        maps: attention probabilities per layer when asked, each a dict with
            ``kind`` ("cross" or "self"), and ``r2w`` [P, R, K] / ``w2r`` [P, K, R] (cross) or
            ``rr`` [P, R, R] / ``ww`` [P, K, K] (self); empty otherwise.
    """

    video: Tensor
    words: Tensor
    maps: list[dict]


@dataclass
class ForwardOutput:
    """Training forward pass of a batch of B clips.

    Attributes:
        video_global: v_g [B, d] L2-normalised. sentence_global: s_g [B, d] L2-normalised.
        local_similarity: one [c, c] matrix per chunk of c clips, entry [k, l] the cosine of
            the pooled local embeddings of video k cross-attended with sentence l (empty when
            the local branch is not computed).
        selection: the frames chosen out of the U candidates.
    """

    video_global: Tensor | None
    sentence_global: Tensor | None
    local_similarity: list[Tensor]
    selection: FrameSelection


class GroundingModel(nn.Module):
    """Projections f, g, f', g', the frame selector and the local attention stack.

    ``ops`` chooses the attention kernels: "native" (``stg_cli.ops.xattn``, which itself runs
    the reference when no kernel exists), "reference" (the bmm formulation) or "auto" (per
    call, the faster of the two; what ``stg train`` runs, see :func:`uses_native_attention`).
    ``factored`` lets
    :meth:`local_similarity` run the stack in the span of the words (exact, and what ``stg
    train`` runs; False runs every layer as written).
    """

    def __init__(self, config: ModelConfig, ops: str = "native", factored: bool = True) -> None:
        super().__init__()
        if ops not in OPS_CHOICES:
            raise ValueError(f"ops must be one of {', '.join(OPS_CHOICES)}, got {ops!r}")
        self.config = config
        self.ops = ops
        self.factored = factored
        d = config.dim
        self.frame_norm = FeatureNorm(config.visual_dim)
        self.region_norm = FeatureNorm(config.visual_dim)
        self.sentence_norm = FeatureNorm(config.text_dim)
        self.word_norm = FeatureNorm(config.text_dim)
        self.frame_proj = Projection(config.visual_dim, d, config.gated)  # f
        self.sentence_proj = Projection(config.text_dim, d, config.gated)  # g
        self.shared_projections = config.local_projections == "shared"
        if not self.shared_projections:
            self.region_proj = Projection(config.visual_dim, d, config.gated)  # f'
            self.word_proj = Projection(config.text_dim, d, config.gated)  # g'
        self.layers = ATTENTION_STACKS[config.attention]
        self.video_self = nn.ModuleList(SelfAttention(d) for kind in self.layers if kind == "self")
        self.word_self = nn.ModuleList(SelfAttention(d) for kind in self.layers if kind == "self")
        # the detection threshold τ calibrated on the training clips (stg_cli.train.calibration);
        # NaN until calibrated
        self.register_buffer("detection_threshold", torch.tensor(float("nan")))
        self.scale = config.attention_scale if config.attention_scale is not None else d**-0.5
        self.cosine = config.cross_logits == "cosine"
        if self.cosine:
            self.scale = 1.0 / config.cross_temperature

    # ----------------------------------------------------------------- global branch

    def frame_embeddings(self, global_feats: Tensor) -> Tensor:
        """f: [..., Dv] frame global tokens → [..., d] L2-normalised."""
        return F.normalize(self.frame_proj(self.frame_norm(global_feats.to(self._dtype()))), dim=-1)

    def sentence_embeddings(self, sentence: Tensor) -> Tensor:
        """g: [..., Dw] sentence tokens → [..., d] L2-normalised."""
        return F.normalize(self.sentence_proj(self.sentence_norm(sentence.to(self._dtype()))), dim=-1)

    def word_selection_embeddings(self, words: Tensor) -> Tensor:
        """g applied to word tokens (for frame selection): [..., Dw] → [..., d] L2-normalised."""
        return F.normalize(self.sentence_proj(self.word_norm(words.to(self._dtype()))), dim=-1)

    def region_tokens(self, grid: Tensor) -> Tensor:
        """f' (f itself with shared projections): [..., Dv] grid tokens → [..., d] (not
        normalised)."""
        grid = grid.to(self._dtype())
        if self.shared_projections:
            return self.frame_proj(self.frame_norm(grid))
        return self.region_proj(self.region_norm(grid))

    def word_tokens(self, words: Tensor) -> Tensor:
        """g' (g itself with shared projections): [..., Dw] word tokens → [..., d] (not
        normalised)."""
        words = words.to(self._dtype())
        if self.shared_projections:
            return self.sentence_proj(self.word_norm(words))
        return self.word_proj(self.word_norm(words))

    # ----------------------------------------------------------------- selection

    @torch.no_grad()
    def select(
        self,
        global_feats: Tensor,
        frame_mask: Tensor,
        words: Tensor,
        word_mask: Tensor,
        sentence: Tensor,
        boundary: Tensor | None,
    ) -> FrameSelection:
        """Picks T of U candidate frames with the global projections (no gradient).

        Args:
            global_feats [B, U, Dv], frame_mask [B, U], words [B, K, Dw], word_mask [B, K],
            sentence [B, Dw], boundary [B, 2] (first/last frame of the ASR sentence).
        """
        cfg = self.config
        frames = self.frame_embeddings(global_feats).float()
        word_emb = self.word_selection_embeddings(words).float()
        sim = torch.einsum("bkd,bud->bku", word_emb, frames) / cfg.tau_select
        sentence_sim = None
        if cfg.select == "global":
            sentence_sim = (
                torch.einsum("bd,bud->bu", self.sentence_embeddings(sentence).float(), frames)
                / cfg.tau_select
            )
        return select_frames(
            sim,
            word_mask,
            frame_mask,
            cfg.frames_t,
            cfg.select,
            sentence_frame_sim=sentence_sim,
            boundary=boundary,
            eps=cfg.sinkhorn_eps,
            iters=cfg.sinkhorn_iters,
            tol=cfg.sinkhorn_tol,
        )

    # ----------------------------------------------------------------- local branch

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float, probs: bool
    ) -> tuple[Tensor, Tensor | None]:
        k, v = k.to(q.dtype), v.to(q.dtype)
        if uses_native_attention(self.ops, q.device.type, q.shape[1], k.shape[1]):
            return xattn(q, k, v, mask, scale=scale, return_probs=probs)
        return reference.xattn(q, k, v, mask, scale, probs)

    def _keys(self, tokens: Tensor) -> Tensor:
        """What a cross layer compares: the tokens themselves, or their directions for cosine
        logits."""
        return F.normalize(tokens, dim=-1) if self.cosine else tokens

    def _self_attend(
        self, layer: SelfAttention, x: Tensor, mask: Tensor, probs: bool
    ) -> tuple[Tensor, Tensor | None]:
        q, k, v = layer.query(x), layer.key(x), layer.value(x)
        out, attn = self._attend(q, k, v, mask, q.shape[-1] ** -0.5, probs)
        return x + layer.out(out), attn

    def local_stack(
        self,
        video: Tensor,
        words: Tensor,
        region_mask: Tensor,
        word_mask: Tensor,
        return_maps: bool = False,
        pairs: tuple[Tensor, Tensor] | None = None,
    ) -> LocalOutput:
        """Runs the attention stack on P (video, sentence) pairs.

        Args:
            video: [V, R, d] projected region tokens (f'). words: [S, K, d] projected words (g').
            region_mask: [V, R] bool. word_mask: [S, K] bool (padded tokens are never keys).
            return_maps: also return every layer's attention probabilities (heatmaps).
            pairs: (video index [P], sentence index [P]) int64, pair p being video
                ``pairs[0][p]`` with sentence ``pairs[1][p]``; None pairs video i with sentence i
                (V = S = P). Pairing here rather than before lets the first layer compare each
                video's and each sentence's tokens once, not once per pair.

        The first cross-attention has no residual (CA1 replaces each token by its context in
        the other modality); later cross-attentions and every self-attention are residual.
        Each cross layer normalises its inputs once for both directions. A fully padded side
        gives zero context, never NaN.
        """
        maps: list[dict] = []
        self_index = 0
        seen_cross = False
        paired = pairs is None
        if not paired:
            region_mask, word_mask = region_mask[pairs[0]], word_mask[pairs[1]]
        for kind in self.layers:
            if kind == "cross":
                video_keys, word_keys = self._keys(video), self._keys(words)
                if not paired:
                    video, video_keys = video[pairs[0]], video_keys[pairs[0]]
                    words, word_keys = words[pairs[1]], word_keys[pairs[1]]
                    paired = True
                new_video, r2w = self._attend(
                    video_keys, word_keys, words, word_mask, self.scale, return_maps
                )
                new_words, w2r = self._attend(
                    word_keys, video_keys, video, region_mask, self.scale, return_maps
                )
                if seen_cross:
                    new_video, new_words = video + new_video, words + new_words
                video, words = new_video, new_words
                seen_cross = True
                if return_maps:
                    maps.append({"kind": "cross", "r2w": r2w, "w2r": w2r})
            else:
                if not paired:
                    video, words, paired = video[pairs[0]], words[pairs[1]], True
                video, rr = self._self_attend(self.video_self[self_index], video, region_mask, return_maps)
                words, ww = self._self_attend(self.word_self[self_index], words, word_mask, return_maps)
                self_index += 1
                if return_maps:
                    maps.append({"kind": "self", "rr": rr, "ww": ww})
        return LocalOutput(video=video, words=words, maps=maps)

    @staticmethod
    def pool(tokens: Tensor, mask: Tensor) -> Tensor:
        """Masked mean over tokens: [P, L, d], [P, L] → [P, d] (zeros when all masked)."""
        weights = mask.to(tokens.dtype)
        return (tokens * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)

    def local_similarity(
        self, regions: Tensor, region_mask: Tensor, words: Tensor, word_mask: Tensor
    ) -> Tensor:
        """Every video of a chunk against every sentence of it.

        Args:
            regions: [c, R, d] projected region tokens; words: [c, K, d] projected words.

        Returns:
            [c, c] cosine of the pooled local embeddings, entry [k, l] = video k with sentence l.
        """
        count = regions.shape[0]
        if self.factored and self.factorable(words.shape[1]):
            video, sentence = self._factored_pools(regions, region_mask, words, word_mask)
        else:
            video_index = torch.arange(count, device=regions.device).repeat_interleave(count)
            sentence_index = torch.arange(count, device=regions.device).repeat(count)
            pairs = (video_index, sentence_index)
            out = self.local_stack(regions, words, region_mask, word_mask, pairs=pairs)
            video = self.pool(out.video, region_mask[video_index])
            sentence = self.pool(out.words, word_mask[sentence_index])
        video = F.normalize(video.reshape(count * count, -1).float(), dim=-1)
        sentence = F.normalize(sentence.reshape(count * count, -1).float(), dim=-1)
        return (video * sentence).sum(-1).view(count, count)

    def factorable(self, words: int) -> bool:
        """Whether :meth:`local_similarity` can run the stack in the span of ``words`` word
        tokens, and whether that span is narrower than d (else it would not pay).

        The first layer must be a cross-attention (it has no residual, so each region token
        leaves it as a convex combination of its sentence's words), and a later cross layer
        may only come last (its region outputs are only pooled). Each self layer doubles the
        span: K + 1 after the first layer, 2(K + 1) after cross → self.
        """
        layers = self.layers
        if layers[0] != "cross" or "cross" in layers[1:-1]:
            return False
        return (words + 1) * 2 ** layers.count("self") < self.config.dim

    def _factored_pools(
        self, regions: Tensor, region_mask: Tensor, words: Tensor, word_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The pooled local embeddings of every (video, sentence) pair of a chunk, with the
        region tokens kept as coefficients over a small basis of each sentence.

        After the first cross layer a pair's region tokens are X = C B: C [R, m] coefficients
        (the attention over the K words, and a constant column of ones), B [m, d] the
        sentence's words and a constant row. An affine map of X is C applied to the map of B's
        rows (the bias on the constant row); a self-attention's logits are (C Q_B K_Bᵀ) Cᵀ;
        its output is (A C) V_B and extends the basis; the norms of the region tokens are
        those of C under B's Gram matrix; and the last cross layer's region outputs are only
        pooled. So no [P, R, d] tensor is formed, and the R × R self-attention runs in width m
        instead of d. Exactly the arithmetic of :meth:`local_stack` + :meth:`pool`, reordered.

        Args:
            regions: [V, R, d] projected region tokens; region_mask: [V, R] bool.
            words: [S, K, d] projected word tokens; word_mask: [S, K] bool.

        Returns:
            (video [V, S, d], sentence [V, S, d]) pooled embeddings, not normalised.
        """
        videos, cells, dim = regions.shape
        sentences, num_words, _ = words.shape
        pairs = videos * sentences
        pair_region_mask = region_mask[:, None].expand(-1, sentences, -1)  # [V, S, R]
        pair_word_mask = word_mask[None].expand(videos, -1, -1)  # [V, S, K]
        flat_region_mask = pair_region_mask.reshape(pairs, cells)
        region_keys, word_keys = self._keys(regions), self._keys(words)
        # one product gives the first layer's logits of every pair: [V, R, S, K]
        logits = region_keys.reshape(videos * cells, dim) @ word_keys.reshape(sentences * num_words, dim).t()
        logits = logits.view(videos, cells, sentences, num_words) * self.scale
        to_words = reference.masked_softmax(logits, word_mask[None, None])
        to_regions = reference.masked_softmax(logits, region_mask[:, :, None, None], dim=1)
        pair_words = to_regions.reshape(videos, cells, sentences * num_words).transpose(1, 2) @ regions
        pair_words = pair_words.view(videos, sentences, num_words, dim)
        ones = to_words.new_ones(videos, sentences, cells, 1)
        coeffs = torch.cat([to_words.permute(0, 2, 1, 3), ones], -1)  # [V, S, R, m]
        basis = torch.cat([words, words.new_zeros(sentences, 1, dim)], 1)  # [S, m, d]
        # every layer between the first and a last cross layer is a self layer (factorable)
        for self_index in range(self.layers.count("self")):
            layer = self.video_self[self_index]
            width = basis.shape[1]
            query_rows = _affine_rows(basis, layer.query)
            key_rows = _affine_rows(basis, layer.key)
            value_rows = _affine_rows(basis, layer.value)
            flat = coeffs.reshape(pairs, cells, width)
            mixed, _ = self._attend(
                (coeffs @ (query_rows @ key_rows.transpose(1, 2))).reshape(pairs, cells, width),
                flat,
                flat,
                flat_region_mask,
                dim**-0.5,
                False,
            )
            coeffs = torch.cat([coeffs[..., :-1], mixed.view(videos, sentences, cells, width), ones], -1)
            basis = torch.cat(
                [basis[:, :-1], value_rows @ layer.out.weight.t(), basis[:, -1:] + layer.out.bias], 1
            )
            pair_words, _ = self._self_attend(
                self.word_self[self_index],
                pair_words.reshape(pairs, num_words, dim),
                pair_word_mask.reshape(pairs, num_words),
                False,
            )
            pair_words = pair_words.view(videos, sentences, num_words, dim)
        # pooling is linear: pool the coefficients (and the last layer's attention), not tokens
        pooled_coeffs = self.pool(coeffs.reshape(pairs, cells, -1), flat_region_mask)
        video = pooled_coeffs.view(videos, sentences, 1, -1) @ basis  # [V, S, 1, d]
        if self.layers[-1] == "cross":
            word_keys = self._keys(pair_words)
            logits = coeffs @ (word_keys @ basis.transpose(1, 2)).transpose(-1, -2)  # [V, S, R, K]
            if self.cosine:
                logits = logits / _coefficient_norms(coeffs, basis)[..., None]
            logits = logits * self.scale
            to_words = reference.masked_softmax(logits, pair_word_mask[:, :, None, :])
            to_regions = reference.masked_softmax(logits, pair_region_mask[..., None], dim=2)
            pooled_attention = self.pool(to_words.reshape(pairs, cells, num_words), flat_region_mask)
            video = video + pooled_attention.view(videos, sentences, 1, num_words) @ pair_words
            pair_words = pair_words + (to_regions.transpose(-1, -2) @ coeffs) @ basis
        sentence = self.pool(pair_words.reshape(pairs, num_words, dim), pair_word_mask.reshape(pairs, -1))
        return video.view(videos, sentences, dim), sentence.view(videos, sentences, dim)

    # ----------------------------------------------------------------- training forward

    def forward(
        self,
        global_feats: Tensor,
        grid_feats: Tensor,
        frame_mask: Tensor,
        sentence: Tensor,
        words: Tensor,
        word_mask: Tensor,
        boundary: Tensor | None = None,
        local_chunk: int = 16,
        compute_global: bool = True,
        compute_local: bool = True,
    ) -> ForwardOutput:
        """One training forward pass.

        Args:
            global_feats: [B, U, Dv] candidate frames' global tokens.
            grid_feats: [B, U, N, Dv] their grid tokens.
            frame_mask: [B, U] bool, False for padding. boundary: [B, 2] int64 (for ``none``).
            sentence: [B, Dw]; words: [B, K, Dw]; word_mask: [B, K] bool.
            local_chunk: c, clips per chunk of the local branch (c² pairs at a time).
        """
        selection = self.select(global_feats, frame_mask, words, word_mask, sentence, boundary)
        batch, chosen = selection.indices.shape
        gather = selection.indices
        sel_global = torch.gather(global_feats, 1, gather[:, :, None].expand(-1, -1, global_feats.shape[-1]))
        sel_mask = selection.mask
        video_global = sentence_global = None
        if compute_global:
            weights = sel_mask.to(sel_global.dtype)[..., None]
            pooled = (sel_global * weights).sum(1) / weights.sum(1).clamp(min=1)
            video_global = self.frame_embeddings(pooled)
            sentence_global = self.sentence_embeddings(sentence)
        local: list[Tensor] = []
        if compute_local:
            cells = grid_feats.shape[2]
            sel_grid = torch.gather(
                grid_feats, 1, gather[:, :, None, None].expand(-1, -1, cells, grid_feats.shape[-1])
            )
            regions = self.region_tokens(sel_grid).reshape(batch, chosen * cells, -1)
            region_mask = sel_mask[:, :, None].expand(-1, -1, cells).reshape(batch, chosen * cells)
            word_tokens = self.word_tokens(words)
            step = max(1, int(local_chunk))
            for start in range(0, batch, step):
                stop = min(batch, start + step)
                local.append(
                    self.local_similarity(
                        regions[start:stop],
                        region_mask[start:stop],
                        word_tokens[start:stop],
                        word_mask[start:stop],
                    )
                )
        return ForwardOutput(video_global, sentence_global, local, selection)

    # ----------------------------------------------------------------- inference heatmaps

    @torch.no_grad()
    def heatmaps(
        self,
        grid: Tensor,
        words: Tensor,
        word_mask: Tensor | None = None,
        mode: str = "paper",
        clip_frames: int | None = None,
        query: Tensor | None = None,
    ) -> Tensor:
        """Per-frame probability over the N grid cells for one query.

        Args:
            grid: [T, N, Dv] grid tokens of T frames (run in clips of ≤ ``clip_frames``,
                default ``frames_t``).
            words: [K, Dw] the query's word tokens; word_mask: [K] bool (None: all real).
            mode: ``paper`` — mean over regions of A_CA2[r→w]·A_SA[w→w]·A_CA1[w→r] (first and
                last cross layer, the word self-attention or identity when the stack has none);
                ``rollout`` — attention rollout over the joint region + word graph of all
                layers, read off the real words' rows, averaged; ``global`` — the global
                branch's activation map (:meth:`activation_maps`, needs ``query``).
            query: [d] the query's g(sentence) embedding, for ``global``.

        Returns:
            [T, N] float32, each row non-negative and summing to 1 (uniform where the chain
            gives no mass).
        """
        if mode not in HEATMAP_MODES:
            raise ValueError(f"mode must be one of {', '.join(HEATMAP_MODES)}, got {mode!r}")
        if grid.dim() != 3 or words.dim() != 2:
            raise ValueError(
                f"grid must be [T, N, Dv] and words [K, Dw], got {tuple(grid.shape)} and {tuple(words.shape)}"
            )
        if mode == "global":
            if query is None:
                raise ValueError("the global heatmap needs the query's sentence embedding")
            return self.activation_maps(grid, query)
        frames, cells, _ = grid.shape
        num_words = words.shape[0]
        device = next(self.parameters()).device
        if word_mask is None:
            word_mask = torch.ones(num_words, dtype=torch.bool)
        word_mask = word_mask.to(device=device, dtype=torch.bool)
        if frames == 0:
            return torch.zeros(0, cells)
        if num_words == 0 or not bool(word_mask.any()):
            return torch.full((frames, cells), 1.0 / cells)
        per_clip = int(clip_frames or self.config.frames_t)
        clips = -(-frames // per_clip)
        padded = torch.zeros(clips * per_clip, cells, grid.shape[-1], dtype=torch.float32)
        padded[:frames] = grid.float()
        frame_mask = torch.zeros(clips * per_clip, dtype=torch.bool)
        frame_mask[:frames] = True
        padded, frame_mask = padded.to(device), frame_mask.to(device)
        regions = self.region_tokens(padded).reshape(clips, per_clip * cells, -1)
        region_mask = frame_mask.view(clips, per_clip, 1).expand(-1, -1, cells).reshape(clips, -1)
        word_tokens = self.word_tokens(words.to(device))
        word_tokens = word_tokens[None].expand(clips, -1, -1).contiguous()
        masks = word_mask[None].expand(clips, -1).contiguous()
        out = self.local_stack(regions, word_tokens, region_mask, masks, return_maps=True)
        if mode == "paper":
            heat = self._paper_chain(out.maps, masks)
        else:
            heat = self._rollout_chain(out.maps, region_mask, masks)
        heat = heat.float().clamp(min=0).reshape(clips * per_clip, cells)[:frames]
        heat = heat * (heat.sum(1, keepdim=True) > 0)
        total = heat.sum(1, keepdim=True)
        uniform = torch.full_like(heat, 1.0 / cells)
        return torch.where(total > 0, heat / total.clamp(min=1e-30), uniform).cpu()

    @torch.no_grad()
    def activation_maps(self, grid: Tensor, query: Tensor) -> Tensor:
        """The global branch's class activation map: where in the frame the query's evidence is.

        f is applied to each grid cell as to a frame's global token, and a cell scores its share
        of the frame–query cosine: a_n = ⟨f(x_n), g(q)⟩ / ‖f(x̄)‖ with x̄ the mean cell. When the
        global token is the mean of the grid (``tiny``, ``s3d-milnce``) and f is affine (not
        ``gated``), the frame–query cosine is exactly the mean of the a_n; for other backbones
        (CLIP's class token) it is an approximation. Probabilities: softmax over the cells of
        a_n / :data:`ACTIVATION_TEMPERATURE`.

        Args:
            grid: [T, N, Dv] grid tokens (already centred when ``center_video``).
            query: [d] the query's L2-normalised g(sentence).

        Returns:
            [T, N] float32 probabilities (uniform for a zero query, as unknown words give).
        """
        device = self.frame_proj.linear.weight.device
        grid = grid.to(device=device, dtype=self._dtype())
        cells = self.frame_proj(self.frame_norm(grid)).float()
        frame = self.frame_proj(self.frame_norm(grid.mean(dim=1))).float()
        share = cells @ query.to(device=device, dtype=torch.float32)
        share = share / frame.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return torch.softmax(share / ACTIVATION_TEMPERATURE, dim=-1).cpu()

    @staticmethod
    def _paper_chain(maps: list[dict], word_mask: Tensor) -> Tensor:
        crosses = [m for m in maps if m["kind"] == "cross"]
        selfs = [m for m in maps if m["kind"] == "self"]
        first, last = crosses[0], crosses[-1]
        ca1, ca2 = first["w2r"].float(), last["r2w"].float()
        if selfs:
            sa = selfs[0]["ww"].float()
        else:
            eye = torch.eye(word_mask.shape[1], device=ca1.device)
            sa = eye[None].expand(word_mask.shape[0], -1, -1).contiguous()
        return rollout_paper(ca2.contiguous(), sa.contiguous(), ca1.contiguous(), word_mask)

    @staticmethod
    def _rollout_chain(maps: list[dict], region_mask: Tensor, word_mask: Tensor) -> Tensor:
        batch, regions = region_mask.shape
        num_words = word_mask.shape[1]
        size = regions + num_words
        valid = torch.cat([region_mask, word_mask], 1).float()
        layers = []
        for layer in maps:
            joint = torch.zeros(batch, size, size, device=region_mask.device)
            if layer["kind"] == "cross":
                joint[:, :regions, regions:] = layer["r2w"].float()
                joint[:, regions:, :regions] = layer["w2r"].float()
            else:
                joint[:, :regions, :regions] = layer["rr"].float()
                joint[:, regions:, regions:] = layer["ww"].float()
            # Padded tokens neither attend nor are attended: rollout's identity keeps them apart.
            layers.append(joint * valid[:, :, None] * valid[:, None, :])
        stacked = torch.stack(layers, 1)
        rows = torch.arange(regions, size, device=region_mask.device)
        read = rollout(stacked, rows)[:, :, :regions]
        weights = word_mask.float()
        return (read * weights[:, :, None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)

    def load_weights(self, state: dict[str, Tensor]) -> None:
        """``load_state_dict`` that also takes weights saved before ``detection_threshold``
        existed (they load uncalibrated)."""
        state = dict(state)
        state.setdefault("detection_threshold", torch.tensor(float("nan")))
        self.load_state_dict(state)

    @property
    def calibrated_threshold(self) -> float | None:
        """The calibrated detection threshold τ, or None when the model has none."""
        value = float(self.detection_threshold)
        return value if np.isfinite(value) else None

    @torch.no_grad()
    def set_feature_stats(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Sets the input standardisation: ``{"global"|"grid"|"sentence"|"words": (mean, std)}``."""
        norms = {
            "global": self.frame_norm,
            "grid": self.region_norm,
            "sentence": self.sentence_norm,
            "words": self.word_norm,
        }
        for key, (mean, std) in stats.items():
            norms[key].set(mean, std)

    def _dtype(self) -> torch.dtype:
        return self.frame_proj.linear.weight.dtype
