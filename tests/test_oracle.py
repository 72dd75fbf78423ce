"""The oracle against values computed by hand (and by mpmath directly), and its certification."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from conformance.oracle import evaluate as oracle
from conformance.formats import FORMATS, round_mpf

F64 = FORMATS["float64"]


def zeros_case(spec, k=2):
    row = spec.layouts["row"]
    z = {"x": np.zeros((1, 5)), "W1": np.zeros((5, 3)), "b1": np.zeros((1, 3)), "W2": np.zeros((3, 5)),
         "b2": np.zeros((1, 5)), "y": np.eye(5)[[k]]}
    # the directions of the jvp / vjp / hvp identities, zero too (each has the shape of a value above)
    z.update({"v_theta": np.zeros((1, 5)), "v_a": np.zeros((1, 3)), "v_x": np.zeros((1, 5)), "u_h": np.zeros((1, 3)),
              "u_yhat": np.zeros((1, 5))})
    return row, z


def test_all_zero_network_by_hand(seed_spec):
    """a = 0, h = 1/2, theta = 0, yhat = 1/5, L = log 5; dL/dtheta = 1/5 - y; dh/da = Diag(1/4)."""
    row, z = zeros_case(seed_spec)
    ev = oracle.evaluate(row, z, row.identities)
    v = ev.values
    assert np.all(v["h"].hi == 0.5)
    assert np.all(v["yhat"].hi == 0.2)
    with mpmath.workprec(200):
        assert v["L"].hi[0, 0] == round_mpf(mpmath.log(5), F64)
    expected = np.full((1, 5), 0.2)
    expected[0, 2] -= 1
    assert np.array_equal(v["dL/dtheta"].hi, expected)
    assert np.array_equal(v["dh/da"].hi, np.diag([0.25, 0.25, 0.25]))
    assert np.array_equal(v["dL/dx"].hi, np.zeros((1, 5)))  # W1 = 0
    assert np.array_equal(v["dL/dW2"].hi, 0.5 * np.tile(expected, (3, 1)))  # h.T @ (yhat - y)


def test_saturated_sigmoid_derivative_is_exact_where_float64_loses_it(seed_spec):
    """sigmoid'(37) = e^-37 / (1 + e^-37)^2 ~ 8.5e-17: h - h*h in float64 is 0; the oracle is right."""
    row, z = zeros_case(seed_spec)
    z["b1"] = np.array([[37.0, -37.0, 400.0]])
    ev = oracle.evaluate(row, z, [row.identity("dh/da")])
    diag = np.diag(ev.values["dh/da"].hi)
    with mpmath.workprec(2000):
        for got, a in zip(diag, (37, -37, 400)):
            e = mpmath.exp(-mpmath.mpf(abs(a)))
            assert got == round_mpf(e / (1 + e) ** 2, F64)
    assert ev.precision > oracle.START_BITS  # sigmoid'(400) ~ 1e-174 needed more than 128 bits
    h = 1 / (1 + np.exp(-37.0))
    assert h - h * h == 0.0  # what a float64 evaluation of the identity gives


def test_lo_part_carries_the_remainder(seed_spec):
    row, z = zeros_case(seed_spec)
    ev = oracle.evaluate(row, z, [])
    L = ev.values["L"]
    with mpmath.workprec(300):
        exact = mpmath.log(5)
        assert abs(mpmath.mpf(L.hi[0, 0]) + mpmath.mpf(L.lo[0, 0]) - exact) < mpmath.mpf(2) ** -100


def test_preconditions_are_decided_exactly(seed_spec):
    row, z = zeros_case(seed_spec)
    assert oracle.preconditions_hold(row, z) == {"labels_sum_to_one": True}
    z["y"] = np.array([[0.1, 0.2, 0.3, 0.4, 0.0]])  # 0.1 + 0.2 + 0.3 + 0.4 != 1 in binary
    assert oracle.preconditions_hold(row, z) == {"labels_sum_to_one": False}


def test_dual_numbers_refute_a_wrong_identity(seed_spec):
    from conformance.spec.parse import parse_expr

    row = seed_spec.layouts["row"]
    rng = np.random.default_rng(1)
    sizes = {"n": 1, "d_in": 4, "hidden": 4, "d_out": 4}  # square: W1 and W1.T have the same shape
    inputs = {"x": rng.normal(size=(1, 4)), "W1": rng.normal(size=(4, 4)), "b1": rng.normal(size=(1, 4)),
              "W2": rng.normal(size=(4, 4)), "b2": rng.normal(size=(1, 4)), "y": np.eye(4)[[1]]}
    right = oracle.verify_identity(row, row.identity("dL/dx"), inputs, sizes)
    assert right.verdict == "holds"
    wrong = parse_expr("((yhat - y) @ W2.T) * (h - h*h) @ W1", names=row.value_shapes)
    refuted = oracle.verify_identity(row, row.identity("dL/dx"), inputs, sizes, expr=wrong)
    assert refuted.verdict == "refuted" and refuted.worst_index is not None
    # the refutation is rigorous: the reported values really differ
    assert refuted.identity_value != pytest.approx(refuted.derivative_value, rel=1e-6)


def test_derivative_layouts(seed_spec):
    """Numerator-layout da/dx of x @ W1 is W1.T; the column layout's denominator-layout da/dx is W1."""
    rng = np.random.default_rng(2)
    W1 = rng.normal(size=(5, 3))
    row = seed_spec.layouts["row"]
    col = seed_spec.layouts["column"]
    base = {"W1": W1, "b1": np.zeros((1, 3)), "W2": np.zeros((3, 5)), "b2": np.zeros((1, 5)), "y": np.eye(5)[[0]]}
    with mpmath.workprec(100):
        mpmath.iv.prec = 100
        j_row = oracle.derivative(row, {"x": np.ones((1, 5)), **base}, kind="jacobian", of="a", wrt="x",
                                  convention="numerator")
        colbase = {"W1": W1, "b1": np.zeros((3, 1)), "W2": np.zeros((3, 5)), "b2": np.zeros((5, 1)), "y": np.eye(5)[:, [0]]}
        j_col = oracle.derivative(col, {"x": np.ones((5, 1)), **colbase}, kind="jacobian", of="a", wrt="x",
                                  convention="denominator")
    to_f = np.vectorize(lambda v: float(v.mid))
    assert np.array_equal(to_f(j_row), W1.T)
    assert np.array_equal(to_f(j_col), W1)
