"""Tests of edge_attn.data: the digits, .npz and image-folder specs, the split, tf.data and BadInput.

References are independent of the module: scikit-learn's raw digits, a numpy tent-filter resize
(bilinear when enlarging, area-weighted when shrinking), BT.601 luma, and the split rule worked out by hand.
"""

import re

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from edge_attn.data import default_input_shape, load_data
from edge_attn.errors import BadInput


def tent_weights(n_in, n_out):
    """(n_out, n_in) resampling matrix of a triangle filter over pixel centres, each row summing to 1.

    Enlarging (radius 1 pixel) this is bilinear interpolation with half-pixel centres and clamped
    edges; shrinking, the radius grows to the scale factor, so every input pixel contributes.
    """
    scale = n_in / n_out
    centres = (np.arange(n_out) + 0.5) * scale
    weights = np.maximum(0.0, 1 - np.abs(np.arange(n_in) + 0.5 - centres[:, None]) / max(scale, 1.0))
    return weights / weights.sum(axis=1, keepdims=True)


def bilinear_reference(images, height, width):
    """(N, h, w, C) resized to (N, height, width, C) with the separable tent filter."""
    _, h, w, _ = images.shape
    return np.einsum("Hh,nhwc,Ww->nHWc", tent_weights(h, height), images, tent_weights(w, width))


def all_samples(ds):
    """x and y of both splits together."""
    return np.concatenate([ds.x_train, ds.x_eval]), np.concatenate([ds.y_train, ds.y_eval])


def by_content(x, y):
    """Samples keyed by their bytes, for comparing data sets whatever the order."""
    return sorted((sample.tobytes(), int(label)) for sample, label in zip(x, y))


@pytest.fixture(scope="module")
def raw_digits():
    return load_digits()


@pytest.fixture(scope="module")
def digits8():
    return load_data("digits", (8, 8, 1))


@pytest.fixture(scope="module")
def digits16():
    return load_data("digits")


# --- digits ------------------------------------------------------------------------------------------


def test_digits_default_shape_range_and_stratified_split(digits16, raw_digits):
    assert default_input_shape("digits") == (16, 16, 1)
    ds = digits16
    assert ds.x_train.shape[1:] == ds.x_eval.shape[1:] == (16, 16, 1) == ds.input_shape
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    x, y = all_samples(ds)
    assert len(x) == 1797 and 0.0 == x.min() and x.max() == 1.0
    assert ds.num_classes == 10 and ds.class_names == tuple("0123456789")
    # documented rule: round(0.2 * n) of every class goes to evaluation
    per_class = np.bincount(raw_digits.target)
    assert np.array_equal(np.bincount(ds.y_eval, minlength=10), np.floor(0.2 * per_class + 0.5).astype(int))
    assert np.array_equal(np.bincount(y, minlength=10), per_class)
    assert ds.info["scaling"] == "x / 16 -> [0, 1]" and "bilinear 8x8 -> 16x16" in ds.info["resize"]
    assert ds.info["split"]["train"] == len(ds.y_train) and ds.info["split"]["eval"] == 359
    assert not ds.x_train[:4].flags.writeable and not ds.x_train[0].flags.writeable


def test_digits_at_8x8_are_the_raw_images_over_16(digits8, raw_digits):
    x, y = all_samples(digits8)
    expected = (raw_digits.images / 16.0).astype(np.float32)[..., None]
    assert by_content(x, y) == by_content(expected, raw_digits.target)
    assert digits8.info["resize"] == "none"


def test_digits_resize_matches_bilinear_and_keeps_the_mean(digits8, digits16):
    # the split depends only on the labels and the seed, so both loads list the same images in order
    assert np.array_equal(digits8.y_train, digits16.y_train)
    reference = bilinear_reference(np.asarray(digits8.x_train, np.float64), 16, 16)
    np.testing.assert_allclose(digits16.x_train, reference, atol=1e-6)
    # a x2 enlargement weights every source pixel equally: the mean intensity is unchanged
    np.testing.assert_allclose(np.asarray(digits16.x_train).mean(axis=(1, 2, 3)),
                               np.asarray(digits8.x_train).mean(axis=(1, 2, 3)), atol=1e-6)


