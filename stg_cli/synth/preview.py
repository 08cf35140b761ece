"""A contact sheet of the test split: decoded frames with the step's ground-truth box (yellow)
and the boxes of the unnarrated distractor actions (cyan), each with its label."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stg_cli import files

FRAMES_PER_ROW = 4
MAX_ROWS = 6
STEP_COLOUR = (255, 255, 0)
DISTRACTOR_COLOUR = (0, 255, 255)


def decode_seconds(path: Path, seconds: list[int]) -> dict[int, np.ndarray]:
    """The first decoded frame at or after each whole second: ``{second: [H, W, 3] uint8}``."""
    wanted = sorted(set(seconds))
    frames: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            while wanted and frame.time is not None and frame.time >= wanted[0] - 1e-6:
                frames[wanted.pop(0)] = frame.to_ndarray(format="rgb24")
            if not wanted:
                break
    return frames


def contact_sheet(out: Path, path: Path) -> Path:
    """Writes ``path`` (PNG): for up to ``MAX_ROWS`` test videos of the benchmark in ``out``, the
    middle second of up to three actions with their box and step, and one background second."""
    annotations = out / "test" / "annotations"
    boxes = json.loads((annotations / "GoundingYouTubeBox.json").read_text())
    segments = json.loads((annotations / "ground_seg.json").read_text())
    sizes = json.loads((annotations / "id2wh_new.json").read_text())
    distractor_file = annotations / "distractors.json"
    distractors = json.loads(distractor_file.read_text()) if distractor_file.is_file() else {}
    font = ImageFont.load_default()
    rows = []
    for video in list(segments)[:MAX_ROWS]:
        picks = [(s["segment"][0] + s["segment"][1]) // 2 for s in segments[video][:3]]
        covered = {t for s in segments[video] for t in range(s["segment"][0], s["segment"][1] + 1)}
        background = next((t for t in range(1000) if t not in covered), None)
        seconds = picks + ([background] if background is not None else [])
        frames = decode_seconds(out / "test" / "videos" / f"{video}.mp4", seconds)
        tiles = []
        for second in seconds:
            if second not in frames:
                continue
            image = Image.fromarray(frames[second])
            draw = ImageDraw.Draw(image)
            sx = image.width / sizes[video][0]
            sy = image.height / sizes[video][1]
            for other in distractors.get(video, {}).get(str(second), []):
                if other["box"] is not None:
                    x1, y1, x2, y2 = other["box"]
                    draw.rectangle([x1 * sx, y1 * sy, x2 * sx, y2 * sy], outline=DISTRACTOR_COLOUR, width=1)
                    draw.text((x1 * sx + 2, y2 * sy - 11), other["step"], fill=DISTRACTOR_COLOUR, font=font)
            entry = boxes[video].get(str(second))
            caption = f"{video} t={second}s background"
            if entry is not None:
                x1, y1, x2, y2 = entry["box"]
                draw.rectangle([x1 * sx, y1 * sy, x2 * sx, y2 * sy], outline=STEP_COLOUR, width=2)
                caption = f"{video} t={second}s {entry['step']}"
            draw.rectangle([0, 0, image.width, 14], fill=(0, 0, 0))
            draw.text((3, 2), caption, fill=(255, 255, 255), font=font)
            tiles.append(image)
        if tiles:
            rows.append(tiles)
    if not rows:
        raise ValueError("no test video to preview")
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (FRAMES_PER_ROW * width, len(rows) * height), (0, 0, 0))
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles[:FRAMES_PER_ROW]):
            sheet.paste(tile.resize((width, height)), (c * width, r * height))
    with files.atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
