"""The feature store written by ``stg extract`` and read by training and grounding."""

from stg_cli.features.encode import VideoEncoding, encode_frames, encode_video
from stg_cli.features.samples import candidate_window
from stg_cli.features.store import FeatureStore, StoreConfig, StoreWriter, VideoFeatures, safe_name

__all__ = [
    "FeatureStore",
    "StoreConfig",
    "StoreWriter",
    "VideoEncoding",
    "VideoFeatures",
    "candidate_window",
    "encode_frames",
    "encode_video",
    "safe_name",
]
