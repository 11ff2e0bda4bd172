"""Train the decoder, the transform (LCT or SCT) and the projection heads.

Example: python train.py --content_dir=datasets/COCO2017 --style_dir=datasets/WikiArt
Several GPUs: torchrun --standalone --nproc_per_node=4 train.py --content_dir=... --style_dir=...
Continue a stopped run: add --resume auto (the newest training state in --save_dir).
"""
import argparse
import sys

from cli import mode_name, non_negative_float, non_negative_int, positive_float, positive_int, run_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data and model")
    data.add_argument("--content_dir", required=True, help="folder of content images (searched recursively)")
    data.add_argument("--style_dir", required=True, help="folder of style images (searched recursively)")
    data.add_argument("--vgg", default="models/vgg_normalised.pth", help="normalised VGG-19 encoder weights")
    data.add_argument("--training_mode", type=mode_name, default="photo", help="photo (relu3_1) or art (relu4_1)")
    data.add_argument("--transform", choices=("lct", "sct"), default="lct", help="feature transform")
    data.add_argument("--contrastive", choices=("wce", "ccpl", "none"), default="wce", help="contrastive loss")
    data.add_argument("--image_size", type=positive_int, default=512, help="images are resized to this square")
    data.add_argument("--crop_size", type=positive_int, default=256, help="random crop taken after resizing")

    out = parser.add_argument_group("output")
    out.add_argument("--save_dir", default="experiments", help="where checkpoints and grids go")
    out.add_argument("--log_dir", default="logs", help="TensorBoard log folder")
    out.add_argument("--save_model_interval", type=positive_int, default=1000,
                     help="iterations between saves of the weights, a grid and a training state")
    out.add_argument("--keep_last", type=non_negative_int, default=3,
                     help="training states to keep (0: all); decoder/transform weights are never deleted")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--lr", type=positive_float, default=1e-4)
    opt.add_argument("--lr_decay", type=non_negative_float, default=5e-5)
    opt.add_argument("--max_iter", type=positive_int, default=160000)
    opt.add_argument("--batch_size", type=positive_int, default=8, help="images per GPU (per process)")
    opt.add_argument("--content_weight", type=non_negative_float, default=1.0)
    opt.add_argument("--style_weight", type=non_negative_float, default=10.0)
    opt.add_argument("--wce_weight", type=non_negative_float, default=5.0, help="weight of the contrastive loss")
    opt.add_argument("--kl_weight", type=non_negative_float, default=1.0, help="weight of WCE's KL term within it")
    opt.add_argument("--tau", type=positive_float, default=0.07, help="InfoNCE temperature")
    opt.add_argument("--num_s", type=positive_int, default=8, help="anchors per layer")
    opt.add_argument("--num_l", type=positive_int, default=3, help="contrastive layers (the last ones)")

    run = parser.add_argument_group("running")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1… (default: cuda when present)")
    run.add_argument("--n_threads", type=non_negative_int, default=8, help="data loader workers")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="off",
                     help="mixed precision: off is fp32 like the reference code; bf16/fp16 are the fast "
                          "GPU path (see README, Performance); auto: bf16 on capable GPUs, off on CPU")
    run.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=False,
                     help="channels-last memory layout")
    run.add_argument("--compile", action="store_true", help="torch.compile the network")
    run.add_argument("--resume", metavar="PATH|auto", default=None,
                     help="continue from a training state; auto: the newest in --save_dir (none: start fresh)")
    run.add_argument("--max_nonfinite", type=positive_int, default=10,
                     help="stop, saving a training state, after this many non-finite losses in a row")
    return parser.parse_args(argv)


def main() -> None:
    from training import train
    sys.exit(train(parse_args()))


if __name__ == "__main__":
    run_main(main)
