"""One image reader (kzoo.data.images): every kind of file the folder loader accepts gives
the same pixels through training's pipeline, the prepared shards, evaluation's views and
`preprocess` (predict), and those pixels are what the file holds. Each kind's expected
pixels come from how the file was made (its array, palette, alpha, orientation), or for
JPEG from TensorFlow's libjpeg decoder with the exact IDCT: never from the reader itself."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kzoo
from kzoo.data import images, shards
from kzoo.data.sources import image_folder
from kzoo.data.transforms import eval_map

H, W = 10, 14
RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
PALETTE = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
INDEX = RNG.integers(0, 16, (H, W), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (H, W), dtype=np.uint8)
WIDE = RNG.integers(0, 65536, (H, W, 3)).astype(np.uint16)


def _png16(array, path):
    """A 16-bit PNG written byte by byte (Pillow writes no 16-bit RGB)."""
    h, w = array.shape[:2]
    colour = 2 if array.ndim == 3 else 0
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _paletted(index=INDEX):
    im = Image.fromarray(index, "P")
    im.putpalette(PALETTE.tobytes())
    return im


def _over_white(rgb, alpha):
    a = alpha[..., None].astype(np.float64) / 255
    return np.round(rgb * a + 255 * (1 - a)).astype(np.uint8)


def _jpeg_reference(path):
    return tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3, dct_method="INTEGER_ACCURATE").numpy()


def _oriented(array, orientation):
    """EXIF orientation 1-8 undone with numpy: the image as a viewer shows it."""
    return {1: array, 2: array[:, ::-1], 3: array[::-1, ::-1], 4: array[::-1], 5: array.transpose(1, 0, 2),
            6: np.rot90(array, -1), 7: array.transpose(1, 0, 2)[::-1, ::-1], 8: np.rot90(array, 1)}[orientation]


def _with_orientation(im, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _grey(x):
    return np.repeat(x[..., None], 3, axis=-1)


def _write(kind, path):
    """Write one kind of file; returns (its expected pixels, tolerance in levels)."""
    if kind == "rgb.png":
        Image.fromarray(RGB).save(path)
        return RGB, 0
    if kind == "rgb.bmp":
        Image.fromarray(RGB).save(path)
        return RGB, 0
    if kind == "grey.png":
        Image.fromarray(RGB[..., 0]).save(path)
        return _grey(RGB[..., 0]), 0
    if kind == "grey16.png":
        _png16(WIDE[..., 0], path)
        return _grey((WIDE[..., 0] >> 8).astype(np.uint8)), 0
    if kind == "rgb16.png":
        _png16(WIDE, path)
        return (WIDE >> 8).astype(np.uint8), 0
    if kind in ("palette.png", "palette.bmp", "palette.gif"):
        _paletted().save(path)
        return PALETTE[INDEX], 0
    if kind == "one-bit.png":
        Image.fromarray(RGB[..., 0] > 127).save(path)
        return _grey(np.where(RGB[..., 0] > 127, 255, 0).astype(np.uint8)), 0
    if kind == "rgba.png":
        Image.fromarray(np.dstack([RGB, ALPHA])).save(path)
        return _over_white(RGB, ALPHA), 1
    if kind == "grey-alpha.png":
        Image.fromarray(np.dstack([RGB[..., 0], ALPHA]), "LA").save(path)
        return _grey(_over_white(RGB[..., :1], ALPHA)[..., 0]), 1
    if kind == "palette-transparent.png":
        _paletted().save(path, transparency=3)  # palette entry 3 is transparent: white
        return np.where((INDEX == 3)[..., None], 255, PALETTE[INDEX]).astype(np.uint8), 0
    if kind == "animated.gif":
        second = _paletted(15 - INDEX)
        _paletted().save(path, save_all=True, append_images=[second], duration=100)
        return PALETTE[INDEX], 0  # the first frame
    if kind.startswith("exif") and kind.endswith(".png"):
        orientation = int(kind[4])
        im = Image.fromarray(RGB)
        im.save(path, exif=_with_orientation(im, orientation))
        return np.ascontiguousarray(_oriented(RGB, orientation)), 0
    if kind == "rgb.jpg":
        Image.fromarray(RGB).save(path, quality=90)
        return _jpeg_reference(path), 0
    if kind == "grey.jpg":
        Image.fromarray(RGB[..., 0]).save(path, quality=90)
        return _jpeg_reference(path), 0
    if kind == "exif6.jpg":  # a phone photo taken upright
        im = Image.fromarray(RGB)
        im.save(path, quality=90, exif=_with_orientation(im, 6))
        return np.ascontiguousarray(_oriented(_jpeg_reference(path), 6)), 0
    if kind == "cmyk.jpg":
        Image.fromarray(RGB).convert("CMYK").save(path, quality=95)
        return _jpeg_reference(path), 3  # TensorFlow converts CMYK with its own rounding
    raise AssertionError(kind)


KINDS = ["rgb.png", "rgb.bmp", "grey.png", "grey16.png", "rgb16.png", "palette.png", "palette.bmp", "palette.gif",
         "one-bit.png", "rgba.png", "grey-alpha.png", "palette-transparent.png", "animated.gif",
         *[f"exif{k}.png" for k in range(1, 9)], "rgb.jpg", "grey.jpg", "exif6.jpg", "cmyk.jpg"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A class folder of every kind of file, and a second class: (root, {path: expected, tolerance})."""
    root = tmp_path_factory.mktemp("kinds") / "data"
    expected = {}
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    for kind in KINDS:
        path = root / "a" / kind
        expected[str(path)] = _write(kind, path)
    for i in range(3):
        Image.fromarray(RGB[::-1]).save(root / "b" / f"{i}.png")
    return root, expected


