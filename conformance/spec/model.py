"""The spec as typed, deeply frozen data: what :mod:`conformance.spec.loader` builds from a spec file.

Every object here is immutable all the way down: mappings are :class:`FrozenMap`
(read-only, hashable, insertion-ordered) and sequences are tuples. A loaded
spec is shared by every test, worker and cache key of a run, so nothing may
change it in place; and values such as an :class:`Identity`, a
:class:`ShapeFamily` or a :class:`Regime` hash, so they can key a dict or a set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property
from typing import Any, TypeVar

from conformance.expr import Expr
from conformance.formats import DTYPES
from conformance.spec.shapes import Shape

__all__ = [
    "FrozenMap",
    "Spec",
    "Layout",
    "ForwardDef",
    "Identity",
    "Precondition",
    "ShapeFamily",
    "Regime",
    "Generator",
    "TolerancePolicy",
    "NegativeIdentity",
    "DIRECTION_ROLES",
    "DIRECTION_ROLE",
]

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V]):
    """A read-only mapping that keeps insertion order and hashes (when its values do).

    Why not ``types.MappingProxyType``: a proxy does not hash, so a frozen
    dataclass holding one (an :class:`Identity` with its ``when``) could not
    either. Equality is that of mappings (order-insensitive, equal to a dict
    with the same items); the hash agrees with it.
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._data: dict[K, V] = dict(items)
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._data,))


#: Input roles that are directions of a derivative (the tangents and cotangents of jvp, vjp and hvp
#: identities), not inputs of the forward computation: one definition for the loader, the case
#: generator and the executor.
DIRECTION_ROLES: frozenset[str] = frozenset({"tangent", "cotangent"})
#: The role of the input a directional kind is taken along (jvp and hvp: a tangent; vjp: a cotangent).
DIRECTION_ROLE: Mapping[str, str] = FrozenMap({"jvp": "tangent", "hvp": "tangent", "vjp": "cotangent"})


def _freeze(obj: object, maps: tuple[str, ...] = (), seqs: tuple[str, ...] = ()) -> None:
    """Make the named fields of a frozen dataclass a :class:`FrozenMap` / a tuple, whoever constructed it.

    The loader is not the only constructor (``conformance.check`` builds
    identities and families of its own, ``dataclasses.replace`` rebuilds them):
    freezing here keeps every instance immutable and hashable.
    """
    for name in maps:
        value = getattr(obj, name)
        if not isinstance(value, FrozenMap):
            object.__setattr__(obj, name, FrozenMap(value))
    for name in seqs:
        value = getattr(obj, name)
        if not isinstance(value, tuple):
            object.__setattr__(obj, name, tuple(value))



@dataclass(frozen=True)
class ShapeFamily:
    """Concrete sizes for every named dimension: one set of test shapes.

    ``wide``: realistic widths, slow to check; such a family is not among a
    regime's default families (only a regime that names it uses it), and a run
    includes the regimes that use it only when asked (:meth:`Spec.without_wide`).
    """

    name: str
    sizes: Mapping[str, int]
    description: str = ""
    wide: bool = False

    def __post_init__(self) -> None:
        _freeze(self, maps=("sizes",))


@dataclass(frozen=True)
class ForwardDef:
    """One forward value, ``name = expr``, with its symbolic shape."""

    name: str
    expr: Expr
    text: str
    shape: Shape
    description: str = ""


@dataclass(frozen=True)
class Precondition:
    """A condition on the inputs (``expr == equals`` componentwise) that some identities require."""

    name: str
    expr: Expr
    text: str
    equals: Fraction
    description: str = ""


@dataclass(frozen=True)
class Identity:
    """A closed form claimed to equal a derivative, under preconditions.

    ``kind`` is ``"gradient"`` (of a scalar; the result has the shape of
    ``wrt``) or ``"jacobian"`` (of a vector; numerator layout puts d of_i /
    d wrt_j at row i, column j; denominator layout is its transpose), or a
    higher-order or forward-mode kind: ``"jvp"`` (J v, shape of ``of``),
    ``"vjp"`` (u^T J, shape of ``wrt``), ``"hessian"`` (of a scalar with
    respect to a vector, k x k) or ``"hvp"`` (the Hessian times v, shape of
    ``wrt``). ``direction`` is the input that holds v (tangent) or u
    (cotangent); None for the other kinds.
    """

    id: str
    layout: str
    kind: str
    of: str
    wrt: str
    convention: str | None
    expr: Expr
    text: str
    shape: Shape
    requires: tuple[str, ...] = ()
    when: Mapping[str, int] = field(default_factory=FrozenMap)
    description: str = ""
    symmetric: bool = False  # declared: the value equals its transpose, so no test can tell the two apart
    direction: str | None = None  # the tangent (jvp, hvp) or cotangent (vjp) input

    def __post_init__(self) -> None:
        _freeze(self, maps=("when",), seqs=("requires",))

    @property
    def quantity(self) -> tuple[str, str, str, str | None]:
        """What the identity is about, independent of its formula (for a directional kind the convention slot
        holds the direction: J v and J u are different quantities)."""
        return (self.kind, self.of, self.wrt, self.convention if self.direction is None else self.direction)


