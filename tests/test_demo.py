"""The demo's pieces: the camera model of the demo data, its quality statistics and the CPU thread rule."""

from __future__ import annotations

from pathlib import Path

from fmanet_plugin.utils import threads

import cv2
import numpy as np
import pytest
from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]


demo = load_tool('demo')
make_demo_data = load_tool('make_demo_data')


# ----- camera model of the demo data -----


def _camera(velocity=(6.0, -2.0), accel=(0.0, 0.0), zoom_rate=0.0, spin=0.0):
    camera = make_demo_data.CameraPath(np.random.default_rng(0), (64, 96), 8, (4.0, 16.0))
    camera.velocity, camera.accel = np.array(velocity), np.array(accel)
    camera.zoom_rate, camera.spin = zoom_rate, spin
    camera.start = np.array([200.0, 150.0])
    return camera


def test_exact_flow_of_a_pure_pan_is_minus_the_pan_over_the_scale():
    # HR pixel P at time t shows source c(t) + (P - p_mid); one frame later the same point sits at P - v.
    flow = _camera().lr_flow(3, 4, (16, 24), scale=4)
    assert flow.shape == (16, 24, 2)
    np.testing.assert_allclose(flow, np.broadcast_to([-1.5, 0.5], flow.shape), atol=1e-6)
    np.testing.assert_allclose(_camera().lr_flow(3, 3, (16, 24), 4), 0, atol=1e-6)


def test_exact_flow_maps_centre_points_onto_the_same_source_points():
    camera = _camera(accel=(0.7, -0.4), zoom_rate=0.01, spin=0.008)
    lr = np.stack(np.meshgrid(np.arange(24.0), np.arange(16.0)), -1)
    flow = camera.lr_flow(2, 4, (16, 24), scale=4)
    centre_hr, neighbour_hr = 4 * lr + 1.5, 4 * (lr + flow) + 1.5
    np.testing.assert_allclose(camera.to_source(neighbour_hr, 4), camera.to_source(centre_hr, 2), atol=1e-6)
    assert np.abs(flow[0, 0] - flow[-1, -1]).max() > 0.05  # rotation and zoom make it vary over the frame


def test_rendered_neighbour_warped_by_the_exact_flow_reconstructs_the_centre_frame():
    rng = np.random.default_rng(1)
    source = np.repeat(rng.random((300, 400, 1), dtype=np.float32), 3, axis=2)
    source = cv2.GaussianBlur(source, (0, 0), 2.0)  # band-limited, so cubic rendering is near-exact
    camera = _camera(accel=(0.5, 0.3), zoom_rate=0.01, spin=0.01)
    camera.cover(np.array([2.0, 3.0]))
    camera.place(rng, source.shape[:2])
    centre, neighbour = camera.render(source, 2, (64, 96)), camera.render(source, 3, (64, 96))
    ys, xs = np.mgrid[0:64, 0:96].astype(np.float32)
    hr = np.stack([xs, ys], -1)
    target = camera.from_source(camera.to_source(hr, 2), 3).astype(np.float32)  # the same points at t = 3
    inside = (target[..., 0] > 2) & (target[..., 0] < 93) & (target[..., 1] > 2) & (target[..., 1] < 61)

    def error(points: np.ndarray) -> float:
        warped = cv2.remap(neighbour, points[..., 0], points[..., 1], cv2.INTER_CUBIC)
        return float(np.abs(warped - centre)[inside].mean())

    exact = error(target)
    assert exact < 0.03 * float(np.abs(neighbour - centre)[inside].mean())  # vs no motion compensation
    assert exact < 0.3 * error(target + np.float32([0.5, 0]))  # vs half a pixel off
    assert exact < 0.3 * error(target + np.float32([0, 0.5]))


# ----- quality statistics -----


def test_phase_error_of_a_planted_4px_grid():
    gt = np.random.default_rng(0).random((32, 48, 3)) * 200
    plain = gt + 2.0  # the same error everywhere: every phase 2, ratio 1
    grid = plain.copy()
    grid[0::4, 0::4] += 6.0  # a dot every 4 pixels: phase (0, 0) errs by 8
    phases = demo.phase_error([plain], [gt])
    np.testing.assert_allclose(phases, 2.0)
    assert demo.phase_ratio(phases) == pytest.approx(1.0)
    phases = demo.phase_error([grid, plain], [gt, gt])  # pooled over frames: (8 + 2) / 2 at phase (0, 0)
    assert phases[0, 0] == pytest.approx(5.0) and np.allclose(np.delete(phases.ravel(), 0), 2.0)
    assert demo.phase_ratio(phases) == pytest.approx(2.5)
    with pytest.raises(ValueError, match='multiple of scale'):
        demo.phase_error([plain], [gt], border=2)


def test_end_point_error_is_the_mean_euclidean_distance():
    truth = np.zeros((2, 3, 2))
    flow = truth.copy()
    flow[0, 0] = (3.0, 4.0)  # one vector 5 px off, five exact
    assert demo.end_point_error(flow, truth) == pytest.approx(5 / 6)


def test_side_by_side_labels_every_panel():
    panels = [np.zeros((40, 50, 3), np.uint8) for _ in range(4)]
    out = demo.side_by_side(panels, ['a', 'b', 'c', 'd'], bar=20)
    assert out.shape == (60, 4 * 50 + 3 * 4, 3)
    for k in range(4):
        head = out[:20, k * 54 : k * 54 + 50]
        assert (head < 128).any() and (head == 255).mean() > 0.5  # dark text on a white bar
        assert (out[20:, k * 54 : k * 54 + 50] == 0).all()  # the panel itself untouched


# ----- CPU thread rule -----


@pytest.mark.parametrize(
    'cores, other_load, work, expected',
    [
        (2, 0.0, None, 2),  # idle machine: every core
        (2, 0.05, None, 2),  # a core 95 % free counts
        (2, 0.2, None, 1),  # ... one 80 % free does not
        (2, 1.0, None, 1),  # one core busy elsewhere
        (2, 5.0, None, 1),  # overloaded: still one
        (16, 3.5, None, 12),
        (16, 0.0, 3 * 32768, 3),  # work for three grains only
        (2, 0.0, 1000, 1),  # tiny work
    ],
)
def test_thread_rule(cores, other_load, work, expected):
    assert threads.decide_num_threads(cores, other_load, work) == expected


def test_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert threads.choose_num_threads(work=1, interval=0.0) == (3, 'OMP_NUM_THREADS=3')
    monkeypatch.delenv('OMP_NUM_THREADS')
    count, reason = threads.choose_num_threads(interval=0.05)
    assert 1 <= count <= threads.usable_cores() and 'usable cores' in reason
