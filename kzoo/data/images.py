"""Image files: the one reader (a file's bytes -> (H, W, 3) uint8 RGB, the same pixels for
training, evaluation, prediction and visualization, in every format the folder loader accepts),
and the one listing of a folder's images (`files`), of class sub-folders (`class_folders`) and
of their training and validation split (`folder_splits`, with a fingerprint of the training images).

NumPy and Pillow only (no TensorFlow), so prediction reads files on any Keras backend;
tf.data pipelines call it through `kzoo.data.tfdata.decode_file`. What it does with each
kind of file (docs/training.md, "Data"):
- JPEG, PNG, BMP and GIF, told by their leading bytes, whatever the file's suffix;
- EXIF orientation applied (the image as a viewer shows it);
- greyscale, palette and 1-bit images become RGB; 16-bit samples keep their high byte;
- transparency is laid over white (a drawing with a transparent background looks as drawn);
- CMYK JPEGs are converted to RGB (Adobe's inverted CMYK included);
- an animated GIF is read as its first frame;
- an image of more pixels than Pillow's `Image.MAX_IMAGE_PIXELS` (a decompression bomb) is
  refused before it is decoded.
"""

import concurrent.futures
import hashlib
import io
import json
import os
import pathlib
import struct

import numpy as np
from PIL import Image, UnidentifiedImageError

import kzoo  # kzoo.utils.progress (Keras) only for a listing long enough to show progress

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Leading bytes -> format: a cheap check that catches non-images before a long run starts.
MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"BM": "BMP", b"GIF87a": "GIF", b"GIF89a": "GIF"}
FORMATS = "JPEG, PNG, BMP or GIF"
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # SOFn markers


def image_format(head):
    """The format the leading bytes `head` announce ("JPEG", ...), or None."""
    return next((fmt for magic, fmt in MAGIC.items() if head.startswith(magic)), None)


def _jpeg_size(data):
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:  # stray bytes between segments: skipped, as libjpeg and Pillow do
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker == 0xDA:
            break
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
            continue
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    raise ValueError("a JPEG without a frame header")


def pixel_size(data):
    """(format, width, height) from the header alone (no decoding)."""
    fmt = image_format(data[:8])
    if fmt is None:
        raise ValueError(f"not a {FORMATS} image (its leading bytes are {data[:8]!r})")
    try:
        if fmt == "PNG":
            width, height = struct.unpack(">II", data[16:24])
        elif fmt == "GIF":
            width, height = struct.unpack("<HH", data[6:10])
        elif fmt == "BMP":
            width, height = struct.unpack("<ii", data[18:26])
            if int.from_bytes(data[14:18], "little") == 12:  # OS/2 header: 16-bit sizes
                width, height = struct.unpack("<HH", data[18:22])
        else:
            width, height = _jpeg_size(data)
    except struct.error:
        raise ValueError(f"a {fmt} file cut short in its header") from None
    return fmt, abs(width), abs(height)


def _check_size(fmt, width, height):
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise ValueError(f"a {fmt} of {width} x {height} pixels ({width * height / 1e6:.0f} megapixels) is over the "
                         f"{limit / 1e6:.0f}-megapixel limit that guards against decompression bombs; scale it down, "
                         f"or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file")


# EXIF orientation (tag 0x0112) -> the transpose that shows the image as a viewer does
_ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _upright(im):
    """The first frame, turned as its EXIF orientation says (ImageOps.exif_transpose also
    rewrites the EXIF block, which fails on some phones' files in older Pillow)."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001  (a damaged EXIF block: the pixels are still the image's)
        orientation = 1
    im.load()
    return im.transpose(_ORIENTATIONS[orientation]) if orientation in _ORIENTATIONS else im


def _rgb(im):
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit greyscale: keep the high byte
        values = np.asarray(im, np.uint32)
        grey = (values >> 8).clip(0, 255).astype(np.uint8)
        if isinstance(im.info.get("transparency"), int):  # tRNS: that value is transparent, laid over white
            grey[values == im.info["transparency"]] = 255
        return np.repeat(grey[..., None], 3, axis=-1)
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def decode(data, name="the image"):
    """Encoded image bytes -> (H, W, 3) uint8 RGB; `name` (a path) names the file in errors."""
    data = bytes(data)
    if image_format(data[:8]) is None:
        raise ValueError(f"{name} is not a {FORMATS} image; remove or replace it.")
    try:
        fmt, width, height = pixel_size(data)
        _check_size(fmt, width, height)
        with Image.open(io.BytesIO(data), formats=(fmt,)) as im:
            image = _rgb(_upright(im))
    except (ValueError, OSError, SyntaxError, Image.DecompressionBombError, EOFError) as err:
        reason = str(err).strip() or type(err).__name__
        if isinstance(err, UnidentifiedImageError):  # its text names an in-memory buffer, not the file
            reason = f"a damaged or unsupported {fmt} file"
        raise ValueError(f"{name} cannot be decoded as an image ({reason}); remove or replace it.") from None
    if 0 in image.shape:
        raise ValueError(f"{name} has no pixels ({width} x {height}); remove or replace it.")
    return np.ascontiguousarray(image, np.uint8)


def read(path):
    """An image file -> (H, W, 3) uint8 RGB (see the module's note); a missing or unreadable
    file is an error naming it."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder, not an image file.")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path!r} does not exist.") from None
    except OSError as err:
        raise ValueError(f"image file {path!r} cannot be read ({err.strerror or err}).") from None
    return decode(data, repr(path))


