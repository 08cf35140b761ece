"""The detection threshold a model is shipped with: τ calibrated on its training clips.

Contrastive training only asks a caption's frames to beat other captions' frames, not to reach
any fixed cosine, so the paper's τ = 0.5 fits some models and detects nothing with others. A
run therefore measures where its own cosines lie and stores the threshold in the model
(``GroundingModel.detection_threshold``); ``stg ground`` uses it unless ``--tau`` is given.

Definition: over up to ``max_clips`` training clips (evenly spaced over the dataset), a
*positive* is the cosine cos(f(frame), g(caption)) of a frame inside its caption's widened span
(the clip's ``boundary``) with that caption, a *negative* the cosine of the same frame with the
caption of another clip of the same chunk of ``chunk`` clips from another video.
τ = (mean positive + mean negative) / 2. Without any negative (a one-video dataset) the mean
negative counts as 0, the cosine of unrelated embeddings.
"""

from __future__ import annotations

import numpy as np
import torch

from stg_cli.models.grounding import GroundingModel
from stg_cli.train.data import ClipDataset


@torch.no_grad()
def calibrate_threshold(
    model: GroundingModel, dataset: ClipDataset, max_clips: int = 1024, chunk: int = 256
) -> float:
    """τ of ``model`` on ``dataset`` (see the module docstring)."""
    device = next(model.parameters()).device
    count = min(len(dataset), max_clips)
    ids = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(np.int64))
    positive_sum = negative_sum = 0.0
    positives = negatives = 0
    for begin in range(0, len(ids), chunk):
        part = ids[begin : begin + chunk]
        batch = dataset.batch(part).to(device)
        frames = model.frame_embeddings(batch.global_feats).float()  # [B, U, d]
        captions = model.sentence_embeddings(batch.sentence).float()  # [B, d]
        cosines = torch.einsum("bud,cd->buc", frames, captions)  # frame u of clip b, caption c
        positions = torch.arange(frames.shape[1], device=device)
        inside = (
            batch.frame_mask
            & (positions[None] >= batch.boundary[:, :1])
            & (positions[None] <= batch.boundary[:, 1:])
        )
        own = torch.arange(len(part), device=device)
        positive = cosines[own, :, own][inside]
        owners = torch.as_tensor([dataset.owners[int(i)][0] for i in part], device=device)
        other_video = owners[:, None] != owners[None, :]  # [B, C]
        negative = cosines[inside[:, :, None] & other_video[:, None, :]]
        positive_sum += float(positive.double().sum())
        negative_sum += float(negative.double().sum())
        positives += positive.numel()
        negatives += negative.numel()
    mean_positive = positive_sum / max(positives, 1)
    mean_negative = negative_sum / negatives if negatives else 0.0
    return (mean_positive + mean_negative) / 2.0
