"""The configuration of a training run: one frozen ``TrainConfig``, built once from ``train.py``'s
flags (or in Python), holding every default once.

Each field carries its flag: its help text, its argparse type, its group in ``--help`` and its
resume rule. ``glfa.cli`` builds the parser from these fields, and resuming compares a saved run's
configuration field by field: ``MUST_MATCH`` fields fix what is trained (a clash refuses the
resume), ``MAY_CHANGE`` ones are pointed out when they differ, the rest (paths, devices, loader
workers) are the run's own.
"""
import dataclasses
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

from glfa.device import AMP_CHOICES
from glfa.errors import UserError
from glfa.flagtypes import mode_name, non_negative_float, non_negative_int, positive_float, positive_int
from glfa.paths import REPO_ROOT
from net import CONTRASTIVE, NUM_L, NUM_S, OBJECTIVES, STRUCTURE_TERMS, TAU, TRANSFORMS, Finish, LossWeights, parse_mode

MUST_MATCH, MAY_CHANGE = "must match", "may change"
LR_SCHEDULES = ("reference", "cosine", "linear")
DEFAULT_WEIGHTS = LossWeights()
# Fields renamed since training states were first written: old name → new name.
RENAMED = {"wce_weight": "contrastive_weight"}
# The losses of the transfer objective alone: set with --objective reconstruction, they would do nothing.
TRANSFER_ONLY = ("style_weight", "contrastive_weight", "kl_weight", "identity_weight", "identity_feature_weight",
                 "structure_weight", "structure_terms")


def flag(default: Any, group: str, help: str, *, kind: Callable | None = None, resume: str | None = None,
         path: bool = False, **argparse_options: Any) -> Any:
    """A config field and the flag that sets it (``argparse_options`` go to ``add_argument``);
    ``path`` fields are compared as the files they name, however they are spelled."""
    return field(default=default, metadata={"group": group, "help": help, "kind": kind, "resume": resume,
                                            "path": path, "options": argparse_options})


