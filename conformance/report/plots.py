"""The report's figures, as SVG text made with matplotlib (Agg-free SVG canvas, no pyplot state).

Two kinds of figure, where a reader would rather look than read:

* **ulp distributions**: for each layout, one panel per dtype; a 100 % bar
  per quantity, split by class of ulp error (exact, 1 ulp, 2-3, 4-15, ...;
  from the summed ``ulp_hist`` of the records), with the worst class reached
  written beside it (a rare bad component is too thin to see in a bar);
* **error/allowed against magnitude**: for each regime with a magnitude
  sweep, one panel per dtype; the worst ``max_ratio`` of each quantity at
  each magnitude (over layouts, shape families and cases). Above the dashed
  line at 1 a check fails; each quantity that crosses it is drawn with its own
  colour and marker (lines at NaN/∞ a little apart, so that none hides
  another), and the others as one grey line, their worst at each magnitude.

Determinism: no date in the metadata, a fixed ``svg.hashsalt`` per figure
(ids of clip paths are hashes of it), and inputs iterated in sorted order.
Same inputs, same bytes. Text stays text (``svg.fonttype: none``): the
reader's sans-serif font draws it, and a page is a tenth of the size it is
with every glyph as a path.
"""

from __future__ import annotations

import io
import math
import re
from typing import Mapping, Sequence

__all__ = ["ulp_bars", "ratio_vs_magnitude", "style_of", "PALETTE", "MARKERS", "ULP_CLASSES"]

#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
PALETTE = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
#: Markers, cycled at a different period from the colours: (colour, marker) pairs stay distinct for 56 quantities.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_GREY = "#9aa3ad"
_RC = {
    "svg.fonttype": "none",  # text as text: a tenth of the bytes of glyph outlines, and searchable
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.labelsize": 8.5,
    "axes.edgecolor": "#6b7280",
    "axes.linewidth": 0.6,
    "xtick.color": "#374151",
    "ytick.color": "#374151",
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "axes.titleweight": "bold",
    "path.simplify": False,
}


def _render(fig: object, salt: str) -> str:
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"gradconform:{salt}", **_RC}):
        FigureCanvasSVG(fig)  # attaches the canvas
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "gradconform", "Title": salt},  # type: ignore[attr-defined]
                    bbox_inches="tight", pad_inches=0.08)
    return _compact(buf.getvalue())


_DECIMALS = re.compile(r"(\d\.\d)\d+")
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
_BETWEEN_TAGS = re.compile(r">\s+<")
_GROUP_ID = re.compile(r'<g id="[^"]*">')
_USE_RUN = re.compile(r'(?:<use [^>]*? style="([^"]*)"/>)(?:<use [^>]*? style="\1"/>)+')
_USE_STYLE = re.compile(r' style="[^"]*"/>')
_NO_ROTATION = re.compile(r' transform="rotate\(-?0 [^"]*\)"')
_STYLE_ATTR = re.compile(r'style="([^"]*)"')
_STYLE_SPACES = re.compile(r"\s*([:;,])\s*")
_G_TOKEN = re.compile(r"<g>|<g\s[^>]*>|</g>")  # an empty <g .../> is a token too, and is neither opened nor closed


def _compact(svg: str) -> str:
    """matplotlib's SVG, a third of the size: coordinates to 0.1 px (a tenth of a screen pixel), no indentation,
    no ids on groups (nothing refers to them; clip paths and markers keep theirs) and no group without
    attributes, no spaces in style attributes, no rotation by 0, the style of a run of markers written once. Truncated, not rounded:
    the figure moves by less than 0.1 px."""
    out = _TAG.sub(lambda m: _SPACES.sub(" ", _DECIMALS.sub(r"\1", m.group(0))), svg)  # in tags only: text keeps its digits
    out = _GROUP_ID.sub("<g>", out)
    out = _BETWEEN_TAGS.sub("><", out)
    out = _NO_ROTATION.sub("", out)  # text labels "rotated" by 0 degrees
    out = _STYLE_ATTR.sub(lambda m: 'style="' + _STYLE_SPACES.sub(r"\1", m.group(1)).rstrip(";") + '"', out)
    out = _unwrap_bare_groups(out)
    # a run of markers of one style: the style once, on a group around them (fill and stroke inherit)
    return _USE_RUN.sub(lambda m: f'<g style="{m.group(1)}">' + _USE_STYLE.sub("/>", m.group(0)) + "</g>", out)


