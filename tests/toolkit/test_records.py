"""``@frozen`` behaves as ``@dataclass(frozen=True)``: the same class written both ways is held to
the same results, for hand-picked shapes and for generated ones (hypothesis)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from npu_preflight.records import frozen
from tests.props import prop


def both(make: Any) -> tuple[type, type]:
    """The class ``make(decorator)`` builds, once with each decorator."""
    return make(dataclasses.dataclass(frozen=True)), make(frozen)


def outcome(fn: Any) -> Any:
    """What ``fn()`` returns, or the type and message of what it raises."""
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - any exception is an outcome to compare
        return ("raised", type(exc).__name__, str(exc))


def make_shape(deco: Any) -> type:
    @deco
    class Shape:
        """A class with every kind of field the tool uses."""

        name: str
        size: int = 0
        tags: list[str] = field(default_factory=list)
        note: str = field(default="", compare=False)
        secret: str = field(default="", repr=False)
        meta: dict[str, Any] = field(default_factory=dict, hash=False)

    return Shape


STD, OURS = both(make_shape)


@frozen
class Pickled:
    """A module-level record, so pickle can find its class."""

    name: str
    tags: tuple[str, ...] = ()


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("a",), {}),
    (("a", 3), {}),
    (("a", 3, ["x"]), {"note": "n", "secret": "s"}),
    (("a", 3, ["x"]), {"note": "other"}),
    ((), {"name": "b", "size": -1, "meta": {}}),
    ((), {"name": "a"}),
]


def test_construction_repr_and_eq_match_stdlib():
    for args, kwargs in CALLS:
        s, o = STD(*args, **kwargs), OURS(*args, **kwargs)
        assert repr(o) == repr(s)
        assert outcome(lambda o=o: hash(o)) == outcome(lambda s=s: hash(s))  # a list field: unhashable
        for args2, kwargs2 in CALLS:
            assert (o == OURS(*args2, **kwargs2)) == (s == STD(*args2, **kwargs2))
    assert OURS("a", 1, note="x") == OURS("a", 1, note="y"), "a compare=False field does not take part"
    assert OURS("a") != STD("a")
    assert (OURS("a") == "a") is False


def test_wrong_calls_raise_as_stdlib():
    for call in [
        lambda c: c(),
        lambda c: c("a", 1, [], "n", "s", {}, "extra"),
        lambda c: c("a", nope=1),
        lambda c: c("a", name="b"),
    ]:
        s, o = outcome(lambda call=call: call(STD)), outcome(lambda call=call: call(OURS))
        assert s[0] == o[0] == "raised" and s[1] == o[1] == "TypeError"


def test_frozen_and_fresh_defaults():
    o = OURS("a")
    with pytest.raises(dataclasses.FrozenInstanceError, match="'size'"):
        o.size = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.other = 1  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del o.name  # type: ignore[misc]
    assert OURS("a").tags is not OURS("a").tags
    assert OURS("a").tags == []


def test_dataclasses_functions_work():
    o = OURS("a", 2, ["t"], note="n")
    assert dataclasses.is_dataclass(o)
    assert [f.name for f in dataclasses.fields(OURS)] == [f.name for f in dataclasses.fields(STD)]
    assert OURS.__match_args__ == STD.__match_args__
    r = dataclasses.replace(o, size=5)
    assert (r.size, r.name, r.tags, r.note) == (5, "a", ["t"], "n")
    assert dataclasses.asdict(o) == dataclasses.asdict(STD("a", 2, ["t"], note="n"))
    p = Pickled("a", ("t",))
    assert pickle.loads(pickle.dumps(p)) == p
    assert copy.deepcopy(o) == o and copy.copy(o) == o
    match o:
        case OURS(name, size):
            assert (name, size) == ("a", 2)


def test_hash_follows_compare_and_hash_flags():
    def make(deco: Any) -> type:
        @deco
        class Point:
            """x counts; y is left out of == and hash; z is in == but not in hash."""

            x: int
            y: int = field(default=0, compare=False)
            z: int = field(default=0, hash=False)

        return Point

    s, o = both(make)
    for args in [(1,), (1, 2), (1, 2, 3), (2, 2, 3)]:
        assert hash(o(*args)) == hash(s(*args))
    assert o(1, 2, 3) == o(1, 9, 3) and o(1, 2, 3) != o(1, 2, 4)


def test_methods_the_class_defines_are_kept():
    def make(deco: Any) -> type:
        @deco
        class Own:
            """Defines its own repr and eq; as dataclasses does, a field hash is still added."""

            x: int

            def __repr__(self) -> str:
                return "own"

            def __eq__(self, other: object) -> bool:
                return True

        return Own

    s, o = both(make)
    assert repr(o(1)) == "own" and o(1) == 5
    assert hash(o(1)) == hash(s(1))

    @frozen
    class Hashed:
        """Defines its own hash."""

        x: int

        def __hash__(self) -> int:
            return 7

    assert hash(Hashed(1)) == 7 and Hashed(1) == Hashed(1)


def test_post_init_inheritance_recursion_and_docstring():
    seen = []

    @frozen
    class Base:
        a: int

        def __post_init__(self) -> None:
            seen.append(self.a)

    @frozen
    class Child(Base):
        """A frozen class built on another."""

        b: list[Any] = field(default_factory=list)

    c = Child(1, ["x"])
    assert (c.a, c.b, seen) == (1, ["x"], [1])
    assert [f.name for f in dataclasses.fields(Child)] == ["a", "b"]
    assert Base.__doc__ == "Base(a: 'int')"
    c.b.append(c)
    assert repr(c) == "test_post_init_inheritance_recursion_and_docstring.<locals>.Child(a=1, b=['x', ...])"
    assert Child(1) != Base(1)


def test_unsupported_fields_are_refused():
    with pytest.raises(TypeError, match="non-default argument 'b'"):

        @frozen
        class Order:
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(TypeError, match="keyword-only"):

        @frozen
        class Kw:
            a: int = field(kw_only=True)

    with pytest.raises(TypeError, match="InitVar"):

        @frozen
        class Iv:
            a: dataclasses.InitVar[int]


def test_the_tool_s_records_share_the_methods():
    """The point of @frozen: no class compiles its own repr/eq/hash/setattr (issue 17)."""
    from npu_preflight.formats.safetensors import TensorInfo
    from npu_preflight.model import Finding, Location

    for name in ("__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
        assert getattr(Finding, name) is getattr(Location, name) is getattr(TensorInfo, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Location().file = "x"  # type: ignore[misc]


FIELD_SPECS = st.lists(
    st.tuples(
        st.sampled_from(["none", "default", "factory"]),
        st.booleans(),  # compare
        st.booleans(),  # repr
        st.sampled_from([None, True, False]),  # hash
    ),
    min_size=0,
    max_size=6,
).map(lambda specs: sorted(specs, key=lambda s: s[0] != "none"))  # no default before a required one


def build(deco: Any, specs: list[tuple[str, bool, bool, bool | None]]) -> type:
    ns: dict[str, Any] = {"__annotations__": {}, "__doc__": "generated"}
    for i, (kind, compare, rep, h) in enumerate(specs):
        name = f"f{i}"
        ns["__annotations__"][name] = "Any"
        extra = {"compare": compare, "repr": rep, "hash": h}
        if kind == "default":
            ns[name] = field(default=i, **extra)  # type: ignore[call-overload]
        elif kind == "factory":
            ns[name] = field(default_factory=lambda i=i: (i,), **extra)  # type: ignore[call-overload]
        else:
            ns[name] = field(**extra)  # type: ignore[call-overload]
    return deco(type("Gen", (), ns))


@prop(150)
@given(FIELD_SPECS, st.data())
def test_generated_classes_match_stdlib(specs, data):
    s_cls, o_cls = build(dataclasses.dataclass(frozen=True), specs), build(frozen, specs)
    required = sum(1 for k, *_ in specs if k == "none")
    values = st.one_of(st.integers(-3, 3), st.text(max_size=3), st.tuples(st.integers(0, 2)), st.none())
    n = data.draw(st.integers(required, len(specs)))
    args = data.draw(st.lists(values, min_size=n, max_size=n))
    other = data.draw(st.lists(values, min_size=n, max_size=n))
    s1, o1, s2, o2 = s_cls(*args), o_cls(*args), s_cls(*other), o_cls(*other)
    assert repr(o1) == repr(s1)
    assert (o1 == o2) == (s1 == s2)
    assert outcome(lambda: hash(o1)) == outcome(lambda: hash(s1))
    assert dataclasses.astuple(o1) == dataclasses.astuple(s1)
    o_r, s_r = outcome(lambda: o_cls(*args, *args, 0)), outcome(lambda: s_cls(*args, *args, 0))
    assert o_r[0] == s_r[0] and (o_r[0] == "ok" or o_r[1] == s_r[1])


def test_field_names_cannot_shadow_the_generated_init_s_own():
    def make(deco: Any) -> type:
        @deco
        class Odd:
            """Fields named like what a generated __init__ might use itself."""

            self: int
            _set: int = 1
            _FACTORY: list[int] = field(default_factory=list)
            object: int = 2

        return Odd

    s, o = both(make)
    for args in [(0,), (0, 5, [1], 3)]:
        assert repr(o(*args)) == repr(s(*args))
    assert o(self=3).self == 3 and o(0)._FACTORY == [] and o(0)._FACTORY is not o(0)._FACTORY