DATA, OUTPUT, OPTIMISATION, RUNNING = "data and model", "output", "optimisation", "running"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is given. The method's defaults are ``net``'s; the default paths
    are the repository's ``experiments/`` and ``logs/``."""

    content_dir: str = flag(None, DATA, "folder of content images (searched recursively)", resume=MAY_CHANGE,
                            path=True, required=True)
    style_dir: str | None = flag(None, DATA, "folder of style images (searched recursively; not read by "
                                 "--objective reconstruction)", resume=MAY_CHANGE, path=True)
    vgg: str | None = flag(None, DATA, "normalised VGG-19 encoder weights (default: "
                           "models/vgg_normalised_conv3_1.pth in photo mode, models/vgg_normalised.pth in art mode)",
                           metavar="PATH")
    training_mode: str = flag("photo", DATA, "photo (relu3_1) or art (relu4_1)", kind=mode_name, resume=MUST_MATCH,
                              aliases=("--testing_mode", "--mode"), metavar="MODE")
    transform: str = flag("lct", DATA, "feature transform to train", resume=MUST_MATCH,
                          choices=tuple(k for k in TRANSFORMS if k != "adain"))
    contrastive: str = flag("wce", DATA, "contrastive loss", resume=MUST_MATCH, choices=(*CONTRASTIVE, "none"))
    objective: str = flag("transfer", DATA, "transfer: the method's losses; reconstruction: the decoder alone learns "
                          "to invert the encoder (pixel + feature loss, no transform), the warm start of a transfer "
                          "run", resume=MUST_MATCH, choices=OBJECTIVES)
    init_decoder: str | None = flag(None, DATA, "start from this decoder (decoder_iter_N.pth.tar) with a fresh "
                                    "optimiser", metavar="PATH")
    init_transform: str | None = flag(None, DATA, "start from this transform (lct_iter_N.pth.tar) with a fresh "
                                      "optimiser", metavar="PATH")
    freeze_decoder: bool = flag(False, DATA, "keep the decoder as it starts (e.g. from --init_decoder) and train the "
                                "transform and heads alone", resume=MUST_MATCH, switch="plain")
    image_size: int = flag(512, DATA, "images are resized to this square", kind=positive_int, resume=MAY_CHANGE)
    crop_size: int = flag(256, DATA, "random crop taken after resizing", kind=positive_int, resume=MAY_CHANGE)

    save_dir: str = flag(str(REPO_ROOT / "experiments"), OUTPUT, "where checkpoints and grids go")
    log_dir: str = flag(str(REPO_ROOT / "logs"), OUTPUT, "TensorBoard log folder")
    save_model_interval: int = flag(1000, OUTPUT, "iterations between saves of the weights, a grid and a training "
                                    "state", kind=positive_int)
    keep_last: int = flag(3, OUTPUT, "training states to keep (0: all); decoder/transform weights are never deleted",
                          kind=non_negative_int)

    lr: float = flag(1e-4, OPTIMISATION, "Adam learning rate at iteration 0, used as given on any number of GPUs",
                     kind=positive_float, resume=MAY_CHANGE)
    lr_decay: float = flag(5e-5, OPTIMISATION, "the reference schedule's learning rate at iteration i is "
                           "lr / (1 + lr_decay · i)", kind=non_negative_float, resume=MAY_CHANGE)
    lr_schedule: str = flag("reference", OPTIMISATION, "reference: lr / (1 + lr_decay · i); cosine, linear: from --lr "
                            "down to --min_lr at --max_iter", resume=MAY_CHANGE, choices=LR_SCHEDULES)
    min_lr: float = flag(0.0, OPTIMISATION, "the learning rate cosine and linear schedules end on",
                         kind=non_negative_float, resume=MAY_CHANGE)
    warmup_iters: int = flag(0, OPTIMISATION, "ramp the learning rate up linearly over this many first iterations",
                             kind=non_negative_int, resume=MAY_CHANGE)
    ema: float = flag(0.0, OPTIMISATION, "also keep an exponential moving average of the weights with this decay "
                      "(e.g. 0.999), saved in ema/ beside the raw weights (0: off)", kind=non_negative_float,
                      resume=MAY_CHANGE)
    max_iter: int = flag(160000, OPTIMISATION, "iterations to train", kind=positive_int)
    batch_size: int = flag(8, OPTIMISATION, "images per GPU (per process)", kind=positive_int, resume=MAY_CHANGE)
    content_weight: float = flag(DEFAULT_WEIGHTS.content, OPTIMISATION, "weight of the content loss",
                                 kind=non_negative_float, resume=MAY_CHANGE)
    style_weight: float = flag(DEFAULT_WEIGHTS.style, OPTIMISATION, "weight of the style loss",
                               kind=non_negative_float, resume=MAY_CHANGE)
    contrastive_weight: float = flag(DEFAULT_WEIGHTS.nce, OPTIMISATION, "weight of the contrastive loss (CCPL's or "
                                     "WCE's InfoNCE)", kind=non_negative_float, resume=MAY_CHANGE,
                                     aliases=("--wce_weight",))
    kl_weight: float = flag(DEFAULT_WEIGHTS.kl / DEFAULT_WEIGHTS.nce, OPTIMISATION, "weight of WCE's KL term "
                            "relative to --contrastive_weight (its weight is their product)", kind=non_negative_float,
                            resume=MAY_CHANGE)
    pixel_weight: float = flag(DEFAULT_WEIGHTS.pixel, OPTIMISATION, "--objective reconstruction: weight of the pixel "
                               "loss (the feature loss has --content_weight)", kind=non_negative_float,
                               resume=MAY_CHANGE)
    identity_weight: float = flag(DEFAULT_WEIGHTS.identity, OPTIMISATION, "weight of the identity loss: the pixel "
                                  "error of the content transferred to its own style (0: off; it costs one more "
                                  "decoder pass)", kind=non_negative_float, resume=MAY_CHANGE)
    identity_feature_weight: float = flag(DEFAULT_WEIGHTS.identity_feature, OPTIMISATION, "weight of the identity "
                                          "loss on features: the encoder features of that result against the "
                                          "content's, summed over the layers (0: off)", kind=non_negative_float,
                                          resume=MAY_CHANGE)
    structure_weight: float = flag(DEFAULT_WEIGHTS.structure, OPTIMISATION, "weight of the structure loss: 1 − "
                                   "the local correlation of the result's luminance with the content's in 7×7 "
                                   "windows (0: off)", kind=non_negative_float, resume=MAY_CHANGE)
    structure_terms: str = flag("correlation", OPTIMISATION, "the structure loss's terms: correlation (structure "
                                "only, local contrast free) or contrast_structure (SSIM without brightness: "
                                "texture in flat areas costs too)", resume=MAY_CHANGE, choices=STRUCTURE_TERMS)
    finish_radius: int = flag(0, OPTIMISATION, "take every loss on the result finished by the guided filter "
                              "(the content as guide) with this window radius in training pixels, as --smooth "
                              "finishes it at inference (0: off, the raw decoder output)", kind=non_negative_int,
                              resume=MUST_MATCH)
    finish_eps: float = flag(1e-3, OPTIMISATION, "the training finish's ridge eps (squared intensity; larger "
                             "smooths more)", kind=positive_float, resume=MUST_MATCH)
    tau: float = flag(TAU, OPTIMISATION, "InfoNCE temperature", kind=positive_float, resume=MAY_CHANGE)
    num_s: int = flag(NUM_S, OPTIMISATION, "anchors per layer", kind=positive_int, resume=MAY_CHANGE)
    num_l: int = flag(NUM_L, OPTIMISATION, "contrastive layers (the last ones)", kind=positive_int,
                      resume=MUST_MATCH)

    device: str | None = flag(None, RUNNING, "cpu, cuda, cuda:1… (default: cuda when present)")
    n_threads: int = flag(8, RUNNING, "data loader workers", kind=non_negative_int)
    seed: int = flag(0, RUNNING, "seed of every random choice (data order, crops, anchors)", kind=int,
                     resume=MAY_CHANGE)
    amp: str = flag("off", RUNNING, "mixed precision: off is fp32 like the reference code; bf16 and fp16 are the fast "
                    "GPU path (bf16 also on CPUs with native bf16); auto: bf16 on GPUs that support it, off on the CPU",
                    resume=MAY_CHANGE, choices=AMP_CHOICES)
    channels_last: bool = flag(False, RUNNING, "channels-last memory layout", switch="negatable")
    compile: bool = flag(False, RUNNING, "torch.compile the network", switch="plain")
    resume: str | None = flag(None, RUNNING, "continue from a training state; auto: the one written last in "
                              "--save_dir (none: start fresh)", metavar="PATH|auto")
    max_nonfinite: int = flag(10, RUNNING, "stop, saving a training state, after this many non-finite losses in a "
                              "row", kind=positive_int)
    time_limit: float = flag(0.0, RUNNING, "stop after this many minutes of training, saving weights and a training "
                             "state as at --save_model_interval (0: no limit; --resume auto continues)",
                             kind=non_negative_float, metavar="MINUTES")

    def __post_init__(self) -> None:
        """Refuse combinations that cannot train, before any work is done."""
        if not self.content_dir:
            raise UserError("--content_dir is required")
        if self.objective == "transfer" and not self.style_dir:
            raise UserError("--style_dir is required (only --objective reconstruction trains without styles)")
        spec = parse_mode(self.training_mode)
        if self.num_l > len(spec.channels):
            raise UserError(f"--num_l {self.num_l} exceeds the {len(spec.channels)} encoder layers of {spec.name} mode")
        if self.crop_size < spec.min_side:
            raise UserError(f"--crop_size must be at least {spec.min_side} in {spec.name} mode, got {self.crop_size}")
        if self.image_size < self.crop_size:
            raise UserError(f"--image_size ({self.image_size}) must be at least --crop_size ({self.crop_size})")
        if self.objective == "reconstruction" and self.freeze_decoder:
            raise UserError("--freeze_decoder leaves nothing to train in --objective reconstruction")
        if self.objective == "reconstruction" and self.init_transform:
            raise UserError("--init_transform has nothing to start: --objective reconstruction trains the decoder "
                            "alone")
        if self.objective == "reconstruction" and self.finish_radius:
            raise UserError("--finish_radius finishes a stylised result: --objective reconstruction has none")
        ignored = [f"--{field.name}" for field in dataclasses.fields(self)
                   if field.name in TRANSFER_ONLY and getattr(self, field.name) != field.default]
        if self.objective == "reconstruction" and ignored:
            raise UserError(f"{', '.join(ignored)}: --objective reconstruction has no such loss (it trains with "
                            "--content_weight and --pixel_weight alone)")
        if self.freeze_decoder and not (self.init_decoder or self.resume):
            raise UserError("--freeze_decoder keeps the decoder as it starts: give --init_decoder (a random decoder "
                            "would stay random)")
        if self.resume not in (None, "auto") and (self.init_decoder or self.init_transform):
            raise UserError("--resume continues a training state, whose weights replace --init_decoder and "
                            "--init_transform: give one or the other")
        if self.lr_schedule == "reference" and self.min_lr:
            raise UserError("--min_lr is where the cosine and linear schedules end: --lr_schedule reference "
                            "does not use it")
        if self.min_lr > self.lr:
            raise UserError(f"--min_lr {self.min_lr:g} is above --lr {self.lr:g}: the {self.lr_schedule} schedule "
                            "falls from --lr to --min_lr")
        if self.warmup_iters >= self.max_iter:
            raise UserError(f"--warmup_iters {self.warmup_iters} is not shorter than --max_iter {self.max_iter}: the "
                            "learning rate would not reach --lr before the run ends")
        if self.ema and not 0 < self.ema < 1:
            raise UserError(f"--ema must be between 0 and 1 (a decay such as 0.999), got {self.ema}")

    @property
    def loss_weights(self) -> LossWeights:
        """The objective's weights: ``--contrastive_weight`` weights the InfoNCE, and WCE's KL term
        has ``--kl_weight`` times it, as in the method."""
        return LossWeights(content=self.content_weight, style=self.style_weight, nce=self.contrastive_weight,
                           kl=self.contrastive_weight * self.kl_weight, pixel=self.pixel_weight,
                           identity=self.identity_weight, identity_feature=self.identity_feature_weight,
                           structure=self.structure_weight)

    @property
    def finish(self) -> Finish | None:
        """The guided-filter finish the losses see (``--finish_radius``), None when off."""
        return Finish(self.finish_radius, self.finish_eps) if self.finish_radius else None

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` (checked like a new config)."""
        return dataclasses.replace(self, **changes)

    def as_record(self) -> dict[str, Any]:
        """The fields as plain values, as a training state and ``iter_N.json`` store them."""
        return dataclasses.asdict(self)


def resume_rule(name: str) -> str | None:
    return TrainConfig.__dataclass_fields__[name].metadata["resume"]


def saved_settings(record: Any) -> dict[str, Any]:
    """A saved run's settings (the ``args`` of a training state or ``iter_N.json``) under today's
    field names, with the defaults of fields added since (so an older run compares as it was
    trained); unknown keys are dropped. Anything but a dict is a ``UserError``."""
    if not isinstance(record, dict):
        raise UserError(f"the saved settings are {type(record).__name__}, not a dict of flags")
    renamed = {RENAMED.get(key, key): value for key, value in record.items()}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {name: renamed.get(name, default) for name, default in defaults.items()}


def _same(name: str, saved: Any, now: Any) -> bool:
    if TrainConfig.__dataclass_fields__[name].metadata["path"] and saved and now:
        return Path(str(saved)).resolve() == Path(str(now)).resolve()
    return saved == now


def differences(saved: Any, config: TrainConfig, rules: tuple[str, ...] = (MUST_MATCH, MAY_CHANGE)) -> list[tuple]:
    """The fields under ``rules`` whose saved value differs from ``config``'s, each as
    ``(name, saved value, value now)``."""
    settings = saved_settings(saved)
    return [(f.name, settings[f.name], getattr(config, f.name)) for f in dataclasses.fields(TrainConfig)
            if resume_rule(f.name) in rules and not _same(f.name, settings[f.name], getattr(config, f.name))]


def resume_differences(saved: Any, config: TrainConfig) -> tuple[list[tuple], list[tuple]]:
    """The ``MUST_MATCH`` fields that clash and the ``MAY_CHANGE`` ones that changed."""
    return differences(saved, config, (MUST_MATCH,)), differences(saved, config, (MAY_CHANGE,))
