"""Errors the harness reports to people, each saying where and what to do."""

from __future__ import annotations


class GradconformError(Exception):
    """Base of every error the harness raises on purpose (never a bare traceback)."""


class SpecError(GradconformError, ValueError):
    """A spec file (or an expression in it) is malformed.

    The message always names the file and the key, and for an expression the
    offending token and its column, so that the fix is obvious.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.detail = message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ShapeError(SpecError):
    """An expression is not conformable over the named dimensions."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 trace: tuple[tuple[str, str], ...] = (), suggestion: str | None = None) -> None:
        self.trace = trace
        self.suggestion = suggestion
        self.node: object = None  # the sub-expression that is not conformable (an expr.Expr), when known
        self.fixes: tuple = ()  # shapes.Fix edits that make the whole expression conformable, best first
        if suggestion:
            message = f"{message}; did you mean {suggestion}?"
        super().__init__(message, file=file, key=key)


class BackendNotFound(GradconformError, LookupError):
    """No backend answers to the name given."""


class OracleError(GradconformError, ArithmeticError):
    """The oracle could not certify a value (it never returns an uncertified one)."""


class SelectionError(GradconformError, LookupError):
    """A selection of tests (``-k`` of ``gradconform run``, ``select`` of ``run_suite``) matches no test: running
    nothing and reporting success would let a CI gate with a typo go green."""


class ResultsFileError(GradconformError, ValueError):
    """A results file cannot be used: unreadable, over a limit, not valid, or in conflict with another one.

    The message names the file (where there is one) and what is wrong with it; the commands that read results
    files print it as it is, never a traceback (docs/results.md, "Threat model")."""


class OutputError(GradconformError, OSError):
    """A results file or report could not be written where asked; the message says where the results went."""
