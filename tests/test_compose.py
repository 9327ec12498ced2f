import numpy as np
import pytest

from vmatte.ops import compose


def test_composite_math_exact():
    fg = np.full((2, 2, 3), 200, np.uint8)
    bg = np.full((2, 2, 3), 100, np.uint8)
    a = np.array([[1, 0], [0.5, 0.25]], np.float32)
    out = compose.composite(fg, a, bg)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[..., 0].tolist() == [[200, 100], [150, 125]]


def test_composite_color_and_shape_checks():
    fg = np.zeros((4, 6, 3), np.uint8)
    a = np.zeros((4, 6), np.float32)
    assert (compose.composite_color(fg, a, (0, 255, 0)) == [0, 255, 0]).all()
    with pytest.raises(ValueError):
        compose.composite(fg, np.zeros((4, 5), np.float32), fg)
    with pytest.raises(ValueError):
        compose.composite(fg, a[..., None], fg)


def test_blur_background_keeps_person_and_blurs_rest():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    a = np.zeros((64, 80), np.float32)
    a[16:48, 20:60] = 1
    out = compose.blur_background(rgb, a, sigma=8)
    assert (out[16:48, 20:60] == rgb[16:48, 20:60]).all()  # person untouched
    assert out[:8].std() < rgb[:8].std() / 3  # background much smoother
    assert (compose.blur_background(rgb, a, sigma=0) == rgb).all()


def test_estimate_foreground_recovers_colours():
    h, w = 40, 60
    F = np.zeros((h, w, 3), np.uint8); F[...] = (250, 10, 10)
    B = np.zeros_like(F); B[...] = (10, 10, 250)
    a = np.zeros((h, w), np.float32); a[:, :30] = 1; a[:, 30:35] = np.linspace(0.9, 0.1, 5)
    img = compose.composite(F, a, B)
    est = compose.estimate_foreground(img, a, radius=5)
    assert est.dtype == np.uint8
    # At partial alpha the estimate moves from the mixed colour towards the true foreground.
    mid = est[20, 32].astype(int)
    assert abs(mid[0] - 250) < abs(int(img[20, 32, 0]) - 250)
    assert (est[:, :25] == F[:, :25]).all()


def test_pack_rgba_and_alpha_uint8():
    rgb = np.full((3, 3, 3), 7, np.uint8)
    a = np.array([[0, 0.5, 1]] * 3, np.float32)
    rgba = compose.pack_rgba(rgb, a)
    assert rgba.shape == (3, 3, 4) and rgba[0, :, 3].tolist() == [0, 128, 255]
    assert compose.alpha_to_uint8(np.array([[-1, 2]], np.float32)).tolist() == [[0, 255]]
    assert compose.to_uint8(np.array([0.5], np.float32)).tolist() == [[128]] or \
        compose.to_uint8(np.array([0.5], np.float32)).ravel().tolist() == [128]


def test_cover_resize_and_pad():
    img = np.zeros((10, 40, 3), np.uint8); img[:, 15:25] = 255
    out = compose.cover_resize(img, 20, 20)
    assert out.shape == (20, 20, 3) and out[10, 10, 0] == 255  # centre crop keeps the middle
    odd = np.zeros((5, 7, 3), np.uint8)
    assert compose.pad_to_even(odd).shape == (6, 8, 3)
