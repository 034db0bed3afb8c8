"""Every kind of exported weights is read by one registered loader (eossl.models.weights.WEIGHTS_LOADERS): one
contract test over every entry (export, load through load_weights into one LoadedWeights record, same outputs,
info beside the model and never on it, bands re-targeted), and loud errors for an arch no loader reads."""

from __future__ import annotations

import json

import pytest
import torch

from eossl.catalog.sensors import load_sensor
from eossl.models.backbones import ARCHS, create_backbone
from eossl.models.temporal import SERIES_ARCH, PixelSeriesEncoder, export_series_encoder
from eossl.models.weights import (
    INFO_FILE,
    WEIGHTS_LOADERS,
    LoadedWeights,
    WeightsInfo,
    export_backbone,
    load_backbone,
    load_weights,
    weights_kind,
)

BANDS = ["B02", "B03", "B04", "B08"]


def _info(arch: str, **kw) -> WeightsInfo:
    s = load_sensor("sentinel2-l2a")
    mean, std = s.norm_stats(BANDS)
    return WeightsInfo(arch=arch, in_chans=len(BANDS), bands=BANDS, wavelengths_nm=s.wavelengths(BANDS), gsd_m=10.0,
                       normalization={"mean": mean.tolist(), "std": std.tolist()}, ssl_method="test",
                       pretrain_data="test", epochs=1, **kw)


def _image(tmp_path):
    """(exported dir, the model, an input batch, load_backbone kwargs) of a 4-band ResNet-18."""
    torch.manual_seed(0)
    model = create_backbone("resnet18", len(BANDS), 32).eval()
    out = export_backbone(model, _info("resnet18", img_size=32), tmp_path / "w")
    return out, model, (torch.randn(2, len(BANDS), 32, 32),), {"pool": "last"}


def _series(tmp_path):
    """The same for a small pixel time-series encoder."""
    torch.manual_seed(0)
    info = _info(SERIES_ARCH, extra={"temporal": {"dim": 16, "depth": 1, "heads": 2}})
    model = PixelSeriesEncoder(info.wavelengths_nm, dim=16, depth=1, heads=2).eval()
    out = export_series_encoder(model, info, tmp_path / "w")
    x = torch.randn(2, 5, len(BANDS))
    return out, model, (x, torch.ones_like(x, dtype=torch.bool), torch.tensor([[30.0, 60, 90, 120, 150]] * 2)), {}


MAKERS = {"image": _image, "series": _series}


def test_every_loader_has_a_contract_case():
    assert sorted(MAKERS) == WEIGHTS_LOADERS.names()


@pytest.mark.parametrize("kind", WEIGHTS_LOADERS.names())
def test_each_loader_rebuilds_its_weights_through_load_backbone(kind, tmp_path):
    path, model, inputs, kwargs = MAKERS[kind](tmp_path)
    info = json.loads((path / INFO_FILE).read_text())
    assert weights_kind(info["arch"]) == kind
    record = load_weights(path, **kwargs)
    assert isinstance(record, LoadedWeights) and isinstance(record.info, WeightsInfo)
    assert record.info.arch == info["arch"] and record.info.bands == BANDS and record.band_matches == ()
    loaded = record.model.eval()
    assert type(loaded) is type(model) and not hasattr(loaded, "weights_info") and not hasattr(loaded, "band_matches")
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs), model(*inputs))
        torch.testing.assert_close(load_backbone(path, **kwargs).eval()(*inputs), model(*inputs))   # the model alone
    # the target data's bands in the weights' own order change nothing
    same = load_backbone(path, bands=list(zip(BANDS, info["wavelengths_nm"])), **kwargs).eval()
    with torch.no_grad():
        torch.testing.assert_close(same(*inputs), model(*inputs))


def test_every_arch_has_exactly_one_kind():
    assert {weights_kind(a) for a in ARCHS.names()} == {"image"}
    assert weights_kind(SERIES_ARCH) == "series"


def test_an_arch_no_loader_reads_is_an_error_listing_the_kinds(tmp_path):
    with pytest.raises(ValueError, match=r"no loader reads weights of arch 'convnext_pico'; known kinds of weights "
                                         r"and their archs: image: .*resnet18.*; series: pixel_transformer"):
        weights_kind("convnext_pico")
    path, *_ = _image(tmp_path)
    info = json.loads((path / INFO_FILE).read_text())
    (path / INFO_FILE).write_text(json.dumps({**info, "arch": "convnext_pico"}))
    with pytest.raises(ValueError, match="no loader reads weights of arch 'convnext_pico'"):
        load_backbone(path)


def test_image_only_arguments_are_refused_for_a_series_encoder(tmp_path):
    path, *_ = _series(tmp_path)
    for kwargs in ({"pool": "last"}, {"img_size": 64}):
        with pytest.raises(ValueError, match="pool and img_size apply to image backbones only"):
            load_backbone(path, **kwargs)
