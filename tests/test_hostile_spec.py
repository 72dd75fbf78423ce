"""Hostile spec files (issue 12, the spec part): each is refused at load with a message naming the key or line,
in bounded time, and ``gradconform lint`` / ``verify`` exit with status 1 or 2, never a traceback.

The threat model is in docs/architecture.md ("What a spec may and may not do").
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conformance.errors import SpecError
from conformance.spec import load_spec_text
from conformance.spec.yaml_safe import MAX_ALIASES, MAX_SPEC_BYTES

ROOT = Path(__file__).resolve().parent.parent
BASE = (ROOT / "spec" / "three_layer_tanh_relu_mse.yaml").read_text(encoding="utf-8")


def _edit(*pairs: tuple[str, str], base: str = BASE) -> str:
    text = base
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _refused(text: str, seconds: float = 10.0) -> SpecError:
    start = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_spec_text(text, name="hostile.yaml")
    assert time.monotonic() - start < seconds
    return info.value


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.views.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


# --------------------------------------------------------------------------- non-finite numbers

NONFINITE = [
    ("    tanh: 8", "    tanh: .nan", "tolerance.elementary_error_u.tanh: .nan is not a finite number"),
    ("safety_factor: 2", "safety_factor: .nan", "tolerance.safety_factor: .nan is not a finite number"),
    ("magnitudes: [5.0, 30.0]", "magnitudes: [5.0, .inf]",
     "regimes.saturated_tanh.magnitudes[1]: .inf is not a finite number"),
    ("magnitudes: [5.0, 30.0]", "magnitudes: [5.0, 1.0e+999]",
     "regimes.saturated_tanh.magnitudes[1]: .inf is not a finite number"),
    ("      default: {normal: 1}\n", "      default: {normal: .nan}\n",
     "regimes.benign.inputs.default.normal: .nan is not a finite number"),
    ("      default: {normal: 1}\n", "      default: {uniform: [-.inf, 1]}\n",
     "regimes.benign.inputs.default.uniform[0]: -.inf is not a finite number"),
    ("    identities:\n", "    preconditions:\n      p: {expr: \"sum(t)\", equals: .nan}\n    identities:\n",
     "layouts.row.preconditions.p.equals: .nan is not a finite number"),
    ("sizes: {n: 1, d_in: 4,", "sizes: {n: 1, d_in: .inf,", "shape_families.small.sizes.d_in: .inf is not a finite number"),
    ("magnitudes: [5.0, 30.0]", "magnitudes: [5.0, " + "9" * 400 + "]",
     "regimes.saturated_tanh.magnitudes[1]: an integer too large for a float64"),
]


@pytest.mark.parametrize("old, new, message", NONFINITE, ids=[m.split(":")[0] for *_, m in NONFINITE])
def test_a_non_finite_number_is_refused_naming_its_key(old, new, message):
    err = _refused(_edit((old, new)))
    assert message in str(err)


def test_lint_and_verify_refuse_a_nan_error_constant_with_status(tmp_path):
    bad = tmp_path / "nan.yaml"
    bad.write_text(_edit(("    tanh: 8", "    tanh: .nan")), encoding="utf-8")
    lint = _cli("lint", str(bad))
    assert lint.returncode == 1, lint.stdout + lint.stderr
    assert "tolerance.elementary_error_u.tanh: error: [load] .nan is not a finite number" in lint.stdout
    verify = _cli("verify", "--spec", str(bad))
    assert verify.returncode == 2 and "Traceback" not in verify.stderr
    assert "tolerance.elementary_error_u.tanh: .nan is not a finite number" in verify.stderr


# --------------------------------------------------------------------------- duplicate keys

def test_a_duplicate_key_is_refused_naming_key_and_lines():
    text = _edit(("safety_factor: 2", "safety_factor: 2\n  safety_factor: 16"))
    line = text.splitlines().index("  safety_factor: 16") + 1
    err = _refused(text)
    assert f"line {line}: duplicate key 'safety_factor' (first given on line {line - 1})" in str(err)


def test_a_duplicate_key_in_a_flow_mapping_is_refused():
    err = _refused(_edit(("{n: 1, d_in: 4, h1: 3,", "{n: 1, d_in: 4, n: 3,")))
    assert "duplicate key 'n'" in str(err)


# --------------------------------------------------------------------------- alias bombs, size, nesting

def _bomb(levels: int, width: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly():
    err = _refused(BASE + "\n" + _bomb(9, 15), seconds=5)  # 120 aliases, 15**9 values once expanded
    assert f"more than {MAX_ALIASES} YAML aliases" in str(err)


def test_few_aliases_that_expand_hugely_are_refused_quickly():
    err = _refused(BASE + "\n" + _bomb(30, 2), seconds=5)  # 58 aliases, 2**30 values
    assert "expands to more than" in str(err)


def test_a_recursive_alias_is_refused():
    err = _refused(_edit(("description: regression targets", "description: &r [*r]")))
    assert "recursive YAML alias" in str(err)


def test_deep_nesting_is_refused():
    err = _refused(_edit(("description: regression targets", "description: " + "[" * 5000 + "]" * 5000)))
    assert "nested" in str(err)


def test_an_oversized_spec_file_is_refused_unread(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "#" * (MAX_SPEC_BYTES + 1), encoding="utf-8")
    lint = _cli("lint", str(big))
    assert lint.returncode == 1 and "Traceback" not in lint.stderr
    assert f"more than the limit of {MAX_SPEC_BYTES} bytes" in lint.stdout


# --------------------------------------------------------------------------- expressions

def _balanced(levels: int) -> str:
    return "a1" if levels == 0 else f"({_balanced(levels - 1)}+{_balanced(levels - 1)})"


def _forward_z1(expr: str) -> str:
    return _edit(('expr: "tanh(a1)"', f'expr: "{expr}"'))


@pytest.mark.parametrize("expr, message", [
    ("tanh(((((a1**64)**64)**64)**64))", "nested powers amount to an exponent of 4096, more than 64"),
    ("tanh((a1**8)**9)", "nested powers amount to an exponent of 72, more than 64"),
    ("tanh(a1 * 1e999)", "numeric literal beyond the limit of magnitudes between 1e-300 and 1e300"),
    ("tanh(a1 * 1e-999)", "numeric literal beyond the limit"),
    ("tanh(" + _balanced(9) + ")", "expression of more than 1000 nodes"),  # 1023 nodes, 9 levels deep
    ("-" * 300 + "a1", "nested more than 200 levels deep"),
], ids=["pow-bomb", "pow-72", "literal-1e999", "literal-1e-999", "nodes", "depth"])
def test_an_expression_beyond_the_limits_is_refused_naming_the_key(expr, message):
    err = _refused(_forward_z1(expr))
    assert err.key == "layouts.row.forward[1].expr" and message in str(err)


def test_powers_within_the_limit_still_load():
    spec = load_spec_text(_forward_z1("tanh((a1**8)**8)"), name="ok.yaml")
    assert spec.layouts["row"].forward[1].text == "tanh((a1**8)**8)"


@pytest.mark.parametrize("expr, message", [
    ("exp(exp(exp(exp(exp(a1)))))", "the forward definition z1 = exp(exp(exp(exp(exp(a1))))) cannot be evaluated "
                                    "on generic inputs: exp of a value beyond 2**1024 in magnitude"),
    ("tanh(a1 / 0)", "the forward definition z1 = tanh(a1 / 0) cannot be evaluated on generic inputs: division by"),
    ("tanh(((((a1**64)**64)**64)**64))", "nested powers amount to an exponent of 4096"),
], ids=["exp-tower", "div0", "pow-bomb"])
def test_lint_reports_an_unevaluable_definition_with_status_1(tmp_path, expr, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(_forward_z1(expr), encoding="utf-8")
    start = time.monotonic()
    lint = _cli("lint", str(bad), timeout=60)
    assert time.monotonic() - start < 30
    assert lint.returncode == 1 and "Traceback" not in lint.stderr, lint.stderr[-2000:]
    assert message in lint.stdout


def test_verify_of_an_exp_tower_ends_quickly_with_the_reason(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(_forward_z1("exp(exp(exp(exp(exp(a1)))))"), encoding="utf-8")
    verify = _cli("verify", "--spec", str(bad), "--per-regime", "1", timeout=60)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr, verify.stderr[-2000:]
    assert "exp of a value beyond 2**1024 in magnitude" in verify.stdout
    assert "oracle error" in verify.stdout and "REFUTED" not in verify.stdout  # no verdict on the identity


# --------------------------------------------------------------------------- sizes and scales

@pytest.mark.parametrize("size, message", [
    (90, "in layout row, input W1 is 90 x 3 = 270 elements, more than the limit of 256"),
    (4096, "in layout row, input x is 1 x 4096 = 4096 elements, more than the limit of 256"),
])
def test_verify_refuses_a_shape_family_too_large_to_generate(tmp_path, size, message):
    bad = tmp_path / "big.yaml"
    bad.write_text(_edit(("sizes: {n: 1, d_in: 4,", f"sizes: {{n: 1, d_in: {size},")), encoding="utf-8")
    verify = _cli("verify", "--spec", str(bad), "--per-regime", "1", timeout=60)
    assert verify.returncode == 2 and "Traceback" not in verify.stderr, verify.stderr[-2000:]
    assert f"shape_families.small.sizes: {message}" in verify.stderr


def test_too_many_elements_in_all_are_refused():
    text = _edit(("sizes: {n: 1, d_in: 4, h1: 3, h2: 5, d_out: 2}", "sizes: {n: 16, d_in: 16, h1: 16, h2: 16, d_out: 16}"))
    assert re.search(r"the inputs have \d+ elements together, more than the limit of 1024", str(_refused(text)))


@pytest.mark.parametrize("old, new, key", [
    ("      default: {normal: 1}\n", "      default: {normal: 1.0e+300}\n", "regimes.benign.inputs.default.normal"),
    ("magnitudes: [5.0, 30.0]", "magnitudes: [5.0, 1.0e+7]", "regimes.saturated_tanh.magnitudes"),
    ("      default: {normal: 1}\n", "      default: {uniform: [-1.0e+300, 1]}\n",
     "regimes.benign.inputs.default.uniform"),
])
def test_an_input_scale_beyond_the_limit_is_refused(old, new, key):
    err = _refused(_edit((old, new)))
    assert err.key == key and "is beyond the limit of 1e+06 for input scales and magnitudes" in str(err)


# --------------------------------------------------------------------------- the oracle's precision escalation

def test_an_uncertifiable_value_ends_at_max_bits_after_a_bounded_number_of_tries():
    import mpmath

    from conformance.errors import OracleError
    from conformance.oracle.evaluate import MAX_BITS, START_BITS, certify

    tries: list[int] = []

    def never_certified():  # an enclosure that contains 0 at every precision
        tries.append(mpmath.iv.prec)
        return {"v": np.array([[mpmath.iv.mpf([-1, 1])]], dtype=object)}, None

    with pytest.raises(OracleError, match=f"with {MAX_BITS} bits of precision"):
        certify(never_certified, engine="mpmath")  # the enclosures above are mpmath's
    assert len(tries) == (MAX_BITS // START_BITS).bit_length()  # 128, 256, ..., 4096: six tries
    tries.clear()
    with pytest.raises(OracleError):
        certify(never_certified, start_bits=0, engine="mpmath")  # no endless doubling of zero
    assert 0 < len(tries) <= 13