def signature(path):
    """A cheap check of a file's leading bytes (a ValueError naming it unless it is a JPEG,
    PNG, BMP or GIF image) that returns what tells the file from another without reading it
    whole: its size, its first 8 bytes and its last 32 (compressed pixel data)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if image_format(head) is None:
            raise ValueError(f"{str(path)!r} is not a {FORMATS} image; remove or replace it.")
        size = os.fstat(f.fileno()).st_size
        f.seek(max(8, size - 32))
        return head + f.read() + size.to_bytes(8, "little")


def found(root):
    """The image files under folder `root` (sorted paths, sub-folders and linked folders
    included, each folder once, so a link loop ends): files with an image suffix; hidden
    files and folders, and folders named like images, are skipped."""
    out, seen = [], set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        seen.add(os.path.realpath(folder))
        keep = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(folder, d))
            if not d.startswith(".") and real not in seen:
                seen.add(real)
                keep.append(d)
        dirs[:] = keep
        out += [pathlib.Path(folder, n) for n in names
                if not n.startswith(".") and n.lower().endswith(SUFFIXES) and os.path.isfile(os.path.join(folder, n))]
    return sorted(out)


def files(paths, what="image"):
    """The files named, and the images found in folders named (sorted), as strings; `what`
    names the argument in errors."""
    out = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            out += found(p)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{what} {str(p)!r} does not exist.")
    if not out:
        raise ValueError(f"{what} {list(map(str, paths))} holds no images ({', '.join(SUFFIXES)}).")
    return [str(f) for f in out]


def check_classes(what, names, fix):
    # One class "trains" to 0% error: every label is right.
    if len(names) < 2:
        raise ValueError(f"{what} has {len(names)} class{'' if len(names) == 1 else 'es'} "
                         f"({', '.join(map(repr, names)) or 'none'}); a classifier needs at least 2: {fix}.")


def class_folders(root):
    """(classes, image paths, labels, signatures) of `root/<class>/<image>`."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist (or is not a folder).")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{str(root)!r} has no class sub-folders; expected {root}/<class>/<image>.jpg.")
    check_classes(f"{str(root)!r}", classes, "add a sub-folder of images per class")
    paths, labels = [], []
    for label, name in enumerate(classes):
        listed = found(root / name)
        if not listed:
            raise ValueError(
                f"class folder {str(root / name)!r} holds no images ({', '.join(SUFFIXES)}); "
                f"add images or remove the folder."
            )
        paths += [str(p) for p in listed]
        labels += [label] * len(listed)
    return classes, paths, labels, signatures(paths, f"Reading {len(paths):,} images' signatures in {root}")


PROGRESS_FROM = 10_000  # images: a pass over fewer takes seconds and shows no progress bar
LISTING_THREADS = 16  # reads wait on the disk, not the CPU: more threads than cores (a network disk gains most)


def signatures(paths, title):
    """`signature` of each path, in order, read by LISTING_THREADS threads; with a progress
    bar from PROGRESS_FROM files (ImageNet's 1.28M: a minute or more on one thread)."""
    bar = None
    if len(paths) >= PROGRESS_FROM:
        print(title, flush=True)
        bar = kzoo.utils.progress.progress_bar(len(paths), unit_name="file")
    chunks = [paths[i:i + 1024] for i in range(0, len(paths), 1024)]
    out = []
    with concurrent.futures.ThreadPoolExecutor(LISTING_THREADS) as pool:
        for chunk in pool.map(lambda chunk: [signature(path) for path in chunk], chunks):
            out += chunk
            if bar is not None:
                bar.update(len(out))
    return out


def folder_splits(root, val_fraction=0.1, seed=0):
    """(classes, {"train": (files, labels), "val": (files, labels)}, fingerprint) of
    `root/train/<class>/*` and `root/val/<class>/*`, or of `root/<class>/*` split by
    `val_fraction` (shuffled by `seed`). `fingerprint`: a digest of the training images
    (their paths under `root`, classes, sizes and end bytes, `images.signature`)."""
    root = pathlib.Path(root)
    if (root / "train").is_dir():
        classes, train_files, train_labels, train_signatures = class_folders(root / "train")
        val_dir = next((root / d for d in ("val", "validation") if (root / d).is_dir()), None)
        if val_dir is None:
            raise FileNotFoundError(f"{str(root / 'train')!r} exists but no val/ or validation/ beside it.")
        val_classes, val_files, val_labels, _ = class_folders(val_dir)
        if val_classes != classes:
            raise ValueError(f"{str(val_dir)!r} has classes {val_classes}, train/ has {classes}; they must match.")
    else:
        classes, files, labels, signatures = class_folders(root)
        order = np.random.default_rng(seed).permutation(len(files))
        n_val = max(1, int(round(len(files) * val_fraction)))
        if n_val >= len(files):
            raise ValueError(f"--val-fraction {val_fraction} of {str(root)!r}'s {len(files)} images holds out "
                             f"{n_val}, leaving none to train on; give a smaller fraction, or more images.")
        pick = lambda idx: ([files[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
        (val_files, val_labels), (train_files, train_labels) = pick(order[:n_val]), pick(order[n_val:])
        train_signatures = [signatures[i] for i in order[n_val:]]
    digest = hashlib.sha256(json.dumps(classes).encode())
    for path, label, mark in zip(train_files, train_labels, train_signatures):
        digest.update(f"{os.path.relpath(path, root)}\0{label}\0".encode() + mark)
    return classes, {"train": (train_files, train_labels), "val": (val_files, val_labels)}, digest.hexdigest()[:32]
