"""The overlap tool (ZFNet §5.2) on generated folders with planted copies, and --exclude."""

import csv
import io
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

import kzoo
from kzoo.data import overlap
from kzoo.data.caltech import load_collection
from kzoo.data.overlap import correlate, find_overlap, main, read_list, thumbnails
from kzoo.data.images import read

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smooth(rng, h, w):
    """A photograph-like image: smooth random colours (a bicubic 6x8 field) and fine noise."""
    field = Image.fromarray(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(field, np.float32) + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _resize(image, factor):
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), Image.LANCZOS))


def _jpeg(image, quality):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _crop(image, fraction):  # 2% of each side: whole-image correlation keeps only slight crops
    h, w = image.shape[:2]
    dy, dx = round(h * fraction), round(w * fraction)
    return image[dy : h - dy, dx : w - dx]


def _save(path, image, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(image)
    picture = picture.convert(mode) if mode else picture
    picture.save(path, quality=90) if path.suffix == ".jpg" else picture.save(path)


# (image of A, its copy in B, flipped): what the tool must find, and nothing else
PLANTED = {
    ("animals/a00.jpg", "copy_half.jpg", False),  # 0.5x
    ("animals/a01.jpg", "sub/copy_big.png", False),  # 1.7x
    ("animals/a02.jpg", "copy_q30.jpg", False),  # JPEG quality 30
    ("animals/a03.jpg", "copy_flip.jpg", True),  # mirrored
    ("animals/a04.jpg", "copy_crop.jpg", False),  # 2% cropped off each side
    ("animals/a05.jpg", "copy_grey.jpg", False),  # a greyscale JPEG
    ("plants/a06.jpg", "copy_cmyk.jpg", False),  # a CMYK JPEG
    ("plants/a07.jpg", "sub/deeper/copy_mix.jpg", True),  # mirrored, 0.5x, quality 30
    ("plants/a08.jpg", "copy8_half.jpg", False),  # one image, two copies
    ("plants/a08.jpg", "copy8_q30.jpg", False),
    ("plants/a09.png", "copy_of_rgba.jpg", False),  # RGBA in A
    ("plants/a10.jpg", "copy_of_grey.png", False),  # greyscale in A, RGB copy
}
COPIES = {"copy_half.jpg": lambda x: _resize(x, 0.5), "sub/copy_big.png": lambda x: _resize(x, 1.7),
          "copy_q30.jpg": lambda x: _jpeg(x, 30), "copy_flip.jpg": lambda x: x[:, ::-1],
          "copy_crop.jpg": lambda x: _crop(x, 0.02), "copy_grey.jpg": lambda x: x,
          "copy_cmyk.jpg": lambda x: x, "sub/deeper/copy_mix.jpg": lambda x: _jpeg(_resize(x[:, ::-1], 0.5), 30),
          "copy8_half.jpg": lambda x: _resize(x, 0.5), "copy8_q30.jpg": lambda x: _jpeg(x, 30),
          "copy_of_rgba.jpg": lambda x: x, "copy_of_grey.png": lambda x: x}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A: 12 images in class folders (one RGBA PNG, one greyscale, one flat); B: 12 others
    (one flat), and the planted copies of A's images."""
    root = tmp_path_factory.mktemp("overlap")
    rng = np.random.default_rng(0)
    images = {}
    for k in range(12):
        name = f"{'animals' if k < 6 else 'plants'}/a{k:02d}.{'png' if k == 9 else 'jpg'}"
        h, w = rng.integers((48, 64), (151, 201))
        image = _smooth(rng, h, w)
        if k == 10:
            image = np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, -1)
            _save(root / "A" / name, image, "L")
        elif k == 9:
            _save(root / "A" / name, np.dstack([image, rng.integers(0, 256, (h, w), dtype=np.uint8)]))
        elif k == 11:
            _save(root / "A" / name, np.full((h, w, 3), 90, np.uint8))
        else:
            _save(root / "A" / name, image)
        images[name] = read(root / "A" / name)  # as the tool reads it
    for k in range(12):
        h, w = rng.integers((48, 64), (151, 201))
        _save(root / "B" / ("more" if k % 3 else "") / f"b{k:02d}.jpg", _smooth(rng, h, w))
    _save(root / "B" / "flat.png", np.full((60, 80, 3), 200, np.uint8))
    for image, copy, _ in PLANTED:
        mode = {"copy_grey.jpg": "L", "copy_cmyk.jpg": "CMYK"}.get(copy)
        _save(root / "B" / copy, COPIES[copy](images[image]), mode)
    return root / "A", root / "B"