def test_each_kind_of_file_reads_as_the_pixels_it_holds(folder):
    _, expected = folder
    for path, (pixels, tolerance) in expected.items():
        got = images.read(path)
        assert got.dtype == np.uint8 and got.shape == pixels.shape, path
        assert np.abs(got.astype(int) - pixels).max() <= tolerance, path


def test_training_evaluation_shards_and_preprocess_read_each_file_alike(folder, tmp_path):
    root, expected = folder
    source = image_folder(root, val_fraction=0.3)
    pipeline = [image for image, _ in source.train.concatenate(source.val).as_numpy_iterator()]
    read = dict(zip(source.files, pipeline))
    assert set(expected) <= set(read)
    for path in expected:
        np.testing.assert_array_equal(read[path], images.read(path), err_msg=path)
    for encoding in ("original", "png"):  # prepared shards: the files' bytes, or the reader's pixels re-encoded
        out = tmp_path / encoding
        shards.prepare(str(root), str(out), short_side=0, encoding=encoding, val_fraction=0.3, verbose=0)
        prepared = shards.read(str(out))
        got = [image for image, _ in prepared.train.concatenate(prepared.val).as_numpy_iterator()]
        assert len(got) == len(pipeline)
        for a, b in zip(got, pipeline):
            np.testing.assert_array_equal(a, b)
    # predict's view of a file equals evaluation's view of training's pixels
    trained = kzoo.load("resnet20", weights="digits")
    view = eval_map(trained.preprocessing, {"mean": np.asarray(trained.mean, np.float32)})
    paths = list(expected)
    got = trained.preprocess(paths)
    for path, mine in zip(paths, got):
        reference = view(tf.constant(read[path]), 0)[0].numpy()
        assert np.abs(mine - reference).max() <= 1.0 + 1e-3, path  # one level where a resize ties


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    im = Image.new("L", (12000, 12000))  # 144 megapixels of zeros: a few hundred kilobytes
    im.save(bomb, optimize=False)
    assert os.path.getsize(bomb) < 1_000_000
    with pytest.raises(ValueError) as err:
        images.read(bomb)
    assert str(err.value) == (f"{str(bomb)!r} cannot be decoded as an image (a PNG of 12000 x 12000 pixels (144 "
                              f"megapixels) is over the 89-megapixel limit that guards against decompression bombs; "
                              f"scale it down, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file); remove "
                              f"or replace it.")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the one limit, Pillow's: lowered, small files fail too
    with pytest.raises(ValueError, match=r"a PNG of 10 x 12 pixels"):
        images.decode(_encoded(np.zeros((12, 10, 3), np.uint8), "PNG"), "small.png")
    with pytest.raises(ValueError, match=r"a JPEG of 10 x 12 pixels"):
        images.decode(_encoded(np.zeros((12, 10, 3), np.uint8), "JPEG"), "small.jpg")


def _encoded(array, fmt, **kw):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **kw)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_the_header_gives_the_size_of_every_format(fmt):
    data = _encoded(RGB if fmt != "GIF" else PALETTE[INDEX], fmt)
    assert images.pixel_size(data) == (fmt, W, H)


