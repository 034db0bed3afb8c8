"""eossl: self-supervised pretraining on multispectral satellite imagery."""

__version__ = "0.1.0"


def load_backbone(path, bands=None, max_nm: float = 60.0, img_size=None, pool=None):
    """Exported weights -> ready backbone, normalised (B, C, H, W) -> (B, D) (see
    :func:`eossl.models.weights.load_backbone`). ``pool=None``: a PooledBackbone in the weights' recorded
    ``feature_pool``; ``pool="last"``: the plain timm model; another pool name: a PooledBackbone in that pool."""
    from eossl.models.weights import load_backbone as _load

    return _load(path, bands=bands, max_nm=max_nm, img_size=img_size, pool=pool)


def load_weights(path, bands=None, max_nm: float = 60.0, img_size=None, pool=None):
    """The same model with what it is: a record ``(model, info, band_matches)``, ``info`` the weights'
    ``weights.json`` (arch, bands, normalisation, feature pool, ...) and ``band_matches`` how each target band's
    stem kernel was made (see :func:`eossl.models.weights.load_weights`)."""
    from eossl.models.weights import load_weights as _load

    return _load(path, bands=bands, max_nm=max_nm, img_size=img_size, pool=pool)
