"""The training loop behind ``train.py``: data, model, optimiser, schedule, logging, saving."""
import argparse
import contextlib
import random
from pathlib import Path

import numpy as np
import torch
from tensorboardX import SummaryWriter
from torch.utils.data import DataLoader
from torchvision.utils import save_image
from tqdm import tqdm

from checkpoint import load_encoder, save_state_dict
from cli import UserError, resolve_device
from data import ImageFolderDataset, training_transform
from net import StyleTransferNet, build_network, parse_mode
from sampler import InfiniteSampler


def learning_rate(base_lr: float, lr_decay: float, iteration: int) -> float:
    """The reference schedule: ``lr / (1 + lr_decay · iteration)``."""
    return base_lr / (1.0 + lr_decay * iteration)


def total_loss(losses: dict[str, torch.Tensor], args: argparse.Namespace) -> torch.Tensor:
    """``content_weight·content + style_weight·style + wce_weight·(nce + kl_weight·kl)``."""
    total = args.content_weight * losses["content"] + args.style_weight * losses["style"]
    if "nce" in losses:
        contrastive = losses["nce"] + args.kl_weight * losses.get("kl", 0.0)
        total = total + args.wce_weight * contrastive
    return total


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``--amp``: ``auto`` is bf16 on GPUs that support it and off elsewhere."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for the convolutions; the statistics and losses cast to fp32 themselves."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def check_args(args: argparse.Namespace) -> None:
    """Refuse flag combinations that cannot train, before any work is done."""
    spec = parse_mode(args.training_mode)
    if args.num_l > len(spec.channels):
        raise UserError(f"--num_l {args.num_l} exceeds the {len(spec.channels)} encoder layers of {spec.name} mode")
    if args.crop_size < spec.min_side:
        raise UserError(f"--crop_size must be at least {spec.min_side} in {spec.name} mode, got {args.crop_size}")
    if args.image_size < args.crop_size:
        raise UserError(f"--image_size ({args.image_size}) must be at least --crop_size ({args.crop_size})")


def make_loader(root: str, args: argparse.Namespace, device: torch.device, seed: int) -> tuple[DataLoader, ImageFolderDataset]:
    """An endless loader of random crops from ``root``; stops early if nothing there is readable."""
    dataset = ImageFolderDataset(root, training_transform(args.image_size, args.crop_size),
                                 draft_size=args.image_size)
    dataset.check_readable()
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=InfiniteSampler(len(dataset), seed),
                        num_workers=args.n_threads, pin_memory=device.type == "cuda",
                        persistent_workers=args.n_threads > 0, drop_last=True,
                        worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(seed))
    return loader, dataset


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2 ** 32
    random.seed(seed)
    np.random.seed(seed)


def build_training_network(args: argparse.Namespace, device: torch.device) -> StyleTransferNet:
    """The network for ``args``, encoder weights loaded, on ``device``."""
    network = build_network(args.training_mode, args.transform, args.contrastive, args.num_s, args.num_l, args.tau)
    encoder = load_encoder(args.vgg, args.training_mode)
    for stage, bounds in zip(network.stages, _stage_bounds(network)):
        stage.load_state_dict({k: v for k, v in encoder.state_dict().items()
                               if bounds[0] <= int(k.split(".")[0]) < bounds[1]})
    network = network.to(device)
    if args.channels_last:
        network = network.to(memory_format=torch.channels_last)
    return network


def _stage_bounds(network: StyleTransferNet) -> list[tuple[int, int]]:
    ends = network.spec.stage_ends
    return list(zip((0,) + ends[:-1], ends))


def trainable_parameters(network: StyleTransferNet) -> list[torch.nn.Parameter]:
    """Decoder, transform and projection heads; never the encoder."""
    return [p for p in network.parameters() if p.requires_grad]


def save_checkpoints(network: StyleTransferNet, save_dir: Path, transform: str, iteration: int) -> None:
    """The reference-format weights: ``decoder_iter_N.pth.tar`` and ``<transform>_iter_N.pth.tar``."""
    save_state_dict(network.decoder, save_dir / f"decoder_iter_{iteration}.pth.tar")
    save_state_dict(network.transform, save_dir / f"{transform}_iter_{iteration}.pth.tar")


def save_grid(content: torch.Tensor, style: torch.Tensor, result: torch.Tensor, path: Path) -> None:
    """Rows of content, style and result images for a quick look at progress."""
    rows = torch.cat([content, style, result.float().clamp(0, 1)]).cpu()
    save_image(rows, path, nrow=content.shape[0])


def train(args: argparse.Namespace) -> None:
    """Train for ``args.max_iter`` iterations, saving every ``args.save_model_interval``."""
    check_args(args)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    amp_dtype = autocast_dtype(args.amp, device)

    content_loader, content_set = make_loader(args.content_dir, args, device, args.seed)
    style_loader, style_set = make_loader(args.style_dir, args, device, args.seed + 1)
    network = build_training_network(args, device)
    network.train()
    step_fn = torch.compile(network) if args.compile else network
    optimizer = torch.optim.Adam(trainable_parameters(network), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    save_dir, log_dir = Path(args.save_dir), Path(args.log_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(log_dir))
    content_iter, style_iter = iter(content_loader), iter(style_loader)
    progress = tqdm(range(args.max_iter), desc="train", dynamic_ncols=True)
    try:
        for i in progress:
            lr = learning_rate(args.lr, args.lr_decay, i)
            for group in optimizer.param_groups:
                group["lr"] = lr
            content = next(content_iter).to(device, non_blocking=True)
            style = next(style_iter).to(device, non_blocking=True)
            if args.channels_last:
                content = content.contiguous(memory_format=torch.channels_last)
                style = style.contiguous(memory_format=torch.channels_last)

            with autocast(device, amp_dtype):
                losses, result = step_fn(content, style)
            loss = total_loss(losses, args)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

            iteration = i + 1
            names = [*losses, "total"]
            numbers = torch.stack([v.detach().float() for v in (*losses.values(), loss)]).tolist()
            values = dict(zip(names, numbers))
            for name, value in values.items():
                writer.add_scalar(f"loss/{name}", value, iteration)
            writer.add_scalar("lr", lr, iteration)
            progress.set_postfix({k: f"{v:.3g}" for k, v in values.items()})
            if iteration % args.save_model_interval == 0 or iteration == args.max_iter:
                save_checkpoints(network, save_dir, args.transform, iteration)
                save_grid(content, style, result, save_dir / f"grid_iter_{iteration}.png")
    finally:
        writer.close()
        progress.close()
    skipped = content_set.skipped + style_set.skipped
    if skipped:
        print(f"skipped {skipped} unreadable image(s) during training")
