"""Video decoding (frames sampled by timestamp, squash-resized) and writing, with PyAV."""

from stg_cli.video.decode import DecodedFrames, VideoError, VideoInfo, decode_frames, iter_clips, probe
from stg_cli.video.write import write_video

__all__ = ["DecodedFrames", "VideoError", "VideoInfo", "decode_frames", "iter_clips", "probe", "write_video"]
