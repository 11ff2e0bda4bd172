"""Train the decoder, the transform (LCT or SCT) and the projection heads.

Example: python train.py --content_dir=datasets/COCO2017 --style_dir=datasets/photos
Several GPUs: torchrun --standalone --nproc_per_node=4 train.py --content_dir=... --style_dir=...
Continue a stopped run: add --resume auto (the training state written last in --save_dir).
Warm start: train.py --objective reconstruction ..., then --init_decoder DECODER for the full losses.
"""
import argparse
import sys

from glfa.cli import run_main, training_config, training_parser
from glfa.config import TrainConfig
from glfa.train import train


def build_parser() -> argparse.ArgumentParser:
    return training_parser(__doc__)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    return training_config(argv, build_parser())


def main(argv: list[str] | None = None) -> None:
    sys.exit(train(parse_args(argv)))


if __name__ == "__main__":
    run_main(main)
