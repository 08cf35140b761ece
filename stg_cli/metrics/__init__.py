"""Scoring: overlap measures, average precision and video mAP.

Conventions and their defaults:

- boxes ``[x1, y1, x2, y2]`` in pixels of the annotation frame; ``convention="pixel"`` (default,
  inclusive corners, width x2 - x1 + 1) or ``"continuous"`` (width x2 - x1);
- points are inside a box when x1 <= x <= x2 and y1 <= y <= y2 (inclusive), optionally widened
  by a pixel ``tolerance`` (default 0);
- segments ``[start, end]``: ``convention="continuous"`` (default, seconds, length end - start)
  or ``"frames"`` (inclusive integer frames, length end - start + 1);
- tubes map integer seconds to boxes; ``tube_iou`` uses ``method="volume"`` (default) or
  ``"temporal_x_spatial"``;
- AP ranks by descending score (ties in input order) with ``interpolation="all_point"``
  (default, VOC 2010+) or ``"trapezoid"``; greedy matching takes, for each detection, the best
  still-unmatched ground truth above the threshold;
- video mAP thresholds default to 0.1, 0.2, 0.3, 0.4, 0.5;
- predictions (``predictions``), frame-level metrics (``grounding``), the MiningYouTube
  alignment (``alignment``) and whole-dataset scoring (``score``) document their own defaults.

Bad arguments raise ValueError naming the argument.
"""

from stg_cli.metrics.alignment import align_transcript, temporal_counts
from stg_cli.metrics.annotations import (
    DataDefects,
    FrameBox,
    GroundTruth,
    Segment,
    find_defects,
    load_frame_sizes,
    load_ground_seg,
    load_grounding_youtube,
    load_grounding_youtube_boxes,
    load_mining_youtube_segments,
    load_pickle,
    load_vid2step,
    load_youcook_interactions,
)
from stg_cli.metrics.ap import (
    ScoredSegment,
    ap_from_precision_recall,
    average_precision,
    temporal_detection_ap,
)
from stg_cli.metrics.geometry import (
    box_area,
    box_intersection,
    box_iou,
    is_degenerate,
    point_in_box,
    rescale_box,
    segment_iou,
    segment_length,
)
from stg_cli.metrics.predictions import PredictedSegment, VideoPrediction, load_predictions
from stg_cli.metrics.score import DATASETS, ScoreOptions, ScoreReport, load_ground_truth, score
from stg_cli.metrics.tubes import (
    LabeledTube,
    TubeDetection,
    VideoMap,
    ground_truth_tubes,
    tube_iou,
    video_ap,
    video_map,
)

__all__ = [
    "DATASETS",
    "DataDefects",
    "FrameBox",
    "GroundTruth",
    "LabeledTube",
    "PredictedSegment",
    "ScoreOptions",
    "ScoreReport",
    "Segment",
    "ScoredSegment",
    "TubeDetection",
    "VideoMap",
    "VideoPrediction",
    "align_transcript",
    "ap_from_precision_recall",
    "average_precision",
    "box_area",
    "box_intersection",
    "box_iou",
    "find_defects",
    "ground_truth_tubes",
    "is_degenerate",
    "load_frame_sizes",
    "load_ground_seg",
    "load_ground_truth",
    "load_grounding_youtube",
    "load_grounding_youtube_boxes",
    "load_mining_youtube_segments",
    "load_pickle",
    "load_predictions",
    "load_vid2step",
    "load_youcook_interactions",
    "point_in_box",
    "rescale_box",
    "score",
    "segment_iou",
    "segment_length",
    "temporal_counts",
    "temporal_detection_ap",
    "tube_iou",
    "video_ap",
    "video_map",
]
