"""Chart geometry for the stats page, drawn as inline SVG by ``_chart.html``.

Small, dependency-free: stacked columns over time and horizontal bars. The
numbers come with every shape (tooltips and a table next to each chart), so
a plot is never the only way to read a figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDE, NARROW, HEIGHT, LEFT, BOTTOM, TOP = 960, 480, 220, 56, 24, 10


@dataclass
class Shape:
    """One bar: position, size, CSS class (its colour) and the tooltip text."""

    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str


@dataclass
class Text:
    """An axis or value label."""

    x: float
    y: float
    text: str
    anchor: str = "start"  # start | middle | end


@dataclass
class Chart:
    """What ``_chart.html`` draws: shapes, labels and a legend (CSS class, name)."""

    label: str
    width: int = WIDE
    height: int = HEIGHT
    shapes: list[Shape] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)


def _nice_max(value: float) -> float:
    """The axis maximum: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    scale = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    while scale > value:
        scale /= 10
    for step in (1, 2, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale


def _fmt(value: float) -> str:
    return f"{value:g}" if value >= 0.01 or value == 0 else f"{value:.2g}"


def columns(label: str, buckets: list[str], series: dict[str, list[float]], unit: str = "") -> Chart:
    """Stacked columns, one per bucket (time), one segment per series (e.g. run status)."""
    chart = Chart(label=label)
    totals = [sum(values[i] for values in series.values()) for i in range(len(buckets))]
    top = _nice_max(max(totals, default=0))
    plot_h, plot_w = HEIGHT - BOTTOM - TOP, WIDE - LEFT
    slot = plot_w / max(1, len(buckets))
    bar_w = max(2.0, slot * 0.7)
    for i, bucket in enumerate(buckets):
        x, y = LEFT + i * slot + (slot - bar_w) / 2, float(TOP + plot_h)
        for name, values in series.items():
            if values[i] <= 0:
                continue
            h = values[i] / top * plot_h
            y -= h
            chart.shapes.append(Shape(round(x, 1), round(y, 1), round(bar_w, 1), round(h, 1), name,
                                      f"{bucket}: {_fmt(values[i])}{unit} {name}".strip()))
    every = max(1, -(-len(buckets) // 6))
    chart.texts = [Text(round(LEFT + i * slot + slot / 2, 1), HEIGHT - 6, b[5:16].replace("T", " "), "middle")
                   for i, b in enumerate(buckets) if i % every == 0]
    chart.texts += [Text(LEFT - 6, round(TOP + plot_h - f * plot_h + 4, 1), _fmt(top * f) + unit, "end")
                    for f in (0, 0.5, 1)]
    chart.legend = list(series)
    return chart


def bars(label: str, items: list[tuple[str, float]], unit: str = "", cls: str = "bar") -> Chart:
    """Horizontal bars, one per item, labelled with the item's name and value."""
    row = 22
    chart = Chart(label=label, width=NARROW, height=TOP + row * max(1, len(items)) + 4)
    top = _nice_max(max((v for _, v in items), default=0))
    left, plot_w = 130, NARROW - 130 - 80
    for i, (name, value) in enumerate(items):
        y = TOP + i * row
        w = value / top * plot_w if value > 0 else 0
        chart.shapes.append(Shape(left, y, round(w, 1), row - 6, f"{cls} {name}".strip(),
                                  f"{name}: {_fmt(value)}{unit}"))
        chart.texts.append(Text(left - 8, y + (row - 6) / 2 + 4, name, "end"))
        chart.texts.append(Text(round(left + w + 6, 1), y + (row - 6) / 2 + 4, f"{_fmt(value)}{unit}"))
    return chart
