"""The conformance suite. Every test is generated from the spec (conformance/views/suite.py says what each checks;
conformance/views/pytest_plugin.py, the ``gradconform`` pytest plugin, parametrises them)."""


def test_forward(gradconform, forward_item):
    """A forward value (a, h, theta, yhat, L) computed by the backend, within the bound of its definition."""
    gradconform.check(forward_item)


def test_identity(gradconform, identity_item):
    """A gradient or Jacobian computed by the backend, within the bound of the spec's identity."""
    gradconform.check(identity_item)


def test_spec_identity(gradconform, spec_identity_item):
    """The spec's identity equals the derivative of its forward definitions (checked by the oracle alone)."""
    gradconform.check(spec_identity_item)


def test_negative_identity(gradconform, negative_item):
    """A known-wrong formula of the spec is refuted: by shape, or by a certified counterexample (backend-free)."""
    gradconform.check(negative_item)


def test_metamorphic(gradconform, metamorphic_item):
    """A relation between two results of the backend that every correct backend satisfies (no oracle value)."""
    gradconform.check(metamorphic_item)


def test_spec_lint(gradconform):
    """The spec's static checks: shapes over named dimensions, and test shapes that can tell its confusions apart."""
    gradconform.check_lint()
