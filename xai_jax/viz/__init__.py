"""Pictures: heatmaps, method grids and the HTML report.

NumPy + matplotlib only; imports no method (only ``xai_jax.core.errors``), so results computed
anywhere (jax or numpy arrays) can be drawn, and a report can be written on a headless machine.
"""

from .grid import method_grid, prediction_title, show_input
from .heatmap import (
    MAGNITUDE_CMAP,
    SIGNED_CMAP,
    limits,
    magnitude_heatmap,
    overlay,
    reduce_channels,
    signed_heatmap,
    to_rgba,
)
from .report import check_report_dir, safe_name, write_report

__all__ = [
    "MAGNITUDE_CMAP",
    "SIGNED_CMAP",
    "check_report_dir",
    "limits",
    "magnitude_heatmap",
    "method_grid",
    "overlay",
    "prediction_title",
    "reduce_channels",
    "safe_name",
    "show_input",
    "signed_heatmap",
    "to_rgba",
    "write_report",
]