def _unwrap_bare_groups(svg: str) -> str:
    """Drop every ``<g>`` without attributes (and its ``</g>``): it groups nothing that renders differently, and
    matplotlib writes a thousand of them in a page's plots once their ids are gone."""
    out: list[str] = []
    bare: list[bool] = []
    pos = 0
    for m in _G_TOKEN.finditer(svg):
        out.append(svg[pos:m.start()])
        pos = m.end()
        tag = m.group(0)
        if tag.endswith("/>"):  # an empty group: nothing to unwrap, nothing to close
            out.append(tag)
        elif tag == "</g>":
            if not (bare.pop() if bare else False):
                out.append(tag)
        else:
            bare.append(tag == "<g>")
            if tag != "<g>":
                out.append(tag)
    out.append(svg[pos:])
    return "".join(out)


def _figure(width: float, height: float) -> object:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), dpi=72)


#: Classes of ulp error shown in the distribution bars: (label, first bucket, last bucket, colour).
#: Bucket 0 holds exact results, bucket b (1..32) holds [2**(b-1), 2**b), bucket 33 NaN/inf (conformance.judge.compare).
ULP_CLASSES = (
    ("exact", 0, 0, "#1a9850"),
    ("1 ulp", 1, 1, "#91cf60"),
    ("2–3", 2, 2, "#d9ef8b"),
    ("4–15", 3, 4, "#fee08b"),
    ("16–255", 5, 8, "#fdae61"),
    ("256–65535", 9, 16, "#f46d43"),
    ("≥ 2¹⁶", 17, 32, "#a50026"),
    ("NaN/∞", 33, 33, "#1f2937"),
)


def ulp_bars(layout: str, dtypes: Sequence[str], quantities: Sequence[str],
             hists: Mapping[tuple[str, str, str], Sequence[int]]) -> str | None:
    """For each quantity and dtype, the share of its components in each class of ulp error (a 100 % bar),
    and the largest class reached written beside the bar; None when nothing is graded."""
    import matplotlib
    from matplotlib.patches import Patch

    rows = [q for q in quantities if any(sum(hists.get((layout, d, q), ())) for d in dtypes)]
    if not rows:
        return None
    present = [d for d in dtypes if any(sum(hists.get((layout, d, q), ())) for q in rows)]
    with matplotlib.rc_context(_RC):
        fig = _figure(1.6 + 2.6 * len(present), 1.15 + 0.24 * len(rows))
        axes = fig.subplots(1, len(present), sharey=True, squeeze=False)[0]  # type: ignore[attr-defined]
        ys = list(range(len(rows)))
        for ax, d in zip(axes, present):
            for i, q in enumerate(rows):
                h = list(hists.get((layout, d, q), ()))
                total = sum(h)
                if not total:
                    ax.text(0.5, i, "not graded", ha="center", va="center", fontsize=7, color=_GREY)
                    continue
                left = 0.0
                top_class = ""
                for label, lo, hi, colour in ULP_CLASSES:
                    c = sum(h[lo:hi + 1])
                    if c:
                        w = c / total
                        ax.barh(i, w, left=left, height=0.72, color=colour, linewidth=0)
                        left += w
                        top_class = label
                ax.text(1.02, i, top_class, ha="left", va="center", fontsize=6.8, color="#374151")
            ax.set_xlim(0, 1)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_xticks([0, 0.5, 1])
            ax.set_xticklabels(["0", "50%", "100%"])
            ax.set_title(d, pad=4)
            for side in ("top", "right", "left"):
                ax.spines[side].set_visible(False)
            ax.tick_params(axis="y", length=0)
        axes[0].set_yticks(ys)
        axes[0].set_yticklabels(rows)
        handles = [Patch(color=c, label=l) for l, _, _, c in ULP_CLASSES]
        height = 1.15 + 0.24 * len(rows)
        fig.subplots_adjust(top=1 - 0.28 / height, wspace=0.32)  # type: ignore[attr-defined]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=7.5,  # type: ignore[attr-defined]
                   bbox_to_anchor=(0.5, 1.0), handlelength=1.2, columnspacing=1.2)
        fig.subplots_adjust(bottom=0.5 / height)  # type: ignore[attr-defined]
        fig.supxlabel("share of components, by distance to the correctly rounded value (right: worst class reached)",  # type: ignore[attr-defined]
                      fontsize=7.5, color="#4b5563", y=0.0)
        return _render(fig, f"ulp-{layout}")


_FLOOR = 1e-5
_TOP = 1e3
_INF_Y = 1e4


