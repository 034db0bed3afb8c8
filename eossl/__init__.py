"""eossl: self-supervised pretraining on multispectral satellite imagery."""

__version__ = "0.1.0"


def load_backbone(path, bands=None, max_nm: float = 60.0, img_size=None):
    """Exported weights -> ready backbone (see :func:`eossl.train.export.load_backbone`)."""
    from eossl.train.export import load_backbone as _load

    return _load(path, bands=bands, max_nm=max_nm, img_size=img_size)
