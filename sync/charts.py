"""Geometry of the dashboard's 24-hour chart, rendered as inline SVG by the template."""

from typing import Any

WIDTH = 760
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 56, 56, 16, 28  # margins for the axis labels


def history_chart(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars for pushes per hour (left axis) and a line for the lag at each hour's end (right axis)."""
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(points), 1)
    max_pushes = max((point["pushes"] for point in points), default=0) or 1
    max_lag = max((point["lag_seconds"] for point in points), default=0.0) or 1.0

    bars, line = [], []
    for index, point in enumerate(points):
        x = LEFT + index * slot
        height = plot_height * point["pushes"] / max_pushes
        bars.append(
            {
                "x": round(x + slot * 0.15, 1),
                "y": round(TOP + plot_height - height, 1),
                "width": round(slot * 0.7, 1),
                "height": round(height, 1),
                "title": f"{point['end']:%H:%M}: {point['pushes']} pushes, lag {format_seconds(point['lag_seconds'])}",
            }
        )
        lag_y = TOP + plot_height - plot_height * point["lag_seconds"] / max_lag
        line.append(f"{x + slot / 2:.1f},{lag_y:.1f}")
    labels = [
        {"x": round(LEFT + index * slot + slot / 2, 1), "text": f"{point['end']:%H:%M}"}
        for index, point in enumerate(points)
        if index % 6 == 5
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "plot": {"left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": TOP + plot_height},
        "bars": bars,
        "lag_line": " ".join(line),
        "x_labels": labels,
        "label_y": HEIGHT - 8,
        "max_pushes": max_pushes if any(point["pushes"] for point in points) else 0,
        "max_lag": format_seconds(max_lag if any(point["lag_seconds"] for point in points) else 0),
    }


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
