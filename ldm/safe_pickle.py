"""A restricted unpickler for PyTorch Lightning checkpoints: tensors and plain data, nothing executed.

A pickle names globals (``module.name``) and asks the unpickler to import and call them. The released
CompVis checkpoints name classes we do not have (``pytorch_lightning...ModelCheckpoint``, omegaconf
containers, ...), and a hostile file can name ``os.system``. This unpickler imports nothing: it resolves a
fixed table of tensor-rebuilding functions and builtin containers (`_CALLABLE`, `_value_global`), and every
other global becomes a `Placeholder` that records its dotted name. Whatever a file builds from a
placeholder (REDUCE, NEWOBJ, INST, OBJ, BUILD, APPENDS, SETITEMS, ...) becomes an `Inert` record of the
name, arguments and state: it is never called, imported or given ``__setstate__`` powers. Every opcode that
calls something (a global, a method of an object on the stack) is overridden here, so no other path exists.

Zip checkpoints: the module is passed to ``torch.load(..., pickle_module=ldm.safe_pickle, mmap=True)``, so
torch reads the archive and maps the storages. Legacy (pre-1.6) streams: `ldm.legacy_checkpoint` drives
`Unpickler` itself, to skip the storages of training state.
"""

from __future__ import annotations

import _compat_pickle
import pickle
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import torch

UnpicklingError = pickle.UnpicklingError


# ----------------------------------------------------------------------------
# What a file gets instead of the objects it names.
class Placeholder:
    """A global the file names but that is never imported: its dotted name only."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name} (not executed)>"

    def __eq__(self, other) -> bool:
        return isinstance(other, Placeholder) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Placeholder", self.name))

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


class Inert:
    """What the file would have built by calling `callee` (a Placeholder or another Inert): a record only."""

    __slots__ = ("args", "callee", "items", "kwargs", "state")

    def __init__(self, callee: Placeholder | Inert, args: tuple = (), kwargs: dict | None = None):
        self.callee, self.args, self.kwargs = callee, tuple(args), dict(kwargs or {})
        self.state: Any = None
        self.items: list = []  # what APPEND(S), SETITEM(S) and ADDITEMS would have added

    @property
    def name(self) -> str:
        return self.callee.name if isinstance(self.callee, Placeholder) else f"{self.callee.name}(...)"

    @property
    def short_name(self) -> str:
        return self.callee.short_name

    def __repr__(self) -> str:
        return f"<{self.name}(...) (not executed)>"


def walk(value, *, max_nodes: int | None = None) -> Iterator[Any]:
    """Every object reachable from `value` through containers and `Inert` records (each container expanded
    once, so cycles built with the pickle memo end), `value` first; at most `max_nodes` objects."""
    todo, expanded, count = [value], set(), 0
    while todo and (max_nodes is None or count < max_nodes):
        item = todo.pop()
        count += 1
        yield item
        if not isinstance(item, (Inert, Mapping, list, tuple, set, frozenset)) or id(item) in expanded:
            continue
        expanded.add(id(item))
        if isinstance(item, Inert):
            todo.extend([item.callee, *item.args, *item.kwargs.values(), item.state, *item.items])
        elif isinstance(item, Mapping):
            todo.extend([*item.keys(), *item.values()])
        else:
            todo.extend(item)


class _Safe:
    """An allowlisted callable on the unpickling stack (kept apart from data, which is never called)."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn


# ----------------------------------------------------------------------------
# The allowlist: functions that only rebuild tensors or builtin containers from plain data.
def _encode(text, encoding="latin1"):
    """`_codecs.encode` as protocol 2 uses it for bytes: str -> latin-1 bytes, nothing else."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise UnpicklingError(f"_codecs.encode only rebuilds latin-1 bytes, got {type(text).__name__}/{encoding!r}")
    return text.encode("latin1")


def _bytearray(*args):
    """`bytearray` as pickle protocol 2 writes it: empty, from bytes/ints, or (str, 'latin-1'); no other codec."""
    if not args or (len(args) == 1 and type(args[0]) in (bytes, list)):
        return bytearray(*args)
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        return bytearray(args[0], "latin-1")
    raise UnpicklingError("bytearray is only rebuilt from bytes, a list of ints or latin-1 text")


def _no_hooks(fn):
    """Tensor rebuilds with backward hooks would attach callables from the file: refuse those."""
    def rebuild(*args):
        hooks = args[5] if fn.__name__ == "_rebuild_tensor_v2" and len(args) > 5 else (
            args[2] if fn.__name__.startswith("_rebuild_parameter") and len(args) > 2 else None)
        if hooks:
            raise UnpicklingError(f"{fn.__name__}: tensors with backward hooks are not loaded")
        return fn(*args)
    return rebuild


_TENSOR_REBUILDS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                    "_rebuild_parameter_with_state", "_rebuild_meta_tensor_no_storage")


def _rebuild_from_type(func, new_type, args, state):
    """torch._tensor._rebuild_from_type_v2, for plain Tensor/Parameter rebuilt by an allowlisted function."""
    if not isinstance(func, _Safe) or func.name.rsplit(".", 1)[-1] not in _TENSOR_REBUILDS:
        raise UnpicklingError(f"_rebuild_from_type_v2 with {func!r} is not loaded")
    if new_type not in (torch.Tensor, torch.nn.Parameter) or type(state) not in (dict, OrderedDict):
        raise UnpicklingError(f"_rebuild_from_type_v2 to {new_type!r} is not loaded")
    return torch._tensor._rebuild_from_type_v2(func.fn, new_type, args, state)


_CALLABLE: dict[str, Any] = {
    "collections.OrderedDict": OrderedDict,
    "collections.Counter": Counter,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.bytearray": _bytearray,
    "builtins.complex": complex,
    "builtins.slice": slice,
    "_codecs.encode": _encode,
    "torch.Size": torch.Size,
    "torch.device": torch.device,
    "torch.serialization._get_layout": torch.serialization._get_layout,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
    **{f"torch._utils.{name}": _no_hooks(getattr(torch._utils, name))
       for name in _TENSOR_REBUILDS if hasattr(torch._utils, name)},
}
_VALUE_CLASSES: dict[str, type] = {"torch.Tensor": torch.Tensor, "torch.nn.parameter.Parameter": torch.nn.Parameter}


def _value_global(module: str, name: str):
    """torch dtypes, layouts, memory formats and the two tensor classes (data, never called); else None."""
    if f"{module}.{name}" in _VALUE_CLASSES:
        return _VALUE_CLASSES[f"{module}.{name}"]
    if module == "torch" and name.isidentifier() and not name.startswith("_"):
        value = getattr(torch, name, None)
        if isinstance(value, (torch.dtype, torch.layout, torch.memory_format, torch.qscheme)):
            return value
    return None


# ----------------------------------------------------------------------------
# The unpickler.
class Unpickler(pickle._Unpickler):
    """pickle's pure-Python unpickler with every opcode that imports or calls replaced (see module doc)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        if type(module) is not str or type(name) is not str:
            raise UnpicklingError("global names must be strings")
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle itself maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        dotted = f"{module}.{name}"
        if dotted in _CALLABLE:
            return _Safe(dotted, _CALLABLE[dotted])
        value = _value_global(module, name)
        return Placeholder(dotted) if value is None else value

    def persistent_load(self, pid):
        raise UnpicklingError("this pickle refers to external storage (torch.load supplies it)")

    # Calls: only allowlisted functions run; placeholders give inert records; anything else is refused.
    def _call(self, func, args, kwargs=None):
        if isinstance(func, (Placeholder, Inert)):
            return Inert(func, args, kwargs)
        if isinstance(func, _Safe):
            if type(args) is not tuple or (kwargs is not None and type(kwargs) is not dict):
                raise UnpicklingError(f"bad arguments for {func.name}")
            try:
                return func.fn(*args, **(kwargs or {}))
            except UnpicklingError:
                raise
            except Exception as err:  # bad data for a rebuild function: a corrupt or hostile file
                raise UnpicklingError(f"{func.name}: {type(err).__name__}: {err}") from None
        raise UnpicklingError(f"refusing to call a {type(func).__name__} object: only tensor rebuilds and "
                              "plain containers are called")

    def _construct(self, cls, args, kwargs=None):
        """NEWOBJ / NEWOBJ_EX / INST / OBJ: instances of classes; only placeholders (-> Inert) are accepted."""
        if isinstance(cls, (Placeholder, Inert)):
            return Inert(cls, args, kwargs)
        raise UnpicklingError(f"refusing to instantiate {getattr(cls, 'name', type(cls).__name__)}")

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._construct(cls, args))

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._construct(cls, args, kwargs))

    def load_inst(self):
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        cls = self.find_class(module, name)
        args = self.pop_mark()
        self.stack.append(self._construct(cls, args))

    def load_obj(self):
        args = self.pop_mark()
        cls = args.pop(0)
        self.stack.append(self._construct(cls, args))

    def load_ext(self):
        raise UnpicklingError("pickle extension codes (copyreg registry) are not loaded")

    # Methods of objects on the stack: only those of builtin containers and records.
    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Inert):
            inst.state = state
        elif (type(inst) is OrderedDict and type(state) is dict
              and all(type(k) is str and not k.startswith("__") for k in state)):
            inst.__dict__.update(state)  # a state_dict's `_metadata`; never dunder names (__setstate__, ...)
        else:
            raise UnpicklingError(f"refusing to set the state of a {type(inst).__name__} object")

    def _target(self, allowed: tuple[type, ...], opcode: str):
        target = self.stack[-1]
        if isinstance(target, Inert) or type(target) in allowed:
            return target
        raise UnpicklingError(f"{opcode} on a {type(target).__name__} object is not loaded")

    def load_append(self):
        value = self.stack.pop()
        target = self._target((list,), "APPEND")
        (target.items if isinstance(target, Inert) else target).append(value)

    def load_appends(self):
        items = self.pop_mark()
        target = self._target((list,), "APPENDS")
        (target.items if isinstance(target, Inert) else target).extend(items)

    def _set_items(self, pairs: list, opcode: str):
        target = self._target((dict, OrderedDict, Counter), opcode)
        for key, value in pairs:
            if isinstance(target, Inert):
                target.items.append((key, value))
            else:
                target[key] = value

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items([(key, value)], "SETITEM")

    def load_setitems(self):
        items = self.pop_mark()
        self._set_items(list(zip(items[::2], items[1::2], strict=True)), "SETITEMS")

    def load_additems(self):
        items = self.pop_mark()
        target = self._target((set,), "ADDITEMS")
        if isinstance(target, Inert):
            target.items.extend(items)
        else:
            target.update(items)

    for _opcode, _method in ((pickle.REDUCE, load_reduce), (pickle.NEWOBJ, load_newobj),
                             (pickle.NEWOBJ_EX, load_newobj_ex), (pickle.INST, load_inst), (pickle.OBJ, load_obj),
                             (pickle.EXT1, load_ext), (pickle.EXT2, load_ext), (pickle.EXT4, load_ext),
                             (pickle.BUILD, load_build), (pickle.APPEND, load_append), (pickle.APPENDS, load_appends),
                             (pickle.SETITEM, load_setitem), (pickle.SETITEMS, load_setitems),
                             (pickle.ADDITEMS, load_additems)):
        dispatch[_opcode[0]] = _method
    del _opcode, _method


def load(file, **kwargs):
    """`pickle.load` with the restricted `Unpickler` (what torch.load calls for the legacy format's headers)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs):
    import io

    return Unpickler(io.BytesIO(data), **kwargs).load()
