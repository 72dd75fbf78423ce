"""Load a spec file into the frozen objects of :mod:`conformance.spec.model`, checking everything a person can get wrong.

Order of checks: YAML syntax, then the JSON Schema in ``spec/schema.json``
(structure and spelling), then the meaning: every name declared, every
expression parsed with the whitelist, every expression's shape inferred over
the named dimensions and compared with the declared one, each Jacobian's shape
agreeing with its convention. Any failure is a :class:`SpecError` naming the
file and the key. The spec is data: nothing in it is ever executed.

The loader stops at the first error. ``gradconform lint`` wants every shape
error of a file that does not load, so the loader also offers the steps lint
reuses: :func:`parse_spec_data` (YAML and schema) and :func:`raw_layout_pass`
(every expression of a raw layout, in the loader's order and name scopes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from conformance.errors import ShapeError, SpecError
from conformance.expr import to_text
from conformance.formats import get_format
from conformance.spec.model import (DIRECTION_ROLE, ForwardDef, Generator, Identity, Layout, NegativeIdentity, Precondition,
                                    Regime, ShapeFamily, Spec, TolerancePolicy)
from conformance.spec.parse import parse_expr
from conformance.spec.yaml_safe import MAX_SPEC_BYTES, check_finite, check_size, safe_yaml_load
from conformance.spec.shapes import Shape, format_shape, infer_shape, substitute, suggest_fixes, vector_length

__all__ = [
    "load_spec",
    "load_spec_text",
    "default_spec_path",
    "spec_dir",
    "parse_spec_data",
    "validate_schema",
    "raw_layout_pass",
    "ExpressionCheck",
]

#: Checks one expression of a raw layout: ``(text, shapes of the names it may use, key, declared shape)`` to its
#: shape, or None when it could not be shape-checked. A name's shape is None where its own definition failed.
ExpressionCheck = Callable[[str, Mapping[str, "Shape | None"], str, "Shape | None"], "Shape | None"]


#: the most elements of one input in one shape family (a 16 x 16 matrix): hypothesis draws every element of a case
#: from one buffer (a few thousand elements in all), and the oracle's dual-number derivative costs grow with the
#: square of the elements
MAX_INPUT_ELEMENTS = 256
#: the most elements of all inputs of one case (one layout and shape family) together
MAX_CASE_ELEMENTS = 1024
#: the same limits for a wide family (``wide: true``, run only when asked): its inputs are drawn without per-entry
#: hypothesis choices, and the spec's self-check (the dual-number derivative) skips it; a 128 x 128 matrix
MAX_WIDE_INPUT_ELEMENTS = 16384
MAX_WIDE_CASE_ELEMENTS = 65536
#: the largest scale or magnitude of an input generator (a normal's standard deviation, a spike, a uniform's
#: bounds): every primitive saturates far below it (exp overflows float64 from 710); larger inputs only make the
#: oracle chase cancellations up to its precision limit
MAX_GENERATOR_SCALE = 1.0e6


def spec_dir() -> Path:
    """The directory of the shipped spec files: inside the installed package, or the repository's ``spec/``."""
    package = Path(__file__).resolve().parent.parent  # conformance/
    packaged = package / "_spec"
    if packaged.is_dir():
        return packaged
    return package.parent / "spec"


def default_spec_path() -> Path:
    """The seed network's spec file."""
    return spec_dir() / "two_layer_sigmoid_xent.yaml"


def _schema() -> dict[str, Any]:
    return json.loads((spec_dir() / "schema.json").read_text(encoding="utf-8"))


def load_spec(path: str | Path | None = None) -> Spec:
    """Load and check a spec file (the seed network when ``path`` is None)."""
    p = Path(path) if path is not None else default_spec_path()
    try:
        if p.is_file():
            check_size(p.stat().st_size, str(p))  # before reading: a huge file is refused unread
        with p.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", file=str(p)) from None
    return load_spec_text(raw.decode("utf-8", errors="replace"), name=str(p), digest_of=raw)


