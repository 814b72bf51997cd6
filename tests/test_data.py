"""Data sources, the papers' transforms and dataset statistics against numpy."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kzoo.data.sources import builtin_digits, image_folder, load_source, tfds_source
from kzoo.data.stats import cached_stats, compute_stats
from kzoo.data.transforms import eval_map, train_map
from kzoo.preprocessing import Preprocess
from kzoo.recipes import alexnet, resnet, resnet_cifar


class KzooToyImages(tfds.core.GeneratorBasedBuilder):
    """A tiny tfds dataset prepared from generated images (no download)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(20, 24, 3)),
            "label": tfds.features.ClassLabel(names=["a", "b", "c"])}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(30, 0), "validation": self._generate_examples(9, 1)}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            yield i, {"image": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "label": i % 3}


def test_tfds_source_reads_a_prepared_dataset_and_never_downloads_unasked(tmp_path):
    with pytest.raises(FileNotFoundError, match="kzoo_toy_images.*not prepared.*--download"):
        tfds_source("kzoo_toy_images", data_dir=str(tmp_path))
    source = load_source("kzoo_toy_images", str(tmp_path), download=True)
    assert (source.train_size, source.val_size, source.class_names) == (30, 9, ["a", "b", "c"])
    images = list(source.train.as_numpy_iterator())
    assert len(images) == 30 and images[0][0].shape == (20, 24, 3) and images[0][0].dtype == np.uint8
    again = tfds_source("kzoo_toy_images", data_dir=str(tmp_path))  # prepared now: no flag needed
    assert again.train_size == 30


def test_builtin_digits_are_real_and_split():
    source = builtin_digits()
    assert (source.train_size, source.val_size, source.classes) == (1438, 359, 10)
    image, label = next(iter(source.train))
    assert image.shape == (8, 8, 3) and image.dtype == tf.uint8 and int(tf.reduce_max(image)) > 200


def _counts(ds):
    """The dataset's (image, label) pairs as a multiset of their bytes."""
    import collections

    return collections.Counter(image.tobytes() + bytes([int(label)]) for image, label in ds.as_numpy_iterator())


def test_val_split_holds_out_n_training_images_and_leaves_the_test_set_unused():
    """ResNet §4.2's 45k/5k split (--val-split N): exactly N training images become the
    validation set, disjoint from the training images that remain, the same N for the same
    seed; the source's own validation (test) images are in neither; the digits' 1438
    training images (1797 less round(0.2 * 1797)) shrink by N."""
    from kzoo.data.sources import Source, hold_out

    # 40 training images numbered 0..39 and 10 test images numbered 100..109, one pixel each
    def numbered(ids):
        return tf.data.Dataset.from_tensor_slices((np.array(ids, np.uint8).reshape(-1, 1, 1, 1),
                                                   np.zeros(len(ids), np.int32)))

    source = Source(name="numbered", train=numbered(range(40)), val=numbered(range(100, 110)), train_size=40,
                    val_size=10, class_names=["a", "b"])
    ids = lambda ds: [int(image[0, 0, 0]) for image, _ in ds.as_numpy_iterator()]  # noqa: E731
    held = hold_out(source, 7, seed=5)
    val, train = ids(held.val), ids(held.train)
    assert (held.val_size, held.train_size, len(val), len(set(val)), len(train)) == (7, 33, 7, 7, 33)
    assert not set(val) & set(train) and sorted(val + train) == list(range(40))  # no test image anywhere
    assert ids(held.val) == val and ids(hold_out(source, 7, seed=5).val) == val  # fixed, and given by the seed
    assert ids(hold_out(source, 7, seed=6).val) != val
    for n in (40, 41, 0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"argument --val-split: expected a number of training images in "
                                             r"\[1, 39\] \('numbered' has 40 training images.*leave --val-split out"):
            hold_out(source, n)

    digits = builtin_digits()
    held = hold_out(digits, 300, seed=0)
    assert (held.train_size, held.val_size) == (1797 - round(0.2 * 1797) - 300, 300) == (1138, 300)
    train, val = _counts(held.train), _counts(held.val)
    assert (sum(train.values()), sum(val.values())) == (1138, 300)
    assert train + val == _counts(digits.train)  # each training image once, in one of the two
    assert val == _counts(hold_out(builtin_digits(), 300, seed=0).val)


