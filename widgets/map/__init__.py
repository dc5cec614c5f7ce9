"""The live grid map: canvas, layer visuals, basemap, panel.

See docs/ARCHITECTURE.md, "A new map layer".
"""
