"""Prepared shards (issue 14): the stored pixels are the recipes' resize rounded to 8 bits,
training on them equals training on the folder they came from, and a preparation resumes,
refuses other settings and names a damaged shard."""

import io
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kzoo.data import shards
from kzoo.data.prepare import main as prepare_main
from kzoo.data.sources import image_folder, load_source, naming_bad_images
from kzoo.recipes import alexnet, resnet
from kzoo.train import engine
from kzoo.train.schedules import StepsAt

ALEXNET = alexnet.RECIPE.preprocess.scaled(24)  # resize 27, centre 27, crop 24, PCA noise
RESNET = resnet.RECIPE.preprocess.scaled(24)  # shorter side at random in 27-51, crop 24


def write_folder(root, suffix=".jpg", classes=3, per_class=8, seed=0):
    """Smooth random images of 40-120 px (JPEG sizes as natural images have) in class folders."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(40, 121, 2)
            coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize((int(w), int(h)), Image.BICUBIC).save(root / f"class{c}" / f"{i}{suffix}")
    return root


def prepare(data, out, *flags):
    assert prepare_main(["--data-dir", str(data), "--out", str(out), "--quiet", *flags]) == 0
    return out


def _stats(p):
    mean = np.full((p.center, p.center, 3), 110.0, np.float32) if p.pixel_mean else np.array([110, 100, 90], "f4")
    return {"mean": mean, "eigvals": np.array([0.2, 0.02, 0.002], "f4"), "eigvecs": np.eye(3, dtype="f4")}


def _epoch(source, p, epoch=0):
    """An epoch's training batches and the validation batches, as the engine makes them."""
    config = engine.TrainConfig(model="none", schedule=None, preprocess=p, run_dir="", batch_size=4, epochs=1,
                                momentum=0.9, weight_decay=0.0, seed=3)
    train = engine._train_dataset(source, config, _stats(p), epoch, 0, 4)
    val = engine._val_dataset(source, config, _stats(p), 4)
    return [(x.numpy(), y.numpy()) for x, y in train.concatenate(val)]


def test_stored_pixels_are_tensorflows_resize_rounded_to_8_bits(tmp_path):
    data = write_folder(tmp_path / "data", suffix=".png", per_class=3)  # PNG: PIL decodes what TF decodes
    out = prepare(data, tmp_path / "shards", "--short-side", "27", "--center", "27", "--images-per-shard", "2",
                  "--encoding", "png")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resize"] == {"short_side": 27, "center": 27} and manifest["encoding"] == "png"
    assert manifest["counts"] == {"train": 8, "val": 1} and manifest["classes"] == ["class0", "class1", "class2"]
    files = [(str(p), p.parent.name) for p in sorted(data.rglob("*.png"))]
    stored = []
    for item in manifest["shards"]["train"] + manifest["shards"]["val"]:
        path = out / item["file"]
        assert shards.sha256(path) == item["sha256"]
        for record in tf.data.TFRecordDataset(str(path)):
            example = tf.train.Example.FromString(record.numpy())
            stored.append(np.asarray(Image.open(io.BytesIO(example.features.feature["image"].bytes_list.value[0]))))
    references = []
    for path, _ in files:
        image = np.asarray(Image.open(path).convert("RGB"), np.float32)
        h, w = image.shape[:2]
        size = (27, round(w * 27 / h)) if h <= w else (round(h * 27 / w), 27)
        resized = tf.image.resize(image, size, method="bilinear", antialias=True).numpy()
        top, left = (size[0] - 27) // 2, (size[1] - 27) // 2
        references.append(np.clip(np.round(resized), 0, 255).astype(np.uint8)[top:top + 27, left:left + 27])
    assert len(stored) == len(references) == 9
    for image in stored:  # each stored image is the rounded resize of one source image, exactly
        assert image.shape == (27, 27, 3)
        assert sum(np.array_equal(image, ref) for ref in references) == 1


