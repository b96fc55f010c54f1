"""The published protocols fidkit knows, one card each, with where each setting was read.

Registry names (``imagenet256-adm``, ...) are the names :mod:`fidkit.registry`
gives the publishers' reference statistics; a card also accepts any registry
entry whose ``publisher`` names its ``reference_publisher`` (the publisher's
repository, ``owner/name``) and whose preprocessing, if recorded, is the card's.
"""

from __future__ import annotations

from fidkit.protocols.card import Network, Protocol

#: The FID Inception network as the TF graph runs it: TF1 bilinear resize of [0, 255] floats to 299, (x-128)/128.
_INCEPTION_TF = "TF1 ResizeBilinear of the uint8 image (as floats) to 299 x 299, then (x - 128) / 128"
_INCEPTION_GRAPH = "Inception-v3 graph of 2015-12-05 (fidkit's file is torch-fidelity's conversion of the same graph)"

ADM = Protocol(
    name="adm",
    title="OpenAI guided-diffusion (ADM) evaluation suite: FID, sFID, IS, precision and recall of 50,000 samples",
    metrics="fid,sfid,adm_is,adm_pr", features="inception",
    tasks=(("fd", "inception"), ("sfid", "inception"), ("adm_is", "inception"), ("adm_pr", "inception")),
    networks=(Network("inception", "tf", "uint8 NHWC fed at ExpandDims:0, before the graph's own " + _INCEPTION_TF,
                      "classify_image_graph_def.pb: the " + _INCEPTION_GRAPH),),
    n_generated=50_000,
    reference_note="ADM's reference batch: mu/sigma (pool_3) and mu_s/sigma_s (sFID) over the whole dataset; "
                   "precision/recall against its 10,000 arr_0 images",
    references=("imagenet64-adm", "imagenet128-adm", "imagenet256-adm", "imagenet512-adm",
                "lsun-bedroom256-adm", "lsun-cat256-adm", "lsun-horse256-adm"),
    reference_publisher="openai/guided-diffusion",
    reporting="IS is ADM's: sequential splits of 5000, mean only (fidkit's adm_is); P/R with k=3 and float16 "
              "distances (fidkit's adm_pr)",
    sources=("openai/guided-diffusion:evaluations/evaluator.py", "openai/guided-diffusion:evaluations/README.md",
             "facebookresearch/DiT:README.md (FID-50K with ADM's suite)"),
)

EDM2 = Protocol(
    name="edm2",
    title="NVlabs/edm2 calculate_metrics.py: FID and FD-DINOv2 of 50,000 samples against its dataset-refs",
    metrics="fid,fd_dinov2", features="inception,dinov2-vitl14",
    tasks=(("fd", "inception"), ("fd", "dinov2-vitl14")),
    networks=(Network("inception", "tf", "uint8 NCHW into StyleGAN3's detector, which resizes TF1-style inside",
                      "StyleGAN3's inception-2015-12-05.pkl: a PyTorch translation of the " + _INCEPTION_GRAPH),
              Network("dinov2-vitl14", "edm2", "F.interpolate bicubic, antialias=True, to 224 x 224 on [0, 255] "
                      "floats, /255, ImageNet mean/std (resize_mode='torch', the default)",
                      "torch.hub facebookresearch/dinov2 dinov2_vitl14")),
    n_generated=50_000,
    reference_note="EDM2's dataset-refs (img512.pkl, img64.pkl): the whole training set, prepared with "
                   "dataset_tool.py --transform=center-crop-dhariwal",
    references=("img512-edm2", "img64-edm2"), reference_publisher="nvlabs/edm2",
    reporting="EDM2's paper reports, for each metric, the minimum over several evaluations with different seeds "
              "(its README suggests --seeds=0-49999, 50000-99999, 100000-149999): one fidkit run is one such "
              "evaluation; compare the minimum of your runs with theirs",
    unknown=("how many evaluations each minimum in the EDM2 paper took (the README says 'multiple times')",),
    sources=("NVlabs/edm2:calculate_metrics.py (detectors, --num 50000, covariance / (n - 1))",
             "NVlabs/edm2:README.md (dataset-refs, 'reported the minimum')"),
)

