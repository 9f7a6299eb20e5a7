"""Chart geometry of the stats page: bars stack, scale to a round maximum, and carry their numbers."""

from __future__ import annotations

import pytest

from engine.ui.charts import HEIGHT, _nice_max, bars, columns


@pytest.mark.parametrize(("value", "top"), [(0, 1.0), (0.003, 0.005), (1, 1), (3, 5), (12, 20), (101, 200)])
def test_axis_maximum_is_round_and_covers_the_value(value: float, top: float) -> None:
    assert _nice_max(value) == pytest.approx(top)


def test_columns_stack_series_per_bucket() -> None:
    chart = columns("runs", ["2026-11-28T10:00", "2026-11-28T11:00"], {"completed": [1, 2], "failed": [0, 2]})
    assert [(s.cls, s.title) for s in chart.shapes] == [
        ("completed", "2026-11-28T10:00: 1 completed"), ("completed", "2026-11-28T11:00: 2 completed"),
        ("failed", "2026-11-28T11:00: 2 failed")]
    one, two, failed = chart.shapes
    assert two.h == pytest.approx(2 * one.h)  # 4 runs in the tallest column: axis top 5
    assert failed.y + failed.h == pytest.approx(two.y)  # stacked on top of the completed segment
    assert all(s.y >= 0 and s.y + s.h <= HEIGHT for s in chart.shapes)
    assert chart.legend == ["completed", "failed"]


def test_bars_are_proportional_and_labelled() -> None:
    chart = bars("latency", [("model p50", 40.0), ("policy p50", 10.0)], unit=" ms")
    model, policy = chart.shapes
    assert model.w == pytest.approx(4 * policy.w)
    assert "40 ms" in [t.text for t in chart.texts] and "model p50" in [t.text for t in chart.texts]
