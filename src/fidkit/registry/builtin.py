"""The published reference statistics fidkit knows, with the facts their publishers state (sources in comments).

Naming: ``DATASET[RES]-TAG``, lower case, words joined by ``-``.  The dataset is the publisher's own short name of
the file (``imagenet256``, ``lsun-bedroom256``, EDM2's ``img512``); the resolution is written after it, joined,
or after a ``-`` when the name ends in a digit (``cifar10-32``).  TAG is the publisher (``adm``, ``mar``, ``edm``,
``edm2``, ``ttur``); clean-fid's files, which come in many variants, are ``DATASET[RES]-SPLIT-MODE`` with the
resolution only where clean-fid serves a dataset at several (``ffhq1024``), MODE the fidkit preprocessing
(``clean``, ``tf`` for legacy_tensorflow, ``pytorch`` for legacy_pytorch), and ``-clip`` (CLIP-FID) or ``-kid``
(KID features) at the end; content-debiased FVD's are ``DATASET-RES-LENf-N-MODEL``.

None of these publishers posts a checksum: fidkit records the sha256 of the first download (see
:mod:`fidkit.registry.files`).  Nothing is redistributed: every entry is a URL on its publisher's server.
"""

from __future__ import annotations

from fidkit.registry.entry import NOT_STATED, PublishedReference

INCEPTION = ("inception/pool3",)


def _entry(**kw) -> PublishedReference:
    kw.setdefault("network", ",".join(dict.fromkeys(s.split("/", 1)[0] for s in kw["spaces"])))
    kw.setdefault("subset_seed", None)
    kw.setdefault("size_bytes", None)
    kw.setdefault("sha256", None)
    return PublishedReference(**kw)


# --- ADM (openai/guided-diffusion: evaluations/README.md) ----------------------------------------------------------
# "Reference dataset batches contain pre-computed statistics over the whole dataset, as well as 10,000 images for
# computing Precision and Recall."  mu/sigma: pool_3; mu_s/sigma_s: mixed_6/conv (sFID); np.cov (N - 1).
_ADM_BASE = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches"
_ADM = [("imagenet64", "ImageNet 64x64", 64, "imagenet/64/VIRTUAL_imagenet64_labeled.npz"),
        ("imagenet128", "ImageNet 128x128", 128, "imagenet/128/VIRTUAL_imagenet128_labeled.npz"),
        ("imagenet256", "ImageNet 256x256", 256, "imagenet/256/VIRTUAL_imagenet256_labeled.npz"),
        ("imagenet512", "ImageNet 512x512", 512, "imagenet/512/VIRTUAL_imagenet512.npz"),
        ("lsun-bedroom256", "LSUN bedroom 256x256", 256, "lsun/bedroom/VIRTUAL_lsun_bedroom256.npz"),
        ("lsun-cat256", "LSUN cat 256x256", 256, "lsun/cat/VIRTUAL_lsun_cat256.npz"),
        ("lsun-horse256", "LSUN horse 256x256", 256, "lsun/horse/VIRTUAL_lsun_horse256.npz")]

ADM = [_entry(
    name=f"{short}-adm", dataset=f"{dataset} (ADM reference batch)", resolution=res, n=None, coverage="whole",
    dataset_preprocessing=NOT_STATED, preprocessing="tf", normaliser="n-1",
    spaces=("inception/pool3", "inception/spatial"), metrics=("fid", "sfid", "adm_pr"),
    url=f"{_ADM_BASE}/{path}", licence="not stated (guided-diffusion code: MIT)", fmt="adm-batch",
    publisher="OpenAI (openai/guided-diffusion, evaluations/README.md)",
    notes="moments over the whole dataset (N not stated); arr_0 holds 10,000 images (1,000 in the 512 file, "
          "bytetriper/RAE#38) for precision/recall only; ADM's evaluator uses the TF Inception graph, fidkit's tf "
          "preprocessing" + ("; arr_1 holds class labels" if "labeled" in path else ""),
) for short, dataset, res, path in _ADM]

# MAR keeps only ADM's 256 mu/sigma (LTH14/mar#8: "exact same result as the ADM evaluation suite").
MAR = [_entry(
    name="imagenet256-mar", dataset="ImageNet 256x256 (mu/sigma of ADM's reference batch)", resolution=256, n=None,
    coverage="whole", dataset_preprocessing=NOT_STATED, preprocessing="tf", normaliser="n-1", spaces=INCEPTION,
    metrics=("fid",), url="https://github.com/LTH14/mar/raw/main/fid_stats/adm_in256_stats.npz",
    licence="MIT (LTH14/mar LICENSE)", fmt="npz", publisher="Tianhong Li (LTH14/mar, fid_stats/)",
    notes="mu and sigma copied from VIRTUAL_imagenet256_labeled.npz (LTH14/mar#8); the MAR lineage evaluates "
          "through its torch-fidelity fork with fid_statistics_file",
)]