def test_finds_exactly_the_planted_copies(folders, capsys):
    pairs = find_overlap(*map(str, folders), progress=False)
    assert {(p.image, p.against, p.flipped) for p in pairs} == PLANTED
    assert all(0.95 <= p.correlation <= 1.0 for p in pairs)
    assert "12 pairs correlate >= 0.95, 11 images" in capsys.readouterr().out
    # the distinct images stay far below the threshold (flat images correlate with nothing)
    a, files_a = thumbnails(str(folders[0]), progress=False)
    b, files_b = thumbnails(str(folders[1]), progress=False)
    planted = {(i, j) for i, f in enumerate(files_a) for j, g in enumerate(files_b)
               if any((f, g) == p[:2] for p in PLANTED)}
    others = [c for i, j, c, _ in correlate(a, b, 0.01, block=None) if (i, j) not in planted]
    assert max(others) < 0.8
    assert not a[files_a.index("plants/a11.jpg")].any() and not b[files_b.index("flat.png")].any()


def _area_mean(grey, size):
    """Area average along axis 0, as a different formulation: repeat each row `size`
    times, then average runs of the original height."""
    return np.repeat(grey, size, axis=0).reshape(size, grey.shape[0], -1).mean(1)


def _independent_thumbnail(path):
    grey = read(path).astype(np.float64) @ [0.299, 0.587, 0.114]
    return _area_mean(_area_mean(grey, 32).T, 32).T


@pytest.mark.parametrize("image, copy", [("animals/a02.jpg", "copy_q30.jpg"), ("plants/a07.jpg",
                                                                                "sub/deeper/copy_mix.jpg")])
def test_the_correlation_is_numpy_corrcoef_of_the_thumbnails(folders, image, copy):
    x, y = _independent_thumbnail(folders[0] / image), _independent_thumbnail(folders[1] / copy)
    expected = max(np.corrcoef(x.ravel(), y.ravel())[0, 1], np.corrcoef(x[:, ::-1].ravel(), y.ravel())[0, 1])
    a, _ = thumbnails(str(folders[0]), [image], progress=False)
    b, _ = thumbnails(str(folders[1]), [copy], progress=False)
    [(_, _, found, flipped)] = correlate(a, b, 0.5)
    assert found == pytest.approx(expected, abs=2e-3)  # thumbnails are kept as float16
    assert flipped == (copy == "sub/deeper/copy_mix.jpg")


def test_blocks_give_what_one_product_gives(folders):
    a, _ = thumbnails(str(folders[0]), progress=False)
    b, _ = thumbnails(str(folders[1]), progress=False)
    whole = correlate(a, b, 0.2, block=None)
    assert len(whole) > 30  # a low threshold: many pairs to agree on
    for block in (1, 3, 7):
        blocked = correlate(a, b, 0.2, block=block)
        assert [p[:2] for p in blocked] == [p[:2] for p in whole] and [p[3] for p in blocked] == [p[3] for p in whole]
        np.testing.assert_allclose([p[2] for p in blocked], [p[2] for p in whole], atol=1e-5)
    # a second formulation: x·y and x·mirror(y) (mirroring negates the basis' second half)
    x, y = a.astype(np.float64), b.astype(np.float64)
    mirrored = y * np.repeat([1, -1], y.shape[1] // 2)
    best = np.maximum(x @ y.T, x @ mirrored.T)
    i, j = np.nonzero(best >= 0.2)
    assert [p[:2] for p in whole] == list(zip(i.tolist(), j.tolist()))
    np.testing.assert_allclose([p[2] for p in whole], np.minimum(best[i, j], 1), atol=1e-5)


def test_the_cache_is_reused_and_follows_changed_files(folders, tmp_path, monkeypatch):
    root, cache = tmp_path / "images", tmp_path / "cache"
    names = ["a.jpg", "b.jpg", "c/d.jpg"]
    rng = np.random.default_rng(1)
    for name in names:
        _save(root / name, _smooth(rng, 48, 64))
    calls = []
    thumbnail = overlap.grey_thumbnail
    monkeypatch.setattr(overlap, "grey_thumbnail", lambda image, size: calls.append(1) or thumbnail(image, size))

    def run():
        calls.clear()
        return thumbnails(str(root), cache_dir=str(cache), progress=False)

    first, files = run()
    assert files == ["a.jpg", "b.jpg", "c/d.jpg"] and len(calls) == 3
    [path] = cache.iterdir()
    again, _ = run()
    assert not calls and np.array_equal(again, first)  # all read from the cache
    _save(root / "b.jpg", _smooth(rng, 48, 64))
    os.utime(root / "b.jpg", ns=(os.stat(root / "b.jpg").st_atime_ns, os.stat(root / "b.jpg").st_mtime_ns + 10**9))
    changed, _ = run()
    assert len(calls) == 1 and np.array_equal(changed[[0, 2]], first[[0, 2]]) and not np.array_equal(
        changed[1], first[1])
    _save(root / "e.jpg", _smooth(rng, 48, 64))
    (root / "a.jpg").unlink()
    grown, files = run()
    assert files == ["b.jpg", "c/d.jpg", "e.jpg"] and len(calls) == 1 and np.array_equal(grown[:2], changed[1:])
    with np.load(path) as cached:
        assert cached["files"].tolist() == files and cached["sizes"].tolist() == [
            os.path.getsize(root / f) for f in files]
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]  # written atomically
    # a file that fails stops the pass; what was computed before it is kept for the rerun
    _save(root / "a0.jpg", _smooth(rng, 48, 64))
    (root / "c" / "bad.jpg").write_bytes(b"\xff\xd8\xff not a JPEG")
    with pytest.raises(ValueError, match=r"c/bad.jpg' cannot be decoded as an image \(.*\); remove or replace it"):
        run()
    assert len(calls) == 1  # a0.jpg, before the bad file
    (root / "c" / "bad.jpg").unlink()
    resumed, files = run()
    assert not calls and files == ["a0.jpg", "b.jpg", "c/d.jpg", "e.jpg"] and np.array_equal(resumed[1:], grown)


