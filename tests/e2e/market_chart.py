"""What a rendered market chart (``energyops_ext.widgets.charts.MarketChart``) must show, read
from the page in Chromium, wherever it is rendered: a Voila dashboard or a JupyterLab notebook.

``chart_drawn`` waits for the chart to have its day's lines and bars; ``assert_market_chart``
checks it against the day's snapshot rows: one px per MW for every bar, the time of day on the
x axis, the price and MW zero lines one line at the bottom, the legend above the plot."""

from __future__ import annotations

from typing import Any

# the plot's margin below a scale's zero: bqplot's Figure.padding_y (a share of its height)
PADDING_Y = 0.025

CHART_FACTS = """() => {
  const chart = document.querySelector('.eo-market-chart');
  const box = (el) => { const r = el.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const axes = [...chart.querySelectorAll('g.axis')].map((axis) => ({
    label: (axis.querySelector('text.axislabel') || {}).textContent || '',
    ticks: [...axis.querySelectorAll('.tick')].map((tick) => ({
      text: tick.querySelector('text').textContent,
      y: (box(tick).top + box(tick).bottom) / 2,
      line: box(tick.querySelector('line')).top,
    })),
  }));
  const groups = [...chart.querySelectorAll('g.bargroup')].map((group) =>
    [...group.querySelectorAll('rect.bar')].map((rect) => ({
      height: Number(rect.getAttribute('height')),
      opacity: Number(getComputedStyle(rect).opacity),
      bottom: box(rect).bottom,
    })));
  const legend = document.querySelector('.eo-chart-legend');
  return {
    axes, groups,
    svgLegends: chart.querySelectorAll('.g_legend text.legendtext').length,
    legend: legend ? box(legend) : null,
    plot: box(chart.querySelector('.plotarea_background')),
  };
}"""

Rows = list[dict[str, Any]]


def chart_drawn(page: Any, rows: Rows) -> dict[str, Any]:
    """Wait until the chart shows the day of ``rows`` (a price line with one point per priced
    block, MW bars drawn); its facts (``CHART_FACTS``)."""
    page.locator(".eo-market-chart").first.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const p = document.querySelector('.eo-market-chart svg path.line');"
        " return p && (p.getAttribute('d') || '').length > 100; }",
        timeout=30_000,
    )
    priced = sum(1 for r in rows if r["dam_price"] is not None)
    d = page.locator(".eo-market-chart svg path.line").first.get_attribute("d") or ""
    assert d.count("L") + d.count("M") == priced
    page.wait_for_function(
        "() => [...document.querySelectorAll('.eo-market-chart rect.bar')]"
        ".some((r) => Number(r.getAttribute('height')) > 0)",
        timeout=30_000,
    )
    facts: dict[str, Any] = page.evaluate(CHART_FACTS)
    return facts


def drawn_bars(groups: list[list[dict[str, float]]]) -> list[list[dict[str, float]]]:
    """The MW bars, one list per block (the invisible hover band left out)."""
    return [g for g in groups if g and all(r["opacity"] > 0 for r in g)]


def bar_heights(groups: list[list[dict[str, float]]]) -> list[list[float]]:
    """Heights of the drawn MW bars, one list per block."""
    return [[r["height"] for r in g] for g in drawn_bars(groups)]


def assert_heights_follow(heights: list[list[float]], values: list[list[float]]) -> None:
    """Every bar is ``k`` pixels per MW, one ``k`` for all (within a pixel)."""
    assert len(heights) == len(values) == 96
    flat_h = [h for block in heights for h in block]
    flat_v = [v for block in values for v in block]
    assert len(flat_h) == len(flat_v)
    k = max(flat_h) / max(flat_v)
    assert max(flat_h) > 100, "the tallest bar should fill most of the plot"
    for h, v in zip(flat_h, flat_v, strict=True):
        assert abs(h - k * v) <= 1.0, (h, v, k)


def assert_market_chart(facts: dict[str, Any], rows: Rows) -> None:
    """The chart of ``rows`` (one day's snapshot, every block) as the desk must see it."""
    values = [[r["scheduled_mw"] or 0.0, r["model_result_mw"] or 0.0] for r in rows]
    assert_heights_follow(bar_heights(facts["groups"]), values)

    by_label = {a["label"]: a for a in facts["axes"]}
    hours = [t["text"] for t in by_label["Time of day (IST)"]["ticks"]]
    assert hours == [f"{h:02d}:00" for h in range(0, 25, 3)]
    zero_lines = []
    for label in ("Rs/MWh", "MW"):
        ticks = by_label[label]["ticks"]
        zeros = [t for t in ticks if t["text"] == "0"]
        assert len(zeros) == 1, f"the {label} axis should start at 0: {ticks}"
        zero = zeros[0]
        # zero is the axis's lowest tick, at the bottom of the plot (less bqplot's padding)
        assert all(t["line"] < zero["line"] for t in ticks if t is not zero), (label, ticks)
        plot = facts["plot"]
        margin = plot["bottom"] - zero["line"]
        assert -1.0 <= margin <= PADDING_Y * (plot["bottom"] - plot["top"]) + 1.5, (label, plot)
        zero_lines.append(zero["line"])
    assert abs(zero_lines[0] - zero_lines[1]) <= 1.5, zero_lines  # one zero line
    # every bar stands on it
    bottoms = [r["bottom"] for g in drawn_bars(facts["groups"]) for r in g if r["height"] > 0]
    assert bottoms and all(abs(b - zero_lines[1]) <= 1.0 for b in bottoms), zero_lines
    assert facts["svgLegends"] == 0 and facts["legend"] is not None
    assert facts["legend"]["bottom"] <= facts["plot"]["top"]  # the legend is above the lines


def hover_shows_block(page: Any, block: int, times: str) -> None:
    """Hovering block ``block`` (1-96) shows its number and time of day (``09:00-09:15``)."""
    band = page.locator(".eo-market-chart g.bargroup").nth(96 + block - 1).locator("rect.bar")
    band.hover()
    page.wait_for_selector(f".eo-chart-hover:has-text('block {block}')", timeout=10_000)
    assert times in page.locator(".eo-chart-hover").inner_text()


def no_widget_errors(page: Any) -> None:
    assert page.locator(".jupyter-widgets-error-widget").count() == 0
    assert page.get_by_text("Error displaying widget").count() == 0
    assert page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').count() == 0