# --- EDM (NVlabs/edm: README.md, fid.py) ---------------------------------------------------------------------------
# `fid.py ref` over the whole dataset zip; sigma /= N - 1; NVIDIA's inception-2015-12-05.pkl (TF graph port).
_EDM_LICENCE = "CC BY-NC-SA 4.0 (non-commercial; NVlabs/edm README: all material)"
EDM = [_entry(
    name=name, dataset=dataset, resolution=res, n=n, coverage="whole", dataset_preprocessing=prep,
    preprocessing="tf", normaliser="n-1", spaces=INCEPTION, metrics=("fid",),
    url=f"https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/{file}", licence=_EDM_LICENCE, fmt="npz",
    publisher="NVIDIA (NVlabs/edm, fid.py ref)",
    notes="computed with NVIDIA's Inception pickle (a port of the TF graph): fidkit's tf preprocessing",
) for name, dataset, res, n, prep, file in [
    ("cifar10-32-edm", "CIFAR-10 train", 32, 50000, "dataset_tool.py from cifar-10-python.tar.gz (data_batch_1..5)",
     "cifar10-32x32.npz"),
    ("ffhq-64-edm", "FFHQ", 64, None, "dataset_tool.py --resolution=64x64 from images1024x1024", "ffhq-64x64.npz"),
    ("afhqv2-64-edm", "AFHQv2", 64, None, "dataset_tool.py --resolution=64x64", "afhqv2-64x64.npz"),
    ("imagenet-64-edm", "ImageNet train (ILSVRC CLS-LOC)", 64, None,
     "dataset_tool.py --resolution=64x64 --transform=center-crop", "imagenet-64x64.npz"),
]]

# --- EDM2 (NVlabs/edm2: README.md, calculate_metrics.py) -----------------------------------------------------------
# A Python pickle {'fid': {mu, sigma}, 'fd_dinov2': {mu, sigma}, 'num_images'}; sigma / (N - 1); DINOv2 resized with
# torch bicubic antialias (fidkit's edm2 preprocessing of dinov2-vitl14).
EDM2 = [_entry(
    name=f"img{res}-edm2", dataset=f"ImageNet train {res}x{res} (EDM2 img{res})", resolution=res, n=None,
    coverage="whole", dataset_preprocessing=prep, preprocessing="inception=tf,dinov2-vitl14=edm2",
    normaliser="n-1", spaces=("inception/pool3", "dinov2-vitl14/cls"), metrics=("fid", "fd_dinov2"),
    url=f"https://nvlabs-fi-cdn.nvidia.com/edm2/dataset-refs/img{res}.pkl",
    licence="CC BY-NC-SA 4.0 (non-commercial; NVlabs/edm2 README: all material)", fmt="edm2-pkl",
    publisher="NVIDIA (NVlabs/edm2, calculate_metrics.py ref)",
    notes="a pickle: converted once into fidkit's no-pickle .npz (source sha256 recorded); EDM2 reports the "
          "minimum over several evaluations (README); N is the file's num_images",
) for res, prep in [(512, "dataset_tool.py convert --resolution=512x512 --transform=center-crop-dhariwal"),
                    (64, NOT_STATED)]]

# --- TTUR, the original FID (bioinf-jku/TTUR: README.md) -----------------------------------------------------------
_TTUR = [("celeba-ttur", "CelebA (cropped)", 64, "cropped CelebA at 64x64", "fid_stats_celeba.npz",
          "calculated on all samples"),
         ("lsun-bedroom-train-ttur", "LSUN bedroom train", None, NOT_STATED, "fid_stats_lsun_train.npz",
          "calculated on all training samples"),
         ("cifar10-train-ttur", "CIFAR-10 train", 32, NOT_STATED, "fid_stats_cifar10_train.npz",
          "calculated on all training samples"),
         ("svhn-train-ttur", "SVHN train", 32, NOT_STATED, "fid_stats_svhn_train.npz",
          "calculated on all training samples"),
         ("imagenet-train-ttur", "ImageNet train", None, NOT_STATED, "fid_stats_imagenet_train.npz",
          "calculated on all training samples; the resolution is not stated (TTUR links the 64x64 downsampled "
          "ImageNet)"),
         ("imagenet-valid-ttur", "ImageNet validation", None, NOT_STATED, "fid_stats_imagenet_valid.npz",
          "calculated on all validation samples; the resolution is not stated (TTUR links the 64x64 downsampled "
          "ImageNet)")]
