"""The YAML config schema of the original SFMViT, as frozen dataclasses (one per section).

Every field keeps the original key name. Fields without a default are required; fields with a
default are optional, and extensions of the original schema are marked "Extension" in their class
docstring: they are optional and their default lives here and nowhere else (the model builders
read them from these dataclasses and never re-default them). ``kwargs`` blocks are free mappings
here: the builder they feed checks them when ``engine.plan.make_plan`` builds it, before any
process starts. This module imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# A free ``kwargs:`` block: passed as keyword arguments to a builder.
Kwargs = dict[str, Any]
# ``model.variant``: ACAR-Net's model (SlowFast alone) or SFMViT's (SlowFast + frozen ViT).
Variant = Literal["acar_net", "sfmvit"]


@dataclass(frozen=True, kw_only=True)
class WeightFileConfig:
    """A weight file and how its keys are mapped (the keys of both ``pretrain`` sections).

    ``state_dict_key`` picks an entry of the loaded object; keys starting with ``delete_prefix`` are
    removed; keys starting with ``replace_prefix`` are renamed to ``replace_to`` + the rest.
    """

    path: str
    state_dict_key: str | None = None
    delete_prefix: str | None = None
    replace_prefix: str | None = None
    replace_to: str = ""


@dataclass(frozen=True, kw_only=True)
class PretrainConfig(WeightFileConfig):
    """``model.backbone.pretrain``: SlowFast weights loaded into the SlowFast module alone."""


@dataclass(frozen=True, kw_only=True)
class BuilderConfig:
    """A ``type``, the key of a builder table, and the ``kwargs`` its builder gets."""

    type: str
    kwargs: Kwargs = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SubbackboneConfig:
    """``model.backbone.subbackbone``: the frozen VideoMAE-v2 ViT beside SlowFast.

    The original only has ``path``. Extensions (all optional):
    - ``path`` may be omitted (default None): no ViT file is loaded (the weights then come from the
      resume checkpoint, as in the original eval config, which has no subbackbone key at all).
    - ``arch`` (default ``vit_giant_patch14_224``): key of ``models.backbones.VITS``.
    - ``kwargs`` (default ``{}``): overrides of the ViT constructor arguments (``depth``,
      ``embed_dim``, ``num_heads``, ``img_size``, ``all_frames``, ...), for small CPU models.
    - ``eval_mode`` (default False): keep the frozen ViT in eval mode during training. False
      reproduces the original, which trains with the ViT in train mode (docs/numerics.md quirk 6).
    """

    path: str | None = None
    arch: str = "vit_giant_patch14_224"
    kwargs: Kwargs = field(default_factory=dict)
    eval_mode: bool = False


@dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    """``model.backbone``: SlowFast (``arch``, a key of ``models.backbones.BACKBONES``) + ViT.

    ``learnable: False`` freezes SlowFast (default True, as the original). ``kwargs`` go to the
    SlowFast builder (the extension ``width_mult`` included); ``pretrain`` and ``subbackbone`` are
    optional, as in the original.
    """

    arch: str
    learnable: bool = True
    pretrain: PretrainConfig | None = None
    kwargs: Kwargs = field(default_factory=dict)
    subbackbone: SubbackboneConfig | None = None


@dataclass(frozen=True, kw_only=True)
class NeckConfig(BuilderConfig):
    """``model.neck``: ``type`` is a key of ``models.necks.NECKS``; ``kwargs`` go to its builder."""


@dataclass(frozen=True, kw_only=True)
class HeadConfig(BuilderConfig):
    """``model.head``: ``type`` is a key of ``models.heads.HEADS``; ``kwargs`` go to its builder."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """``model``: ``freeze_bn`` keeps the backbone BatchNorms in eval mode while training.

    Extension: ``variant`` (default None) declares the model, ``'acar_net'`` (SlowFast alone) or
    ``'sfmvit'`` (SlowFast + frozen ViT); None infers it from ``head.kwargs.width``
    (``models.build.model_variant``), which is what the original configs do.
    """

    freeze_bn: bool = False
    variant: Variant | None = None
    backbone: BackboneConfig
    neck: NeckConfig
    head: HeadConfig


@dataclass(frozen=True, kw_only=True)
class LossConfig(BuilderConfig):
    """``loss``: ``type`` is a key of ``models.losses.LOSSES``; ``kwargs`` go to its builder."""


@dataclass(frozen=True, kw_only=True)
class TransformConfig:
    """One entry of ``augmentation.spatial`` (or the ``augmentation.temporal`` mapping).

    ``type`` is a key of ``datasets.transforms.SPATIAL_TRANSFORMS`` /
    ``datasets.temporal_transforms.TEMPORAL_TRANSFORMS``.
    ``kwargs`` may be a LIST of mappings in ``val.augmentation.spatial`` only: every combination of
    the listed choices is one test-time view (the original's multi-crop evaluation).
    """

    type: str
    kwargs: Kwargs | list[Kwargs] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AugmentationConfig:
    """``augmentation``: a list of spatial transforms applied in order, one temporal transform."""

    spatial: tuple[TransformConfig, ...]
    temporal: TransformConfig


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig(BuilderConfig):
    """``train.optimizer``: ``type`` is a ``torch.optim`` class name (``SGD``, ``AdamW``, ...).

    ``kwargs`` go to its constructor; the learning rate comes from ``train.scheduler.base_lr``.
    """


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """``train.scheduler``: the original's per-iteration ``step`` or ``cosine`` schedule.

    The lr rises linearly from ``base_lr`` at iteration 0 to ``warmup_lr`` (the PEAK lr) over
    ``warmup_epochs``; then ``step`` multiplies ``warmup_lr`` by the cumulative product of
    ``lr_mults`` at each of ``milestone_epochs`` (fractional epochs allowed), and ``cosine`` decays
    it to ``min_lr`` at the end of training. ``step`` needs ``milestone_epochs`` and ``lr_mults``
    (same length); ``cosine`` needs ``min_lr``.
    """

    type: Literal["step", "cosine"]
    base_lr: float
    warmup_lr: float
    warmup_epochs: float
    milestone_epochs: tuple[float, ...] | None = None
    lr_mults: tuple[float, ...] | None = None
    min_lr: float | None = None


@dataclass(frozen=True, kw_only=True)
class EvalMapConfig:
    """``val.eval_mAP``: the files the frame-mAP evaluator reads, and how ``main.py`` scores with them.

    ``exclusions`` (rows ``video_id,timestamp`` left out of the evaluation) is optional. With
    ``cap_min``/``cap_max`` set the score is a capacity sweep over ``range(cap_min, cap_max)``
    without exclusions, otherwise one evaluation at capacity 50 with ``exclusions``
    (``engine/scoring.py``; the two originals' rules, docs/numerics.md §7 and quirk 9).

    Extensions (optional; the defaults reproduce the original):
    - ``use_exclusions_in_sweep`` (default False): apply ``exclusions`` in the sweep too.
    - ``include_cap_max`` (default False): sweep ``cap_min..cap_max`` inclusive (SFMViT's ``range``
      leaves ``cap_max`` out).
    - ``ties`` (default ``'original'``): the evaluator's order of equal scores: ``'original'``, the
      order of the original's evaluator, or ``'stable'``, the earlier predict.csv row first.
    """

    labelmap: str
    groundtruth: str
    exclusions: str | None = None
    use_exclusions_in_sweep: bool = False
    include_cap_max: bool = False
    ties: Literal["original", "stable"] = "original"


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """``train``: data, schedule and checkpoint frequency (absent from evaluation configs).

    Extensions: ``workers`` (default 1, the original's implicit value) DataLoader worker processes
    per training process; ``frame_store`` (default None) a packed store of resized frames
    (``datasets/frame_store.py``), bit-identical clips without decoding PNGs;
    ``virtual_world_size`` (default None = the real world size) the ranks of the run being
    reproduced: each of the P processes plays ``W / P`` of them, one micro-batch each per optimiser
    step (``engine/virtual_ranks.py``); ``accumulate`` (default 1) micro-batches per rank and
    optimiser step (plain gradient accumulation, README "Training the published recipe on fewer GPUs").
    """

    root_path: str
    annotation_path: str
    batch_size: int
    augmentation: AugmentationConfig
    n_epochs: int
    val_freq: int
    save_freq: int
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    workers: int = 1
    frame_store: str | None = None
    virtual_world_size: int | None = None
    accumulate: int = 1


@dataclass(frozen=True, kw_only=True)
class ValConfig:
    """``val``: evaluation data, test-time views, and the evaluator's files.

    ``with_label`` also computes the validation loss: the training criterion on each box's
    view-averaged logits against the pkl's labels, averaged over boxes (``val.log`` column ``loss``,
    TensorBoard ``val/loss``); it needs an annotation pkl with real labels. Extensions: ``workers``
    (default 1, the original's implicit value) DataLoader worker processes per process;
    ``frame_store`` as in ``train``; ``predict_order`` (default ``'element'``) the row order of
    predict.csv: ``'element'``, pkl element by element (the same file for any number of
    processes), or ``'original'``, the order the original wrote (its epoch-0 sampler permutation
    of the elements, ``engine/eval_loop.py``). The rows are the same either way.
    """

    root_path: str
    annotation_path: str
    batch_size: int
    augmentation: AugmentationConfig
    with_label: bool = False
    eval_mAP: EvalMapConfig | None = None
    workers: int = 1
    frame_store: str | None = None
    predict_order: Literal["element", "original"] = "element"


@dataclass(frozen=True, kw_only=True)
class InitCheckpointConfig(WeightFileConfig):
    """Top-level ``pretrain``: initialise the whole model from a weight file (non-strict).

    SFMViT's ``load_fortrain`` and ACAR-Net's ``load_pretrain`` (how ACAR-Net's eval configs load
    its model-zoo files): no epoch, optimizer or scheduler restored. ``state_dict_key``,
    ``delete_prefix``, ``replace_prefix`` and ``replace_to`` are ACAR-Net's optional keys, applied
    to the file's keys as saved (``module.`` included).
    """


@dataclass(frozen=True, kw_only=True)
class CudnnConfig:
    """Top-level ``cudnn``: the original's optional cuDNN flags (ignored on CPU)."""

    deterministic: bool = False
    benchmark: bool = False


@dataclass(frozen=True, kw_only=True)
class VitCacheConfig:
    """Top-level ``vit_cache`` (Extension): the exact frozen-ViT feature cache (``engine/feature_cache.py``).

    ``path`` is the cache folder (shared by every rank and run; keys include the frames, the
    transform and the ViT's weights, so a stale entry is never used). ``mode``: ``'off'`` (default)
    runs the ViT as usual; ``'lazy'`` reads what is cached and computes and stores the rest;
    ``'require'`` fails on a clip that is not cached (fill it with ``tools/precompute_vit_cache.py``).
    Training with the cache needs ``model.backbone.subbackbone.eval_mode: true``.
    """

    path: str
    mode: Literal["off", "lazy", "require"] = "off"


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole config file.

    ``evaluate: True`` only evaluates (``train`` may then be absent); otherwise ``train`` is
    required. ``cap_min``/``cap_max`` bound the capacity sweep of the evaluator (both or neither;
    None = no sweep). ``resume_path`` is tried as given, then under ``result_path``.

    Extensions (optional):
    - ``amp`` (default ``'off'``): ``'bf16'`` runs forward passes under bfloat16 autocast.
    - ``auto_resume`` (default False): when ``result_path`` holds ``ckpt_{epoch}.pth.tar`` files,
      resume from the one with the largest epoch instead of ``resume_path``.
    - ``deterministic`` (default False): ask torch for deterministic algorithms (slower), for
      bit-reproducible CPU runs.
    - ``vit_cache`` (default None = off): see ``VitCacheConfig``.
    - ``evaluate_random_weights`` (default False): ``evaluate: True`` without ``resume_path`` or
      ``pretrain`` (nor a checkpoint for ``auto_resume``) is an error, since it scores random
      weights; True allows it.
    - ``overwrite_result_path`` (default False): a training run that does not resume refuses a
      ``result_path`` holding checkpoints; True lets it write there anyway (same names are replaced).
    - ``trust_checkpoints`` (default False): weight files and checkpoints are read with
      ``weights_only=True``; one that needs full unpickling (which executes code from the file) is an
      error unless this is True.
    - ``rank_local_eval`` (default False): evaluations during training use rank 0's buffers (BatchNorm
      statistics) on every rank, the ones the checkpoint saves, so a later ``evaluate: True`` run of
      that checkpoint reproduces them. True keeps the original's behaviour: each rank evaluates its
      share with its own, never saved, statistics (DDP runs with ``broadcast_buffers=False``).
    """

    evaluate: bool = False
    result_path: str
    manual_seed: int
    print_freq: int
    cap_min: int | None = None
    cap_max: int | None = None
    resume_path: str | None = None
    pretrain: InitCheckpointConfig | None = None
    cudnn: CudnnConfig | None = None
    model: ModelConfig
    loss: LossConfig
    train: TrainConfig | None = None
    val: ValConfig
    amp: Literal["off", "bf16"] = "off"
    auto_resume: bool = False
    deterministic: bool = False
    vit_cache: VitCacheConfig | None = None
    evaluate_random_weights: bool = False
    overwrite_result_path: bool = False
    trust_checkpoints: bool = False
    rank_local_eval: bool = False
    # Not a YAML key: the file the config came from, for error messages raised after loading.
    config_file: str = field(default="<config>", compare=False, repr=False, metadata={"yaml": False})