def test_digits_odd_size_and_three_channels(digits8):
    ds = load_data("digits", (12, 20, 3))
    assert ds.x_eval.shape[1:] == (12, 20, 3)
    assert np.array_equal(ds.x_eval[..., 0], ds.x_eval[..., 2])
    reference = bilinear_reference(np.asarray(digits8.x_eval, np.float64), 12, 20)[..., 0]
    np.testing.assert_allclose(ds.x_eval[..., 1], reference, atol=1e-6)


# --- npz ---------------------------------------------------------------------------------------------


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "stored_shape, input_shape, model_shape",
    [
        ((5, 4, 2), (5, 4, 2), (5, 4, 2)),
        ((5, 4, 2), None, (5, 4, 2)),
        ((5, 4), None, (5, 4, 1)),  # (N, H, W) images: channel axis added
        ((5, 4), (5, 4), (5, 4)),  # (N, L, C) for a 1D model
        ((7,), (7, 1), (7, 1)),  # (N, L): channel axis added
        ((7,), None, (7, 1)),
        ((5, 4, 2), (None, None, 2), (5, 4, 2)),  # unknown sizes accept the stored ones
    ],
)
def test_npz_values_reach_the_model_unchanged(tmp_path, stored_shape, input_shape, model_shape):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 100, (24, *stored_shape))  # float64, far outside [0, 1]: must not be rescaled
    y = np.repeat(np.arange(3), 8)
    spec = save_npz(tmp_path / "data.npz", x=x, y=y)
    if input_shape is None:
        assert default_input_shape(spec) == model_shape
    ds = load_data(spec, input_shape)
    assert ds.input_shape == model_shape and ds.x_train.dtype == np.float32
    got_x, got_y = all_samples(ds)
    assert by_content(got_x, got_y) == by_content(x.astype(np.float32).reshape(24, *model_shape), y)
    assert ds.info["scaling"].startswith("none") and ds.class_names == ("0", "1", "2")