def test_command_line_writes_the_list(folders, tmp_path, capsys):
    out, cache = tmp_path / "lists" / "overlap.csv", tmp_path / "cache"
    argv = ["--data-dir", str(folders[0]), "--against", str(folders[1]), "--out", str(out), "--cache", str(cache),
            "--quiet"]
    assert main(argv) == 0
    assert f"written to {out}" in capsys.readouterr().out
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "against", "correlation", "flipped"]
    assert {(r[0], r[1], r[3] == "yes") for r in rows[1:]} == PLANTED
    assert all(len(r[2]) == 6 and 0.95 <= float(r[2]) <= 1 for r in rows[1:])  # 0.9987
    assert read_list(str(out)) == sorted({p[0] for p in PLANTED})
    assert len(list(cache.iterdir())) == 2  # both folders' thumbnails
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "exists; give --overwrite" in capsys.readouterr().err
    assert main(argv[:6] + ["--overwrite", "--threshold", "0.999"]) == 0  # no cache, progress shown
    assert len(list(csv.reader(open(out)))) < len(rows)
    printed = capsys.readouterr().out
    assert "Thumbnails of" in printed and "images/s" in printed and "Comparing:" in printed
    assert "300/300" in printed and "pairs/s" in printed


def test_help_loads_no_tensorflow():
    code = ("import runpy, sys\nsys.argv = ['x', '--help']\ntry:\n    runpy.run_module('kzoo.data.overlap', "
            "run_name='__main__')\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('tensorflow', 'keras') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().endswith("[]") and "--threshold" in done.stdout, done.stderr


@pytest.mark.parametrize("argv, message", [
    (["--data-dir", "{tmp}/nowhere"], "--data-dir '{tmp}/nowhere' is not a folder"),
    (["--against", "{tmp}/empty"], "--against '{tmp}/empty' holds no images"),
    (["--data-dir", "{tmp}/broken"], "'{tmp}/broken/x/bad.jpg' is not a JPEG, PNG, BMP or GIF image"),
    (["--threshold", "0"], "argument --threshold: expected a number in (0, 1], got '0'"),
    (["--threshold", "1.5"], "argument --threshold: expected a number in (0, 1], got '1.5'"),
    (["--threshold", "nan"], "argument --threshold: expected a number in (0, 1], got 'nan'"),
])
def test_bad_input_names_the_problem_and_the_fix(folders, tmp_path, capsys, argv, message):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    _save(tmp_path / "broken" / "good.jpg", _smooth(np.random.default_rng(2), 48, 64))
    (tmp_path / "broken" / "x").mkdir()
    (tmp_path / "broken" / "x" / "bad.jpg").write_bytes(b"not an image")
    given = dict(zip(argv[::2], (a.format(tmp=tmp_path) for a in argv[1::2])))
    args = {"--data-dir": str(folders[0]), "--against": str(folders[1]), **given}
    with pytest.raises(SystemExit) as exit_:
        main([x for item in args.items() for x in item] + ["--quiet"])
    assert exit_.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"expected a number in \(0, 1\], got 0"):
        find_overlap(str(folders[0]), str(folders[1]), threshold=0)