TTUR = [_entry(
    name=name, dataset=dataset, resolution=res, n=None, coverage="whole", dataset_preprocessing=prep,
    preprocessing="tf", normaliser="n-1", spaces=INCEPTION, metrics=("fid",),
    url=f"http://bioinf.jku.at/research/ttur/ttur_stats/{file}",
    licence="not stated for the statistics (TTUR code: Apache-2.0)", fmt="npz",
    publisher="JKU Linz (bioinf-jku/TTUR)", notes=f"README: {how}; TF Inception 2015-12-05; served over plain http",
) for name, dataset, res, prep, file, how in _TTUR]

# --- MS-COCO FID-30K (boomb0om/text2image-benchmark) ---------------------------------------------------------------
# T2IBenchmark: centre crop, PIL bicubic to 299 quantised to uint8, ToTensor, 2x-1, pytorch-fid's InceptionV3:
# no fidkit preprocessing equals it, so comparisons need --force (and say so).
COCO = [_entry(
    name="coco2014-30k", dataset="MS-COCO val2014 (the benchmark's 30k subset)", resolution=None, n=None,
    coverage="subset", dataset_preprocessing=NOT_STATED,
    preprocessing="other:t2ibenchmark (centre crop, PIL bicubic 299 uint8, 2x-1, pytorch-fid Inception)",
    normaliser="n-1", spaces=INCEPTION, metrics=("fid",),
    url="https://github.com/boomb0om/text2image-benchmark/releases/download/v0.0.1/MS-COCO_val2014_fid_stats.npz",
    licence="not stated (T2IBenchmark code: MIT)", fmt="npz", publisher="boomb0om/text2image-benchmark",
    notes="generate from the fixed 30,000 captions (release MS-COCO_val2014_30k_captions.csv); its preprocessing "
          "has no fidkit equivalent, so a comparison is refused unless forced",
)]

# --- clean-fid (GaParmar/clean-fid: README.md table, docs/datasets.md, cleanfid/features.py) -----------------------
# URL: https://www.cs.cmu.edu/~clean-fid/stats/{name}_{mode}[_{model}]_{split}_{res}[_kid].npz, lower case.
_CLEANFID_BASE = "https://www.cs.cmu.edu/~clean-fid/stats"
_MODES = {"clean": "clean", "legacy_tensorflow": "tf", "legacy_pytorch": "pytorch"}
_ALL_MODES = tuple(_MODES)
# (clean-fid name, resolutions, split, N, coverage, seed, dataset preprocessing, modes)
_CLEANFID_TABLE = [
    ("cifar10", (32,), "train", 50000, "whole", None, "dataset_tool.py (stylegan2-ada-pytorch)", _ALL_MODES),
    ("cifar10", (32,), "test", 10000, "whole", None, "dataset_tool.py (stylegan2-ada-pytorch)", _ALL_MODES),
    ("ffhq", (1024, 256), "trainval", 50000, "subset", 0,
     "50,000 drawn from the 70,000 train+val images (docs/datasets.md); 256: from ffhq-r08.tfrecords", _ALL_MODES),
    ("ffhq", (1024, 256), "trainval70k", 70000, "whole", None,
     "all 70,000 train+val images; 256: from ffhq-r08.tfrecords (docs/datasets.md)", _ALL_MODES),
    ("lsun_church", (256,), "train", 50000, "subset", None, NOT_STATED, _ALL_MODES),
    ("lsun_church", (256,), "trainfull", 126227, "whole", None, NOT_STATED, ("clean",)),
    ("lsun_horse", (256,), "train", 50000, "subset", None, NOT_STATED, _ALL_MODES),
    ("lsun_horse", (256,), "trainfull", 2000340, "whole", None, NOT_STATED, ("clean",)),
    ("lsun_cat", (256,), "train", 50000, "subset", 0,
     "50,000 drawn from 200,000 training images centre-cropped to 256 (docs/datasets.md)", _ALL_MODES),
    ("lsun_cat", (256,), "trainfull", 1657264, "whole", None, NOT_STATED, _ALL_MODES),
    ("afhq_cat", (512,), "train", 5153, "whole", None, NOT_STATED, _ALL_MODES),
    ("afhq_dog", (512,), "train", 4739, "whole", None, NOT_STATED, _ALL_MODES),
    ("afhq_wild", (512,), "train", 4738, "whole", None, NOT_STATED, _ALL_MODES),
    ("brecahad", (512,), "train", 1944, "whole", None, NOT_STATED, _ALL_MODES),
    ("metfaces", (1024,), "train", 1336, "whole", None, NOT_STATED, _ALL_MODES),
    ("horse2zebra", (256,), "test", 140, "whole", None, NOT_STATED, _ALL_MODES),
    ("cat2dog", (256,), "test", 500, "whole", None, NOT_STATED, _ALL_MODES),
]
#: README: "The dataset statistics for KID are only precomputed for smaller datasets AFHQ, BreCaHAD, and MetFaces."
_KID_DATASETS = {"afhq_cat", "afhq_dog", "afhq_wild", "brecahad", "metfaces"}