def test_image_folder_split_and_labels(tmp_path):
    for c, name in enumerate(("cat", "dog")):
        (tmp_path / name).mkdir()
        for i in range(10):
            tf.io.write_file(str(tmp_path / name / f"{i}.jpg"),
                             tf.io.encode_jpeg(np.full((9, 13, 3), 100 * c, np.uint8)))
    source = image_folder(tmp_path, val_fraction=0.2)
    assert (source.train_size, source.val_size, source.class_names) == (16, 4, ["cat", "dog"])
    labels = sorted(int(label) for _, label in source.train.concatenate(source.val))
    assert labels == [0] * 10 + [1] * 10


def test_stats_equal_numpy(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 10, 10, 3), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(12, np.int32)))
    p = Preprocess(resize=10, center=10, crop=8)
    stats = compute_stats(ds, p)
    np.testing.assert_allclose(stats["mean"], images.mean(0), rtol=1e-5)
    rgb = images.reshape(-1, 3) / 255.0
    eigvals, eigvecs = np.linalg.eigh(np.cov(rgb.T, bias=True))
    np.testing.assert_allclose(stats["eigvals"], eigvals[::-1], rtol=1e-4)
    np.testing.assert_allclose(np.abs(stats["eigvecs"]), np.abs(eigvecs[:, ::-1]), atol=1e-4)
    assert stats["count"] == 12
    # In batches (12 = 5 + 5 + 2) the sums are the same.
    in_fives = compute_stats(ds, p, batch=5)
    for key in ("mean", "eigvals"):
        np.testing.assert_allclose(in_fives[key], stats[key], rtol=1e-6)
    # Images of different sizes go one by one: the mean is a colour.
    sizes = [(10, 10), (10, 14), (12, 10)]
    mixed = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    varying = tf.data.Dataset.from_generator(lambda: ((m, np.int32(0)) for m in mixed), output_signature=(
        tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int32)))
    colour = compute_stats(varying, Preprocess(resize=10, crop=8, mean="channel"))  # shorter sides are 10 already
    pixels = np.concatenate([m.reshape(-1, 3) for m in mixed])
    np.testing.assert_allclose(colour["mean"], pixels.mean(0), rtol=1e-5)
    assert colour["count"] == 3
    cached = cached_stats(ds, p, str(tmp_path), key="toy")
    again = cached_stats(ds.take(0), p, str(tmp_path), key="toy")  # from the cache: no images needed
    np.testing.assert_array_equal(cached["mean"], again["mean"])
    assert len(list(tmp_path.glob("stats-*.npz"))) == 1 and not list(tmp_path.glob(".tmp-*"))


def test_statistics_of_fingerprinted_data_are_shared_through_the_cache(tmp_path, monkeypatch):
    """The built-in data's statistics are computed once per content and preprocessing in
    KZOO_CACHE_DIR/kzoo/stats; every run still keeps its own copy. Other content is computed
    afresh, and a damaged shared file is computed again, not read."""
    from kzoo.data import stats as stats_module
    from kzoo.data.sources import builtin_digits, hold_out

    monkeypatch.setenv("KZOO_CACHE_DIR", str(tmp_path / "cache"))
    digits = builtin_digits()
    assert digits.fingerprint == builtin_digits().fingerprint  # the same content, the same digest
    held = hold_out(digits, 100)
    assert held.fingerprint not in (None, digits.fingerprint, hold_out(digits, 100, seed=1).fingerprint)
    p = Preprocess(resize=10, center=10, crop=8, mean="pixel")
    computed = []
    real = stats_module.compute_stats
    monkeypatch.setattr(stats_module, "compute_stats", lambda *a, **k: computed.append(1) or real(*a, **k))
    first = cached_stats(digits.train, p, str(tmp_path / "run1"), key="digits", fingerprint=digits.fingerprint)
    second = cached_stats(digits.train.take(0), p, str(tmp_path / "run2"), key="digits",
                          fingerprint=digits.fingerprint)  # no image read: from the shared cache
    assert len(computed) == 1
    images = np.stack([image for image, _ in digits.train.as_numpy_iterator()]).astype(np.float64)
    resized = tf.image.resize(images, (10, 10), antialias=True).numpy()  # 8 px digits up to 10 (the pipeline's)
    np.testing.assert_allclose(first["mean"], np.round(resized).clip(0, 255).mean(0), atol=1e-3)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert [len(list((tmp_path / run).glob("stats-*.npz"))) for run in ("run1", "run2")] == [1, 1]
    (shared,) = (tmp_path / "cache" / "kzoo" / "stats").glob("stats-*.npz")
    cached_stats(held.train, p, str(tmp_path / "run3"), key="digits", fingerprint=held.fingerprint)
    assert len(computed) == 2  # other images: other statistics
    shared.write_bytes(shared.read_bytes()[:100])  # a damaged cache entry
    again = cached_stats(digits.train, p, str(tmp_path / "run4"), key="digits", fingerprint=digits.fingerprint)
    assert len(computed) == 3
    np.testing.assert_array_equal(again["mean"], first["mean"])
    assert np.load(shared)["mean"].shape == (10, 10, 3)  # rewritten whole


