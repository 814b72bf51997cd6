"""Reading `.caffemodel` files without Caffe or protobuf: the few messages a trained
net's blobs need, decoded from the protobuf wire format.

NetParameter: layer = 100 (LayerParameter: name = 1, type = 2, blobs = 7) or the old
layers = 2 (V1LayerParameter: name = 4, blobs = 6). BlobProto: num, channels,
height, width = 1-4 (legacy shape), data = 5 (float, packed or not),
shape = 7 (BlobShape: dim = 1, int64), double_data = 8.
"""

import struct

import numpy as np


def _varint(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of one message: ints for varints,
    memoryviews for length-delimited fields, raw bytes for fixed-width ones."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number}): not a caffemodel?")
        yield number, wire, value


def _blob(buf):
    legacy, dims, data, doubles = {}, [], [], []
    for number, wire, value in fields(buf):
        if number in (1, 2, 3, 4) and wire == 0:
            legacy[number] = value
        elif number == 5:
            data.append(np.frombuffer(bytes(value), "<f4"))  # packed (wire 2) or a single float (wire 5)
        elif number == 8:
            doubles.append(np.frombuffer(bytes(value), "<f8"))
        elif number == 7:
            for n, w, v in fields(value):
                if n == 1 and w == 2:  # packed int64 varints
                    pos = 0
                    while pos < len(v):
                        d, pos = _varint(v, pos)
                        dims.append(d)
                elif n == 1:
                    dims.append(v)
    values = np.concatenate(data) if data else np.concatenate(doubles).astype(np.float32) if doubles else None
    if values is None:
        raise ValueError("a blob without data: the caffemodel is truncated or holds only the net's definition.")
    shape = dims or [legacy.get(i, 1) for i in (1, 2, 3, 4)]
    if int(np.prod(shape)) != values.size:
        raise ValueError(f"a blob of shape {shape} holds {values.size} values: the caffemodel is corrupt.")
    return values.reshape(shape)


def read_caffemodel(path):
    """{layer name: [blobs as numpy arrays]} of the layers that have blobs, in file order."""
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    layers = {}
    try:
        for number, wire, value in fields(buf):
            if wire != 2 or number not in (2, 100):
                continue
            name_field, blob_field = (1, 7) if number == 100 else (4, 6)
            name, blobs = None, []
            for n, w, v in fields(value):
                if n == name_field and w == 2:
                    name = bytes(v).decode()
                elif n == blob_field and w == 2:
                    blobs.append(_blob(v))
            if blobs:
                layers[name] = blobs
    except (IndexError, struct.error, ValueError) as err:
        raise ValueError(f"{path!r} is truncated or not a caffemodel ({err}).") from err
    if not layers:
        raise ValueError(f"{path!r} holds no layer with weights: not a trained caffemodel.")
    return layers
