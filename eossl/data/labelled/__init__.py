"""Labelled data for evaluation and the online probe: class-folder chips, windows on label points and polygons,
label rasters, field polygons x acquisitions, and torchgeo classification datasets by name."""
