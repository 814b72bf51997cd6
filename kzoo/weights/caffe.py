"""Reading `.caffemodel` files without Caffe or protobuf: the few messages a trained
net's blobs need, decoded from the protobuf wire format.

NetParameter: layer = 100 (LayerParameter: name = 1, type = 2, blobs = 7) or the old
layers = 2 (V1LayerParameter: name = 4, blobs = 6). BlobProto: num, channels,
height, width = 1-4 (legacy shape), data = 5 (float, packed or not),
shape = 7 (BlobShape: dim = 1, int64), double_data = 8.

The file is untrusted: a varint longer than 10 bytes, a field running past the end of
its message, a wire type a field cannot have, a negative dimension or a shape that
does not match the values present is a ValueError naming the layer and blob.
"""

import math

import numpy as np

_FIXED = {1: 8, 5: 4}  # wire type -> bytes


def _varint(buf, pos):
    result = shift = 0
    start, end = pos, len(buf)
    while True:
        if pos >= end:
            raise ValueError(f"a varint at byte {start} runs past the end")
        if shift >= 70:
            raise ValueError(f"a varint at byte {start} is longer than 10 bytes")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _signed(value):
    """A protobuf int32/int64 varint as the signed number it encodes (negatives take 10 bytes)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def fields(buf):
    """Yields (field number, wire type, value) of one message: ints for varints,
    memoryviews for length-delimited and fixed-width fields."""
    pos, end = 0, len(buf)
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2 or wire in _FIXED:
            size, pos = _varint(buf, pos) if wire == 2 else (_FIXED[wire], pos)
            if pos + size > end:
                raise ValueError(f"field {number} at byte {start} declares {size} bytes, only {end - pos} remain")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number} at byte {start})")
        yield number, wire, value


def _floats(value, wire, dtype, number):
    """A packed run (wire 2) or one fixed-width value of a float field."""
    itemsize = np.dtype(dtype).itemsize
    if wire not in (2, 5 if itemsize == 4 else 1):
        raise ValueError(f"its field {number} ({np.dtype(dtype).name} values) has wire type {wire}")
    if len(value) % itemsize:
        raise ValueError(f"its field {number} holds {len(value)} bytes, not a whole number of "
                         f"{np.dtype(dtype).name} values")
    return np.frombuffer(bytes(value), dtype)


def _blob(buf):
    legacy, dims, data, doubles = {}, [], [], []
    for number, wire, value in fields(buf):
        if number in (1, 2, 3, 4) and wire == 0:
            legacy[number] = _signed(value)
        elif number == 5:
            data.append(_floats(value, wire, "<f4", number))
        elif number == 8:
            doubles.append(_floats(value, wire, "<f8", number))
        elif number == 7:
            if wire != 2:
                raise ValueError(f"its shape (field 7) has wire type {wire}, not a message")
            for n, w, v in fields(value):
                if n == 1 and w == 2:  # packed int64 varints
                    pos = 0
                    while pos < len(v):
                        d, pos = _varint(v, pos)
                        dims.append(_signed(d))
                elif n == 1 and w == 0:
                    dims.append(_signed(v))
                elif n == 1:
                    raise ValueError(f"a shape dimension has wire type {w}, not a varint")
    values = np.concatenate(data) if data else np.concatenate(doubles).astype(np.float32) if doubles else None
    if values is None:
        raise ValueError("it has no data: the caffemodel is truncated or holds only the net's definition")
    shape = dims or [legacy.get(i, 1) for i in (1, 2, 3, 4)]
    if any(d < 0 for d in shape):
        raise ValueError(f"its shape {shape} has a negative dimension")
    if math.prod(shape) != values.size:  # Python ints: a huge declared shape cannot overflow into a match
        raise ValueError(f"its shape {shape} needs {math.prod(shape)} values but it holds {values.size}")
    return values.reshape(shape)


def read_caffemodel(path):
    """{layer name: [blobs as numpy arrays]} of the layers that have blobs, in file order."""
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    layers, where = {}, "the net's first field"
    try:
        for index, (number, wire, value) in enumerate(fields(buf)):
            if wire != 2 or number not in (2, 100):
                continue
            where, name = f"layer field {index}", None
            name_field, blob_field = (1, 7) if number == 100 else (4, 6)
            raw = []
            for n, w, v in fields(value):
                if n == name_field and w == 2:
                    name = bytes(v).decode("utf-8", "replace")
                    where = f"layer {name!r}"
                elif n == blob_field and w == 2:
                    raw.append(v)
            blobs = []
            for i, v in enumerate(raw):
                where = f"layer {name!r} blob {i}"
                blobs.append(_blob(v))
            where = f"layer {name!r}"
            if blobs and name in layers:
                raise ValueError("a second layer of that name has weights")
            if blobs:
                layers[name] = blobs
            where = f"the field after layer {name!r}"
    except ValueError as err:
        raise ValueError(f"{path!r} is corrupt, truncated or not a caffemodel: {where}: {err}.") from err
    if not layers:
        raise ValueError(f"{path!r} holds no layer with weights: not a trained caffemodel.")
    return layers
