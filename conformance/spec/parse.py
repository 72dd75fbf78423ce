"""Parse the spec's math language into a tree, with a whitelist. Never ``eval``.

The language is Python's expression syntax restricted to: names that the spec
declares, numeric literals, ``+ - * / @``, unary minus, ``**`` with a
non-negative integer literal, ``.T``, and calls of the primitives in
:data:`conformance.primitives.PRIMITIVES` with their arity (``axis=0|1`` the
only keyword, where the primitive's record admits it). Python's own parser is
used only to tokenise and build a syntax tree; every node is then checked and
converted, and anything else is an error that names the file, the key and the
offending token. The limits (:data:`MAX_EXPRESSION_LENGTH`, :data:`MAX_EXPRESSION_DEPTH`,
:data:`MAX_EXPRESSION_NODES`, :data:`MAX_EXPONENT`, :data:`MAX_LITERAL`) keep
every expression cheap to shape-check and to evaluate exactly.
"""

from __future__ import annotations

import ast
from fractions import Fraction
from typing import Collection

from conformance.errors import SpecError
from conformance.expr import BinOp, Call, Const, Expr, Name, Neg, Pow, Transpose
from conformance.primitives import PRIMITIVES, AxisUse

__all__ = ["parse_expr", "MAX_EXPRESSION_LENGTH", "MAX_EXPRESSION_DEPTH", "MAX_EXPRESSION_NODES", "MAX_EXPONENT",
           "MAX_LITERAL"]

#: the longest expression, in characters (the schema says the same)
MAX_EXPRESSION_LENGTH = 4000
#: the deepest nesting of an expression's tree
MAX_EXPRESSION_DEPTH = 200
#: the most nodes (names, literals, operations) of one expression's tree
MAX_EXPRESSION_NODES = 1000
#: the largest power of a leaf, ``**`` exponents multiplied along nested powers: ``(x**8)**8`` is x**64, the limit;
#: ``((x**64)**64)**64`` would be x**262144, whose exact values have megabits
MAX_EXPONENT = 64
#: the largest magnitude of a numeric literal (float64's largest finite value is about 1.8e308)
MAX_LITERAL = Fraction(10) ** 300

_BINOPS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@"}
_OP_SPELLING: dict[type, str] = {
    ast.FloorDiv: "//", ast.Mod: "%", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
    ast.BitXor: "^", ast.BitAnd: "&", ast.Invert: "~", ast.Not: "not", ast.UAdd: "+",
}


