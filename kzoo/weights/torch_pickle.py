"""Reading a PyTorch state dict (`torch.save`, zip format, PyTorch >= 1.6) into numpy
arrays without PyTorch: the archive's `data.pkl` is unpickled with only the few
globals a state dict uses, and each tensor is a strided view of its storage file.

The file is untrusted: every storage reference and every tensor's offset, sizes and
strides are checked against the bytes actually stored before a view is made (a view
past its storage would read process memory or crash)."""

import collections
import io
import math
import numbers
import pickle
import zipfile

import numpy as np

_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
           "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
           "BoolStorage": "?", "BFloat16Storage": None}


class _Storage:
    def __init__(self, name):
        self.name = name


class _StorageData:
    """One storage file: its type name, key and elements (None where the type is unsupported)."""

    def __init__(self, kind, key, array):
        self.kind, self.key, self.array = kind, key, array


class _TensorRef:
    """A tensor as pickled: checked and viewed once its state-dict name is known."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, *_):
    return data


def _ints(value):
    return isinstance(value, (tuple, list)) and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                    for v in value)


def _materialize(name, ref):
    """The numpy copy of tensor `name`, after checking it lies inside its storage."""
    storage, offset, size, stride = ref.storage, ref.offset, ref.size, ref.stride
    if not isinstance(storage, _StorageData):
        raise ValueError(f"tensor {name!r} refers to {type(storage).__name__}, not a storage of the archive.")
    if storage.array is None:
        raise ValueError(f"tensor {name!r} is stored as {storage.kind}, which is not supported; convert it to "
                         f"float32 first.")
    if not isinstance(offset, numbers.Integral) or isinstance(offset, bool) or not _ints(size) or not _ints(stride) \
            or len(size) != len(stride):
        raise ValueError(f"tensor {name!r} has a malformed layout (offset {offset!r}, size {size!r}, stride "
                         f"{stride!r}).")
    if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise ValueError(f"tensor {name!r} has a negative offset, size or stride (offset {offset}, size "
                         f"{tuple(size)}, stride {tuple(stride)}).")
    available = storage.array.size
    if 0 in size:
        extent = offset
    else:
        extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if extent > available:
        raise ValueError(f"tensor {name!r} (offset {offset}, size {tuple(size)}, stride {tuple(stride)}) reaches "
                         f"element {extent} of storage {storage.key!r}, which holds {available}: the file is "
                         f"corrupt.")
    count = math.prod(int(n) for n in size)
    if count > max(available, 1):  # only a stride-0 broadcast has more elements than its storage: refuse the blow-up
        raise ValueError(f"tensor {name!r} declares {count} elements (size {tuple(size)}) but storage "
                         f"{storage.key!r} holds {available}: the file is corrupt.")
    itemsize = storage.array.dtype.itemsize
    return np.lib.stride_tricks.as_strided(storage.array[offset:], shape=tuple(int(n) for n in size),
                                           strides=tuple(int(s) * itemsize for s in stride)).copy()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix
        self.files = set(archive.namelist())

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _Storage(name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a plain state dict; save "
                                     f"model.state_dict() (not the model object).")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"a storage reference is malformed ({pid!r:.80}); expected ('storage', type, key, "
                             f"location, size).")
        _, storage, key, _location, _numel = pid
        if not isinstance(storage, _Storage) or not isinstance(key, str):
            raise ValueError(f"storage entry {key!r:.80} names {storage!r:.80}, not a torch storage type.")
        path = f"{self.prefix}/data/{key}"
        if path not in self.files:
            raise ValueError(f"storage entry {key!r} has no file {path!r} in the archive.")
        dtype = _DTYPES[storage.name]
        if dtype is None:
            return _StorageData(storage.name, key, None)
        raw = self.archive.read(path)
        itemsize = np.dtype(dtype).itemsize
        if len(raw) % itemsize:
            raise ValueError(f"storage entry {key!r} holds {len(raw)} bytes, not a whole number of "
                             f"{storage.name} elements ({itemsize} bytes each).")
        return _StorageData(storage.name, key, np.frombuffer(raw, dtype))


def load_state_dict(path):
    """{name: numpy array} of a state dict saved by `torch.save`."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a zip-format torch file (saved with PyTorch < 1.6, or not a "
                         f".pth); re-save it with torch.save(model.state_dict(), path) in a recent PyTorch.")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if not pickles:
                raise ValueError("it has no data.pkl: not a torch.save file")
            prefix = pickles[0][: -len("/data.pkl")]
            try:  # from memory: a length field cannot make pickle read past the data it holds
                state = _Unpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix).load()
            except MemoryError as err:  # a corrupt memo index or length asks for an impossible allocation
                raise ValueError("its data.pkl declares an impossible size (corrupt)") from err
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a state dict")
        return {name: _materialize(name, value) if isinstance(value, _TensorRef) else value
                for name, value in state.items()}
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, OverflowError) as err:  # a malformed pickle fails in any of these ways
        raise ValueError(f"{path!r} cannot be read as a state dict: {err}") from err