def load_spec_text(text: str, *, name: str = "<spec>", digest_of: bytes | None = None) -> Spec:
    """Load and check a spec from its text; ``digest_of`` (the file's bytes) is what its sha256 is taken of."""
    sha = hashlib.sha256(digest_of if digest_of is not None else text.encode("utf-8")).hexdigest()
    data = parse_spec_data(text, name)
    return replace(_build(data, name, sha), source=text)


def parse_spec_data(text: str, name: str = "<spec>") -> dict[str, Any]:
    """The raw data of a spec text, checked for YAML syntax, the limits of :mod:`conformance.spec.yaml_safe`
    (size, aliases, duplicate keys, finite numbers) and against the schema (not yet for meaning)."""
    data = safe_yaml_load(text, name)  # bounded: size, aliases, nesting; no duplicate keys
    if not isinstance(data, dict):
        raise SpecError("a spec file must be a mapping at the top level", file=name)
    check_finite(data, name)  # before the schema, whose range checks let a NaN through
    validate_schema(data, name)
    return data


def validate_schema(data: Any, file: str) -> None:
    """Raise a :class:`SpecError` naming the key of the most relevant schema violation of ``data``, if any."""
    import jsonschema  # lazy: ~0.15 s to import, and every pytest run imports the spec package (the plugin does)

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
        families[fname] = ShapeFamily(fname, sizes, fam.get("description", ""), wide=bool(fam.get("wide", False)))
    if all(f.wide for f in families.values()):
        raise SpecError("every shape family is wide: a default run would check nothing; "
                        "give at least one family without `wide: true`", file=file, key="shape_families")

    inputs = {k: dict(v) for k, v in data["inputs"].items()}
    layouts = {lname: _build_layout(lname, ldata, dims, inputs, file) for lname, ldata in data["layouts"].items()}
    tolerance = _build_tolerance(data["tolerance"], file)
    regimes = {rname: _build_regime(rname, r, inputs, families, layouts, file) for rname, r in data["regimes"].items()}
    _check_sizes(layouts, families, file)
    negatives = tuple(_build_negative(i, n, layouts, regimes, families, file)
                      for i, n in enumerate(data.get("negative_identities", [])))
    return Spec(
        path=file, sha256=sha, name=data["name"], title=data["title"], description=data.get("description", ""),
        dimensions=dims, families=families, inputs=inputs, layouts=layouts, tolerance=tolerance,
        regimes=regimes, negative_identities=negatives,
    )


def _check_sizes(layouts: Mapping[str, Layout], families: Mapping[str, ShapeFamily], file: str) -> None:
    """Refuse a shape family whose cases would be too large to generate or to evaluate exactly."""
    for fam in families.values():
        one, case = (MAX_WIDE_INPUT_ELEMENTS, MAX_WIDE_CASE_ELEMENTS) if fam.wide else (MAX_INPUT_ELEMENTS,
                                                                                          MAX_CASE_ELEMENTS)
        for lay in layouts.values():
            total = 0
            for inp, shape in lay.shapes.items():
                rows, cols = (d if isinstance(d, int) else fam.sizes[d] for d in shape)
                total += rows * cols
                if rows * cols > one:
                    raise SpecError(f"in layout {lay.name}, input {inp} is {rows} x {cols} = {rows * cols} elements, "
                                    f"more than the limit of {one}; use smaller sizes (a missing "
                                    "transpose shows at any size)", file=file, key=f"shape_families.{fam.name}.sizes")
            if total > case:
                raise SpecError(f"in layout {lay.name}, the inputs have {total} elements together, more than the "
                                f"limit of {case}; use smaller sizes", file=file,
                                key=f"shape_families.{fam.name}.sizes")


