"""Reference statistics with Spark (>= 3.4): features with ``predict_batch_udf`` (the network loads once per
Python worker), then one exact partial per partition, merged on the driver.

    df = spark.read.format("binaryFile").load("s3a://bucket/eval/*.png")  # decode to flat uint8 arrays first
    ref = spark_reference(df, size=(256, 256), features="inception", keep_features=True)

``df`` has columns ``index`` (a global row order: kept features come out in it) and ``image`` (the image's
uint8 H x W x 3 pixels, flattened, as an array column).  One embedding space per call (the network's default).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import fidkit

_BUILDERS: dict = {}


def _builder(features: str, keep_features: bool, setup) -> fidkit.PartialBuilder:
    """One network per Python worker, reused by every batch and partition it serves."""
    key = (features, keep_features)
    if key not in _BUILDERS:
        if setup is not None:
            setup()
        import torch
        _BUILDERS[key] = fidkit.PartialBuilder(features=features, keep_features=keep_features, spatial=False,
                                               device="cuda" if torch.cuda.is_available() else "cpu")
    return _BUILDERS[key]


def spark_reference(df, *, size: tuple[int, int], features: str = "inception", keep_features: bool = False,
                    batch_size: int = 64, setup: Callable[[], object] | None = None) -> fidkit.Reference:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, FloatType

    space = fidkit.extractors.get_spec(features)  # the network's embedding: the space this recipe serves
    space = space.space(space.defaults["embedding"])
    h, w = size

    def make_predict_fn():
        builder = _builder(features, keep_features, setup)

        def predict(images: np.ndarray) -> np.ndarray:       # batch x h x w x 3 (float from Spark) -> batch x d
            return builder.features(np.rint(images).astype(np.uint8))[space]
        return predict

    embed = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=batch_size,
                              input_tensor_shapes=[[h, w, 3]])

    def partition_partial(rows):
        rows = sorted(rows, key=lambda r: r["index"])
        if not rows:
            return []
        feats = np.asarray([r["features"] for r in rows], dtype=np.float32)
        part = _builder(features, keep_features, setup).from_features({space: feats}, f"rows-{rows[0]['index']:012d}")
        return [part.to_bytes()]

    # sorted by index: each partition a contiguous range, so kept rows concatenate in row order
    with_features = df.withColumn("features", embed("image")).select("index", "features").orderBy("index")
    blobs = with_features.rdd.mapPartitions(partition_partial).collect()
    return fidkit.merge([fidkit.Partial.from_bytes(b) for b in blobs])
