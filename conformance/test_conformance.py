"""The conformance suite. Every test is generated from the spec (see conformance/pytest_plugin.py)."""


def test_forward(gradconform, forward_item):
    """A forward value (a, h, theta, yhat, L) computed by the backend, within the bound of its definition."""
    gradconform.check_quantity(forward_item)


def test_identity(gradconform, identity_item):
    """A gradient or Jacobian computed by the backend, within the bound of the spec's identity."""
    gradconform.check_quantity(identity_item)


def test_spec_identity(gradconform, spec_identity_item):
    """The spec's identity equals the derivative of its forward definitions (checked by the oracle alone)."""
    gradconform.check_spec_identity(spec_identity_item)
