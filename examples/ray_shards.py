"""Reference statistics with Ray Data: each actor holds one fidkit network, turns its batches into partials,
and the driver merges them exactly.

    import ray, fidkit
    ds = ray.data.read_images("s3://bucket/eval/", mode="RGB", size=(256, 256))    # or from_items / read_binary_files
    ds = ds.add_column("index", ...)            # optional: a global row order for KID/P-R's kept features
    ref = ray_reference(ds, features="inception", keep_features=True, concurrency=8, num_gpus=1)
    ref.save("ref.npz")                         # then: fidkit eval ref.npz samples/

Rows need an ``image`` column (uint8 H x W x 3, one size per batch) and an ``index`` column (its position:
kept features come out in that order, as from one pass).  Partials travel as bytes (``Partial.to_bytes``:
an ``.npz``, no pickle).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import fidkit


class PartialActor:
    """A Ray Data stateful transform: the network loads once per actor; each batch becomes one partial."""

    def __init__(self, features: str, keep_features: bool, setup: Callable[[], object] | None = None,
                 batch_size: int = 64):
        if setup is not None:  # e.g. registering a custom extractor in this worker process
            setup()
        import torch
        self.builder = fidkit.PartialBuilder(features=features, keep_features=keep_features, batch_size=batch_size,
                                             device="cuda" if torch.cuda.is_available() else "cpu")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        order = np.argsort(batch["index"], kind="stable")
        self.builder.update(np.stack(list(batch["image"][order])))
        # named by its first row: partials sort (and their kept rows concatenate) in row order
        part = self.builder.take(f"rows-{int(batch['index'][order[0]]):012d}")
        return {"partial": np.array([part.to_bytes()], dtype=object)}


def ray_reference(ds, *, features: str = "inception", keep_features: bool = False, concurrency: int = 2,
                  num_gpus: float = 0, batch_size: int = 64, setup: Callable[[], object] | None = None
                  ) -> fidkit.Reference:
    """The reference statistics of a Ray Dataset of images, as one fidkit pass over it would give."""
    parts = ds.map_batches(PartialActor, fn_constructor_kwargs=dict(features=features, keep_features=keep_features,
                                                                    setup=setup, batch_size=batch_size),
                           batch_size=batch_size, batch_format="numpy", concurrency=concurrency, num_gpus=num_gpus)
    return fidkit.merge([fidkit.Partial.from_bytes(row["partial"]) for row in parts.iter_rows()])