def _check_scale(value: float, file: str, key: str) -> float:
    if abs(value) > MAX_GENERATOR_SCALE:
        raise SpecError(f"{value:g} is beyond the limit of {MAX_GENERATOR_SCALE:g} for input scales and magnitudes",
                        file=file, key=key)
    return value


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
        ident = _build_identity(name, idata, known, shapes, dims, preconditions, file, key,
                                {k: str(v.get("role", "")) for k, v in inputs.items()})
        if ident.id in seen:
            raise SpecError(f"identity {ident.id!r} appears twice", file=file, key=f"{key}.id")
        seen.add(ident.id)
        identities.append(ident)
    return Layout(
        name=name, description=data.get("description", ""), jacobian_convention=data["jacobian_convention"],
        sample_axis=int(data["sample_axis"]), shapes=shapes, loss=loss, forward=tuple(forward),
        preconditions=preconditions, identities=tuple(identities),
    )


def raw_layout_pass(name: str, data: Mapping[str, Any], check: ExpressionCheck) -> None:
    """Give ``check`` every expression of one schema-valid raw layout, with the names the loader would let it use.

    Forward definitions in order (each sees the inputs and the definitions
    before it; a failed one is None from then on), preconditions over the
    inputs, identities over every value with the batch pinned by ``when`` and
    their declared shape. Unlike :func:`_build_layout` nothing stops at an
    error: ``check`` decides what to report, so lint can list them all.
    """
    base = f"layouts.{name}"
    shapes: dict[str, Shape | None] = {k: (v[0], v[1]) for k, v in data["shapes"].items()}
    inputs = dict(shapes)
    for i, fdef in enumerate(data["forward"]):
        shapes[fdef["name"]] = check(fdef["expr"], shapes, f"{base}.forward[{i}].expr", None)
    for pname, pdata in (data.get("preconditions") or {}).items():
        check(pdata["expr"], inputs, f"{base}.preconditions.{pname}.expr", None)
    for i, idata in enumerate(data["identities"]):
        when = dict(idata.get("when") or {})
        pinned = {k: (substitute(v, when) if v is not None else None) for k, v in shapes.items()}
        declared = substitute((idata["shape"][0], idata["shape"][1]), when)
        check(idata["expr"], pinned, f"{base}.identities[{i}].expr", declared)


def _build_identity(layout: str, data: dict[str, Any], known: Mapping[str, Shape], inputs: Mapping[str, Shape],
                    dims: Mapping[str, str], preconditions: Mapping[str, Precondition], file: str, key: str,
                    roles: Mapping[str, str] | None = None) -> Identity:
    roles = roles or {}
    kind = next(k for k in IDENTITY_KINDS if k in data)
    q = data[kind]
    of, wrt = q["of"], q["wrt"]
    convention = q.get("convention")
    for role, nm in (("of", of), ("wrt", wrt)):
        if nm not in known:
            raise SpecError(f"{kind}.{role}: {nm!r} is neither an input nor a forward value", file=file, key=key)
    direction = q.get("tangent", q.get("cotangent"))
    when = dict(data.get("when") or {})
    for d in when:
        if d not in dims:
            raise SpecError(f"when: unknown dimension {d!r}", file=file, key=key)
    pinned = {nm: substitute(s, when) for nm, s in known.items()}
    expr = parse_expr(data["expr"], names=known, file=file, key=f"{key}.expr")
    declared = substitute(_check_shape(data["shape"], dims, file, f"{key}.shape"), when)
    inferred = infer_shape(expr, pinned, file=file, key=f"{key}.expr")
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
    elif kind in ("jvp", "vjp", "hessian", "hvp"):
        _check_higher_order(kind, of, wrt, direction, pinned, declared, roles, file, key)
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
        symmetric=bool(data.get("symmetric", False)), direction=direction,
    )


#: The keys an identity names its derivative with (spec/schema.json), first order first.
IDENTITY_KINDS = ("gradient", "jacobian", "jvp", "vjp", "hessian", "hvp")


