"""Ground truth and captions of the synthetic benchmark in the real files' formats.

Test annotations match the released GroundingYouTube / MiningYouTube files byte for byte in
layout: ``GoundingYouTubeBox.json`` ``{vid: {"<second>": {"box", "step"}}}``, ``box_anno.json``
``{vid: [{"second", "box", "step_name"}]}``, ``ground_seg.json`` (inclusive seconds, query
labels, ids of ``seg.json`` so they skip where a step is only mentioned), ``seg.json``
(``[start, end + 1]`` in seconds, ``verb_noun`` labels, ids = list positions, zero-length
segments for mentioned-only steps), ``vid2step.json`` (pool + ``"background"``), ``id2wh.json``
(rendered size) and ``id2wh_new.json`` (annotation frame, 640 x 480), the last two indented by
4 spaces like the originals. Boxes are pixel-inclusive integers in the annotation frame; a
second whose step the camera does not see has no box (as in the released data).

``distractors.json`` is stg's own: ``{vid: {"<second>": [{"step", "box"}, ...]}}``, for every
second of the video the unnarrated distractor actions under way (by track), each with its query
text and box (``null`` when out of view), so that a control can ask for a distractor and be
scored against its box.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from stg_cli.synth.script import VideoPlan

BACKGROUND = "background"


def scale_box(
    box: tuple[int, int, int, int], size: tuple[int, int], annotation_size: tuple[int, int]
) -> list[int]:
    """A pixel-inclusive box of a ``size`` frame (width, height) mapped to the pixel-inclusive
    box covering the same area in an ``annotation_size`` frame."""
    sx = annotation_size[0] / size[0]
    sy = annotation_size[1] / size[1]
    x1, y1, x2, y2 = box
    return [
        max(0, math.floor(x1 * sx)),
        max(0, math.floor(y1 * sy)),
        min(annotation_size[0] - 1, math.ceil((x2 + 1) * sx) - 1),
        min(annotation_size[1] - 1, math.ceil((y2 + 1) * sy) - 1),
    ]


def query_pools(plans: list[VideoPlan], extra: int, seed: int) -> dict[str, list[str]]:
    """Each test video's queries in order of first appearance, then ``extra`` queries of other
    test videos (drawn with ``seed``), then ``"background"``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 5]))
    own = {}
    for plan in plans:
        queries: list[str] = []
        for action in plan.actions:
            if action.query not in queries:
                queries.append(action.query)
        own[plan.video_id] = queries
    everything = sorted({q for queries in own.values() for q in queries})
    pools = {}
    for plan in plans:
        others = [q for q in everything if q not in own[plan.video_id]]
        picked = []
        if others and extra:
            chosen = rng.choice(len(others), size=min(extra, len(others)), replace=False)
            picked = [others[int(i)] for i in sorted(chosen)]
        pools[plan.video_id] = own[plan.video_id] + picked + [BACKGROUND]
    return pools


def ground_truth_files(
    plans: list[VideoPlan],
    boxes: dict[str, dict[int, tuple[int, int, int, int] | None]],
    annotation_size: tuple[int, int],
    extra_queries: int,
    seed: int,
    distractor_boxes: dict[str, dict[int, list]] | None = None,
) -> dict[str, str]:
    """File name → text of every annotation file of the test split.

    ``boxes[video][second]`` is the rendered, pixel-inclusive box of the action at ``second``
    (None when out of view); ``distractor_boxes[video][second]`` the ``(Distractor, box)``
    pairs of the renderer at that second (``distractors.json``, left out when None).
    """
    box_json, box_list, ground_seg, seg = {}, {}, {}, {}
    id2wh, id2wh_new = {}, {}
    for plan in plans:
        vid = plan.video_id
        per_second, listed = {}, []
        for action in plan.actions:
            for second in range(action.start, action.end + 1):
                if boxes[vid][second] is None:
                    continue
                box = scale_box(boxes[vid][second], (plan.width, plan.height), annotation_size)
                per_second[str(second)] = {"box": box, "step": action.query}
                listed.append({"second": second, "box": box, "step_name": action.query})
        box_json[vid] = per_second
        box_list[vid] = listed
        ground_seg[vid] = [
            {"segment": [a.start, a.end], "id": a.id, "sentence": a.query} for a in plan.actions
        ]
        steps = [
            ({"segment": [a.start, a.end + 1], "id": a.id, "sentence": a.label}, a.id) for a in plan.actions
        ]
        steps += [
            ({"segment": [m.second, m.second], "id": m.id, "sentence": f"{m.verb}_{m.noun}"}, m.id)
            for m in plan.mentions
        ]
        seg[vid] = [entry for entry, _ in sorted(steps, key=lambda item: item[1])]
        id2wh[vid] = [plan.width, plan.height]
        id2wh_new[vid] = list(annotation_size)
    written = {
        "GoundingYouTubeBox.json": json.dumps(box_json),
        "box_anno.json": json.dumps(box_list) + "\n",
        "ground_seg.json": json.dumps(ground_seg),
        "seg.json": json.dumps(seg),
        "vid2step.json": json.dumps(query_pools(plans, extra_queries, seed)),
        "id2wh.json": json.dumps(id2wh, indent=4),
        "id2wh_new.json": json.dumps(id2wh_new, indent=4),
    }
    if distractor_boxes is not None:
        written["distractors.json"] = json.dumps(
            {
                plan.video_id: {
                    str(second): [
                        {
                            "step": distractor.query,
                            "box": None
                            if box is None
                            else scale_box(box, (plan.width, plan.height), annotation_size),
                        }
                        for distractor, box in pairs
                    ]
                    for second, pairs in sorted(distractor_boxes[plan.video_id].items())
                    if pairs
                }
                for plan in plans
            }
        )
    return written


def captions_json(plans: list[VideoPlan]) -> str:
    """HowTo100M-style ``{vid: {"start": [...], "end": [...], "text": [...]}}``."""
    data = {
        plan.video_id: {
            "start": [c.start for c in plan.captions],
            "end": [c.end for c in plan.captions],
            "text": [c.text for c in plan.captions],
        }
        for plan in plans
    }
    return json.dumps(data)


def captions_csv(plan: VideoPlan) -> str:
    """The per-video caption CSV of HowTo100M's loader: header ``start,end,text``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["start", "end", "text"])
    for caption in plan.captions:
        writer.writerow([f"{caption.start:.2f}", f"{caption.end:.2f}", caption.text])
    return buffer.getvalue()