def test_listing_skips_hidden_files_and_folders_named_like_images_and_ends_a_link_loop(tmp_path):
    root = tmp_path / "data"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "album.jpg").mkdir()  # a folder named like an image
    Image.fromarray(RGB).save(root / "one.png")
    Image.fromarray(RGB).save(root / "sub" / "deeper" / "two.JPG", "JPEG")
    (root / "._one.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata, not an image
    (root / "notes.txt").write_text("not an image")
    os.symlink(root, root / "sub" / "loop")  # a link back up the tree
    found = [os.path.relpath(p, root) for p in images.found(root)]
    assert found == ["one.png", os.path.join("sub", "deeper", "two.JPG")]
    assert images.files([str(root)]) == [str(root / f) for f in found]
    with pytest.raises(ValueError, match=r"album\.jpg' is a folder, not an image file"):
        images.read(root / "album.jpg")


def test_class_folders_refuse_a_file_that_is_no_image_by_name(tmp_path):
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.fromarray(RGB).save(root / c / "x.png")
    (root / "b" / "y.gif").write_bytes(b"GIF80 not quite")
    with pytest.raises(ValueError) as err:
        image_folder(root)
    assert str(err.value) == f"{str(root / 'b' / 'y.gif')!r} is not a JPEG, PNG, BMP or GIF image; remove or replace it."


def test_damaged_files_are_named_with_a_reason_a_person_can_act_on(tmp_path):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    empty = tmp_path / "empty.png"  # a header of 0 x 5 pixels
    empty.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0))
                      + chunk(b"IEND", b""))
    cut = tmp_path / "cut.png"
    cut.write_bytes(_encoded(RGB, "PNG")[:20])
    for path, reason in ((empty, "a damaged or unsupported PNG file"), (cut, "a PNG file cut short in its header")):
        with pytest.raises(ValueError) as err:
            images.read(path)
        assert str(err.value) == f"{str(path)!r} cannot be decoded as an image ({reason}); remove or replace it."
    mpo = tmp_path / "phone.jpg"  # a phone's multi-picture JPEG: its first picture
    Image.fromarray(RGB).save(mpo, "MPO", save_all=True, append_images=[Image.fromarray(255 - RGB)], quality=95)
    np.testing.assert_array_equal(images.read(mpo), _jpeg_reference(mpo))


def test_what_a_review_found_in_the_reader(tmp_path):
    from kzoo.data.tfdata import decode_bytes, decode_file

    # stray bytes between JPEG segments: libjpeg and Pillow skip them, so does the header reader
    jpeg = _encoded(RGB, "JPEG", quality=90)
    app0 = 4 + int.from_bytes(jpeg[4:6], "big")
    stray = tmp_path / "stray.jpg"
    stray.write_bytes(jpeg[:app0] + b"\x00\x00" + jpeg[app0:])
    assert images.pixel_size(stray.read_bytes()) == ("JPEG", W, H)
    np.testing.assert_array_equal(images.read(stray), _jpeg_reference(stray))
    # a 16-bit greyscale PNG with a transparent value (tRNS): that value over white
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    grey = WIDE[..., 0].copy()
    grey[0, :3] = 4242
    raw = b"".join(b"\x00" + grey[y].astype(">u2").tobytes() for y in range(H))
    clear = tmp_path / "clear16.png"
    clear.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 16, 0, 0, 0, 0))
                      + chunk(b"tRNS", struct.pack(">H", 4242)) + chunk(b"IDAT", zlib.compress(raw))
                      + chunk(b"IEND", b""))
    expected = np.where(grey == 4242, 255, grey >> 8).astype(np.uint8)
    np.testing.assert_array_equal(images.read(clear), _grey(expected))
    # called eagerly, the tf.data wrappers read as the reader does
    png = tmp_path / "x.png"
    Image.fromarray(RGB).save(png)
    np.testing.assert_array_equal(decode_bytes(tf.constant(png.read_bytes())).numpy(), RGB)
    np.testing.assert_array_equal(decode_file(tf.constant(str(png))).numpy(), RGB)


def test_prepare_names_the_file_it_cannot_read(tmp_path):
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(RGB).save(root / c / f"{i}.png")
    bad = root / "b" / "1.png"
    bad.write_bytes(_encoded(RGB, "PNG")[:40])
    with pytest.raises(ValueError) as err:
        shards.prepare(str(root), str(tmp_path / "out"), short_side=0, encoding="png", verbose=0)
    assert str(err.value).startswith(f"{str(bad)!r} cannot be decoded as an image (")
    assert str(err.value).endswith("; remove or replace it, then rerun (finished shards are kept).")
    assert image_folder(root, val_fraction=0.9).train_size == 1  # 5 of 6 held out: one left
    with pytest.raises(ValueError, match=r"holds out 6, leaving none to train on"):
        image_folder(root, val_fraction=0.95)
