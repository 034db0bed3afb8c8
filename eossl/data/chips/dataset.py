"""Map-style datasets over windows (live reads) and the batch collation shared with the cache.

A sample is a dict:

* ``image`` (C, H, W) float32 reflectance, ``mask`` (H, W) bool;
* for seasonal pairs also ``image2``/``mask2`` (the later acquisition) and ``time2``;
* ``time`` (ISO string or None), ``bounds`` (4,) float64, ``crs`` (str), ``acquisition`` (str),
  ``label`` (int, -1 when unlabelled).

Batches (see :func:`collate`) stack tensors, keep strings in lists and carry ``bands`` once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from eossl.data.reader import ChipReader
from eossl.data.sources import MissingFileError, ReadError
from eossl.data.windows import Window

__all__ = ["ChipDataset", "Collate", "CollatedBatch", "collate", "sample_from_arrays"]


def _iso(t) -> str | None:
    return None if t is None else t.isoformat()


def sample_from_arrays(images: list[np.ndarray], masks: list[np.ndarray], window: Window, times: list,
                       acquisitions: list[str]) -> dict:
    """The sample dict for one window, from one or two (image, mask) arrays."""
    sample = {
        "image": torch.from_numpy(np.ascontiguousarray(images[0], dtype=np.float32)),
        "mask": torch.from_numpy(np.ascontiguousarray(masks[0], dtype=bool)),
        "time": times[0],
        "bounds": torch.tensor(window.bounds, dtype=torch.float64),
        "crs": window.crs,
        "acquisition": acquisitions[0],
        "label": -1 if window.label is None else int(window.label),
    }
    if len(images) > 1:
        sample["image2"] = torch.from_numpy(np.ascontiguousarray(images[1], dtype=np.float32))
        sample["mask2"] = torch.from_numpy(np.ascontiguousarray(masks[1], dtype=bool))
        sample["time2"] = times[1]
    return sample


class ChipDataset(Dataset):
    """Reads the window it is indexed with (a :class:`Window` from a sampler) through a :class:`ChipReader`."""

    def __init__(self, reader: ChipReader):
        self.reader = reader
        self.bands = list(reader.bands)

    def read(self, window: Window) -> dict:
        images, masks, times, acqs = [], [], [], []
        for row in window.acquisitions:
            chip = self.reader.read(row, window.bounds, window.crs, size=window.size)
            images.append(chip.image)
            masks.append(chip.mask)
            times.append(_iso(chip.time))
            acqs.append(chip.acquisition)
        return sample_from_arrays(images, masks, window, times, acqs)

    def __getitem__(self, window: Window) -> dict:
        """The sample of ``window``. Any user-facing failure is a one-line :class:`ReadError` (naming the file and
        band when a file failed), so that it reaches the user as one line from a data-loader worker too."""
        if not isinstance(window, Window):
            raise TypeError(f"ChipDataset is indexed by Window objects from a sampler, got {type(window).__name__}")
        try:
            return self.read(window)
        except ReadError:
            raise
        except (ValueError, FileNotFoundError) as err:
            where = tuple(round(float(v), 2) for v in window.bounds)
            kind = MissingFileError if isinstance(err, FileNotFoundError) else ReadError
            raise kind(f"reading window {where} ({window.crs}) of acquisition(s) {list(window.acquisitions)}: "
                            f"{' '.join(str(err).split())}") from err

    def __len__(self) -> int:  # length comes from the sampler
        raise TypeError("ChipDataset has no length of its own: use it with a window sampler")


class CollatedBatch(dict):
    """A batch a dataset assembled itself (``__getitems__``); :func:`collate` passes it through."""


def collate(samples: list[dict] | CollatedBatch, bands: list[str] | None = None) -> dict:
    """Stack a list of samples into a batch."""
    if isinstance(samples, CollatedBatch):
        batch = dict(samples)
        if bands is not None:
            batch["bands"] = list(bands)
        return batch
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            # default_collate stacks straight into shared memory inside workers (no extra copy on transfer)
            batch[key] = default_collate(values)
        elif key == "label":
            batch[key] = torch.tensor(values, dtype=torch.long)
        else:
            batch[key] = values
    if bands is not None:
        batch["bands"] = list(bands)
    return batch


class Collate:
    """Picklable collate function that adds the band names to each batch."""

    def __init__(self, bands: list[str]):
        self.bands = list(bands)

    def __call__(self, samples: list[dict]) -> dict:
        return collate(samples, self.bands)