DGM_EVAL = Protocol(
    name="dgm-eval",
    title="layer6ai-labs/dgm-eval defaults: FD, FD-infinity and KD in DINOv2 ViT-L/14, 50,000 samples",
    metrics="fd,fd_inf,kd", features="dinov2-vitl14",
    tasks=(("fd", "dinov2-vitl14"), ("fd_inf", "dinov2-vitl14"), ("kd", "dinov2-vitl14")),
    networks=(Network("dinov2-vitl14", "dgm-eval", "torchvision Resize((224, 224), BICUBIC) on the PIL image "
                      "(squash, anti-aliased, uint8), ToTensor, ImageNet mean/std",
                      "torch.hub facebookresearch/dinov2 dinov2_vitl14 (normalised CLS token)"),),
    n_generated=50_000,
    reference_note="the training images themselves, at most 50,000 (--nsample applies to every path): dgm-eval "
                   "hosts no statistics",
    options=(("kid_subsets", 100), ("kid_subset_size", 1000)),
    reporting="precision/recall/density/coverage are outside this card: dgm-eval computes them on a random subset "
              "of 10,000 samples (--reduced_n) with k=5, fidkit on all samples; its Vendi score is a per-class mean",
    unknown=("dgm-eval's random subsets (KD, FD-infinity) are unseeded, so its values vary from run to run",),
    sources=("layer6ai-labs/dgm-eval:dgm_eval/__main__.py (defaults)", "layer6ai-labs/dgm-eval:dgm_eval/models/"
             "dinov2.py", "layer6ai-labs/dgm-eval:dgm_eval/metrics/mmd.py (100 subsets of 1000)"),
)

CLEAN_FID = Protocol(
    name="clean-fid",
    title="GaParmar/clean-fid, mode='clean', against its hosted statistics",
    metrics="fid", features="inception",
    tasks=(("fd", "inception"), ("kd", "inception")),
    networks=(Network("inception", "clean", "PIL bicubic resize of each float32 channel to 299 x 299 (anti-aliased, "
                      "not re-quantised), then the TF graph's (x - 128) / 128",
                      "clean-fid's TorchScript of the " + _INCEPTION_GRAPH),),
    n_generated=50_000,
    reference_note="clean-fid's hosted statistics (mode 'clean'; each name fixes dataset, split and resolution)",
    reference_publisher="gaparmar/clean-fid",
    options=(("kid_subsets", 100), ("kid_subset_size", 1000)),
    reporting="num_gen=50,000 when clean-fid samples a generator; from folders it uses every file",
    sources=("GaParmar/clean-fid:cleanfid/fid.py (compute_fid num_gen=50_000, kernel_distance 100 x 1000)",
             "GaParmar/clean-fid:cleanfid/resize.py", "GaParmar/clean-fid:README.md (hosted statistics)"),
)

MAR = Protocol(
    name="mar",
    title="MAR lineage (LTH14/mar and descendants): torch-fidelity FID and IS of 50,000 PNG samples against "
          "ADM's ImageNet-256 mu/sigma",
    metrics="fid,is", features="inception",
    tasks=(("fd", "inception"), ("is", "inception")),
    networks=(Network("inception", "tf", "torch-fidelity's TF1-exact bilinear resize to 299 x 299, (x - 128) / 128",
                      "torch-fidelity's inception-v3-compat: the " + _INCEPTION_GRAPH),),
    n_generated=50_000,
    reference_note="fid_stats/adm_in256_stats.npz: mu and sigma copied from ADM's ImageNet-256 reference batch",
    references=("imagenet256-mar", "imagenet256-adm"), reference_publisher="lth14/mar",
    options=(("is_splits", 10), ("seed", 2020)),
    reporting="IS is torch-fidelity's: 10 splits after a shuffle with seed 2020, mean reported",
    sources=("LTH14/mar:engine_mar.py (torch_fidelity.calculate_metrics with fid_statistics_file, PNG samples)",
             "LTH14/mar#8 (mu/sigma copied from ADM's file)", "toshas/torch-fidelity:torch_fidelity/defaults.py "
             "(isc_splits 10, rng_seed 2020)"),
    aliases=("torch-fidelity",),
)