@pytest.mark.parametrize("p, flags", [
    (ALEXNET, ["--short-side", "27", "--center", "27"]),  # raw, the default
    (ALEXNET, ["--short-side", "27", "--encoding", "png"]),
    (RESNET, ["--short-side", "0"]),  # the files' bytes: any resize, ResNet's random one too
])
def test_the_pipeline_on_shards_is_bit_identical_to_the_folders(tmp_path, p, flags):
    data = write_folder(tmp_path / "data")
    # 2 images a shard over 11 shards, read 4 at a time: the interleave's layout, across groups
    shards.READ_CYCLE, cycle = 4, shards.READ_CYCLE
    try:
        out = prepare(data, tmp_path / "shards", "--images-per-shard", "2", *flags)
    finally:
        shards.READ_CYCLE = cycle
    raw, prepared = image_folder(data), load_source(None, str(out))
    assert prepared.prepared["read_cycle"] == 4 and len(prepared.prepared["shards"]["train"]) == 11
    assert (prepared.train_size, prepared.val_size, prepared.class_names) == (22, 2, raw.class_names)
    labels = [int(y) for _, y in raw.train]
    assert [int(y) for _, y in prepared.train] == labels  # the folder's order
    for epoch in (0, 1):
        a, b = _epoch(raw, p, epoch), _epoch(prepared, p, epoch)
        assert len(a) == len(b) == 5 + 1
        for (x, y), (u, v) in zip(a, b):
            np.testing.assert_array_equal(y, v)
            np.testing.assert_array_equal(x, u)  # bit for bit, after crops, flips, mean and noise


def _tiny(classes):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)])


@pytest.mark.parametrize("p, flags", [(ALEXNET, ["--short-side", "27", "--center", "27"]),
                                      (RESNET, ["--short-side", "0"])])
def test_training_on_shards_equals_training_on_the_folder(tmp_path, p, flags):
    data = write_folder(tmp_path / "data")
    out = prepare(data, tmp_path / "shards", *flags)
    results = []
    for name, source in (("raw", image_folder(data)), ("shards", load_source(None, str(out)))):
        config = engine.TrainConfig(model="custom", schedule=StepsAt(0.05, (), 1.0), preprocess=p,
                                    run_dir=str(tmp_path / f"run-{name}"), batch_size=4, epochs=2, momentum=0.9,
                                    weight_decay=5e-4, verbose=0)
        metrics, _ = engine.train(config, source, model_fn=_tiny)
        results.append(metrics)
        history = (tmp_path / f"run-{name}" / "history.csv").read_text()
        results.append(history)
    for key in ("images_per_second",):
        results[0].pop(key), results[2].pop(key)
    assert results[0]["steps"] == 10 and results[0] == results[2]  # loss, errors, every epoch's numbers
    assert results[1] == results[3]


