"""Speed benchmark: prints Markdown tables of the training step and its parts (WCE / CCPL /
none), WCE's share of a step against a per-anchor reference, the loader's images per second,
and inference time and peak memory per image size and precision.

GPU (defaults: batch 8, 256 crops, 512-4096 px, fp32/bf16/fp16):
    python scripts/benchmark.py
CPU (defaults: batch 2, 128 crops, 256 and 512 px, fp32/bf16, WCE share at batch 8, 256 crops):
    python scripts/benchmark.py --device cpu
A missing --vgg file means random encoder weights: the figures are about speed, not quality.
The measurements themselves are in glfa/benchmark.py.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

import glfa.benchmark as bench
from glfa.checkpoint import load_encoder
from glfa.cli import add_device_flag, add_mode_flag, add_vgg_flag, command_parser, run_main
from glfa.device import resolve_device
from glfa.errors import UserError
from glfa.flagtypes import choice_list, non_negative_int, positive_int, positive_int_list, tile_side
from glfa.inference import Stylizer
from glfa.paths import REPO_ROOT, default_vgg
from glfa.tables import markdown_table
from net import build_decoder, build_encoder, build_network, build_transform, parse_mode

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SECTIONS = ("train", "share", "sync", "loader", "inference")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
LAYOUTS = {True: "channels-last", False: "NCHW", None: "training NCHW, inference channels-last on the CPU"}
GPU_DEFAULTS = dict(batch_size=8, crop_size=256, sizes=[512, 1024, 2048, 4096], style_size=512, warmup=5, repeats=20,
                    train_precisions=["fp32", "bf16"], infer_precisions=["fp32", "bf16", "fp16"], loader_batches=40,
                    sync_steps=50)
CPU_DEFAULTS = dict(batch_size=2, crop_size=128, sizes=[256, 512], style_size=256, warmup=1, repeats=3,
                    train_precisions=["fp32"], infer_precisions=["fp32", "bf16"], loader_batches=10,
                    sync_steps=3)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    add_device_flag(parser)
    add_vgg_flag(parser)
    add_mode_flag(parser, "--mode")
    parser.add_argument("--transform", choices=("lct", "sct"), default="lct", help="the transform to time")
    parser.add_argument("--contrastive", type=choice_list("wce", "ccpl", "none"), default="wce,ccpl,none",
                        help="losses to time, comma-separated")
    parser.add_argument("--batch_size", type=positive_int, help="training batch (GPU 8, CPU 2)")
    parser.add_argument("--crop_size", "--crop", dest="crop_size", type=positive_int,
                        help="training crop in pixels (GPU 256, CPU 128)")
    parser.add_argument("--train_precisions", type=choice_list(*PRECISIONS), help="GPU fp32,bf16; CPU fp32")
    parser.add_argument("--infer_precisions", type=choice_list(*PRECISIONS), help="GPU fp32,bf16,fp16; CPU fp32,bf16")
    parser.add_argument("--sizes", type=positive_int_list, help="inference sizes (GPU 512,1024,2048,4096; CPU 256,512)")
    parser.add_argument("--style_size", type=positive_int, help="inference style size (GPU 512, CPU 256)")
    parser.add_argument("--tile_size", type=tile_side, default=0, help="inference tiles, at least 64 px (0: automatic)")
    parser.add_argument("--warmup", type=non_negative_int, help="untimed calls first (GPU 5, CPU 1)")
    parser.add_argument("--repeats", type=positive_int, help="timed calls, median reported (GPU 20, CPU 3)")
    parser.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels-last layout everywhere, or NCHW everywhere with --no-channels_last (default: "
                             "each command's own, NCHW for training and channels-last for CPU inference)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training network, the "
                                                               "Sinkhorn loop and the inference modules")
    parser.add_argument("--compile_mode", choices=COMPILE_MODES, default="default",
                        help="torch.compile mode of the training network with --compile "
                             "(reduce-overhead: CUDA graphs)")
    parser.add_argument("--sync_steps", type=positive_int, help="back-to-back training steps timed with and "
                                                                "without the per-step non-finite check (GPU 50, CPU 3)")
    parser.add_argument("--profile", type=non_negative_int, default=0,
                        help="also print the top N kernels of each training step and of the largest inference "
                             "size per precision (torch.profiler; 0: off)")
    parser.add_argument("--share_batch", type=non_negative_int, default=8,
                        help="batch for WCE's share of a step (0 skips that table)")
    parser.add_argument("--share_crop", type=positive_int, default=256, help="crop for WCE's share of a step")
    parser.add_argument("--loader_dir", default=str(REPO_ROOT.parent / "shared" / "data" / "bsds500" / "train"),
                        help="image folder for the loader (skipped when missing)")
    parser.add_argument("--loader_workers", type=non_negative_int, help="loader workers (default: up to 8 cores)")
    parser.add_argument("--loader_batches", type=positive_int, help="batches timed (GPU 40, CPU 10)")
    parser.add_argument("--large_photos", type=non_negative_int, default=16,
                        help="synthetic 2048×1536 JPEGs for the draft-decoding loader rows (0 skips)")
    parser.add_argument("--threads", type=non_negative_int, default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--skip", type=choice_list(*SECTIONS), default="",
                        help=f"sections to skip, comma-separated: {','.join(SECTIONS)}")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.vgg = str(args.vgg or default_vgg(args.mode))
    return args


def fill_defaults(args: argparse.Namespace, device: torch.device) -> None:
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.loader_workers is None:
        args.loader_workers = min(8, len(os.sched_getaffinity(0)))
    if device.type != "cuda" and "fp16" in args.infer_precisions + args.train_precisions:
        raise UserError("fp16 is for GPUs; on the CPU use fp32 and bf16")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:.0f}"


def mib(size: float | None) -> str:
    return "n/a" if size is None else f"{size / 2 ** 20:.0f}"


class Bench:
    """The benchmark's settings and the modules it times."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        self.args, self.device = args, device
        self.spec = parse_mode(args.mode)
        self.vgg_loaded = Path(args.vgg).is_file()
        self.encoder = load_encoder(args.vgg, self.spec) if self.vgg_loaded else None
        self.memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
        self.compile_mode = args.compile_mode if args.compile else None

    def timer(self, fn) -> float:
        return bench.time_call(fn, self.args.warmup, self.args.repeats)

    def network(self, contrastive: str) -> torch.nn.Module:
        torch.manual_seed(0)
        network = build_network(self.spec.name, self.args.transform, contrastive)
        if self.encoder is None:
            bench.random_modules(network.stages)
        else:
            state = self.encoder.state_dict()
            for stage in network.stages:
                stage.load_state_dict({k: state[k] for k in stage.state_dict()})
        return network.to(self.device, memory_format=self.memory_format).train()

    def images(self, batch: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        content, style = (torch.rand(batch, 3, crop, crop, generator=generator) for _ in range(2))
        return (content.to(self.device, memory_format=self.memory_format),
                style.to(self.device, memory_format=self.memory_format))

    def training_table(self) -> str:
        args = self.args
        content, style = self.images(args.batch_size, args.crop_size)
        parts = ["encoder", "transform", "decoder", "content", "style", "nce", "kl", "optimizer"]
        rows = []
        for contrastive in args.contrastive:
            for precision in args.train_precisions:
                network = self.network(contrastive)
                amp = PRECISIONS[precision]
                step = bench.training_step_time(network, content, style, amp, self.timer, self.compile_mode)
                times = bench.training_parts(network, content, style, amp, self.timer)
                times["optimizer"] = bench.optimizer_time(network, self.timer)
                total = sum(times.get(p, 0.0) for p in parts)
                rows.append([contrastive, precision, ms(step)] + [ms(times[p]) if p in times else "–" for p in parts]
                            + [ms(total)])
                print(f"  timed training: {contrastive} {precision}", file=sys.stderr)
                if args.profile:
                    self.profile(f"training step, {contrastive}, {precision}",
                                 bench.training_step_call(network, content, style, amp, self.compile_mode))
        header = ["loss", "precision", "step", *parts, "sum of parts"]
        return (f"### Training step, ms (batch {args.batch_size}, {args.crop_size}×{args.crop_size}, {args.mode}, "
                f"{args.transform.upper()}; each part forward + backward, timed alone)\n\n"
                + markdown_table(header, rows))

    def share_table(self) -> str:
        args = self.args
        precision = args.train_precisions[0]
        amp = PRECISIONS[precision]
        content, style = self.images(args.share_batch, args.share_crop)
        network = self.network("wce")
        difference = bench.reference_agreement(network, content, style)
        step = bench.training_step_time(network, content, style, amp, self.timer, self.compile_mode)
        fast = bench.wce_fwd_bwd_time(network, content, style, amp, self.timer, reference=False)
        slow = bench.wce_fwd_bwd_time(network, content, style, amp, self.timer, reference=True)
        slow_step = step - fast + slow
        rows = [["gathers on all anchors (net.WCE)", ms(fast), ms(step), f"{100 * fast / step:.1f}%"],
                ["per-anchor slicing (reference, benchmark only)", ms(slow), ms(slow_step),
                 f"{100 * slow / slow_step:.1f}%"]]
        return (f"### WCE forward + backward as a share of a training step, ms (batch {args.share_batch}, "
                f"{args.share_crop}×{args.share_crop}, {precision}; the reference's step is the measured step "
                f"with its WCE swapped in; both give the same loss, largest difference {difference:.1e})\n\n"
                + markdown_table(["WCE implementation", "WCE fwd+bwd", "step", "share"], rows))

    def sync_table(self) -> str:
        args = self.args
        content, style = self.images(args.batch_size, args.crop_size)
        rows = []
        for precision in args.train_precisions:
            amp = PRECISIONS[precision]
            free, checked = (bench.step_loop_seconds(self.network("wce"), content, style, amp, args.sync_steps,
                                                     check, self.compile_mode) for check in (False, True))
            rows.append([precision, ms(free), ms(checked), ms(checked - free)])
            print(f"  timed the non-finite check: {precision}", file=sys.stderr)
        return (f"### The per-step non-finite check, ms per step over {args.sync_steps} back-to-back steps "
                f"(batch {args.batch_size}, {args.crop_size}×{args.crop_size}, WCE; the check reads the losses "
                "back to the host every step)\n\n"
                + markdown_table(["precision", "no check", "check every step", "cost of the check"], rows))

    def profile(self, title: str, fn) -> None:
        """Print a top-kernels table of ``fn``."""
        table = bench.top_kernels(fn, self.device, self.args.profile)
        print(f"### Top kernels: {title} (per call, torch.profiler)\n\n"
              + markdown_table(["kernel", "ms", "share", "launches"], table) + "\n", flush=True)

    def loader_table(self) -> str:
        args = self.args
        pin = self.device.type == "cuda"
        rows = []
        common = dict(batch_size=args.batch_size, workers=args.loader_workers, batches=args.loader_batches,
                      pin_memory=pin)
        if Path(args.loader_dir).is_dir():
            rate = bench.loader_images_per_second(args.loader_dir, 512, args.crop_size, draft=True, **common)
            rows.append([f"{Path(args.loader_dir).name} ({Path(args.loader_dir).parent.name})", "yes",
                         f"{rate:.0f}"])
        if args.large_photos:
            with tempfile.TemporaryDirectory(prefix="benchmark_") as folder:
                bench.synthetic_photos(Path(folder), args.large_photos, 2048, 1536)
                for draft in (True, False):
                    rate = bench.loader_images_per_second(folder, 512, args.crop_size, draft=draft, **common)
                    rows.append(["synthetic 2048×1536 JPEGs", "yes" if draft else "no", f"{rate:.0f}"])
        return (f"### Loader alone, images/s (resize to 512×512, random {args.crop_size} crop, "
                f"batch {args.batch_size}, {args.loader_workers} workers, pinned memory {'on' if pin else 'off'})\n\n"
                + markdown_table(["images", "draft decoding", "images/s"], rows))

    def inference_table(self) -> str:
        args = self.args
        torch.manual_seed(0)
        encoder = self.encoder if self.encoder is not None else bench.random_modules(build_encoder(self.spec))
        decoder = bench.random_modules(build_decoder(self.spec))
        transform = build_transform(args.transform, self.spec)
        rows = []
        for precision in args.infer_precisions:
            stylizer = Stylizer(encoder, decoder, transform, self.spec, device=self.device,
                                amp_dtype=PRECISIONS[precision], tile_size=args.tile_size,
                                channels_last=args.channels_last, compile=args.compile)
            for size in args.sizes:
                seconds, peak = bench.inference_cost(stylizer, size, args.style_size, args.warmup, args.repeats)
                tile = stylizer._tile_for(size, size, stylizer.run.tile_size)
                rows.append([f"{size}×{size}", precision, f"{tile} px" if tile else "whole", ms(seconds), mib(peak)])
                print(f"  timed inference: {size} {precision}", file=sys.stderr)
            if args.profile:
                size = max(args.sizes)
                self.profile(f"inference {size}×{size}, {precision}{', compiled' if args.compile else ''}",
                             bench.inference_call(stylizer, size, args.style_size))
        memory = "allocator peak" if self.device.type == "cuda" else "growth of resident memory"
        return (f"### Inference, one content image with a {args.style_size}×{args.style_size} style "
                f"({args.mode}, {args.transform.upper()}; peak memory = {memory})\n\n"
                + markdown_table(["content", "precision", "tiles", "time (ms)", "peak memory (MiB)"], rows))


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    fill_defaults(args, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench.prepare_device(device)
    runner = Bench(args, device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"CPU, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at start")
    print(f"## Benchmark: {name}, PyTorch {torch.__version__}, encoder "
          f"{'from ' + args.vgg if runner.vgg_loaded else 'with random weights'}, "
          f"{LAYOUTS[args.channels_last]}"
          f"{f', compiled ({runner.compile_mode})' if runner.compile_mode else ''}; "
          f"median of {args.repeats} after {args.warmup} warm-up\n")
    sections = [("train", runner.training_table), ("share", runner.share_table), ("sync", runner.sync_table),
                ("loader", runner.loader_table), ("inference", runner.inference_table)]
    for name, section in sections:
        if name in args.skip or (name == "share" and not args.share_batch):
            continue
        print(section() + "\n", flush=True)


if __name__ == "__main__":
    run_main(main)
