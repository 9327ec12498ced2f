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


def test_composite_8bit_blend_is_within_1_5_levels_of_the_float_blend():
    rng = np.random.default_rng(1)
    fg = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    a = rng.random((60, 70)).astype(np.float32)
    a[:10] = 1.0
    a[10:20] = 0.0
    out = compose.composite(fg, a, bg).astype(np.float64)
    ref = fg * a[..., None].astype(np.float64) + bg * (1.0 - a[..., None])
    assert np.abs(out - ref).max() <= 1.5
    assert (out[:10] == fg[:10]).all() and (out[10:20] == bg[10:20]).all()  # exact at alpha 1 and 0


def test_composite_color_equals_composite_over_a_flat_image():
    rng = np.random.default_rng(4)
    fg = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    a = rng.random((30, 40)).astype(np.float32)
    flat = np.empty_like(fg)
    flat[...] = (12, 200, 99)
    assert (compose.composite_color(fg, a, (12, 200, 99)) == compose.composite(fg, a, flat)).all()


def test_composite_alpha_outside_0_1_and_bad_images():
    fg = np.full((1, 6, 3), 200, np.uint8)
    bg = np.full((1, 6, 3), 10, np.uint8)
    a = np.array([[1.7, -0.4, np.nan, np.inf, -np.inf, 0.5]], np.float32)
    assert compose.composite(fg, a, bg)[0, :, 0].tolist() == [200, 10, 10, 10, 10, 105]
    with pytest.raises(ValueError, match="uint8 RGB images"):
        compose.composite(fg.astype(np.float32), a, bg.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 RGB images"):
        compose.composite(np.dstack([fg, fg[..., :1]]), a, np.dstack([bg, bg[..., :1]]))


def test_blur_backdrop_is_the_background_weighted_blur():
    """The backdrop (blur at 1/k resolution, uint8 before the upsample) stays close to a
    full-resolution float blur(I*(1-a)) / blur(1-a) away from the person, and sigma 0 is a copy."""
    import cv2

    rng = np.random.default_rng(2)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (160, 120), interpolation=cv2.INTER_CUBIC)  # smooth texture
    a = np.zeros((120, 160), np.float32)
    a[30:90, 60:100] = 1.0
    rgb[30:90, 60:100] = (255, 0, 255)  # a person of a colour the background lacks: a plain blur halos it
    wb = 1.0 - a
    num = cv2.GaussianBlur(rgb.astype(np.float32) * wb[..., None], (0, 0), 16)
    den = cv2.GaussianBlur(wb, (0, 0), 16)[..., None]
    ref = num / np.maximum(den, 1e-6)
    got = compose.blur_backdrop(rgb, a, 16.0).astype(np.float32)
    far = np.ones((120, 160), bool)
    far[20:100, 50:110] = False  # away from the person's edge
    assert np.abs(got - ref)[far].mean() < 3.0
    assert np.abs(compose.blur_backdrop(rgb, None, 16.0).astype(np.float32) - ref)[far].mean() > 4.0  # unweighted
    assert (compose.blur_backdrop(rgb, a, 0.0) == rgb).all()


def test_composite_color_takes_a_grey_level_and_rejects_other_shapes():
    fg = np.zeros((2, 3, 3), np.uint8)
    a = np.zeros((2, 3), np.float32)
    assert (compose.composite_color(fg, a, 128) == 128).all()
    assert (compose.composite_color(fg, a, (128,)) == 128).all()
    with pytest.raises(ValueError, match="colour"):
        compose.composite_color(fg, a, (1, 2, 3, 4))
    with pytest.raises(ValueError, match="colour"):
        compose.composite_color(fg, a, (300, 0, 0))