@pytest.mark.parametrize(
    "y, note",
    [
        (np.eye(3, dtype=np.float32)[np.repeat(np.arange(3), 4)], "one-hot"),
        (np.repeat(np.arange(3), 4).astype(np.float64), "class ids"),  # integral floats
        (np.repeat(np.arange(3), 4)[:, None].astype(np.uint8), "class ids"),  # a column
    ],
)
def test_npz_label_forms(tmp_path, y, note):
    x = np.arange(12, dtype=np.float32)[:, None]  # sample i holds the value i
    ds = load_data(save_npz(tmp_path / "d.npz", x=x, y=y), (1, 1))
    got_x, got_y = all_samples(ds)
    assert np.array_equal(got_y, got_x[:, 0, 0].astype(int) // 4)
    assert note in ds.info["labels"] and ds.num_classes == 3


# --- the split ---------------------------------------------------------------------------------------


@pytest.fixture
def indexed_npz(tmp_path):
    """Sample i holds the value i; classes of 2, 5 and 13 samples, interleaved."""
    y = np.array([2, 0, 1, 2] * 2 + [2, 1] * 3 + [2] * 6)
    assert np.array_equal(np.bincount(y), [2, 5, 13])
    return save_npz(tmp_path / "indexed.npz", x=np.arange(len(y), dtype=np.float32)[:, None], y=y), y


def split_indices(ds):
    return ds.x_train[:, 0, 0].astype(int), ds.x_eval[:, 0, 0].astype(int)


def test_split_is_deterministic_stratified_and_complete(indexed_npz):
    spec, y = indexed_npz
    train, evaluate = split_indices(load_data(spec, (1, 1), seed=3))
    again_train, again_eval = split_indices(load_data(spec, (1, 1), seed=3))
    assert np.array_equal(train, again_train) and np.array_equal(evaluate, again_eval)
    other_seeds = [split_indices(load_data(spec, (1, 1), seed=s))[1] for s in (4, 5, 6)]
    assert any(not np.array_equal(evaluate, other) for other in other_seeds)
    assert sorted(np.concatenate([train, evaluate])) == list(range(len(y)))
    # round(0.2 n) clipped to [1, n - 1]: 2 -> 1 (0.4 rounds to 0, at least 1), 5 -> 1, 13 -> 3
    assert list(np.bincount(y[evaluate], minlength=3)) == [1, 1, 3]
    assert list(evaluate) == sorted(evaluate)  # eval keeps the source order
    half_eval = split_indices(load_data(spec, (1, 1), eval_fraction=0.5))[1]
    assert list(np.bincount(y[half_eval], minlength=3)) == [1, 3, 7]  # 2.5 and 6.5 round up


# --- image folders -----------------------------------------------------------------------------------


def write_image(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.fixture
def image_folder(tmp_path):
    """cat: 2 gray PNGs and an RGB BMP; dog: 2 gray PNGs (one 6x6). Returns the folder and the pixels."""
    rng = np.random.default_rng(2)
    gray = lambda size: rng.integers(0, 256, size, dtype=np.uint8)  # noqa: E731
    pixels = {
        "cat/a.png": write_image(tmp_path / "cats_and_dogs/cat/a.png", gray((4, 4))),
        "cat/b.png": write_image(tmp_path / "cats_and_dogs/cat/b.png", gray((4, 4))),
        "cat/c.BMP": write_image(tmp_path / "cats_and_dogs/cat/c.BMP", gray((4, 4, 3))),
        "dog/d.png": write_image(tmp_path / "cats_and_dogs/dog/d.png", gray((4, 4))),
        "dog/e.png": write_image(tmp_path / "cats_and_dogs/dog/e.png", gray((6, 6))),
    }
    (tmp_path / "cats_and_dogs/dog/notes.txt").write_text("not an image")
    return tmp_path / "cats_and_dogs", pixels


def test_image_folder_gray_to_rgb(image_folder):
    folder, pixels = image_folder
    assert default_input_shape(folder) == (4, 4, 3)  # first image's size; colour because of c.BMP
    ds = load_data(folder, eval_fraction=0.5)
    assert ds.class_names == ("cat", "dog") and ds.input_shape == (4, 4, 3)
    x, y = all_samples(ds)
    expected = [
        (np.repeat(pixels["cat/a.png"][..., None], 3, -1) / 255, 0),
        (np.repeat(pixels["cat/b.png"][..., None], 3, -1) / 255, 0),
        (pixels["cat/c.BMP"] / 255, 0),
        (np.repeat(pixels["dog/d.png"][..., None], 3, -1) / 255, 1),
    ]
    for image, label in expected:
        matches = [i for i in range(len(x)) if np.allclose(x[i], image, atol=1e-6)]
        assert len(matches) == 1 and y[matches[0]] == label
    # the 6x6 image is shrunk to 4x4 (every source pixel contributes) and repeated to RGB
    shrunk = bilinear_reference(pixels["dog/e.png"][None, ..., None] / 255, 4, 4)[0]
    matches = [i for i in range(len(x)) if np.allclose(x[i], np.repeat(shrunk, 3, -1), atol=1e-6)]
    assert len(matches) == 1 and y[matches[0]] == 1


def test_image_folder_rgb_to_gray_and_enlarged(image_folder):
    folder, pixels = image_folder
    ds = load_data(folder, (8, 8, 1), eval_fraction=0.5)
    x, _ = all_samples(ds)
    luma = pixels["cat/c.BMP"].astype(np.float64) @ [0.299, 0.587, 0.114] / 255
    expected = bilinear_reference(luma[None, ..., None], 8, 8)[0]
    assert sum(np.allclose(sample, expected, atol=1e-5) for sample in x) == 1


def test_image_folder_gray_only_and_16_bit(tmp_path):
    deep = np.array([[0, 65535], [32768, 1000]], np.uint16)
    write_image(tmp_path / "f/a/one.png", deep)
    write_image(tmp_path / "f/a/two.png", deep[::-1])
    write_image(tmp_path / "f/b/three.png", np.full((2, 2), 255, np.uint8))
    write_image(tmp_path / "f/b/four.png", np.zeros((2, 2), np.uint8))
    assert default_input_shape(tmp_path / "f") == (2, 2, 1)
    x, _ = all_samples(load_data(tmp_path / "f", eval_fraction=0.5))
    assert sum(np.allclose(sample[..., 0], deep / 65535, atol=1e-7) for sample in x) == 1


# --- tf.data and calibration samples -----------------------------------------------------------------


def test_tf_data_batches(digits16):
    ds = digits16
    batches = list(ds.train_dataset(100, shuffle=False).as_numpy_iterator())
    assert [len(xb) for xb, _ in batches] == [100] * (len(ds.x_train) // 100) + [len(ds.x_train) % 100]
    assert all(xb.shape[1:] == (16, 16, 1) and xb.dtype == np.float32 for xb, _ in batches)
    assert np.array_equal(np.concatenate([xb for xb, _ in batches]), ds.x_train)
    shuffled = [yb for _, yb in ds.train_dataset(100, seed=7).as_numpy_iterator()]
    assert sorted(np.concatenate(shuffled)) == sorted(ds.y_train)
    assert not np.array_equal(np.concatenate(shuffled), ds.y_train)
    evaluation = list(ds.eval_dataset(64).as_numpy_iterator())
    assert np.array_equal(np.concatenate([yb for _, yb in evaluation]), ds.y_eval)


def test_representative(digits16):
    samples = digits16.representative(7)
    assert len(samples) == 7
    assert all(s.shape == (1, 16, 16, 1) and s.dtype == np.float32 for s in samples)
    assert np.array_equal(np.concatenate(samples), digits16.x_train[:7])
    assert len(set(digits16.y_train[:7])) > 1  # a random, class-mixed sample
    assert len(digits16.representative(10**6)) == len(digits16.x_train)


# --- bad input ---------------------------------------------------------------------------------------


def _npz(x=None, y=None, drop=()):
    """A builder writing a small valid .npz (12 samples of 4x4x1, 3 classes), with x or y replaced or dropped."""
    x = np.random.default_rng(0).random((12, 4, 4, 1)) if x is None else x
    y = np.repeat(np.arange(3), 4) if y is None else y

    def build(tmp_path):
        arrays = {name: array for name, array in {"x": x, "y": y}.items() if name not in drop}
        return save_npz(tmp_path / "bad.npz", **arrays)

    return build


def _file(name, content):
    def build(tmp_path):
        (tmp_path / name).write_bytes(content)
        return str(tmp_path / name)

    return build


def _npy_named_npz(tmp_path):
    np.save(tmp_path / "array.npy", np.zeros((4, 2)))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    return str(tmp_path / "array.npz")


def _folder(layout):
    """A builder making folder/ with files {relative path: bytes | pixel array}."""

    def build(tmp_path):
        root = tmp_path / "images"
        root.mkdir()
        for relative, content in layout.items():
            path = root / relative
            if content is None:
                path.mkdir(parents=True)
            elif isinstance(content, bytes):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            else:
                write_image(path, content)
        return str(root)

    return build


GRAY = np.zeros((4, 4), np.uint8)
NAN_X = np.random.default_rng(0).random((12, 4, 4, 1))
NAN_X[5, 1, 1, 0] = np.nan
INF_X = np.random.default_rng(0).random((12, 4, 4, 1))
INF_X[7, 0, 0, 0] = np.inf

def _spec(spec, input_shape=None):
    return lambda tmp_path: (spec(tmp_path) if callable(spec) else spec, input_shape)


# case: (builder of (spec, model input shape), a word the problem must contain)
BAD_INPUTS = {
    "missing npz file": (_spec(lambda t: str(t / "missing.npz")), "not found"),
    "no such spec": (_spec(lambda t: str(t / "nothing_here")), "no such file"),
    "unknown spec name": (_spec("mnist"), "no such file"),
    "unsupported file": (_spec(_file("data.csv", b"1,2,3\n")), "unsupported"),
    "corrupt npz": (_spec(_file("bad.npz", b"PK\x03\x04 truncated zip")), "cannot read"),
    "npy named npz": (_spec(_npy_named_npz), "not a .npz"),
    "object array in npz": (_spec(_npz(x=np.array([{}, {}], dtype=object))), "cannot read"),
    "npz without x": (_spec(_npz(drop="x")), "x missing"),
    "npz without y": (_spec(_npz(drop="y")), "y missing"),
    "x/y length mismatch": (_spec(_npz(y=np.repeat(np.arange(3), 3))), "12 samples"),
    "x of strings": (_spec(_npz(x=np.array(["a"] * 12))), "dtype"),
    "empty x": (_spec(_npz(x=np.zeros((0, 4)), y=np.zeros(0, int))), "empty"),
    "NaN in x": (_spec(_npz(x=NAN_X)), "sample 5"),
    "Inf in x": (_spec(_npz(x=INF_X)), "sample 7"),
    "float64 overflowing float32": (_spec(_npz(x=np.full((12, 2), 1e300))), "Inf"),
    "negative labels": (_spec(_npz(y=np.repeat([-1, 0, 1], 4))), "negative"),
    "labels skipping a class": (_spec(_npz(y=np.repeat([0, 1, 3], 4))), "skip class ids 2"),
    "label out of range": (_spec(_npz(y=np.array([0, 1] * 5 + [1, 10**9]))), "out of range"),
    "non-integer labels": (_spec(_npz(y=np.repeat([0, 1, 1.5], 4))), "non-integer"),
    "NaN labels": (_spec(_npz(y=np.repeat([0, 1, np.nan], 4))), "NaN"),
    "string labels": (_spec(_npz(y=np.repeat(["a", "b", "c"], 4))), "dtype"),
    "not one-hot": (_spec(_npz(y=np.full((12, 3), 0.5))), "not one-hot"),
    "labels of rank 3": (_spec(_npz(y=np.zeros((12, 2, 2), int))), "(12, 2, 2)"),
    "fewer than 2 classes": (_spec(_npz(y=np.zeros(12, int))), "at least 2 classes"),
    "class with 1 sample": (_spec(_npz(y=np.array([0] * 6 + [1] * 5 + [2]))), "class 2 has only 1"),
    "npz shape mismatch": (_spec(_npz(), (6, 6, 1)), "(4, 4, 1) but the model expects (6, 6, 1)"),
    "npz channel mismatch": (_spec(_npz(), (4, 4, 3)), "(4, 4, 1) but the model expects (4, 4, 3)"),
    "npz wrong rank for the model": (_spec(_npz(), (16, 1)), "wrong rank"),
    "npz x of rank 1": (_spec(_npz(x=np.zeros(12))), "(12,)"),
    "npz x of rank 5": (_spec(_npz(x=np.zeros((12, 2, 2, 2, 2)))), "(12, 2, 2, 2, 2)"),
    "digits for a 1D model": (_spec("digits", (64, 1)), "wrong rank"),
    "digits with 2 channels": (_spec("digits", (8, 8, 2)), "2 channels"),
    "input shape with a batch axis": (_spec("digits", (1, 8, 8, 1)), "wrong rank"),
    "input shape with a zero": (_spec("digits", (0, 8, 1)), "below 1"),
    "empty folder": (_spec(_folder({})), "empty"),
    "folder without class sub-folders": (_spec(_folder({"a.png": GRAY})), "no class sub-folders"),
    "class folder without images": (
        _spec(_folder({"cat/a.png": GRAY, "cat/b.png": GRAY, "dog/readme.txt": b"hi"})),
        "dog: class folder has no images",
    ),
    "unreadable image": (
        _spec(_folder({"cat/a.png": GRAY, "cat/b.png": GRAY, "dog/c.png": b"\x89PNG garbage"})),
        "c.png: cannot read image",
    ),
    "folder with 1 class": (_spec(_folder({"cat/a.png": GRAY, "cat/b.png": GRAY})), "at least 2 classes"),
    "folder class with 1 image": (
        _spec(_folder({"cat/a.png": GRAY, "cat/b.png": GRAY, "dog/c.png": GRAY})),
        "class dog has only 1",
    ),
    "folder for a 1D model": (
        _spec(_folder({"a/1.png": GRAY, "a/2.png": GRAY, "b/3.png": GRAY, "b/4.png": GRAY}), (16, 1)),
        "wrong rank",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_named_in_one_line(tmp_path, case):
    build, problem = BAD_INPUTS[case]
    spec, input_shape = build(tmp_path)
    with pytest.raises(BadInput) as caught:
        load_data(spec, input_shape)
    message = str(caught.value)
    assert spec in message and "\n" not in message
    assert problem in message


@pytest.mark.parametrize(
    "case", ["missing npz file", "unknown spec name", "corrupt npz", "empty folder", "unreadable image"]
)
def test_default_input_shape_of_bad_input(tmp_path, case):
    build, problem = BAD_INPUTS[case]
    spec, _ = build(tmp_path)
    with pytest.raises(BadInput, match=re.escape(spec) + ".*" + re.escape(problem)):
        default_input_shape(spec)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_eval_fraction_out_of_range(fraction):
    with pytest.raises(BadInput, match="eval_fraction"):
        load_data("digits", eval_fraction=fraction)
