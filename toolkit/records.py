"""``@frozen``: a frozen dataclass, made without compiling five methods per class.

Every value type of the tool is a frozen dataclass (DESIGN.md §2). On Python 3.11 the standard
``@dataclass(frozen=True)`` compiles six methods from generated source for each class
(``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``): about
0.5 ms a class against 0.13 ms here (``python -m bench.static_cost``), 21 ms of a 0.12 s static
check for the 42 classes it imports (issue 17, bench/RESULTS.md). Only ``__init__`` depends on the class's fields in a way that must be compiled to
stay fast; the other five are written here once and shared, reading the class's field lists.

What the standard library still does: the fields themselves (``dataclasses.field``, defaults,
``default_factory``, inheritance), ``__dataclass_fields__``, ``__match_args__``, so
``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work unchanged. What this module
does, with the same behaviour as ``@dataclass(frozen=True)``:

- ``__init__``: the same signature and defaults; ``default_factory`` called per instance; fields set
  with ``object.__setattr__``; ``__post_init__`` called when the class has one.
- ``__repr__``, ``__eq__`` and ``__hash__`` over the fields with ``repr=True`` / ``compare=True`` /
  ``hash`` (``None`` follows ``compare``), compared only between instances of the same class.
- Assigning or deleting any attribute raises ``dataclasses.FrozenInstanceError``.
- A method the class body defines itself is kept.

Not supported, and refused with TypeError when a class asks for them: ``InitVar`` and keyword-only
fields. ``__dataclass_params__`` describes the fields-only processing (``init=False``, ...); nothing
in the tool reads it.
"""

from __future__ import annotations

import dataclasses
import reprlib
import sys
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - Python 3.10: the decorator only informs type checkers

    def dataclass_transform(**_kwargs: Any) -> Callable[[T], T]:
        return lambda f: f


T = TypeVar("T")

_set = object.__setattr__


class _Factory:
    """The default of a parameter whose field has a ``default_factory``."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _tuple_of(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if not names:
        return lambda _obj: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return attrgetter(*names)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_repr_names__)
    return f"{self.__class__.__qualname__}({inner})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        return bool(self.__record_key__(self) == self.__record_key__(other))
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__record_hash__(self))


def _init_source(fields: tuple[dataclasses.Field[Any], ...], post_init: bool) -> tuple[str, dict[str, Any]]:
    """The ``__init__`` for these fields, as source, and the globals it reads. Its own names start
    with ``__frozen_`` (as dataclasses' start with ``__dataclass_``), so that a field may be called
    ``self`` or anything else without shadowing them."""
    env: dict[str, Any] = {"__frozen_set__": _set, "__frozen_factory__": _FACTORY}
    params, body = ["__frozen_self__"], []
    seen_default = False
    for f in fields:
        has_default = f.default is not dataclasses.MISSING
        has_factory = f.default_factory is not dataclasses.MISSING
        default, factory = f"__frozen_d_{f.name}__", f"__frozen_f_{f.name}__"
        if f.init:
            if has_default:
                env[default] = f.default
                params.append(f"{f.name}={default}")
                seen_default = True
            elif has_factory:
                env[factory] = f.default_factory
                params.append(f"{f.name}=__frozen_factory__")
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            else:
                params.append(f.name)
            value = f"{factory}() if {f.name} is __frozen_factory__ else {f.name}" if has_factory else f.name
        elif has_default:
            env[default] = f.default
            value = default
        elif has_factory:
            env[factory] = f.default_factory
            value = f"{factory}()"
        else:
            continue
        body.append(f"    __frozen_set__(__frozen_self__, {f.name!r}, {value})")
    if post_init:
        body.append("    __frozen_self__.__post_init__()")
    return f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n", env


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def frozen(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass (see the module docstring for what is shared)."""
    own = set(cls.__dict__)
    had_doc = bool(cls.__dict__.get("__doc__"))
    if not had_doc:
        # dataclasses writes a missing docstring from inspect.signature(cls), which, with no
        # __init__ yet, parses object's text signature (0.6 ms); it is written below instead
        cls.__doc__ = cls.__name__
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    others = [f.name for f in cls.__dict__["__dataclass_fields__"].values() if str(f._field_type) == "_FIELD_INITVAR"]
    if others:
        raise TypeError(f"{cls.__qualname__}: InitVar fields are not supported by @frozen: {others}")
    if any(f.kw_only is True for f in fields):
        raise TypeError(f"{cls.__qualname__}: keyword-only fields are not supported by @frozen")
    source, env = _init_source(fields, post_init=hasattr(cls, "__post_init__"))
    namespace: dict[str, Any] = {}
    # our own generated source, compiled as dataclasses compiles its own
    exec(compile(source, f"<@frozen {cls.__qualname__}.__init__>", "exec"), env, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {f.name: f.type for f in fields if f.init} | {"return": None}

    repr_names = tuple(f.name for f in fields if f.repr)
    cmp_names = tuple(f.name for f in fields if f.compare)
    hash_names = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    shared: dict[str, Any] = {
        "__init__": init,
        "__setattr__": _frozen_setattr,
        "__delattr__": _frozen_delattr,
        "__repr__": _repr,
        "__eq__": _eq,
    }
    for name, value in shared.items():
        if name not in own:
            setattr(cls, name, value)
    # as dataclasses: a class that defines __eq__ but not __hash__ gets __hash__ = None from Python
    # itself; an explicit __hash__ is kept
    explicit_hash = "__hash__" in own and not (cls.__dict__["__hash__"] is None and "__eq__" in own)
    if not explicit_hash:
        cls.__hash__ = _hash  # type: ignore[method-assign]
    cls.__record_repr_names__ = repr_names  # type: ignore[attr-defined]
    cls.__record_key__ = staticmethod(_tuple_of(cmp_names))  # type: ignore[attr-defined]
    cls.__record_hash__ = staticmethod(_tuple_of(hash_names))  # type: ignore[attr-defined]
    if not had_doc:
        import inspect

        cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
    return cls