CD_FVD = Protocol(
    name="cd-fvd",
    title="Content-debiased FVD (songweige/content-debiased-fvd): FD in VideoMAE-v2 features of 2,048 clips",
    metrics="fd", features="videomae-v2",
    tasks=(("fd", "videomae-v2"),),
    networks=(Network("videomae-v2", "cd-fvd", "F.interpolate bilinear to 224 x 224 of [0, 1] frames, no mean/std",
                      "VideoMAE-v2 ViT-g/14 fine-tuned on SSv2 (vit_g_hybrid_pt_1200e_ssv2_ft.pth), "
                      "fc_norm of the mean token"),),
    n_generated=2048,
    reference_note="cd-FVD's precomputed statistics (UCF101, Sky, Taichi, Kinetics, FFS; 16 or 128 frames; 128 or "
                   "256 px; 2,048 or all reference videos, as each file's name says)",
    reference_publisher="songweige/content-debiased-fvd",
    normaliser="n",
    clip=(("length", 16), ("stride", 1), ("start", 0)),
    reporting="with fewer than 2,048 generated videos cd-fvd resamples the same videos up to 2,048 (its README)",
    unknown=("which clip of a longer video cd-fvd's folder loaders take (its VideoClips dataset); the card pins "
             "the first 16 frames",),
    sources=("songweige/content-debiased-fvd:cdfvd/fvd.py (n_fake=2048, n_real='full')",
             "songweige/content-debiased-fvd:cdfvd/utils/metric_utils.py (covariance / N)",
             "songweige/content-debiased-fvd:README.md (statistics table)"),
)

STYLEGAN_V = Protocol(
    name="stylegan-v",
    title="FVD as StyleGAN-V computes it (fvd2048_16f): I3D logits of 2,048 real and 2,048 generated 16-frame clips",
    metrics="fvd", features="i3d",
    tasks=(("fd", "i3d"),),
    networks=(Network("i3d", "tf", "resize of every frame to 224 x 224 inside the TorchScript (TF1-style), "
                      "2 x / 255 - 1", "StyleGAN-V's i3d_torchscript.pt of TF-Hub deepmind/i3d-kinetics-400/1, "
                      "400 logits averaged over time"),),
    n_generated=2048, n_reference=2048,
    reference_note="2,048 clips of the training videos (max_real=2048); StyleGAN-V hosts no statistics",
    normaliser="n",
    clip=(("length", 16), ("stride", 1), ("start", 0)),
    unknown=("whether fidkit's I3D file (TATS's conversion of the TF-Hub module, BatchNorm eps 1e-5) gives the "
             "same logits as StyleGAN-V's TorchScript has not been measured",
             "StyleGAN-V takes real clips at a random offset in each video (load_n_consecutive_random_offset); "
             "fidkit takes the same frames of every video"),
    sources=("universome/stylegan-v:src/metrics/frechet_video_distance.py", "universome/stylegan-v:src/metrics/"
             "metric_main.py (fvd2048_16f)", "universome/stylegan-v:src/metrics/metric_utils.py (biased covariance)"),
)

COCO30K = Protocol(
    name="coco30k",
    title="MS-COCO FID-30K as boomb0om/text2image-benchmark computes it: 30,000 images from its fixed captions",
    metrics="fid", features="inception",
    tasks=(("fd", "inception"),),
    networks=(Network("inception", None, "centre crop to a square, PIL bicubic of the uint8 image to 299 x 299, "
                      "re-quantised to uint8, 2 x / 255 - 1 (its resizer 'clean')",
                      "pytorch-fid's FID Inception weights (pt_inception-2015-12-05)", nearest="clean"),),
    n_generated=30_000,
    reference_note="MS-COCO_val2014_fid_stats.npz of the benchmark's MS-COCO val2014 subset",
    references=("coco2014-30k",), reference_publisher="boomb0om/text2image-benchmark",
    unknown=("no fidkit preprocessing reproduces T2IBenchmark's (it re-quantises after the resize and scales by "
             "2 x / 255 - 1); the size of the difference is unmeasured",
             "the N behind MS-COCO_val2014_fid_stats.npz is not stated in what was read"),
    sources=("boomb0om/text2image-benchmark:README.md", "boomb0om/text2image-benchmark:T2IBenchmark/utils/"
             "resizers.py", "boomb0om/text2image-benchmark:T2IBenchmark/feature_extractors/"
             "inceptionV3_feature_extractor.py"),
)

CARDS: tuple[Protocol, ...] = (ADM, EDM2, DGM_EVAL, CLEAN_FID, MAR, CD_FVD, STYLEGAN_V, COCO30K)
