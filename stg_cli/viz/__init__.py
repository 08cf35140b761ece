"""Pictures of groundings: the overlay video and the timeline figure (``stg ground --viz``)."""

from stg_cli.viz.overlay import blend_heatmap, colormap_lut, render_overlay
from stg_cli.viz.timeline import TruthSegment, plot_timeline

__all__ = ["TruthSegment", "blend_heatmap", "colormap_lut", "plot_timeline", "render_overlay"]