def test_shards_must_fit_the_recipes_resize(tmp_path):
    data = write_folder(tmp_path / "data", per_class=2)
    fixed = load_source(None, str(prepare(data, tmp_path / "fixed", "--short-side", "27", "--center", "27")))
    shards.check_fit(fixed, ALEXNET)  # its own resize: fine
    with pytest.raises(ValueError, match=r"resized to a shorter side of 27, but this recipe draws the shorter "
                                         r"side at random from 27-51 .*--short-side 0 \(no resize"):
        shards.check_fit(fixed, RESNET)
    with pytest.raises(ValueError, match=r"shorter side of 27; this recipe resizes to 31: .*--data-dir "
                                         rf"{data} --out NEW --short-side 31 --center 31\."):
        shards.check_fit(fixed, alexnet.RECIPE.preprocess.scaled(27))
    whole = load_source(None, str(prepare(data, tmp_path / "whole", "--short-side", "27")))
    shards.check_fit(whole, ALEXNET)  # the centre square is cut in training
    with pytest.raises(ValueError, match=r"holds 27x27 centre squares; this recipe needs the whole resized"):
        shards.check_fit(fixed, ALEXNET.__class__(resize=27, crop=24))
    shards.check_protocol(fixed, ALEXNET, "10crop")  # evaluation: the resize it was prepared with
    with pytest.raises(ValueError, match=r"--protocol dense resizes each original image to several sizes, but "
                                         r"--data-dir .* shorter side of 27: give the image folder itself, or "
                                         r"shards prepared with --short-side 0\."):
        shards.check_protocol(fixed, ALEXNET, "dense")
    shards.check_protocol(whole, RESNET, "center")  # ResNet evaluates at its range's low end, 27
    with pytest.raises(ValueError, match="this recipe resizes to 30"):
        shards.check_protocol(whole, ALEXNET.__class__(resize=(30, 40), crop=24), "center")
    config = engine.TrainConfig(model="custom", schedule=StepsAt(0.05, (), 1.0), preprocess=RESNET,
                                run_dir=str(tmp_path / "run"), batch_size=2, epochs=1, momentum=0.9,
                                weight_decay=0.0, verbose=0)
    with pytest.raises(ValueError, match="--short-side 0"):
        engine.train(config, fixed, model_fn=_tiny)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_an_interrupted_preparation_resumes_and_other_settings_are_refused(tmp_path, monkeypatch, capsys):
    data = write_folder(tmp_path / "data", per_class=4)
    whole = prepare(data, tmp_path / "whole", "--short-side", "27", "--images-per-shard", "2")
    real, written = shards._example, []

    def dies_at_the_5th(*args):
        if len(written) == 4:
            raise KeyboardInterrupt
        written.append(1)
        return real(*args)

    monkeypatch.setattr(shards, "_example", dies_at_the_5th)
    args = ["--data-dir", str(data), "--out", str(tmp_path / "out"), "--short-side", "27", "--images-per-shard", "2"]
    with pytest.raises(SystemExit) as exit_:
        prepare_main([*args, "--quiet"])
    assert exit_.value.code == 130 and "rerun the same command to finish" in capsys.readouterr().err
    left = sorted(os.listdir(tmp_path / "out"))
    assert left == [".progress.json", "train-00000-of-00006.tfrecord", "train-00001-of-00006.tfrecord"]
    kept = {f: os.stat(tmp_path / "out" / f).st_mtime_ns for f in left[1:]}
    monkeypatch.setattr(shards, "_example", real)
    assert prepare_main(args) == 0
    assert "2 complete shard(s) kept" in capsys.readouterr().out
    assert {f: os.stat(tmp_path / "out" / f).st_mtime_ns for f in kept} == kept  # not rewritten
    ours = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert ours["shards"] == json.loads((whole / "manifest.json").read_text())["shards"]  # same bytes
    assert not (tmp_path / "out" / ".progress.json").exists()
    # a damaged shard is rewritten by a rerun; other settings are refused with the flags named
    (tmp_path / "out" / "train-00003-of-00006.tfrecord").write_bytes(b"junk")
    assert prepare_main(args + ["--quiet"]) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == ours
    with pytest.raises(SystemExit) as exit_:
        prepare_main([*args, "--short-side", "32", "--encoding", "png"])  # the last --short-side counts
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --out {str(tmp_path / 'out')!r} holds shards prepared with other settings (--short-side 27 -> 32; "
        f"--encoding raw -> png). kzoo does not overwrite them: give another --out, rerun with the settings they "
        f"were made with, or delete {str(tmp_path / 'out')!r} first.")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        prepare_main(["--data-dir", str(data), "--out", str(tmp_path / "mine")])
    assert "holds files that are not kzoo shards" in capsys.readouterr().err
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_a_truncated_or_damaged_shard_is_named(tmp_path):
    data = write_folder(tmp_path / "data", per_class=4)
    out = prepare(data, tmp_path / "shards", "--short-side", "27", "--images-per-shard", "4")
    shard = out / "train-00001-of-00003.tfrecord"
    good = shard.read_bytes()
    shard.write_bytes(good[:-10])
    with pytest.raises(ValueError, match=rf"shard '{shard}' has {len(good) - 10} bytes, manifest.json says "
                                         rf"{len(good)} \(truncated or changed\); python -m kzoo.data.prepare"):
        load_source(None, str(out))
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF  # same size: found by the record's checksum, named by the sha256
    shard.write_bytes(bytes(damaged))
    source = load_source(None, str(out))
    with pytest.raises(ValueError, match=rf"shard '{shard}' does not match its sha256 in manifest.json"):
        with naming_bad_images(source):
            list(source.train)