@dataclass(frozen=True)
class Layout:
    """One arrangement of the model (row or column samples): input shapes, forward pass, identities."""

    name: str
    description: str
    jacobian_convention: str
    sample_axis: int
    shapes: Mapping[str, Shape]
    loss: str
    forward: tuple[ForwardDef, ...]
    preconditions: Mapping[str, Precondition]
    identities: tuple[Identity, ...]

    def __post_init__(self) -> None:
        _freeze(self, maps=("shapes", "preconditions"), seqs=("forward", "identities"))

    @cached_property
    def definitions(self) -> Mapping[str, Expr]:
        return FrozenMap((d.name, d.expr) for d in self.forward)

    @cached_property
    def value_shapes(self) -> Mapping[str, Shape]:
        """Shapes of every input and forward value."""
        return FrozenMap([*self.shapes.items(), *((d.name, d.shape) for d in self.forward)])

    def identity(self, identity_id: str) -> Identity:
        for ident in self.identities:
            if ident.id == identity_id:
                return ident
        raise KeyError(f"layout {self.name!r} has no identity {identity_id!r}")


@dataclass(frozen=True)
class Generator:
    """One input generator of a regime: ``kind`` is normal, uniform, constant, spike, signs, tied,
    subnormal or labels; ``scale`` is a number, or a multiple (+1 or -1) of the regime's magnitude."""

    kind: str
    scale: float | None = None
    magnitude_sign: int = 0  # +1 / -1: the scale is (sign * magnitude); 0: the scale is fixed
    low: float | None = None
    high: float | None = None
    labels: str | None = None
    at_spike: bool = False

    def resolve(self, magnitude: float | None) -> float | None:
        if self.magnitude_sign:
            if magnitude is None:
                raise ValueError("this generator refers to a magnitude but the regime has none")
            return self.magnitude_sign * magnitude
        return self.scale


@dataclass(frozen=True)
class Regime:
    """A distribution of test inputs (per-input generators, swept over magnitudes) and the families it uses."""

    name: str
    description: str
    generators: Mapping[str, Generator]  # input name (or "default") -> generator
    magnitudes: tuple[float | None, ...] = (None,)
    families: tuple[str, ...] = ()
    examples: int = 2
    violates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _freeze(self, maps=("generators",), seqs=("magnitudes", "families", "violates"))

    def generator_for(self, input_name: str) -> Generator:
        return self.generators.get(input_name, self.generators["default"])


@dataclass(frozen=True)
class TolerancePolicy:
    """How the error bound of a result is formed: safety factor, accumulation dtype, elementary errors in ulps."""

    method: str
    safety_factor: float
    accumulate: Mapping[str, str]  # dtype -> accumulation dtype
    elementary_error_u: Mapping[str, float]

    def __post_init__(self) -> None:
        _freeze(self, maps=("accumulate", "elementary_error_u"))

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(d for d in DTYPES if d in self.accumulate)

    def elementary(self, fn: str) -> float:
        return float(self.elementary_error_u.get(fn, 2.0))


@dataclass(frozen=True)
class NegativeIdentity:
    """A known-wrong formula that people write; the harness must refute it."""

    id: str
    layout: str
    claims: str
    expr: Expr
    text: str
    mistake: str
    regime: str | None = None
    ignore_requires: bool = False
    families: tuple[str, ...] = ()  # where it must be refuted (default: every family of its regime)

    def __post_init__(self) -> None:
        _freeze(self, seqs=("families",))


@dataclass(frozen=True)
class Spec:
    """A loaded spec file: dimensions, families, inputs, layouts, tolerance, regimes and negative identities."""

    path: str
    sha256: str
    name: str
    title: str
    description: str
    dimensions: Mapping[str, str]
    families: Mapping[str, ShapeFamily]
    inputs: Mapping[str, Mapping[str, str]]
    layouts: Mapping[str, Layout]
    tolerance: TolerancePolicy
    regimes: Mapping[str, Regime]
    negative_identities: tuple[NegativeIdentity, ...] = ()
    #: the spec file's text, so that a results file can carry the exact spec it was judged against
    source: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not all(isinstance(v, FrozenMap) for v in self.inputs.values()):
            object.__setattr__(self, "inputs", FrozenMap((k, FrozenMap(v)) for k, v in self.inputs.items()))
        _freeze(self, maps=("dimensions", "families", "inputs", "layouts", "regimes"), seqs=("negative_identities",))

    def families_for(self, regime: Regime) -> tuple[ShapeFamily, ...]:
        """The families of ``regime``: those it names, else every family that is not wide."""
        names = regime.families or tuple(n for n, f in self.families.items() if not f.wide)
        return tuple(self.families[n] for n in names)

    def is_wide(self, regime: str) -> bool:
        """Whether the regime uses a wide family (it then runs only when the wide families are asked for)."""
        return any(f.wide for f in self.families_for(self.regimes[regime]))

    def without_wide(self) -> "Spec":
        """This spec without its wide families and the regimes that use them: what a default run checks.

        The sha256 and the text stay those of the file: every group that remains
        has the very same cases (no remaining regime uses a wide family), so cache
        keys and results stay comparable with a wide run's, and a results file
        still carries the whole spec (a rerun of a wide case finds its regime).
        """
        if not any(f.wide for f in self.families.values()):
            return self
        regimes = {n: r for n, r in self.regimes.items() if not self.is_wide(n)}
        families = {n: f for n, f in self.families.items() if not f.wide}
        return replace(self, families=families, regimes=regimes)
