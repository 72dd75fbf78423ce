"""gradconform lint: passes on every shipped spec, fails with a precise message on copies broken in each way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.checks.lint import lint, spec_files
from conformance.spec import spec_dir

from .helpers import spec_copy

ROW_DX = '''        expr: "((yhat - y) @ W2.T) * (h - h*h) @ W1.T"
        shape: [n, d_in]'''
ROW_SOFTMAX_JAC = '''        expr: "Diag(yhat) - yhat.T @ yhat"
        shape: [d_out, d_out]
        when: {n: 1}
        symmetric: true'''
ROW_DA_DX = '''        expr: "W1.T"
        shape: [hidden, d_in]
        when: {n: 1}'''


@pytest.mark.parametrize("path", spec_files(spec_dir()), ids=lambda p: p.name)
def test_every_shipped_spec_passes_lint(path: Path) -> None:
    report = lint(path)
    assert report.ok, report.render()
    assert report.counts["confusions checked"] > 0
    verdicts = {d.verdict for d in report.discriminations}
    assert "indiscriminable" not in verdicts and "symmetric_false" not in verdicts


def test_seed_spec_symmetric_jacobians_are_verified_not_just_accepted() -> None:
    report = lint(spec_dir() / "two_layer_sigmoid_xent.yaml")
    sym = [d for d in report.discriminations if d.verdict == "symmetric"]
    # the Jacobians of elementwise sigmoid and of softmax, every Hessian, and the scalar directional derivative
    declared = {"dh/da", "dyhat/dtheta", "d2L/dtheta2.hessian", "d2L/dtheta2.hessian.normalized", "d2L/dh2.hessian",
                "dL/dtheta.jvp"}
    assert {(d.layout, d.identity) for d in sym} == {(lay, i) for lay in ("row", "column") for i in declared}
    assert all("verified" in d.detail for d in sym)
    # the square family is where W1 and W1.T only differ by value: lint says so for the W1 negative identity
    neg = next(n for n in report.negatives if n.id == "dL/dx.W1_not_transposed")
    assert neg.by_value == ("square",) and set(neg.by_shape) == {"seed", "batch", "distinct", "batch_is_hidden",
                                                                 "batch_is_out"}


def test_non_conformable_product_is_reported_with_shapes_and_fix(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, (ROW_DX, ROW_DX.replace("@ W1.T", "@ W1")))
    report = lint(path)
    assert not report.ok
    (err,) = report.errors
    assert err.code == "shape"
    assert "layouts.row.identities[4].expr" in err.where
    assert "(n x hidden) @ W1 (d_in x hidden)" in err.message
    assert "did you mean W1.T?" in err.message
    assert err.trace and err.trace[-1] == ("W1", "d_in x hidden")


def test_every_shape_error_is_reported_at_once(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, (ROW_DX, ROW_DX.replace("@ W1.T", "@ W1")),
                     ('expr: "h.T @ (yhat - y)"', 'expr: "h @ (yhat - y)"'))
    report = lint(path)
    messages = [e.where + " " + e.message for e in report.errors]
    assert len(messages) == 2, messages
    assert any("identities[4]" in m and "did you mean W1.T?" in m for m in messages)
    assert any("identities[8]" in m and "did you mean h.T?" in m for m in messages)


def test_declared_shape_mismatch_suggests_the_transpose(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, ('expr: "h.T @ (yhat - y)"', 'expr: "(yhat - y).T @ h"'))
    (err,) = lint(path).errors
    assert "the expression has shape d_out x hidden, the declared shape is hidden x d_out" in err.message
    assert "did you mean ((yhat - y).T @ h).T?" in err.message


def test_symmetric_jacobian_without_declaration_is_a_spec_error(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, (ROW_SOFTMAX_JAC, ROW_SOFTMAX_JAC.replace("\n        symmetric: true", "")))
    report = lint(path)
    (err,) = report.errors
    assert err.code == "indiscriminable"
    assert "dyhat/dtheta" in err.where and "layouts.row" in err.where
    assert "numerator from denominator layout" in err.message
    assert "declare `symmetric: true`" in err.message
    assert "seed, square" in err.message


def test_symmetric_declared_on_a_non_square_jacobian_is_refused(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, (ROW_DA_DX, ROW_DA_DX + "\n        symmetric: true"))
    (err,) = lint(path).errors
    assert err.code == "symmetric" and "da/dx" in err.where
    assert "not square" in err.message


def test_symmetric_declared_on_a_matrix_that_is_not_symmetric_is_refused(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, (ROW_SOFTMAX_JAC, ROW_SOFTMAX_JAC.replace("yhat.T @ yhat", "yhat.T @ theta")))
    (err,) = lint(path).errors
    assert err.code == "symmetric"
    assert "declared symmetric: true, but it differs from its transpose at component" in err.message


def test_degenerate_shape_families_cannot_tell_transposes_apart(tmp_path: Path) -> None:
    ones = "sizes: {n: 1, d_in: 1, hidden: 1, d_out: 1}"
    path = spec_copy(tmp_path, *[(f"sizes: {{{s}}}", ones) for s in (
        "n: 1, d_in: 5, hidden: 3, d_out: 5", "n: 4, d_in: 5, hidden: 3, d_out: 5",
        "n: 2, d_in: 7, hidden: 4, d_out: 6", "n: 1, d_in: 4, hidden: 4, d_out: 4",
        "n: 3, d_in: 5, hidden: 3, d_out: 4", "n: 4, d_in: 5, hidden: 3, d_out: 4")])
    report = lint(path)
    assert not report.ok
    errs = [e for e in report.errors if e.code == "indiscriminable"]
    assert any("dL/dW1" in e.where and "its transpose" in e.message for e in errs), report.render()
    assert any("W1 in place of W1.T" in e.message and "add a shape family where the dimensions differ" in e.message
               for e in errs), report.render()


def test_identity_no_family_can_test_is_a_spec_error(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, ('sizes: {n: 1, d_in: 5, hidden: 3, d_out: 5}', 'sizes: {n: 3, d_in: 5, hidden: 3, d_out: 5}'),
                     ('sizes: {n: 1, d_in: 4, hidden: 4, d_out: 4}', 'sizes: {n: 2, d_in: 4, hidden: 4, d_out: 4}'))
    errs = [e for e in lint(path).errors if e.code == "untestable"]
    assert any("dyhat/dtheta" in e.where and "no shape family has n = 1" in e.message for e in errs)


def test_spec_that_does_not_load_is_one_precise_error(tmp_path: Path) -> None:
    path = spec_copy(tmp_path, ("  square:\n", "  square:\n    colour: blue\n"))
    (err,) = lint(path).errors
    assert err.code == "load" and "shape_families.square" in err.where


def test_cli_lint_exit_status(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "conformance.views.cli", "lint"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ": ok (" in ok.stdout
    bad = spec_copy(tmp_path, (ROW_DX, ROW_DX.replace("@ W1.T", "@ W1")))
    out = subprocess.run([sys.executable, "-m", "conformance.views.cli", "lint", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "did you mean W1.T?" in out.stdout
    missing = subprocess.run([sys.executable, "-m", "conformance.views.cli", "lint", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no such spec file" in missing.stderr


def test_square_families_tell_a_missing_transpose_by_value(tmp_path: Path) -> None:
    square = "sizes: {n: 1, d_in: 4, hidden: 4, d_out: 4}"
    path = spec_copy(tmp_path, *[(f"sizes: {{{s}}}", square) for s in (
        "n: 1, d_in: 5, hidden: 3, d_out: 5", "n: 4, d_in: 5, hidden: 3, d_out: 5",
        "n: 2, d_in: 7, hidden: 4, d_out: 6")], *[(f"sizes: {{{s}}}", "sizes: {n: 4, d_in: 4, hidden: 4, d_out: 4}")
                                                  for s in ("n: 3, d_in: 5, hidden: 3, d_out: 4",
                                                            "n: 4, d_in: 5, hidden: 3, d_out: 4")])
    report = lint(path)
    assert report.ok, report.render()
    d = next(d for d in report.discriminations
             if (d.layout, d.identity, d.confusion) == ("row", "dL/dx", "W1 in place of W1.T"))
    assert d.verdict == "value" and "on generic inputs" in d.detail
    d = next(d for d in report.discriminations if (d.layout, d.identity, d.confusion) == ("row", "dL/dW1", "its transpose"))
    assert d.verdict == "value"
