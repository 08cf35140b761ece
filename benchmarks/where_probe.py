"""What the demo benchmark's features and narration allow for *where*: a ceiling and a floor.

Two query-conditioned cell scorers of the simplest kind that can localise — a cell's score for
a query is the mean over the query's words of cos(A x, B w), x the cell's centred visual
feature, w a word vector, A and B linear maps to d dimensions — trained two ways on the
features of ``stg demo`` (its quick benchmark, backbone and text encoder):

- **box-supervised**: trained on the boxes of half the test videos (every labelled action of an
  annotated second, the step and the concurrent distractors, as a softmax over the frame's
  cells whose target is the cells inside the action's box), scored on the other half, both ways
  round. How far the frozen features and word vectors tell the queried action from the others
  once the answer is shown: a ceiling for any read-out of these features.
- **narration MIL**: trained from the training captions alone, like the model (symmetric NCE
  over the batch of clip × caption scores, a clip's score for a caption being the mean over its
  words of a soft maximum over the clip's cells). What the narration teaches at this scale.

Both are scored like the demo's *given true timing* rows: at every annotated second of the test
split, the point is the centre of the cell that scores highest for the true step
(:func:`stg_cli.metrics.heatmaps.argmax_cell_centres`) and a hit when it lies in the step's box;
the wrong-query control asks, at the same seconds, for the next step of the same video and is
scored against the true box. The model-free priors of the same split are printed beside them.

Usage: python benchmarks/where_probe.py [--out DIR] [--seeds N] [--steps N] [--json FILE]
    [--backbone NAME] [--no-centring]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stg_cli.backbones import load_text_from
from stg_cli.demo import preset, run_demo
from stg_cli.features.store import FeatureStore
from stg_cli.metrics.baselines import PRIORS
from stg_cli.metrics.geometry import point_in_box
from stg_cli.metrics.heatmaps import argmax_cell_centres
from stg_cli.models.grounding import video_means
from stg_cli.runs.evaluation import LabelledSplit, split_priors, wrong_query_truth
from stg_cli.runs.grounding import load_truth_segments
from stg_cli.train.data import BatchOrder, ClipDataset
from stg_cli.train.losses import symmetric_nce

DIM = 128
SOFTMAX_TEMPERATURE = 0.1
BATCH = 32
LEARNING_RATE = 3e-3


class CellScorer(nn.Module):
    """Scores grid cells for a query: mean over its words of cos(A x, B w).

    The inputs are standardised with the training statistics given at construction.
    """

    def __init__(self, cells: Tensor, words: Tensor) -> None:
        super().__init__()
        self.register_buffer("cell_mean", cells.mean(0))
        self.register_buffer("cell_std", cells.std(0) + 1e-6)
        self.register_buffer("word_mean", words.mean(0))
        self.register_buffer("word_std", words.std(0) + 1e-6)
        self.visual = nn.Linear(cells.shape[-1], DIM)
        self.text = nn.Linear(words.shape[-1], DIM)

    def embed_cells(self, cells: Tensor) -> Tensor:
        """[..., Dv] → [..., d], L2-normalised."""
        return F.normalize(self.visual((cells - self.cell_mean) / self.cell_std), dim=-1)

    def embed_words(self, words: Tensor) -> Tensor:
        """[..., Dw] → [..., d], L2-normalised."""
        return F.normalize(self.text((words - self.word_mean) / self.word_std), dim=-1)

    def word_cosines(self, cells: Tensor, words: Tensor) -> Tensor:
        """cells [..., M, Dv], words [L, K, Dw] → [..., L, K, M] cosines."""
        return torch.einsum("...md,lkd->...lkm", self.embed_cells(cells), self.embed_words(words))

    def forward(self, cells: Tensor, words: Tensor, word_mask: Tensor) -> Tensor:
        """cells [..., M, Dv], words [L, K, Dw], word_mask [L, K] → [..., L, M] cell scores."""
        weights = word_mask.to(cells.dtype)
        cosines = self.word_cosines(cells, words)
        return (cosines * weights[..., None]).sum(-2) / weights.sum(-1, keepdim=True).clamp(min=1)


def prepare(out: Path, backbone: str) -> tuple[Path, Path, LabelledSplit]:
    """The demo's benchmark, training features and test videos' features (with the training
    store's text encoder) with ``backbone``, from a one-step demo. Returns (train store, test
    store, split)."""
    settings = preset("quick", backbone=backbone)
    data = out / "data"
    run_demo(data, replace(settings, name="where-probe-data", steps=1))
    return data / "features", data / "test-features", LabelledSplit.find(data / "synth" / "test")


def labelled_seconds(split: LabelledSplit, store: FeatureStore, encoder, centre: bool) -> list[dict]:
    """Every annotated second of the test split: its video, the grid features of its frame
    [N, Dv] (less the video's mean frame when ``centre``), the step's and each distractor's
    (word vectors, word mask, box), and the wrong query of the demo's control
    (:func:`stg_cli.runs.evaluation.wrong_query_truth`: the next step of the same video; None for
    a video with a single step)."""
    boxes = json.loads((split.annotations / "GoundingYouTubeBox.json").read_text())
    distractors = json.loads((split.annotations / "distractors.json").read_text())
    wrong = wrong_query_truth(load_truth_segments(split.annotations / "ground_seg.json"))
    cache: dict[str, tuple] = {}

    def words_of(text: str) -> tuple[Tensor, Tensor]:
        if text not in cache:
            encoded = encoder.encode([text])
            cache[text] = (
                torch.from_numpy(np.asarray(encoded.words[0], np.float32)),
                torch.from_numpy(np.asarray(encoded.mask[0], bool)),
            )
        return cache[text]

    seconds = []
    for video_id in sorted(boxes):
        video = store.load(video_id)
        grid = np.asarray(video.grid_feats, np.float32)
        if centre:
            grid = grid - video_means(video.global_feats, grid)[1]
        times = np.asarray(video.frame_times, np.float64)
        for second, item in sorted(boxes[video_id].items(), key=lambda item: int(item[0])):
            frame = int(np.argmin(np.abs(times - int(second))))
            actions = [(item["step"], item["box"])] + [
                (other["step"], other["box"])
                for other in distractors[video_id].get(second, [])
                if other["box"]
            ]
            asked = [
                segment.label
                for segment in wrong.get(video_id, [])
                if segment.start <= int(second) <= segment.end
            ]
            seconds.append(
                {
                    "video": video_id,
                    "cells": torch.from_numpy(grid[frame]),
                    "actions": [(*words_of(label), box) for label, box in actions],
                    "wrong": words_of(asked[0]) if asked else None,
                }
            )
    return seconds


def cells_in_box(box, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """[N] bool: the cells whose centre lies in ``box`` (in a ``size`` frame)."""
    centres = argmax_cell_centres(np.eye(grid[0] * grid[1]).reshape(-1, *grid), *size)
    return torch.tensor([point_in_box(centre, box) for centre in centres])


def pointing(scorer: CellScorer, seconds: list[dict], grid, size) -> tuple[float, float]:
    """(pointing game, wrong-query control) in percent over ``seconds``."""
    right, wrong, asked = 0, 0, 0
    with torch.no_grad():
        for item in seconds:
            words, mask, box = item["actions"][0]
            for query, tally in (((words, mask), "right"), (item["wrong"], "wrong")):
                if query is None:
                    continue
                scores = scorer(item["cells"], query[0][None], query[1][None])[0]
                point = argmax_cell_centres(scores.reshape(1, *grid).numpy(), *size)[0]
                hit = point_in_box(point, box)
                if tally == "right":
                    right += hit
                else:
                    wrong, asked = wrong + hit, asked + 1
    return 100 * right / len(seconds), 100 * wrong / max(asked, 1)


def train_supervised(seconds: list[dict], seed: int, steps: int, grid, size) -> CellScorer:
    """The box-supervised scorer on ``seconds`` (softmax over cells, target: the box's cells)."""
    torch.manual_seed(seed)
    rows = [
        (item["cells"], words, mask, cells_in_box(box, grid, size))
        for item in seconds
        for words, mask, box in item["actions"]
    ]
    rows = [row for row in rows if row[3].any()]
    cells = torch.stack([row[0] for row in rows])
    words = torch.nn.utils.rnn.pad_sequence([row[1] for row in rows], batch_first=True)
    masks = torch.nn.utils.rnn.pad_sequence([row[2] for row in rows], batch_first=True)
    targets = torch.stack([row[3] for row in rows]).float()
    scorer = CellScorer(cells.reshape(-1, cells.shape[-1]), words[masks])
    optimizer = torch.optim.AdamW(scorer.parameters(), lr=LEARNING_RATE)
    for _ in range(steps):
        cosines = torch.einsum("rnd,rkd->rkn", scorer.embed_cells(cells), scorer.embed_words(words))
        weights = masks.float()
        scores = (cosines * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
        log_probs = torch.log_softmax(scores / SOFTMAX_TEMPERATURE, dim=-1)
        loss = -((log_probs * targets).sum(1) / targets.sum(1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return scorer


def train_mil(
    train_store: Path, seed: int, steps: int, frames_u: int, centre: bool
) -> tuple[CellScorer, float, float]:
    """The narration-supervised scorer (see the module docstring); also its first and last loss."""
    torch.manual_seed(seed)
    dataset = ClipDataset(FeatureStore.open(train_store), frames_u=frames_u, center_video=centre)
    everything = dataset.batch(np.arange(len(dataset)))
    scorer = CellScorer(
        everything.grid_feats[everything.frame_mask].reshape(-1, dataset.visual_dim),
        everything.words[everything.word_mask],
    )
    optimizer = torch.optim.AdamW(scorer.parameters(), lr=LEARNING_RATE)
    order = BatchOrder(len(dataset), BATCH, seed)
    losses = []
    for step in range(steps):
        batch = dataset.batch(order.ids(step))
        clips = batch.grid_feats.flatten(1, 2)  # [B, U·N, Dv]
        cell_mask = batch.frame_mask[:, :, None].expand(-1, -1, dataset.cells).flatten(1)
        cosines = scorer.word_cosines(clips, batch.words)  # [B, L, K, U·N]
        cosines = cosines.masked_fill(~cell_mask[:, None, None, :], -1e4)
        soft_max = torch.logsumexp(cosines / SOFTMAX_TEMPERATURE, -1) * SOFTMAX_TEMPERATURE
        weights = batch.word_mask.float()[None]
        similarity = (soft_max * weights).sum(-1) / weights.sum(-1).clamp(min=1)  # [B clips, L captions]
        loss = symmetric_nce(similarity)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return scorer, losses[0], float(np.mean(losses[-10:]))


def summary(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.1f}{spread}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results/where-probe"),
        help="data folder (default: %(default)s)",
    )
    parser.add_argument("--seeds", type=int, default=4, help="training seeds 0..N-1 (default: %(default)s)")
    parser.add_argument(
        "--steps", type=int, default=300, help="optimizer steps of each scorer (default: %(default)s)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the runs and priors to this file")
    parser.add_argument(
        "--backbone", default="tiny", help="visual backbone of stg extract (default: %(default)s)"
    )
    parser.add_argument(
        "--no-centring",
        dest="centre",
        action="store_false",
        help="score the raw grid features instead of subtracting each video's mean frame",
    )
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    train_store, test_store, split = prepare(args.out, args.backbone)
    settings = preset("quick")
    size = settings.synth.annotation_size
    encoder = load_text_from(train_store / "text_encoder")
    test_features = FeatureStore.open(test_store)
    grid = test_features.config.grid
    seconds = labelled_seconds(split, test_features, encoder, args.centre)
    videos = sorted({item["video"] for item in seconds})
    halves = (set(videos[: len(videos) // 2]), set(videos[len(videos) // 2 :]))
    runs: dict[str, list[dict]] = {"box-supervised (other half of the test videos)": [], "narration MIL": []}
    for seed in range(args.seeds):
        hits = {"right": 0.0, "wrong": 0.0}
        for train_half, test_half in (halves, halves[::-1]):
            scorer = train_supervised(
                [s for s in seconds if s["video"] in train_half], seed, args.steps, grid, size
            )
            scored = [s for s in seconds if s["video"] in test_half]
            right, wrong = pointing(scorer, scored, grid, size)
            hits["right"] += right * len(scored) / len(seconds)
            hits["wrong"] += wrong * len(scored) / len(seconds)
        runs["box-supervised (other half of the test videos)"].append({"seed": seed, **hits})
        scorer, first, last = train_mil(
            train_store, seed, args.steps, settings.model_options["frames_u"], args.centre
        )
        right, wrong = pointing(scorer, seconds, grid, size)
        runs["narration MIL"].append(
            {"seed": seed, "right": right, "wrong": wrong, "first_loss": first, "last_loss": last}
        )
        print(f"seed {seed}: done", file=sys.stderr)
    priors = split_priors(split, grid=grid)
    lines = [
        "| scorer | seeds | pointing, true timing | wrong query | right − wrong |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, results in runs.items():
        right = [r["right"] for r in results]
        wrong = [r["wrong"] for r in results]
        lines.append(
            f"| {name} | {len(results)} | {summary(right)} | {summary(wrong)} | "
            f"{summary([a - b for a, b in zip(right, wrong)])} |"
        )
    for kind in PRIORS:
        lines.append(
            f"| prior: {kind.replace('_', ' ')} | – | {priors.scores[kind]['pointing_game']:.1f} | – | – |"
        )
    print("\n".join(lines))
    wall = (time.perf_counter() - begin) / 60
    print(f"\n{len(seconds)} annotated seconds; {args.steps} steps; wall {wall:.1f} min")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "runs": runs,
                    "priors": priors.scores,
                    "seconds": len(seconds),
                    "steps": args.steps,
                    "backbone": args.backbone,
                    "centre": args.centre,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
