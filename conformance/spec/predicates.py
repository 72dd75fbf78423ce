"""Pure predicates over the spec: questions answered from the spec alone, with no case, oracle or backend.

They decide which tests exist (the pytest view), how the suite is split into
units of work (conformance.execution.sharding) and which regime a negative
identity is refuted in (conformance.checks.negative); kept at the spec level so
that those modules can ask them without importing the oracle or the runner.
"""

from __future__ import annotations

from conformance.spec.model import Identity, Spec

__all__ = ["identity_applies_to_regime", "pins_hold_in_some_family"]


def pins_hold_in_some_family(spec: Spec, identity: Identity, regime: str) -> bool:
    """Whether some shape family of the regime has the sizes the identity pins (its ``when``)."""
    families = spec.families_for(spec.regimes[regime])
    return any(all(f.sizes.get(d) == v for d, v in identity.when.items()) for f in families)


def identity_applies_to_regime(spec: Spec, identity: Identity, regime: str) -> bool:
    """Whether some case of the regime can satisfy the identity (its pinned sizes and preconditions)."""
    reg = spec.regimes[regime]
    if any(r in reg.violates for r in identity.requires):
        return False
    return pins_hold_in_some_family(spec, identity, regime)
