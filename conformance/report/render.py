"""Templates to text: the jinja2 environment of the report pages, with the filters they print numbers through.

HTML templates (``*.html.j2``) are autoescaped; markup built by the report
itself (MathML, SVG) is passed in as :class:`markupsafe.Markup`. Markdown
templates (``*.md.j2``) are not HTML-escaped but every table cell goes
through ``md`` (which neutralises ``|``, line breaks and inline HTML).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup

from . import numbers
from .grades import grade_text

__all__ = ["environment", "render", "css"]


def _md(value: Any) -> str:
    """Text safe inside a GitHub markdown table cell."""
    s = str(value)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return s


def _code(value: Any) -> str:
    """Inline code in markdown, with a fence longer than any backtick run inside."""
    s = str(value).replace("\n", " ")
    fence = "`"
    while fence in s:
        fence += "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _status_label(status: str) -> str:
    return status.replace("_", " ")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conformance.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        ratio=numbers.fmt_ratio, ulp=numbers.fmt_ulp, sci=numbers.fmt_sci, value=numbers.fmt_value,
        count=numbers.fmt_count, mag=numbers.fmt_magnitude, md=_md, code=_code, status=_status_label,
        rate=lambda s: numbers.fmt_rate(s.passed, s.total), grade=grade_text,
    )
    env.globals["Markup"] = Markup
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def css() -> str:
    """The stylesheet, inlined into every page (a report is one self-contained file)."""
    return environment().loader.get_source(environment(), "style.css")[0]  # type: ignore[union-attr]