def _stats(p, value=0.0):
    size = p.center or p.crop
    return {"mean": np.full((size, size, 3), value, np.float32), "eigvals": np.array([0.2, 0.02, 0.002], np.float32),
            "eigvecs": np.eye(3, dtype=np.float32)}


def test_alexnet_transform_crops_flips_and_colour_noise():
    p = alexnet.RECIPE.preprocess
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (300, 400, 3)), tf.uint8)
    fn = train_map(p, _stats(p, 10.0))
    a, _ = fn(image, 0, tf.constant([0, 5], tf.int64))
    b, _ = fn(image, 0, tf.constant([0, 5], tf.int64))
    c, _ = fn(image, 0, tf.constant([0, 6], tf.int64))
    assert a.shape == (224, 224, 3)
    np.testing.assert_array_equal(a, b)  # a function of the seed
    assert not np.array_equal(a, c)
    noise_free = train_map(Preprocess(resize=256, center=256, crop=224, flip=p.flip), _stats(p, 10.0))
    x, _ = noise_free(image, 0, tf.constant([0, 5], tf.int64))
    offset = np.asarray(a - x).reshape(-1, 3)
    assert np.allclose(offset, offset[0], atol=1e-3)  # one colour shift for the whole image
    assert 0 < np.abs(offset[0]).max() < 255 * 0.2 * 0.5  # ~ alpha(0.1) * lambda in [0, 1] units


def test_eval_view_is_the_mean_free_centre_crop():
    p = Preprocess(resize=8, center=8, crop=4)
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    view, _ = eval_map(p, _stats(p, 1.0))(tf.constant(image), 0)
    np.testing.assert_allclose(view, image[2:6, 2:6].astype(np.float32) - 1.0)


@pytest.mark.parametrize("recipe, shorter", [(resnet.RECIPE, (256, 480)), (resnet_cifar.RECIPE, 32)])
def test_paper_pipelines_give_the_crop_size(recipe, shorter):
    p = recipe.preprocess
    assert p.resize == shorter
    fn = train_map(p, _stats(p))
    for seed in range(3):
        out, _ = fn(tf.zeros((40, 50, 3), tf.uint8) if p.crop == 32 else tf.zeros((300, 350, 3), tf.uint8), 0,
                    tf.constant([1, seed], tf.int64))
        assert out.shape == (p.crop, p.crop, 3)


def test_box_files_csv_and_xml_keep_the_largest_object(tmp_path):
    from kzoo.data.boxes import read_boxes

    (tmp_path / "boxes.csv").write_text("image,x1,y1,x2,y2\na.jpg,1,2,11,12\na.jpg,0,0,4,4\nsub/b.png,3,3,5,9\n")
    assert read_boxes(str(tmp_path / "boxes.csv")) == {"a": [1, 2, 11, 12], "b": [3, 3, 5, 9]}
    xml = tmp_path / "ann"
    xml.mkdir()
    (xml / "n01_1.xml").write_text(
        "<annotation><filename>n01_1</filename><size><width>50</width><height>40</height></size>"
        "<object><name>n01</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>15</xmax><ymax>16</ymax></bndbox></object>"
        "<object><name>n01</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>"
        "</annotation>")
    assert read_boxes(str(xml)) == {"n01_1": [0, 0, 30, 20]}  # 600 px beats 100 px