def _check_higher_order(kind: str, of: str, wrt: str, direction: str | None, pinned: Mapping[str, Shape],
                        declared: Shape, roles: Mapping[str, str], file: str, key: str) -> None:
    """Shapes and directions of a jvp / vjp / hessian / hvp identity (docs/backends.md, "Quantity kinds")."""
    role = DIRECTION_ROLE.get(kind)
    if role is not None:
        if direction not in roles:
            raise SpecError(f"{kind}.{role}: {direction!r} is not a declared input (declare it under `inputs` "
                            f"with role: {role})", file=file, key=key)
        if roles[direction] != role:
            raise SpecError(f"{kind}.{role}: the input {direction!r} has role {roles[direction]!r}; a {kind} needs "
                            f"one with role: {role}", file=file, key=key)
        along = pinned[of] if kind == "vjp" else pinned[wrt]
        if pinned[direction] != along:
            raise ShapeError(f"the {role} {direction} is {format_shape(pinned[direction])}; a {kind} of {of} "
                             f"with respect to {wrt} needs the shape of {of if kind == 'vjp' else wrt}, "
                             f"{format_shape(along)}", file=file, key=key)
    if kind in ("hessian", "hvp") and pinned[of] != (1, 1):
        raise SpecError(f"{kind} of {of!r}, which is not a scalar ({format_shape(pinned[of])})", file=file, key=key)
    if kind == "hessian":
        k = vector_length(pinned[wrt])
        if k is None:
            raise SpecError(f"a hessian is taken with respect to a vector; pin the batch with `when` (wrt "
                            f"{format_shape(pinned[wrt])})", file=file, key=key)
        expected: Shape = (k, k)
    else:
        expected = pinned[of] if kind == "jvp" else pinned[wrt]
    if declared != expected:
        what = {"jvp": f"the shape of {of}", "vjp": f"the shape of {wrt}", "hvp": f"the shape of {wrt}",
                "hessian": "its variable's length squared"}[kind]
        raise ShapeError(f"a {kind} has {what}, {format_shape(expected)}; the identity declares "
                         f"{format_shape(declared)}", file=file, key=f"{key}.shape")


def _build_tolerance(data: dict[str, Any], file: str) -> TolerancePolicy:
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
        low, high = (_check_scale(float(v), file, f"{key}.uniform") for v in value)
        if not low < high:
            raise SpecError("uniform needs low < high", file=file, key=key)
        return Generator("uniform", low=low, high=high)
    if kind == "subnormal":
        return Generator("subnormal")
    if kind == "constant":
        return Generator("constant", scale=_check_scale(float(value), file, f"{key}.constant"))
    if isinstance(value, str):
        return Generator(kind, magnitude_sign=-1 if value.startswith("-") else 1)
    return Generator(kind, scale=_check_scale(float(value), file, f"{key}.{kind}"))


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
        magnitudes=tuple(_check_scale(float(m), file, f"{base}.magnitudes") for m in mags) if mags else (None,), families=fams,
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
        if families[f].wide:
            raise SpecError(f"shape family {f!r} is wide (slow, and absent from a default run): refute the formula "
                            "in a family without `wide: true`", file=file, key=f"{key}.families")
    if regime is not None and any(families[f].wide for f in (regimes[regime].families or ())):
        raise SpecError(f"regime {regime!r} uses a wide shape family (absent from a default run): refute the "
                        "formula in a regime without one", file=file, key=f"{key}.regime")
    # shapes of negative identities may be wrong on purpose: `gradconform lint` reports them per family
    expr = parse_expr(data["expr"], names=layout.value_shapes, file=file, key=f"{key}.expr")
    return NegativeIdentity(
        id=data["id"], layout=lname, claims=data["claims"], expr=expr, text=data["expr"], mistake=data["mistake"],
        regime=regime, ignore_requires=bool(data.get("ignore_requires", False)), families=fams,
    )
