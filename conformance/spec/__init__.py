"""The spec layer: a spec file parsed (whitelist, never eval), shape-checked and loaded into deeply frozen objects.

The public surface is the data (:mod:`.model`) and the entry points that load it
(:mod:`.loader`); :mod:`.parse` and :mod:`.shapes` are the expression parser and
the shape algebra the loader and the static checks use.
"""

from conformance.spec.loader import default_spec_path, load_spec, load_spec_text, spec_dir
from conformance.spec.model import (ForwardDef, FrozenMap, Generator, Identity, Layout, NegativeIdentity, Precondition,
                                    Regime, ShapeFamily, Spec, TolerancePolicy)

__all__ = [
    "Spec", "Layout", "ForwardDef", "Identity", "Precondition", "ShapeFamily", "Regime", "Generator",
    "TolerancePolicy", "NegativeIdentity", "FrozenMap",
    "load_spec", "load_spec_text", "spec_dir", "default_spec_path",
]