def test_bad_box_files_name_the_problem(tmp_path):
    from kzoo.data.boxes import read_boxes

    with pytest.raises(FileNotFoundError, match="box file.*does not exist"):
        read_boxes(str(tmp_path / "none.csv"))
    (tmp_path / "h.csv").write_text("file,left,top\na,1,2\n")
    with pytest.raises(ValueError, match="needs the header image,x1,y1,x2,y2"):
        read_boxes(str(tmp_path / "h.csv"))
    (tmp_path / "e.csv").write_text("image,x1,y1,x2,y2\na,5,5,5,9\n")
    with pytest.raises(ValueError, match=r"e.csv:2: empty box"):
        read_boxes(str(tmp_path / "e.csv"))
    (tmp_path / "n.csv").write_text("image,x1,y1,x2,y2\na,5,five,8,9\n")
    with pytest.raises(ValueError, match=r"n.csv:2: box coordinates must be numbers"):
        read_boxes(str(tmp_path / "n.csv"))
    for name, row in (("inf", "a,1,1,inf,9"), ("nan", "a,nan,1,5,9"), ("neg", "a,-3,1,5,9"), ("big", "a,1,1,1e400,9")):
        (tmp_path / f"{name}.csv").write_text(f"image,x1,y1,x2,y2\n{row}\n")
        with pytest.raises(ValueError, match=rf"{name}\.csv:2: box coordinates must be finite pixel positions >= 0"):
            read_boxes(str(tmp_path / f"{name}.csv"))
    (tmp_path / "latin1.csv").write_bytes("image,x1,y1,x2,y2\ncaf\u00e9.jpg,1,1,5,9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv' is not UTF-8 text \(invalid continuation byte at byte 21\); "
                                         r"save it as UTF-8 CSV\."):
        read_boxes(str(tmp_path / "latin1.csv"))
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml" / "a.xml").write_text("<annotation><filename>a.jpg</filename><object><bndbox><xmin>1</xmin>"
                                            "<ymin>1</ymin><xmax>inf</xmax><ymax>9</ymax></bndbox></object></annotation>")
    with pytest.raises(ValueError, match=r"a\.xml: <bndbox>: box coordinates must be finite"):
        read_boxes(str(tmp_path / "xml"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .xml annotations"):
        read_boxes(str(tmp_path / "empty"))


def test_image_folder_with_boxes_pairs_each_image_with_its_box(tmp_path, shapes_folder):
    from kzoo.data.boxes import SHAPE_COLOURS
    from kzoo.data.sources import boxed_examples

    shapes_folder(tmp_path / "data", tmp_path / "boxes.csv", n=24, with_box=20)
    source = load_source(None, str(tmp_path / "data"), boxes=str(tmp_path / "boxes.csv"))
    images, boxes, labels = boxed_examples(source, "train")
    val = boxed_examples(source, "val")
    assert len(images) + len(val[0]) == 20  # the 4 images without a row are left out
    for image, box, label in zip(images, boxes, labels):
        x1, y1, x2, y2 = box.astype(int)
        inside = image[y1:y2, x1:x2].astype(float).mean(axis=(0, 1))
        assert SHAPE_COLOURS[inside.argmax()] == source.class_names[label]  # the square of its own class
    with pytest.raises(ValueError, match="--boxes goes with --data-dir"):
        load_source("shapes", boxes=str(tmp_path / "boxes.csv"))
    (tmp_path / "other.csv").write_text("image,x1,y1,x2,y2\nzzz.png,1,1,2,2\n")
    with pytest.raises(ValueError, match="no image under .* has a box.*'zzz'"):
        load_source(None, str(tmp_path / "data"), boxes=str(tmp_path / "other.csv"))
    with pytest.raises(ValueError, match="digits.* has no boxes.*--boxes FILE"):
        boxed_examples(load_source(), "train")


def test_builtin_shapes_boxes_hold_the_coloured_square():
    source = load_source("shapes")
    assert (source.train_size, source.val_size, source.class_names) == (1200, 300, ["red", "green", "blue"])
    image, box, label = next(iter(source.boxed["val"].as_numpy_iterator()))
    x1, y1, x2, y2 = box.astype(int)
    assert image[y1:y2, x1:x2, label].mean() > image[..., label].mean() + 60
    first_train = next(iter(source.train.as_numpy_iterator()))[0]
    assert not np.array_equal(first_train, image)  # train and val are different draws


def test_box_files_reject_shared_names_and_bad_xml(tmp_path):
    from kzoo.data.boxes import read_boxes

    for cls in ("cat", "dog"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        tf.io.write_file(str(tmp_path / "data" / cls / "0001.png"), tf.io.encode_png(np.zeros((8, 8, 3), "uint8")))
    (tmp_path / "b.csv").write_text("image,x1,y1,x2,y2\n0001.png,1,1,5,5\n")
    with pytest.raises(ValueError, match="2 images are named '0001'.*unique names"):
        load_source(None, str(tmp_path / "data"), boxes=str(tmp_path / "b.csv"))
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml" / "a.xml").write_text("<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>")
    with pytest.raises(ValueError, match=r"a\.xml: <bndbox>: box coordinates must be numbers, got \[.1., None, None, None\]"):
        read_boxes(str(tmp_path / "xml"))
    (tmp_path / "xml" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="a.xml: not a readable XML"):
        read_boxes(str(tmp_path / "xml"))


def test_resnet_scale_augmentation_resizes_only_the_crop_as_the_whole_image_would():
    # Reference: tf.image.resize of the whole image at every shorter side of the range, rounded
    # to 8 bits; each augmented crop must be one window of one of them (up to float rounding).
    p = Preprocess(resize=(27, 51), crop=24, flip=False, mean="channel")
    rng = np.random.default_rng(2)
    stats = {"mean": np.zeros(3, np.float32), "eigvals": np.zeros(3, np.float32), "eigvecs": np.eye(3, dtype="f4")}
    fn = tf.function(train_map(p, stats))
    exact = total = 0
    for shape in [(45, 60, 3), (70, 33, 3), (27, 40, 3)]:
        image = rng.integers(0, 256, shape).astype(np.uint8)
        references = []
        for shorter in range(27, 52):
            h, w = shape[:2]
            size = np.round(np.array([h, w], np.float32) * np.float32(shorter / min(h, w))).astype(int)
            full = np.clip(np.round(tf.image.resize(image, size, antialias=True).numpy()), 0, 255)
            references.append(np.lib.stride_tricks.sliding_window_view(full, (24, 24, 3)).reshape(-1, 24, 24, 3))
        windows = np.concatenate(references)
        for seed in range(8):
            crop = fn(tf.constant(image), 0, tf.constant([4, seed], tf.int64))[0].numpy()
            diff = np.abs(windows - crop).reshape(len(windows), -1)
            best = diff.sum(1).argmin()
            assert diff[best].max() <= 1  # one level at most: a rounding tie
            exact += (diff[best] == 0).sum()
            total += diff.shape[1]
    assert exact / total > 0.995


def _ten_reference(image, k):
    """ZFNet §3's ten sub-crops by plain slicing: corners, centre, and each mirrored."""
    h, w = image.shape[:2]
    top, left = (h - k) // 2, (w - k) // 2
    crops = [image[:k, :k], image[:k, -k:], image[-k:, :k], image[-k:, -k:], image[top : top + k, left : left + k]]
    return np.stack(crops + [c[:, ::-1] for c in crops])


def _draws(p, stats, image, n, run_seed=7):
    """n training examples of one image through train_map (graph mode, as tf.data runs it)."""
    fn = train_map(p, stats)
    image = tf.constant(image)
    ds = tf.data.Dataset.range(n).map(lambda i: fn(image, 0, tf.stack([tf.constant(run_seed, tf.int64), i]))[0])
    return np.stack(list(ds.as_numpy_iterator()))


def _which(crops, references):
    """Index of the reference each crop equals exactly (an error if none)."""
    found = [[k for k, ref in enumerate(references) if np.array_equal(crop, ref)] for crop in crops]
    assert all(len(f) == 1 for f in found), "a crop that is not one of the ten"
    return np.array([f[0] for f in found])


def test_ten_crop_training_takes_one_of_zfnets_ten_sub_crops_at_random():
    """--crops ten (ZFNet §3): on a 256-style centre square (mean image subtracted) every crop is one
    of the 10 corner/centre crops, flipped or not, of the resized image minus the mean, as numpy
    slicing cuts them; all ten occur about equally often; the draw is a function of the seed; they
    are the views 10-crop evaluation takes (kzoo.preprocessing.ten_crops)."""
    from kzoo.preprocessing import ten_crops

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (31, 45, 3)).astype(np.uint8)  # resized to 20x29, centre 20x20
    p = Preprocess(resize=20, center=20, crop=13, flip=True, mean="pixel", crops="ten")
    stats = {"mean": rng.normal(100, 20, (20, 20, 3)).astype(np.float32), "eigvals": np.zeros(3, np.float32),
             "eigvecs": np.eye(3, dtype=np.float32)}
    resized = np.clip(np.round(tf.image.resize(image, (20, 29), antialias=True).numpy()), 0, 255)
    square = resized[:, 4:24].astype(np.float32) - stats["mean"]  # centre square (offset (29 - 20) // 2)
    references = _ten_reference(square, 13)
    assert len({r.tobytes() for r in references}) == 10
    np.testing.assert_array_equal(ten_crops(square, 13), references)  # evaluation's views: the same ten
    crops = _draws(p, stats, image, 300)
    counts = np.bincount(_which(crops, references), minlength=10)
    assert counts.min() >= 12 and counts.max() <= 50, counts  # ~30 each (binomial sd 5.2)
    np.testing.assert_array_equal(_draws(p, stats, image, 20), crops[:20])  # stateless: the seed decides
    assert not np.array_equal(_draws(p, stats, image, 20, run_seed=8), crops[:20])
    # random crops (the default) land anywhere: 8 x 8 positions, flipped or not; few are among the ten
    random = _draws(dataclasses.replace(p, crops="random"), stats, image, 40)
    assert sum(any(np.array_equal(c, r) for r in references) for c in random) < 10


def test_ten_crops_without_a_centre_square_flips_or_fixed_scale():
    """The ten crops of a non-square image (mean colour), only the five unflipped without flips,
    and under ResNet's random scale one of the ten crops of the image resized to some side in
    the range (the whole image resized: the crop-only resize draws random positions)."""
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (24, 37, 3)).astype(np.uint8)  # the shorter side already 24: no resize
    stats = {"mean": np.array([10.0, 20.0, 30.0], np.float32), "eigvals": np.zeros(3, np.float32),
             "eigvecs": np.eye(3, dtype=np.float32)}
    references = _ten_reference(image.astype(np.float32) - stats["mean"], 16)
    p = Preprocess(resize=24, crop=16, flip=False, mean="channel", crops="ten")
    assert set(_which(_draws(p, stats, image, 60), references)) == set(range(5))
    p = dataclasses.replace(p, resize=(20, 23), flip=True)
    by_side = {}
    for side in range(20, 24):
        size = np.round(np.array([24, 37], np.float32) * np.float32(side / 24)).astype(int)
        full = np.clip(np.round(tf.image.resize(image, size, antialias=True).numpy()), 0, 255)
        by_side[side] = _ten_reference(full - stats["mean"], 16)
    all_references = np.concatenate(list(by_side.values()))
    found = _which(_draws(p, stats, image, 120), all_references)
    assert len(set(found // 10)) == 4 and len(set(found % 10)) == 10  # every side, every one of the ten


def test_preprocess_crops_is_checked_and_recorded_only_when_not_the_default():
    with pytest.raises(ValueError, match=r"Preprocess crops must be one of \('random', 'ten'\), got 'five'"):
        Preprocess(resize=256, crop=224, crops="five")
    ten = Preprocess(resize=256, crop=224, crops="ten")
    assert ten.to_dict()["crops"] == "ten" and Preprocess.from_dict(ten.to_dict()) == ten
    assert "crops" not in Preprocess(resize=256, crop=224).to_dict()  # records from before the option read the same
    assert ten.scaled(64).crops == "ten"