def test_visualize_refuses_shards_resized_otherwise_than_the_model_evaluates(tmp_path, capsys):
    from kzoo.visualize.run import main as visualize

    data = write_folder(tmp_path / "data", per_class=2)
    fixed = prepare(data, tmp_path / "fixed", "--short-side", "27", "--center", "27")
    with pytest.raises(SystemExit) as exit_:  # resnet20's centre view resizes to 32, not 27
        visualize(["top9", "--model", "resnet20", "--classes", "3", "--data-dir", str(fixed),
                   "--out", str(tmp_path / "figures")])
    assert exit_.value.code == 2
    assert f"--data-dir {str(fixed)!r} holds images resized to a shorter side of 27" in capsys.readouterr().err
    assert not (tmp_path / "figures").exists()


def test_two_preparations_of_the_same_folder_are_the_same_bytes(tmp_path):
    """Another process too (a record's features map was written in a per-process order)."""
    import os
    import subprocess
    import sys

    data = write_folder(tmp_path / "data", per_class=4)
    first, second = prepare(data, tmp_path / "one"), tmp_path / "two"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "kzoo.data.prepare", "--data-dir", str(data), "--out", str(second), "--quiet"],
                   check=True, cwd=root, env={**os.environ, "PYTHONHASHSEED": "12345"}, capture_output=True, timeout=300)
    names = sorted(p.name for p in first.iterdir() if p.suffix == ".tfrecord")
    assert names and names == sorted(p.name for p in second.iterdir() if p.suffix == ".tfrecord")
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_an_edited_or_missing_manifest_is_named_and_the_shards_can_be_made_again(tmp_path):
    import json

    data = write_folder(tmp_path / "data", per_class=4)
    out = prepare(data, tmp_path / "shards", "--short-side", "27", "--images-per-shard", "4")
    manifest = out / "manifest.json"
    good = json.loads(manifest.read_text())
    for edit, names in [
        (lambda m: [m], None),  # a list: not a manifest at all
        (lambda m: {**m, "counts": {"train": "ten", "val": 2}}, "counts, shards"),
        (lambda m: {**m, "classes": ["only"]}, "classes"),
        (lambda m: {**m, "shards": {**m["shards"], "train": [{**m["shards"]["train"][0], "file": "../../x.tfrecord"},
                                                             *m["shards"]["train"][1:]]}}, "shards"),
        (lambda m: {**m, "encoding": "webp"}, "encoding"),
        (lambda m: {k: v for k, v in m.items() if k != "resize"}, "resize"),
    ]:
        manifest.write_text(json.dumps(edit(good)))
        with pytest.raises(ValueError) as err:
            load_source(None, str(out))
        if names is None:
            assert str(err.value) == (f"{str(manifest)!r} is not a kzoo shards manifest (format None, expected "
                                      f"'kzoo-shards-1'); prepare the shards again with python -m kzoo.data.prepare.")
        else:
            assert str(err.value) == (f"{str(manifest)!r} is damaged or was edited ({names}); restore it from a copy, "
                                      f"or rerun python -m kzoo.data.prepare --out {out} with the flags it was "
                                      f"prepared with (complete shards are kept).")
    manifest.unlink()  # deleted: named, not read as a folder of class sub-folders
    with pytest.raises(ValueError, match=rf"--data-dir '{out}' holds prepared shards but no manifest.json"):
        load_source(None, str(out))
    prepare(data, out, "--short-side", "27", "--images-per-shard", "4")  # made again in place
    assert json.loads(manifest.read_text()) == good
    assert load_source(None, str(out)).train_size == good["counts"]["train"]
