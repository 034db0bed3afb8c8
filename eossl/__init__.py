"""eossl: self-supervised pretraining on multispectral satellite imagery."""

__version__ = "0.1.0"
