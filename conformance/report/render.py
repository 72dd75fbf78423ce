"""Templates to text: the jinja2 environment of the report pages, with the filters they print numbers through.

HTML templates (``*.html.j2``) are autoescaped; markup built by the report
itself (MathML, SVG) is passed in as :class:`markupsafe.Markup`. Markdown
templates (``*.md.j2``) are escaped too, for markdown: every ``{{ value }}``
that no filter has made safe goes through ``md`` (which neutralises inline
HTML, ``|``, brackets, backticks, backslashes and line breaks), so a backend
name, description, regime or message from a tampered results file is shown
as text and never becomes markup. The filters that place text where that
escaping would be wrong make it safe their own way: ``code`` (inline code),
``block`` (a line of a fenced code block), ``math`` (a formula).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup

from . import numbers
from .grades import grade_text

__all__ = ["environment", "render", "css"]


_MD_PUNCT = re.compile(r"([\\`\[\]|])")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _md(value: Any) -> Markup:
    """Text safe in GitHub markdown, also inside a table cell: no HTML, links, code spans or emphasis it did not
    bring as text, on one line."""
    if isinstance(value, Markup):
        return value
    s = str(value)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_PUNCT.sub(r"\\\1", s)
    s = s.replace("\r", " ").replace("\n", " ")
    return Markup(s)


def _code(value: Any, table: bool = True) -> Markup:
    """Inline code in markdown, with a fence longer than any backtick run inside. In a table (the default)
    ``|`` is escaped: a bare one ends the cell even inside a code span, and what follows it would be markup;
    outside a table (``table=False``) the escape would show."""
    s = str(value).replace("\r", " ").replace("\n", " ")
    if table:
        s = s.replace("|", "\\|")
    fence = "`"
    while fence in s:
        fence += "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return Markup(f"{fence}{pad}{s}{pad}{fence}")


def _block(value: Any) -> Markup:
    """Lines inside a fenced code block (shown literally, so not escaped), none of which can close the fence."""
    lines = str(value).replace("\r", "").split("\n")
    return Markup("\n".join("\\" + line if _FENCE.match(line) else line for line in lines))


def _math(value: Any) -> Markup:
    """A formula inside GitHub's ``$`...`$`` (typeset by the report from the spec's expression trees), with
    nothing that could end the span or the line."""
    return Markup(str(value).replace("`", "'").replace("\r", " ").replace("\n", " "))


def _md_finalize(value: Any) -> Any:
    """What a markdown template prints for ``{{ value }}``: filtered text as it is, anything else escaped."""
    return _md(value)


def _status_label(status: str) -> str:
    return status.replace("_", " ")


@lru_cache(maxsize=2)
def environment(markdown: bool = False) -> jinja2.Environment:
    """The environment of the HTML templates, or (``markdown``) of the markdown ones: both autoescape, the
    markdown one through :func:`_md` (jinja2 escapes for HTML what ``finalize`` has not already made safe)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conformance.report", "templates"),
        autoescape=True,
        finalize=_md_finalize if markdown else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        ratio=numbers.fmt_ratio, ulp=numbers.fmt_ulp, sci=numbers.fmt_sci, value=numbers.fmt_value,
        count=numbers.fmt_count, mag=numbers.fmt_magnitude, md=_md, code=_code, block=_block, math=_math,
        status=_status_label,
        rate=lambda s: numbers.fmt_rate(s.passed, s.total), grade=grade_text,
    )
    env.globals["Markup"] = Markup
    return env


def render(template: str, **context: Any) -> str:
    return environment(template.endswith(".md.j2")).get_template(template).render(**context)


def css() -> str:
    """The stylesheet, inlined into every page (a report is one self-contained file)."""
    return environment().loader.get_source(environment(), "style.css")[0]  # type: ignore[union-attr]
