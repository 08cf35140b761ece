from __future__ import annotations

import numpy as np
import pytest

from stg_cli.features.samples import candidate_window, widen

TIMES = np.arange(60, dtype=np.float32)  # 1 fps, 60 s


def test_short_caption_is_widened_and_centred() -> None:
    assert widen(10.0, 11.0, 5.0) == (8.0, 13.0)
    assert widen(10.0, 20.0, 5.0) == (10.0, 20.0)
    indices, boundary = candidate_window(TIMES, 10.0, 11.0, 8, min_time=5.0)
    # centre 10.5: nearest frame 10 (ties go to the first), window of 8 → frames 7..14
    assert indices.tolist() == list(range(7, 15))
    # widened caption [8, 13] → frames 8..13 → positions 1..6
    assert boundary.tolist() == [1, 6]
    assert indices.dtype == np.int64 and boundary.dtype == np.int64


def test_long_caption_keeps_its_central_frames() -> None:
    indices, boundary = candidate_window(TIMES, 20.0, 40.0, 8)
    assert indices.tolist() == list(range(27, 35))
    assert boundary.tolist() == [0, 7]


def test_window_is_shifted_inside_the_video() -> None:
    indices, boundary = candidate_window(TIMES, 0.0, 1.0, 8)
    assert indices.tolist() == list(range(0, 8))
    assert boundary.tolist() == [0, 3]  # widened [-2, 3] → frames 0..3
    indices, boundary = candidate_window(TIMES, 58.0, 59.5, 8)
    assert indices.tolist() == list(range(52, 60))
    assert boundary.tolist() == [5, 7]  # widened [56.25, 61.25] → frames 57..59


def test_short_video_is_padded_at_the_end() -> None:
    indices, boundary = candidate_window(np.arange(5, dtype=np.float32), 1.0, 2.0, 8)
    assert indices.tolist() == [0, 1, 2, 3, 4, -1, -1, -1]
    assert boundary.tolist() == [0, 4]
    indices, boundary = candidate_window(np.zeros(0), 1.0, 2.0, 4)
    assert indices.tolist() == [-1] * 4 and boundary.tolist() == [0, 0]


def test_caption_between_frames_gets_the_nearest_position() -> None:
    sparse = np.arange(0, 60, 10, dtype=np.float32)  # 0.1 fps
    indices, boundary = candidate_window(sparse, 33.0, 34.0, 3, min_time=2.0)
    assert indices.tolist() == [2, 3, 4]
    assert boundary.tolist() == [1, 1]


def test_half_frame_rate_and_properties() -> None:
    times = np.arange(0, 100, 0.5, dtype=np.float32)
    rng = np.random.default_rng(0)
    for _ in range(200):
        start = float(rng.uniform(0, 99))
        end = start + float(rng.uniform(0, 10))
        u = int(rng.integers(1, 40))
        indices, (first, last) = candidate_window(times, start, end, u, min_time=5.0)
        real = indices[indices >= 0]
        assert len(real) == min(u, len(times)) and np.all(np.diff(real) == 1)
        assert 0 <= first <= last < len(real)
        lo, hi = widen(start, end, 5.0)
        inside = (times[real] >= lo - 1e-6) & (times[real] <= hi + 1e-6)
        if inside.any():
            assert inside[first] and inside[last] and inside[first : last + 1].all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        candidate_window(TIMES, 1.0, 2.0, 0)
    with pytest.raises(ValueError, match="before its start"):
        candidate_window(TIMES, 3.0, 2.0, 4)