def ratio_vs_magnitude(regime: str, dtypes: Sequence[str], quantities: Sequence[str],
                       series: Mapping[tuple[str, str, str], Sequence[tuple[float, float]]],
                       sweep: str = "") -> str | None:
    """Worst error/allowed per quantity against the regime's magnitude, a panel per dtype."""
    import matplotlib
    from matplotlib.ticker import FixedLocator, NullLocator

    present = [d for d in dtypes if any(series.get((regime, d, q)) for q in quantities)]
    if not present:
        return None
    failing = [q for q in quantities if any(r > 1 for d in present for _, r in series.get((regime, d, q), ()))]
    styles = {q: style_of(i) for i, q in enumerate(failing)}
    lift = {q: 1.35 ** k for k, q in enumerate(failing)}  # NaN/inf rows apart, in log scale
    mags = sorted({m for d in present for q in quantities for m, _ in series.get((regime, d, q), ())})
    with matplotlib.rc_context(_RC):
        fig = _figure(1.2 + 2.45 * len(present), 2.7)
        axes = fig.subplots(1, len(present), sharey=True, squeeze=False)[0]  # type: ignore[attr-defined]
        for ax, d in zip(axes, present):
            ax.axhspan(1.0, _INF_Y * 1.35 ** max(len(failing), 1) * 1.5, color="#fde8e8", zorder=0)
            ax.axhline(1.0, color="#b91c1c", linestyle="--", linewidth=0.9, zorder=1)
            ax.axhline(_INF_Y, color="#d1d5db", linewidth=0.6, zorder=1)
            worst_q, worst_v, first_fail = "", -1.0, None
            envelope: dict[float, float] = {}  # the quantities that pass: one line, their worst at each magnitude
            for q in quantities:
                pts = series.get((regime, d, q), ())
                for m, r in pts:
                    if r > worst_v:
                        worst_q, worst_v = q, r
                    if r > 1 and (first_fail is None or m < first_fail):
                        first_fail = m
                if not pts or q not in lift:
                    for m, r in pts:
                        envelope[m] = max(envelope.get(m, 0.0), _y(r))
                    continue
                ys = [_y(r) * (lift[q] if _y(r) == _INF_Y else 1.0) for _, r in pts]
                colour, marker = styles[q]
                ax.plot([m for m, _ in pts], ys, color=colour, linewidth=1.5, marker=marker, markersize=3.8, zorder=4,
                        label=q, markevery=[i for i, (_, r) in enumerate(pts) if r > 1])  # marked where it fails
            if envelope:
                xs = sorted(envelope)
                ax.plot(xs, [envelope[m] for m in xs], color=_GREY, linewidth=1.0, zorder=2,
                        label="every other quantity (worst)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(_FLOOR * 0.5, _INF_Y * 1.35 ** max(len(failing), 1) * 1.5)
            if len(mags) > 1:
                ax.set_xlim(mags[0] / 1.6, mags[-1] * 1.6)
            ax.xaxis.set_major_locator(FixedLocator(mags))
            ax.xaxis.set_minor_locator(NullLocator())  # minor ticks of a log axis: hundreds of elements, no information
            ax.set_xticklabels([f"{m:g}" for m in mags])
            ax.yaxis.set_major_locator(FixedLocator([_FLOOR, 1e-3, 1e-1, 1, 1e2, _INF_Y]))
            ax.set_yticklabels(["≤10⁻⁵", "10⁻³", "10⁻¹", "1", "10²", "NaN/∞"])
            ax.yaxis.set_minor_locator(NullLocator())
            if first_fail is not None:
                title = f"{d}: fails from {first_fail:g}"
            elif worst_v >= 0:
                title = f"{d}: worst {_short(worst_v)} ({worst_q})"
            else:
                title = d
            ax.set_title(title, color="#b91c1c" if first_fail is not None else "#111827", fontsize=8.5)
            ax.grid(axis="y", color="#e5e7eb", linewidth=0.5)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        axes[0].set_ylabel("error / allowed (worst case)")
        fig.subplots_adjust(bottom=0.2)  # type: ignore[attr-defined]  # room for the label below the tick labels
        fig.supxlabel("magnitude" + (f" ({sweep})" if sweep else ""), fontsize=8, color="#4b5563", y=0.0)  # type: ignore[attr-defined]
        handles, labels = [], []  # the legend names every line, the grey one included
        for ax in axes:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels:
                    handles.append(h)
                    labels.append(l)
        fig.subplots_adjust(top=0.84)  # type: ignore[attr-defined]
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False,  # type: ignore[attr-defined]
                   bbox_to_anchor=(0.5, 0.985), fontsize=8)
        return _render(fig, f"ratio-{regime}")


def style_of(index: int) -> tuple[str, str]:
    """The colour and marker of the ``index``-th quantity of a figure: no two of the first 56 alike."""
    return PALETTE[index % len(PALETTE)], MARKERS[index % len(MARKERS)]


def _y(r: float) -> float:
    if math.isinf(r) or math.isnan(r):
        return _INF_Y
    return min(max(r, _FLOOR), _TOP)


def _short(x: float) -> str:
    if math.isinf(x):
        return "∞"
    return f"{x:.2g}"



