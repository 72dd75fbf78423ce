"""Load a spec file into typed, frozen objects, checking everything a person can get wrong.

Order of checks: YAML syntax, then the JSON Schema in ``spec/schema.json``
(structure and spelling), then the meaning: every name declared, every
expression parsed with the whitelist, every expression's shape inferred over
the named dimensions and compared with the declared one, each Jacobian's shape
agreeing with its convention. Any failure is a :class:`SpecError` naming the
file and the key. The spec is data: nothing in it is ever executed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from conformance.errors import ShapeError, SpecError
from conformance.expr import Expr, free_names, to_text
from conformance.spec.parse import parse_expr
from conformance.spec.shapes import Shape, format_shape, infer_shape, substitute, suggest_fixes, vector_length

__all__ = [
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
    "load_spec",
    "load_spec_text",
    "default_spec_path",
    "spec_dir",
    "DTYPES",
]

DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ShapeFamily:
    name: str
    sizes: Mapping[str, int]
    description: str = ""


@dataclass(frozen=True)
class ForwardDef:
    name: str
    expr: Expr
    text: str
    shape: Shape
    description: str = ""


@dataclass(frozen=True)
class Precondition:
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
    d wrt_j at row i, column j; denominator layout is its transpose).
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
    when: Mapping[str, int] = field(default_factory=dict)
    description: str = ""
    symmetric: bool = False  # declared: the value equals its transpose, so no test can tell the two apart

    @property
    def quantity(self) -> tuple[str, str, str, str | None]:
        """What the identity is about, independent of its formula."""
        return (self.kind, self.of, self.wrt, self.convention)


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    jacobian_convention: str
    sample_axis: int
    shapes: Mapping[str, Shape]
    loss: str
    forward: tuple[ForwardDef, ...]
    preconditions: Mapping[str, Precondition]
    identities: tuple[Identity, ...]

    @cached_property
    def definitions(self) -> dict[str, Expr]:
        return {d.name: d.expr for d in self.forward}

    @cached_property
    def value_shapes(self) -> dict[str, Shape]:
        """Shapes of every input and forward value."""
        out = dict(self.shapes)
        out.update({d.name: d.shape for d in self.forward})
        return out

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
    name: str
    description: str
    generators: Mapping[str, Generator]  # input name (or "default") -> generator
    magnitudes: tuple[float | None, ...] = (None,)
    families: tuple[str, ...] = ()
    examples: int = 2
    violates: tuple[str, ...] = ()

    def generator_for(self, input_name: str) -> Generator:
        return self.generators.get(input_name, self.generators["default"])


@dataclass(frozen=True)
class TolerancePolicy:
    method: str
    safety_factor: float
    accumulate: Mapping[str, str]  # dtype -> accumulation dtype
    elementary_error_u: Mapping[str, float]

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


@dataclass(frozen=True)
class Spec:
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

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    def families_for(self, regime: Regime) -> tuple[ShapeFamily, ...]:
        names = regime.families or tuple(self.families)
        return tuple(self.families[n] for n in names)


# --------------------------------------------------------------------------- loading

def spec_dir() -> Path:
    """The directory of the shipped spec files: inside the installed package, or the repository's ``spec/``."""
    package = Path(__file__).resolve().parent.parent  # conformance/
    packaged = package / "_spec"
    if packaged.is_dir():
        return packaged
    return package.parent / "spec"


def default_spec_path() -> Path:
    return spec_dir() / "two_layer_sigmoid_xent.yaml"


def _schema() -> dict[str, Any]:
    return json.loads((spec_dir() / "schema.json").read_text(encoding="utf-8"))


def load_spec(path: str | Path | None = None) -> Spec:
    """Load and check a spec file (the seed network when ``path`` is None)."""
    p = Path(path) if path is not None else default_spec_path()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", file=str(p)) from None
    return load_spec_text(raw.decode("utf-8", errors="replace"), name=str(p), digest_of=raw)


def load_spec_text(text: str, *, name: str = "<spec>", digest_of: bytes | None = None) -> Spec:
    sha = hashlib.sha256(digest_of if digest_of is not None else text.encode("utf-8")).hexdigest()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"not valid YAML: {where}{problem}", file=name) from None
    if not isinstance(data, dict):
        raise SpecError("a spec file must be a mapping at the top level", file=name)
    _validate_schema(data, name)
    return replace(_build(data, name, sha), source=text)


