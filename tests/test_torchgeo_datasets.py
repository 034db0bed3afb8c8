"""torchgeo classification datasets by name, on tiny fake layouts the tests write (nothing downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_geotiff

from eossl.config import ConfigError, load_config
from eossl.data.labelled.torchgeo import load_torchgeo
from eossl.evaluate.config import EvaluateConfig, LabelledDataConfig

EUROSAT_BASE = Path("ds/images/remote_sensing/otherDatasets/sentinel_2/tif")
CLASSES = ["AnnualCrop", "Forest", "River"]


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory):
    """torchgeo's EuroSAT layout: class folders under ds/.../tif and eurosat-{split}.txt listing .jpg names."""
    root = tmp_path_factory.mktemp("eurosat")
    rng = np.random.default_rng(0)
    splits = {"train": [], "val": [], "test": []}
    for c, name in enumerate(CLASSES):
        for i in range(4):
            data = rng.integers(1, 4000, size=(13, 16, 16)).astype("uint16")
            data[:, 0, 0] = 0                            # one nodata pixel per chip
            data[7, 1, 1] = 1000 * (c + 1)               # B08 (file band 8) marks the class
            write_geotiff(root / EUROSAT_BASE / name / f"{name}_{i}.tif", data, 10.0)
            splits[("train", "train", "val", "test")[i]].append(f"{name}_{i}.jpg")
    for split, names in splits.items():
        (root / f"eurosat-{split}.txt").write_text("\n".join(names) + "\n")
    return root


def test_eurosat_by_name_pools_the_splits_in_reflectance(eurosat_root):
    chips = load_torchgeo("EuroSAT", eurosat_root, progress=False)
    assert chips.classes == CLASSES and len(chips) == 12 and chips.sensor == "sentinel2-l1c"
    assert chips.bands == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
                           "B12"]                       # sensor order; the file holds B8A last
    assert np.bincount(chips.labels).tolist() == [4, 4, 4]
    b08 = chips.bands.index("B08")
    for img, label in zip(chips.images, chips.labels, strict=True):
        assert img[b08, 1, 1] == pytest.approx(0.1 * (label + 1))     # DN / 10000
    assert not chips.mask[:, 0, 0].any() and chips.mask[:, 1:, 1:].all()
    assert (chips.images[:, :, 0, 0] == 0).all()


def test_through_the_evaluate_config_with_bands_and_splits(eurosat_root):
    cfg = load_config(EvaluateConfig, None, overrides=[
        "data.torchgeo=EuroSAT", f"data.root={eurosat_root}", "data.bands=[B04, B03, B02]",
        "data.torchgeo_splits=[train]"])
    chips = cfg.data.load()
    assert chips.bands == ["B04", "B03", "B02"] and len(chips) == 6


def test_bad_dataset_requests_are_named(eurosat_root, tmp_path):
    with pytest.raises(ValueError, match=r"'Eurosat' is not a dataset eossl reads through torchgeo; these are: "
                                         r"EuroSAT \(27,000"):
        load_torchgeo("Eurosat", eurosat_root)
    with pytest.raises(ValueError, match="BigEarthNet is multi-label"):
        load_torchgeo("BigEarthNet", eurosat_root)
    with pytest.raises(FileNotFoundError, match=r"torchgeo finds no EuroSAT100 train split in .* data.torchgeo_splits"):
        load_torchgeo("EuroSAT100", tmp_path)
    with pytest.raises(ValueError, match="sensor 'sentinel2-l1c' has no band 'QA'"):
        load_torchgeo("EuroSAT", eurosat_root, bands=["B04", "QA"])
    with pytest.raises(ValueError, match="data.torchgeo_splits: EuroSAT has no split holdout"):
        load_torchgeo("EuroSAT", eurosat_root, splits=["holdout"])
    with pytest.raises(ConfigError, match="data.torchgeo: give the dataset's local folder as data.root"):
        LabelledDataConfig(torchgeo="EuroSAT")
