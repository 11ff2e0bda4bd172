"""Train the decoder, the transform (LCT or SCT) and the projection heads.

Example: python train.py --content_dir=datasets/COCO2017 --style_dir=datasets/photos
Several GPUs: torchrun --standalone --nproc_per_node=4 train.py --content_dir=... --style_dir=...
Continue a stopped run: add --resume auto (the training state written last in --save_dir).
"""
import argparse
import sys

from glfa.cli import (add_amp_flag, add_device_flag, add_mode_flag, add_vgg_flag, command_parser,
                      non_negative_float, non_negative_int, positive_float, positive_int, run_main)
from glfa.paths import REPO_ROOT, default_vgg
from glfa.train import LR_SCHEDULES
from net import OBJECTIVES, PIXEL_WEIGHT


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    data = parser.add_argument_group("data and model")
    data.add_argument("--content_dir", required=True, help="folder of content images (searched recursively)")
    data.add_argument("--style_dir", help="folder of style images (searched recursively; not read by "
                                          "--objective reconstruction)")
    add_vgg_flag(data)
    add_mode_flag(data, "--training_mode")
    data.add_argument("--transform", choices=("lct", "sct"), default="lct", help="feature transform to train")
    data.add_argument("--contrastive", choices=("wce", "ccpl", "none"), default="wce", help="contrastive loss")
    data.add_argument("--objective", choices=OBJECTIVES, default="transfer",
                      help="transfer: the method's losses; reconstruction: the decoder alone learns to invert the "
                           "encoder (pixel + feature loss, no transform), the warm start of a transfer run")
    data.add_argument("--init_decoder", metavar="PATH",
                      help="start from this decoder (decoder_iter_N.pth.tar) with a fresh optimiser")
    data.add_argument("--init_transform", metavar="PATH",
                      help="start from this transform (lct_iter_N.pth.tar) with a fresh optimiser")
    data.add_argument("--image_size", type=positive_int, default=512, help="images are resized to this square")
    data.add_argument("--crop_size", type=positive_int, default=256, help="random crop taken after resizing")

    out = parser.add_argument_group("output")
    out.add_argument("--save_dir", default=str(REPO_ROOT / "experiments"), help="where checkpoints and grids go")
    out.add_argument("--log_dir", default=str(REPO_ROOT / "logs"), help="TensorBoard log folder")
    out.add_argument("--save_model_interval", type=positive_int, default=1000,
                     help="iterations between saves of the weights, a grid and a training state")
    out.add_argument("--keep_last", type=non_negative_int, default=3,
                     help="training states to keep (0: all); decoder/transform weights are never deleted")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--lr", type=positive_float, default=1e-4,
                     help="Adam learning rate at iteration 0, used as given on any number of GPUs")
    opt.add_argument("--lr_decay", type=non_negative_float, default=5e-5,
                     help="the learning rate at iteration i is lr / (1 + lr_decay · i)")
    opt.add_argument("--lr_schedule", choices=LR_SCHEDULES, default="reference",
                     help="reference: lr / (1 + lr_decay · i); cosine, linear: from --lr down to --min_lr at --max_iter")
    opt.add_argument("--min_lr", type=non_negative_float, default=0.0,
                     help="the learning rate cosine and linear schedules end on")
    opt.add_argument("--warmup_iters", type=non_negative_int, default=0,
                     help="ramp the learning rate up linearly over this many first iterations")
    opt.add_argument("--ema", type=non_negative_float, default=0.0,
                     help="also keep an exponential moving average of the weights with this decay (e.g. 0.999), "
                          "saved in ema/ beside the raw weights (0: off)")
    opt.add_argument("--max_iter", type=positive_int, default=160000, help="iterations to train")
    opt.add_argument("--batch_size", type=positive_int, default=8, help="images per GPU (per process)")
    opt.add_argument("--content_weight", type=non_negative_float, default=1.0, help="weight of the content loss")
    opt.add_argument("--style_weight", type=non_negative_float, default=10.0, help="weight of the style loss")
    opt.add_argument("--wce_weight", type=non_negative_float, default=5.0, help="weight of the contrastive loss")
    opt.add_argument("--kl_weight", type=non_negative_float, default=1.0, help="weight of WCE's KL term within it")
    opt.add_argument("--pixel_weight", type=non_negative_float, default=PIXEL_WEIGHT,
                     help="--objective reconstruction: weight of the pixel loss (the feature loss has "
                          "--content_weight)")
    opt.add_argument("--tau", type=positive_float, default=0.07, help="InfoNCE temperature")
    opt.add_argument("--num_s", type=positive_int, default=8, help="anchors per layer")
    opt.add_argument("--num_l", type=positive_int, default=3, help="contrastive layers (the last ones)")

    run = parser.add_argument_group("running")
    add_device_flag(run)
    run.add_argument("--n_threads", type=non_negative_int, default=8, help="data loader workers")
    run.add_argument("--seed", type=int, default=0, help="seed of every random choice (data order, crops, anchors)")
    add_amp_flag(run)
    run.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=False,
                     help="channels-last memory layout")
    run.add_argument("--compile", action="store_true", help="torch.compile the network")
    run.add_argument("--resume", metavar="PATH|auto",
                     help="continue from a training state; auto: the one written last in --save_dir (none: start "
                          "fresh)")
    run.add_argument("--max_nonfinite", type=positive_int, default=10,
                     help="stop, saving a training state, after this many non-finite losses in a row")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.objective == "transfer" and not args.style_dir:
        parser.error("--style_dir is required (only --objective reconstruction trains without styles)")
    args.vgg = str(args.vgg or default_vgg(args.training_mode))
    return args


def main() -> None:
    from glfa.train import train
    sys.exit(train(parse_args()))


if __name__ == "__main__":
    run_main(main)