def _validate_schema(data: dict[str, Any], file: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise SpecError(f"does not match the spec schema: {err.message}", file=file, key=key)


def _build(data: dict[str, Any], file: str, sha: str) -> Spec:
    dims: dict[str, str] = dict(data["dimensions"])
    families: dict[str, ShapeFamily] = {}
    for fname, fam in data["shape_families"].items():
        sizes = dict(fam["sizes"])
        unknown = set(sizes) - set(dims)
        missing = set(dims) - set(sizes)
        if unknown:
            raise SpecError(f"unknown dimension {sorted(unknown)[0]!r}; declared: {', '.join(dims)}",
                            file=file, key=f"shape_families.{fname}.sizes")
        if missing:
            raise SpecError(f"no size for dimension {sorted(missing)[0]!r}", file=file, key=f"shape_families.{fname}.sizes")
        families[fname] = ShapeFamily(fname, sizes, fam.get("description", ""))

    inputs = {k: dict(v) for k, v in data["inputs"].items()}
    layouts = {lname: _build_layout(lname, ldata, dims, inputs, file) for lname, ldata in data["layouts"].items()}
    tolerance = _build_tolerance(data["tolerance"], file)
    regimes = {rname: _build_regime(rname, r, inputs, families, layouts, file) for rname, r in data["regimes"].items()}
    negatives = tuple(_build_negative(i, n, layouts, regimes, families, file)
                      for i, n in enumerate(data.get("negative_identities", [])))
    return Spec(
        path=file, sha256=sha, name=data["name"], title=data["title"], description=data.get("description", ""),
        dimensions=dims, families=families, inputs=inputs, layouts=layouts, tolerance=tolerance,
        regimes=regimes, negative_identities=negatives,
    )


def _check_shape(shape: Iterable[Any], dims: Mapping[str, str], file: str, key: str) -> Shape:
    out = []
    for d in shape:
        if isinstance(d, str) and d not in dims:
            raise SpecError(f"unknown dimension {d!r}; declared: {', '.join(dims)}", file=file, key=key)
        out.append(d)
    return (out[0], out[1])


def _build_layout(name: str, data: dict[str, Any], dims: Mapping[str, str], inputs: Mapping[str, Any], file: str) -> Layout:
    base = f"layouts.{name}"
    shapes: dict[str, Shape] = {}
    for inp, shp in data["shapes"].items():
        if inp not in inputs:
            raise SpecError(f"shape given for {inp!r}, which is not a declared input", file=file, key=f"{base}.shapes")
        shapes[inp] = _check_shape(shp, dims, file, f"{base}.shapes.{inp}")
    for inp in inputs:
        if inp not in shapes:
            raise SpecError(f"no shape for input {inp!r}", file=file, key=f"{base}.shapes")

    known = dict(shapes)
    forward: list[ForwardDef] = []
    for i, fdef in enumerate(data["forward"]):
        key = f"{base}.forward[{i}]"
        fname = fdef["name"]
        if fname in known:
            raise SpecError(f"{fname!r} is defined twice (or shadows an input)", file=file, key=f"{key}.name")
        expr = parse_expr(fdef["expr"], names=known, file=file, key=f"{key}.expr")
        shape = infer_shape(expr, known, file=file, key=f"{key}.expr")
        known[fname] = shape
        forward.append(ForwardDef(fname, expr, fdef["expr"], shape, fdef.get("description", "")))
    loss = data["loss"]
    if loss not in known or loss in shapes:
        raise SpecError(f"the loss {loss!r} is not a forward value", file=file, key=f"{base}.loss")
    if known[loss] != (1, 1):
        raise SpecError(f"the loss {loss!r} must be a scalar (1 x 1), its shape is {format_shape(known[loss])}",
                        file=file, key=f"{base}.loss")

    preconditions: dict[str, Precondition] = {}
    for pname, pdata in (data.get("preconditions") or {}).items():
        key = f"{base}.preconditions.{pname}"
        expr = parse_expr(pdata["expr"], names=shapes, file=file, key=f"{key}.expr")
        infer_shape(expr, shapes, file=file, key=f"{key}.expr")
        preconditions[pname] = Precondition(pname, expr, pdata["expr"], Fraction(str(pdata["equals"])), pdata.get("description", ""))

    identities: list[Identity] = []
    seen: set[str] = set()
    for i, idata in enumerate(data["identities"]):
        key = f"{base}.identities[{i}]"
        ident = _build_identity(name, idata, known, shapes, dims, preconditions, file, key)
        if ident.id in seen:
            raise SpecError(f"identity {ident.id!r} appears twice", file=file, key=f"{key}.id")
        seen.add(ident.id)
        identities.append(ident)
    return Layout(
        name=name, description=data.get("description", ""), jacobian_convention=data["jacobian_convention"],
        sample_axis=int(data["sample_axis"]), shapes=shapes, loss=loss, forward=tuple(forward), preconditions=preconditions, identities=tuple(identities),
    )


def _build_identity(layout: str, data: dict[str, Any], known: Mapping[str, Shape], inputs: Mapping[str, Shape],
                    dims: Mapping[str, str], preconditions: Mapping[str, Precondition], file: str, key: str) -> Identity:
    kind = "gradient" if "gradient" in data else "jacobian"
    q = data[kind]
    of, wrt = q["of"], q["wrt"]
    convention = q.get("convention")
    for role, nm in (("of", of), ("wrt", wrt)):
        if nm not in known:
            raise SpecError(f"{kind}.{role}: {nm!r} is neither an input nor a forward value", file=file, key=key)
    when = dict(data.get("when") or {})
    for d in when:
        if d not in dims:
            raise SpecError(f"when: unknown dimension {d!r}", file=file, key=key)
    pinned = {nm: substitute(s, when) for nm, s in known.items()}
    expr = parse_expr(data["expr"], names=known, file=file, key=f"{key}.expr")
    declared = substitute(_check_shape(data["shape"], dims, file, f"{key}.shape"), when)
    try:
        inferred = infer_shape(expr, pinned, file=file, key=f"{key}.expr")
    except ShapeError:
        raise
    if inferred != declared:
        fixes = suggest_fixes(expr, pinned, expected=declared)
        raise ShapeError(f"the expression has shape {format_shape(inferred)}, the declared shape is {format_shape(declared)}",
                         file=file, key=f"{key}.expr", suggestion=to_text(fixes[0].by) if fixes else None)
    if kind == "gradient":
        if pinned[of] != (1, 1):
            raise SpecError(f"gradient of {of!r}, which is not a scalar ({format_shape(pinned[of])}); use a jacobian",
                            file=file, key=key)
        if declared != pinned[wrt]:
            raise ShapeError(f"a gradient has the shape of its variable: {wrt} is {format_shape(pinned[wrt])}, "
                             f"the identity is {format_shape(declared)}", file=file, key=f"{key}.shape")
    else:
        lo, lw = vector_length(pinned[of]), vector_length(pinned[wrt])
        if lo is None or lw is None:
            raise SpecError(f"a jacobian relates two vectors; pin the batch with `when` (of {format_shape(pinned[of])}, "
                            f"wrt {format_shape(pinned[wrt])})", file=file, key=key)
        expected = (lo, lw) if convention == "numerator" else (lw, lo)
        if declared != expected:
            raise ShapeError(f"a {convention}-layout jacobian of {of} ({lo}) with respect to {wrt} ({lw}) is "
                             f"{format_shape(expected)}, the identity declares {format_shape(declared)}",
                             file=file, key=f"{key}.shape")
    requires = tuple(data.get("requires") or ())
    for r in requires:
        if r not in preconditions:
            raise SpecError(f"requires unknown precondition {r!r}; this layout declares: {', '.join(preconditions) or 'none'}",
                            file=file, key=f"{key}.requires")
    return Identity(
        id=data["id"], layout=layout, kind=kind, of=of, wrt=wrt, convention=convention, expr=expr, text=data["expr"],
        shape=declared, requires=requires, when=when, description=data.get("description", ""),
        symmetric=bool(data.get("symmetric", False)),
    )


def _build_tolerance(data: dict[str, Any], file: str) -> TolerancePolicy:
    from conformance.formats import get_format

    acc = {dt: v["accumulate"] for dt, v in data["dtypes"].items()}
    for dt, a in acc.items():
        if get_format(a).p < get_format(dt).p:
            raise SpecError(f"accumulation in {a} is narrower than {dt}", file=file, key=f"tolerance.dtypes.{dt}")
    return TolerancePolicy(data["method"], float(data["safety_factor"]), acc, dict(data["elementary_error_u"]))


def _build_generator(data: dict[str, Any], file: str, key: str) -> Generator:
    kinds = [k for k in data if k != "at"]
    if len(kinds) != 1:
        raise SpecError(f"a generator has exactly one kind, found {', '.join(kinds) or 'none'}", file=file, key=key)
    kind = kinds[0]
    value = data[kind]
    if "at" in data and kind != "labels":
        raise SpecError("'at' only applies to labels", file=file, key=key)
    if kind == "labels":
        return Generator("labels", labels=value, at_spike=data.get("at") == "spike")
    if kind == "uniform":
        low, high = float(value[0]), float(value[1])
        if not low < high:
            raise SpecError("uniform needs low < high", file=file, key=key)
        return Generator("uniform", low=low, high=high)
    if kind == "subnormal":
        return Generator("subnormal")
    if kind == "constant":
        return Generator("constant", scale=float(value))
    if isinstance(value, str):
        return Generator(kind, magnitude_sign=-1 if value.startswith("-") else 1)
    return Generator(kind, scale=float(value))


def _build_regime(name: str, data: dict[str, Any], inputs: Mapping[str, Any], families: Mapping[str, ShapeFamily],
                  layouts: Mapping[str, Layout], file: str) -> Regime:
    base = f"regimes.{name}"
    gens: dict[str, Generator] = {}
    for inp, g in data["inputs"].items():
        if inp != "default" and inp not in inputs:
            raise SpecError(f"generator for {inp!r}, which is not a declared input", file=file, key=f"{base}.inputs")
        gens[inp] = _build_generator(g, file, f"{base}.inputs.{inp}")
    label_inputs = [n for n, d in inputs.items() if d.get("role") == "label"]
    for inp in label_inputs:
        if inp not in gens or gens[inp].kind != "labels":
            raise SpecError(f"the label input {inp!r} needs a labels generator", file=file, key=f"{base}.inputs")
    uses_magnitude = any(g.magnitude_sign for g in gens.values())
    mags = data.get("magnitudes")
    if uses_magnitude and not mags:
        raise SpecError("a generator refers to the magnitude, but the regime lists no magnitudes", file=file, key=base)
    if mags and not uses_magnitude:
        raise SpecError("magnitudes are listed but no generator uses them", file=file, key=f"{base}.magnitudes")
    spiked = any(g.kind in ("spike", "tied") for g in gens.values())
    if any(g.at_spike for g in gens.values()) and not spiked:
        raise SpecError("labels 'at: spike' needs a spike generator in the same regime", file=file, key=f"{base}.inputs")
    fams = tuple(data.get("families") or ())
    for f in fams:
        if f not in families:
            raise SpecError(f"unknown shape family {f!r}", file=file, key=f"{base}.families")
    known_pre = {p for lay in layouts.values() for p in lay.preconditions}
    violates = tuple(data.get("violates") or ())
    for v in violates:
        if v not in known_pre:
            raise SpecError(f"violates unknown precondition {v!r}", file=file, key=f"{base}.violates")
    return Regime(
        name=name, description=data["description"], generators=gens,
        magnitudes=tuple(float(m) for m in mags) if mags else (None,), families=fams,
        examples=int(data.get("examples", 2)), violates=violates,
    )


def _build_negative(i: int, data: dict[str, Any], layouts: Mapping[str, Layout], regimes: Mapping[str, Regime],
                    families: Mapping[str, ShapeFamily], file: str) -> NegativeIdentity:
    key = f"negative_identities[{i}]"
    lname = data["layout"]
    if lname not in layouts:
        raise SpecError(f"unknown layout {lname!r}", file=file, key=f"{key}.layout")
    layout = layouts[lname]
    try:
        layout.identity(data["claims"])
    except KeyError:
        raise SpecError(f"claims unknown identity {data['claims']!r} of layout {lname!r}", file=file, key=f"{key}.claims") from None
    regime = data.get("regime")
    if regime is not None and regime not in regimes:
        raise SpecError(f"unknown regime {regime!r}; declared: {', '.join(regimes)}", file=file, key=f"{key}.regime")
    fams = tuple(data.get("families") or ())
    for f in fams:
        if f not in families:
            raise SpecError(f"unknown shape family {f!r}; declared: {', '.join(families)}", file=file, key=f"{key}.families")
    # shapes of negative identities may be wrong on purpose: `gradconform lint` reports them per family
    expr = parse_expr(data["expr"], names=layout.value_shapes, file=file, key=f"{key}.expr")
    return NegativeIdentity(
        id=data["id"], layout=lname, claims=data["claims"], expr=expr, text=data["expr"], mistake=data["mistake"],
        regime=regime, ignore_requires=bool(data.get("ignore_requires", False)), families=fams,
    )


def describe_identity(ident: Identity) -> str:
    """One line, e.g. ``dL/dx = ((yhat - y) @ W2.T) * (h - h*h) @ W1.T  [n x d_in]``."""
    return f"{ident.id} = {to_text(ident.expr)}  [{format_shape(ident.shape)}]"


def names_used(ident: Identity) -> frozenset[str]:
    return free_names(ident.expr)
