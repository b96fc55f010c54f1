"""Feature extractors as plug-ins: each network declares itself once (:class:`ExtractorSpec`) and registers.

=================  =====================================================================
``inception``      the FID Inception network (pool3, logits, spatial): FID, KID, IS, sFID
``dinov2``         DINOv2 ViT-L/14 CLS token (``dinov2-vitb14``: the cheaper ViT-B/14)
``clip``           OpenAI CLIP ViT-B/32 image embedding: CLIP-FID as clean-fid computes it
``clip-vitl14-336`` OpenAI CLIP ViT-L/14@336px, L2-normalised: CMMD
``i3d``            Inception-I3D (Kinetics-400) logits averaged over time, on video clips: FVD
``videomae-v2``    VideoMAE-v2 ViT-g/14 (SSv2) mean token, 1408-d, on video clips: content-debiased FVD
=================  =====================================================================
"""

from fidkit.extractors.base import (ROLES, ExtractorSpec, Preprocessing, Tap, available, custom_extractor,
                                    get_spec, register, specs)
from fidkit.extractors import clip, dinov2, i3d, inception, videomae  # noqa: F401  (each registers itself)
from fidkit.extractors.runtime import Extractor, InceptionExtractor, default_device, resolve_device

__all__ = ["ExtractorSpec", "Preprocessing", "Tap", "ROLES", "register", "get_spec", "available", "specs",
           "custom_extractor", "Extractor", "InceptionExtractor", "default_device", "resolve_device"]
