"""Blur metrics (jepalab.eval.blur): sharp vs blurred vs mode-averaged balls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jepalab.data.bouncing import BouncingBalls, BouncingConfig
from jepalab.errors import DataError, ShapeError
from jepalab.eval.blur import (
    BETWEEN,
    MODE_A,
    MODE_B,
    OFF,
    blur_metrics,
    centroid,
    count_blobs,
    mode_assignment,
    mode_fractions,
    spatial_spread,
)

torch.set_num_threads(1)


def gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma) + 1
    x = torch.arange(-r, r + 1).float()
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = frames.shape[1]
    out = F.conv2d(frames, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, r), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(r, 0), groups=c)


@pytest.fixture(scope="module")
def scenes():
    w = BouncingBalls(BouncingConfig(radius=4.0, channels=3))
    a = torch.tensor([[[20.0, 32.0]], [[30.0, 20.0]], [[44.5, 40.2]]])
    b = a + torch.tensor([12.0, 3.0])  # second mode, > 2 radii away
    sharp, other = w.render(a), w.render(b)
    return {"world": w, "a": a, "b": b, "sharp": sharp, "other": other,
            "blurred": gaussian_blur(sharp, 2.5), "average": 0.5 * (sharp + other)}


def test_sharp_ball_scores_as_sharp(scenes):
    m = blur_metrics(scenes["sharp"], scenes["sharp"])
    torch.testing.assert_close(m["peak_ratio"], torch.ones(3))
    torch.testing.assert_close(m["spread_ratio"], torch.ones(3))
    assert m["blobs"].tolist() == [1, 1, 1]
    assert m["centroid_error"].max() < 1e-4
    torch.testing.assert_close(centroid(scenes["sharp"]), scenes["a"][:, 0], atol=0.05, rtol=0)
    # RMS radius of a disc of radius r is ~ r / sqrt(2)
    assert spatial_spread(scenes["sharp"]).sub(4.0 / 2**0.5).abs().max() < 0.4


def test_gaussian_blur_is_blurrier_than_sharp(scenes):
    m = blur_metrics(scenes["blurred"], scenes["sharp"])
    assert (m["peak_ratio"] < 0.8).all()
    assert (m["spread_ratio"] > 1.2).all()
    assert m["blobs"].tolist() == [1, 1, 1]  # smeared, not split
    assert m["centroid_error"].max() < 0.2
    more = blur_metrics(gaussian_blur(scenes["sharp"], 4.0), scenes["sharp"])
    assert (more["spread_ratio"] > m["spread_ratio"]).all() and (more["peak_ratio"] < m["peak_ratio"]).all()


def test_average_of_two_futures_shows_two_ghosts(scenes):
    m = blur_metrics(scenes["average"], scenes["sharp"])
    assert m["blobs"].tolist() == [2, 2, 2]
    torch.testing.assert_close(m["peak_ratio"], torch.full((3,), 0.5))
    assert (m["spread_ratio"] > 2.0).all()
    half_way = (scenes["b"] - scenes["a"]).norm(dim=-1).squeeze(1) / 2
    torch.testing.assert_close(m["centroid_error"], half_way, atol=0.1, rtol=0)


def test_blob_counting_details():
    img = torch.zeros(2, 1, 16, 16)
    img[0, 0, 2:5, 2:5] = 1.0
    img[0, 0, 10:13, 10:13] = 1.0
    img[0, 0, 5, 5] = 1.0  # diagonal neighbour of the first blob: 8-connected, still one blob
    img[1, 0, 0, 0] = 1.0  # a speck below min_area
    img[1, 0, 8:, :] = 0.3  # a wide band below the relative threshold (0.5 * max 1.0)
    assert count_blobs(img).tolist() == [2, 0]
    assert count_blobs(img, min_area=1).tolist() == [2, 1]
    assert count_blobs(img, threshold=0.2, relative=False).tolist() == [2, 1]
    assert count_blobs(torch.zeros(1, 1, 8, 8)).tolist() == [0]


def test_mode_assignment_codes():
    modes = torch.tensor([[[10.0, 10.0], [20.0, 10.0]]]).repeat(5, 1, 1)
    pred = torch.tensor([[10.5, 10.2], [19.0, 10.0], [15.0, 10.0], [15.0, 30.0], [12.5, 10.0]])
    codes = mode_assignment(pred, modes)
    assert codes.tolist() == [MODE_A, MODE_B, BETWEEN, OFF, MODE_A]
    assert mode_assignment(pred, modes, tol=1.0).tolist() == [MODE_A, MODE_B, BETWEEN, OFF, BETWEEN]
    fr = mode_fractions(codes)
    assert fr == {"mode_a": 0.4, "mode_b": 0.2, "between": 0.2, "off": 0.2}


def test_mode_assignment_on_the_stochastic_world():
    w = BouncingBalls(BouncingConfig(variant="stochastic", frames=2))
    b = w.batch(0, 500)
    modes = w.next_modes(b["state"][:, 0])
    sep = (modes[:, 0] - modes[:, 1]).norm(dim=-1)
    keep = sep > 1.0
    truth = mode_assignment(b["state"][:, 1, :2][keep], modes[keep])
    fr = mode_fractions(truth)
    assert fr["between"] == 0 and fr["off"] == 0 and 0.4 < fr["mode_a"] < 0.6
    mean_pred = modes.mean(dim=1)[keep]  # what an L2 regressor of the position converges to
    assert mode_fractions(mode_assignment(mean_pred, modes[keep]))["between"] == 1.0


def test_errors():
    with pytest.raises(ShapeError):
        blur_metrics(torch.zeros(2, 64, 64), torch.zeros(2, 64, 64))
    with pytest.raises(ShapeError):
        blur_metrics(torch.zeros(2, 1, 32, 32), torch.ones(2, 1, 64, 64))
    with pytest.raises(DataError, match="black"):
        blur_metrics(torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(DataError, match="NaN"):
        count_blobs(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(ShapeError):
        mode_assignment(torch.zeros(3, 2), torch.zeros(3, 3, 2))