def parse_expr(text: str, *, names: Collection[str], file: str | None = None, key: str | None = None) -> Expr:
    """Parse ``text`` into an :class:`~conformance.expr.Expr`.

    ``names`` are the identifiers the expression may use (the spec's inputs and
    the forward values defined so far). ``file`` and ``key`` locate the
    expression in error messages.
    """

    def fail(message: str, node: ast.AST | None = None) -> SpecError:
        if node is not None and hasattr(node, "col_offset"):
            token = ast.get_source_segment(text, node) or type(node).__name__
            message = f"{message} (at column {node.col_offset + 1}: {token!r})"
        return SpecError(f"{message} in expression {text!r}", file=file, key=key)

    if not isinstance(text, str):
        raise SpecError(f"an expression must be a string, not {type(text).__name__}", file=file, key=key)
    if not text.strip():
        raise SpecError("empty expression", file=file, key=key)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise SpecError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters", file=file, key=key)
    if "\n" in text.strip():
        raise SpecError("an expression must be on one line", file=file, key=key)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = (exc.offset or 1)
        raise SpecError(f"syntax error at column {col}: {exc.msg} in expression {text!r}", file=file, key=key) from None
    except RecursionError:
        raise SpecError(f"expression nested too deeply: {text[:60]!r}...", file=file, key=key) from None
    text = text.strip()
    known = frozenset(names)

    count = 0

    def conv(node: ast.AST, depth: int, power: int = 1) -> Expr:
        nonlocal count
        count += 1
        if count > MAX_EXPRESSION_NODES:
            raise fail(f"expression of more than {MAX_EXPRESSION_NODES} nodes (split it into forward definitions)")
        if depth > MAX_EXPRESSION_DEPTH:
            raise fail(f"expression nested more than {MAX_EXPRESSION_DEPTH} levels deep", node)
        if isinstance(node, ast.Name):
            if node.id not in known:
                hint = ""
                if node.id in PRIMITIVES:
                    hint = f" ({node.id} is a function: call it)"
                raise fail(f"unknown name {node.id!r}{hint}; declared here: {', '.join(sorted(known)) or 'none'}", node)
            return Name(node.id, col=node.col_offset)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise fail(f"only numeric literals are allowed, not {type(value).__name__}", node)
            literal = ast.get_source_segment(text, node) or repr(value)
            try:
                exact = Fraction(literal.replace("_", ""))
            except (ValueError, ZeroDivisionError):
                raise fail("numeric literal that is not a finite real number", node) from None
            if abs(exact) > MAX_LITERAL or (exact != 0 and abs(exact) < 1 / MAX_LITERAL):
                raise fail("numeric literal beyond the limit of magnitudes between 1e-300 and 1e300", node)
            return Const(exact, text=literal, col=node.col_offset)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return Neg(conv(node.operand, depth + 1, power), col=node.col_offset)
            raise fail(f"operator {_OP_SPELLING.get(type(node.op), type(node.op).__name__)!r} is not allowed", node)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                exp = node.right
                if not (isinstance(exp, ast.Constant) and type(exp.value) is int and 0 <= exp.value <= 64):
                    raise fail("'**' takes a non-negative integer literal exponent (at most 64)", exp)
                total = power * max(int(exp.value), 1)
                if total > MAX_EXPONENT:
                    raise fail(f"nested powers amount to an exponent of {total}, more than {MAX_EXPONENT}", node)
                return Pow(conv(node.left, depth + 1, total), int(exp.value), col=node.col_offset)
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise fail(f"operator {_OP_SPELLING.get(type(node.op), type(node.op).__name__)!r} is not allowed", node)
            return BinOp(op, conv(node.left, depth + 1, power), conv(node.right, depth + 1, power), col=node.col_offset)
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                raise fail(f"attribute access is not allowed (only '.T', the transpose), found '.{node.attr}'", node)
            return Transpose(conv(node.value, depth + 1, power), col=node.col_offset)
        if isinstance(node, ast.Call):
            func = node.func
            if not isinstance(func, ast.Name):
                raise fail("only the language's functions can be called", func)
            fn = func.id
            prim = PRIMITIVES.get(fn)
            if prim is None:
                raise fail(f"unknown function {fn!r}; allowed: {', '.join(sorted(PRIMITIVES))}", func)
            arity = prim.arity
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise fail("starred arguments are not allowed", node)
            if len(node.args) != arity:
                raise fail(f"{fn} takes {arity} argument{'s' if arity != 1 else ''}, got {len(node.args)}", node)
            takes_axis = prim.axis is not AxisUse.NONE
            axis: int | None = None
            for kw in node.keywords:
                if kw.arg != "axis" or not takes_axis:
                    allowed = "axis=0 or axis=1" if takes_axis else "no keyword arguments"
                    raise fail(f"{fn} takes {allowed}", kw.value if kw.arg is None else kw.value)
                if not (isinstance(kw.value, ast.Constant) and type(kw.value.value) is int and kw.value.value in (0, 1)):
                    raise fail(f"{fn}: axis must be the literal 0 or 1", kw.value)
                axis = int(kw.value.value)
            if prim.axis is AxisUse.REQUIRED and axis is None:
                raise fail(f"{fn} needs axis=0 or axis=1 (which way each distribution runs)", node)
            return Call(fn, tuple(conv(a, depth + 1, power) for a in node.args), axis, col=node.col_offset)
        spelled = {
            ast.Compare: "comparison", ast.BoolOp: "boolean operator", ast.Subscript: "indexing",
            ast.Lambda: "lambda", ast.IfExp: "conditional expression", ast.Tuple: "tuple", ast.List: "list",
            ast.Dict: "dict", ast.Set: "set", ast.JoinedStr: "f-string", ast.NamedExpr: "assignment",
        }.get(type(node), type(node).__name__)
        raise fail(f"{spelled} is not part of the math language", node)

    return conv(tree.body, 0)
