"""Time series: per-sample series from tables, pixel series sampled from scenes and datacubes, and extraction of
series at points, polygons or a grid."""