def test_a_folder_against_itself_is_refused(folders, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--data-dir", str(folders[0]), "--against", str(folders[0]) + "/.", "--quiet"])
    assert exit_.value.code == 2 and "are the same folder" in capsys.readouterr().err


# --- the Caltech recipes' --exclude

@pytest.fixture(scope="module")
def caltech(tmp_path_factory):
    root = tmp_path_factory.mktemp("caltech")
    rng = np.random.default_rng(3)
    for name, count in (("accordion", 5), ("brain", 4), ("BACKGROUND_Google", 3)):
        for i in range(count):
            _save(root / "101_ObjectCategories" / name / f"image_{i + 1:04d}.jpg", _smooth(rng, 24, 32))
    return root


def _list(path, entries, header=True):
    rows = ["image,against,correlation,flipped"] * header + [f"{e},n01/x.JPEG,0.9700,no" if header else e
                                                              for e in entries]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_exclude_leaves_out_exactly_the_listed_images(caltech, tmp_path):
    whole = load_collection("caltech101", str(caltech))
    listed = _list(tmp_path / "o.csv", ["accordion/image_0002.jpg", "101_ObjectCategories/brain/image_0004.jpg",
                                        "accordion/image_0002.jpg", "BACKGROUND_Google/image_0001.jpg"])
    kept = load_collection("caltech101", str(caltech), exclude=read_list(listed))
    assert kept.excluded == ("BACKGROUND_Google/image_0001.jpg", "accordion/image_0002.jpg", "brain/image_0004.jpg")
    gone = {str(caltech / "101_ObjectCategories" / e) for e in kept.excluded}
    assert kept.images == [f for f in whole.images if f not in gone] and len(kept.images) == 9
    assert kept.labels.tolist() == [l for f, l in zip(whole.images, whole.labels) if f not in gone]
    # a plain list, given as a file; the background dropped after the exclusion
    plain = _list(tmp_path / "plain.txt", ["# found by hand", "brain/image_0001.jpg", ""], header=False)
    without = load_collection("caltech101", str(caltech / "101_ObjectCategories"), background=False, exclude=plain)
    assert without.class_names == ["accordion", "brain"] and without.labels.tolist() == [0] * 5 + [1] * 3
    with pytest.raises(ValueError, match=r"names 2 images not in .*'accordion/image_0009.jpg', 'ak47/001_0001.jpg'"
                                         r".*made for another folder"):
        load_collection("caltech101", str(caltech), exclude=["accordion/image_0009.jpg", "ak47/001_0001.jpg"])
    (tmp_path / "tfds" / "caltech101").mkdir(parents=True)
    with pytest.raises(ValueError, match="--exclude needs the 101_ObjectCategories folder layout"):
        load_collection("caltech101", str(tmp_path / "tfds"), exclude=[])


def test_recipe_takes_exclude_and_the_features_cache_tells_exclusions_apart(caltech, tmp_path, capsys,
                                                                             monkeypatch):
    from kzoo.tasks import transfer
    from kzoo.recipes.caltech import main as recipe

    seen = []
    monkeypatch.setattr(transfer, "run_protocol", lambda trained, collection, *a: seen.append(collection) or {"rows": []})
    monkeypatch.setattr(transfer, "results_table", lambda results: "")
    argv = ["--model", "resnet20", "--weights", "none", "--data-dir", str(caltech), "--out", str(tmp_path / "r")]
    assert recipe("caltech101", argv + ["--exclude", _list(tmp_path / "o.csv", ["brain/image_0003.jpg"])]) == 0
    assert "caltech101: 11 images in 3 classes (1 excluded, as" in capsys.readouterr().out
    assert seen[0].excluded == ("brain/image_0003.jpg",) and len(seen[0].images) == 11
    with pytest.raises(SystemExit) as exit_:
        recipe("caltech101", argv + ["--exclude", _list(tmp_path / "x.csv", ["001.ak47/001_0001.jpg"])])
    assert exit_.value.code == 2 and "'001.ak47/001_0001.jpg'" in capsys.readouterr().err
    # features are cached per collection: one exclusion must not reuse another's of the same size
    monkeypatch.setattr(transfer, "feature_extractor", lambda model, layers: lambda x, training: {"f": x})
    trained = types.SimpleNamespace(model=None, mean=(0, 0, 0), preprocessing=types.SimpleNamespace(
        to_dict=dict), preprocess=lambda images: np.float32([[image.mean()] for image in images]))
    cache = tmp_path / "features"
    for exclude in (None, ["brain/image_0001.jpg"], ["brain/image_0002.jpg"], ["brain/image_0002.jpg"]):
        transfer.extract_features(trained, load_collection("caltech101", str(caltech), exclude=exclude), ["f"],
                                  str(cache), identity=["w"])
    assert len(list(cache.iterdir())) == 3
    assert kzoo.data.caltech.Collection("c", [], np.zeros(0), []).excluded == ()
