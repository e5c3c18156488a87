"""A pickle module for `torch.load(pickle_module=...)` that rebuilds tensors and nothing else.

Official checkpoints are PyTorch-Lightning 1.1 files: next to `state_dict` they pickle callback classes (as dict
keys), hyper-parameter `AttributeDict`s and similar objects that `weights_only=True` refuses and that plain pickle
would import (needing pytorch_lightning, and running whatever the file names). Here only the tensor/storage rebuild
functions, torch dtypes and `collections.OrderedDict` resolve; every other global becomes an inert placeholder
class that accepts any arguments and state, stores nothing and runs nothing. Nothing is ever imported.
"""

from __future__ import annotations

import collections
import pickle
import types
from typing import Any

import torch
import torch._utils

# torch storage classes (`torch.FloatStorage`, ...) are resolved by torch.load's own wrapper before find_class here
_REBUILD_FUNCTIONS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter")
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch._utils", name): getattr(torch._utils, name) for name in _REBUILD_FUNCTIONS},
}


class Unresolved:
    """Placeholder for a global the file names but we do not trust (a class, a function, anything).

    Calling it, `__new__`, `__setstate__`, item assignment and appends all succeed and keep nothing, so the
    surrounding containers still unpickle. `origin` says which global it stands for.
    """

    origin = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass

    def __repr__(self) -> str:
        return f"<unresolved {self.origin}>"


def _placeholder(module: str, name: str) -> type:
    return type(f"Unresolved_{name}", (Unresolved,), {"origin": f"{module}.{name}"})


def _torch_dtype(module: str, name: str):
    """`torch.float32` & co. (tensor rebuilds name them). Looked up in torch's namespace dict, never via getattr,
    which could trigger torch's lazy submodule imports."""
    value = vars(torch).get(name) if module == "torch" else None
    return value if isinstance(value, torch.dtype) else None


class Unpickler(pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # one placeholder class per global and file, so globals used as dict keys (callback classes) stay distinct
        self._placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        allowed = _ALLOWED.get((module, name)) or _torch_dtype(module, name)
        if allowed is not None:
            return allowed
        if (module, name) not in self._placeholders:
            self._placeholders[(module, name)] = _placeholder(module, name)
        return self._placeholders[(module, name)]


def load(file, **kwargs):
    """`pickle.load` with the restricted `Unpickler` (torch's legacy format reads its headers through this)."""
    return Unpickler(file, **kwargs).load()


# what `torch.load` needs from a `pickle_module`: a name, `Unpickler` and `load`
RESTRICTED_PICKLE = types.SimpleNamespace(__name__="degmix_restricted_pickle", Unpickler=Unpickler, load=load)


def load_untrusted(path) -> tuple[Any, str]:
    """`torch.load` on CPU for files from elsewhere -> (object, reader).

    `weights_only=True` first; only when it refuses a global (a Lightning file naming callback classes, ...) the
    file is read again with this module's restricted unpickler. Other errors (corrupt or truncated files) propagate.
    """
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True), "weights_only"
    except pickle.UnpicklingError:
        pass
    return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=RESTRICTED_PICKLE), "restricted"


__all__ = ["RESTRICTED_PICKLE", "Unpickler", "Unresolved", "load", "load_untrusted"]
