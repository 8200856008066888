"""Pictures: heatmaps, method grids and the HTML report (NumPy + matplotlib only, headless)."""

from .grid import method_grid
from .heatmap import limits, magnitude_heatmap, overlay, signed_heatmap, to_2d, to_rgba
from .report import safe_name, write_report

__all__ = ["limits", "magnitude_heatmap", "method_grid", "overlay", "safe_name", "signed_heatmap", "to_2d", "to_rgba", "write_report"]
