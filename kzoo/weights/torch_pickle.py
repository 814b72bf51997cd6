"""Reading a PyTorch state dict (`torch.save`, zip format, PyTorch >= 1.6) into numpy
arrays without PyTorch: the archive's `data.pkl` is unpickled with only the few
globals a state dict uses, and each tensor is a strided view of its storage file."""

import collections
import pickle
import zipfile

import numpy as np

_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
           "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
           "BoolStorage": "?", "BFloat16Storage": None}


class _Storage:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_):
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride)).copy()


def _rebuild_parameter(data, *_):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

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
        _, storage, key, _location, _numel = pid
        dtype = _DTYPES.get(storage.name)
        if dtype is None:
            raise ValueError(f"tensors stored as {storage.name} are not supported; convert them to float32 first.")
        return np.frombuffer(self.archive.read(f"{self.prefix}/data/{key}"), dtype)


def load_state_dict(path):
    """{name: numpy array} of a state dict saved by `torch.save`."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a zip-format torch file (saved with PyTorch < 1.6, or not a "
                         f".pth); re-save it with torch.save(model.state_dict(), path) in a recent PyTorch.")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if not pickles:
                raise ValueError(f"{path!r} has no data.pkl: not a torch.save file.")
            prefix = pickles[0][: -len("/data.pkl")]
            with archive.open(pickles[0]) as f:
                state = _Unpickler(f, archive, prefix).load()
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError) as err:
        raise ValueError(f"{path!r} cannot be read as a state dict: {err}") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, not a state dict.")
    return dict(state)