def _cleanfid() -> list[PublishedReference]:
    out = []
    for dataset, resolutions, split, n, coverage, seed, prep, modes in _CLEANFID_TABLE:
        for res in resolutions:
            short = dataset.replace("_", "-") + (str(res) if len(resolutions) > 1 else "")
            common = dict(dataset=f"{dataset} {split}", resolution=res, n=n, coverage=coverage, subset_seed=seed,
                          dataset_preprocessing=prep, normaliser="n-1",
                          licence="not stated (clean-fid code: MIT)", publisher="CMU (GaParmar/clean-fid)")
            for mode in modes:
                stem = f"{dataset}_{mode}_{split}_{res}"
                out.append(_entry(name=f"{short}-{split}-{_MODES[mode]}", preprocessing=_MODES[mode],
                                  spaces=INCEPTION, metrics=("fid",), url=f"{_CLEANFID_BASE}/{stem}.npz", fmt="npz",
                                  notes=f"clean-fid mode={mode}", **common))
                if dataset in _KID_DATASETS:
                    out.append(_entry(
                        name=f"{short}-{split}-{_MODES[mode]}-kid", preprocessing=_MODES[mode], spaces=INCEPTION,
                        metrics=("kid",), url=f"{_CLEANFID_BASE}/{stem}_kid.npz", fmt="cleanfid-kid",
                        notes=f"clean-fid mode={mode}: per-sample features (feats) for KID; the README names the "
                              "datasets with KID files but not the modes", **common))
            # CLIP-FID: clean-fid resizes for CLIP itself whatever the mode; its README does not list which CLIP
            # files are hosted, so only the clean-mode name its URL convention gives is registered.
            out.append(_entry(
                name=f"{short}-{split}-clean-clip", preprocessing="clean-fid", spaces=("clip-vitb32/embedding",),
                metrics=("fd_clip",), url=f"{_CLEANFID_BASE}/{dataset}_clean_clip_vit_b_32_{split}_{res}.npz",
                fmt="npz", notes="CLIP-FID (model_name='clip_vit_b_32', mode='clean'); the README does not list "
                                 "which CLIP statistics are hosted: the URL follows cleanfid/features.py", **common))
    return out


CLEANFID = _cleanfid()

# --- content-debiased FVD (songweige/content-debiased-fvd: README.md table, cdfvd/fvd.py) --------------------------
# https://content-debiased-fvd.github.io/files/{model}_{dataset}_{n_real}_res{res}_len{len}_skip{skip}_seed0.pkl;
# skip 1, seed 0; clips start at a random frame of each video (cdfvd/utils/data_utils.py), which fidkit's clip
# options (a fixed start) do not reproduce: the clip field says so and comparisons need --force.
_CDFVD_MODELS = {"i3d": ("i3d/logits", "fvd"), "videomae": ("videomae-v2/embedding", "fd_videomae")}
_CDFVD_DATASETS = [("ucf101", "UCF-101 train+test"), ("sky", "Sky Time-lapse train"), ("taichi", "Taichi train"),
                   ("kinetics", "Kinetics train"), ("ffs", "FaceForensics (FFS) train")]


def _cdfvd() -> list[PublishedReference]:
    out = []
    for dataset, words in _CDFVD_DATASETS:
        for length in (16, 128):
            for res in (128, 256):
                for n_real in ("2048", "full"):
                    if dataset == "kinetics" and length == 128 and n_real == "full":
                        continue  # README: Kinetics at 128 frames only with 2048 videos
                    for model, (space, metric) in _CDFVD_MODELS.items():
                        out.append(_entry(
                            name=f"{dataset}-{res}-{length}f-{n_real}-{model}", dataset=words, resolution=res,
                            n=2048 if n_real == "2048" else None, coverage="subset" if n_real == "2048" else "whole",
                            subset_seed=0 if n_real == "2048" else None,
                            dataset_preprocessing=f"frames resized and centre-cropped to {res}x{res}",
                            preprocessing="cd-fvd", normaliser="n", spaces=(space,), metrics=(metric,),
                            url=f"https://content-debiased-fvd.github.io/files/"
                                f"{model}_{dataset}_{n_real}_res{res}_len{length}_skip1_seed0.pkl",
                            licence="not stated (cd-fvd code: MIT)", fmt="cdfvd-pkl",
                            publisher="Songwei Ge et al. (songweige/content-debiased-fvd)",
                            clip=f"{length} frames, stride 1, from a random frame of each video (cd-fvd, seed 0)",
                            notes="a pickle (FeatureStats): converted once into fidkit's no-pickle .npz; biased "
                                  "covariance (divided by N), converted exactly with the file's N"))
    return out


CDFVD = _cdfvd()

BUILTIN: tuple[PublishedReference, ...] = tuple(ADM + MAR + EDM + EDM2 + TTUR + COCO + CLEANFID + CDFVD)
