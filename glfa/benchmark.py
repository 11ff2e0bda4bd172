"""Measurements behind ``scripts/benchmark.py``: timing, peak memory, the training step and
its parts, the WCE loss against a per-anchor reference, the data loader, and inference.

Timings come from ``torch.utils.benchmark.Timer`` (it synchronises the GPU around each call and
keeps PyTorch's thread count): the median over repeats after warm-up. Peak memory is the
allocator's peak on a GPU and the growth of the process's resident memory on the CPU (sampled).
"""
import ctypes
import gc
import math
import multiprocessing
import os
import random
import resource
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader

from glfa.data import ImageFolderDataset, training_transform
from glfa.device import autocast, configure_backends
from glfa.distributed import Process, global_values
from glfa.inference import Stylizer
from glfa.model import forward_backward
from net import (CCPL, NEIGHBOUR_OFFSETS, WCE, LossWeights, StyleTransferNet, info_nce, neighbourhood_kl,
                 projected_differences, sample_anchors, stacked_weighted_nce, style_loss)
from sampler import InfiniteSampler

LOSS_WEIGHTS = LossWeights()


# --------------------------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------------------------

def time_call(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median seconds of one ``fn()`` call over ``repeats`` timed calls, after ``warmup`` calls.
    Each timed call is one ``Timer.timeit(1)``, which runs two untimed calls of its own first."""
    # Imported here, not at the top: importing it logs a CUDA_HOME warning on machines without
    # a CUDA runtime, which would precede the one-line error of a bad flag.
    from torch.utils.benchmark import Measurement, Timer

    for _ in range(warmup):
        fn()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return Measurement.merge([timer.timeit(1) for _ in range(repeats)])[0].median


def _release_free_heap() -> None:
    """Hand freed heap memory back to the OS (glibc), so resident-memory growth shows a call's own peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn: Callable[[], object], device: torch.device) -> float | None:
    """Bytes of memory ``fn()`` needs at its peak beyond what was held before (None if unknown)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not Path("/proc/self/statm").exists():
        return None
    gc.collect()
    _release_free_heap()
    before, peak, done = _resident_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _resident_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _resident_bytes()) - before


# --------------------------------------------------------------------------------------------
# The WCE loss as the reference code computes it, for comparison only
# --------------------------------------------------------------------------------------------

def reference_wce(feats_result: list[Tensor], feats_content: list[Tensor], loss: WCE,
                  anchors: list[Tensor] | None = None) -> dict[str, Tensor]:
    """WCE the way the reference implementation runs it: anchors drawn in a Python loop, the
    feature maps sliced once per anchor (each slice's backward allocates a gradient the size
    of the whole map), and the Sinkhorn iterations run image by image as small elementwise
    kernels. Same maths as ``net.WCE`` (checked by the benchmark)."""
    first = len(feats_result) - loss.num_l
    nce_total, kl_total = 0.0, 0.0
    for layer in range(first, len(feats_result)):
        result, content = feats_result[layer], feats_content[layer]
        height, width = result.shape[2:]
        if anchors is not None:
            picks = anchors[layer - first].tolist()
        else:
            flat = random.sample(range((height - 2) * (width - 2)), loss.num_s)
            picks = [(f // (width - 2) + 1, f % (width - 2) + 1) for f in flat]
        blocks = {}
        for name, feat in (("result", result), ("content", content)):
            patches = [feat[:, :, row - 1:row + 2, col - 1:col + 2] for row, col in picks]
            # (N, 9, num_s, C): the anchor first, then its neighbours in NEIGHBOUR_OFFSETS order
            order = [(0, 0), *NEIGHBOUR_OFFSETS]
            blocks[name] = torch.stack([torch.stack([p[:, :, 1 + dy, 1 + dx] for p in patches], 1)
                                        for dy, dx in order], 1)
        head = loss.heads[layer]
        query = projected_differences(blocks["result"], head)
        key = projected_differences(blocks["content"], head).detach()
        weights = torch.stack([_reference_sinkhorn(q, k, loss.ot_eps, loss.ot_iters)
                               for q, k in zip(query, key)])
        nce_total = nce_total + info_nce(query, key, loss.tau, log_weights=weights.clamp_min(1e-30).log())
        kl_total = kl_total + neighbourhood_kl(blocks["result"], blocks["content"])
    return {"nce": nce_total, "kl": kl_total}


def _reference_sinkhorn(query: Tensor, key: Tensor, eps: float, iters: int) -> Tensor:
    size = query.shape[0]
    kernel = torch.exp(query.float() @ key.float().T / eps) * (1 - torch.eye(size, device=query.device))
    col_scale = torch.ones(1, size, device=query.device)
    for _ in range(iters):
        row_scale = 1 / (kernel * col_scale).sum(1, keepdim=True)
        col_scale = 1 / (kernel * row_scale).sum(0, keepdim=True)
    plan = kernel * col_scale
    return plan / plan.sum(1, keepdim=True) * (size - 1)


# --------------------------------------------------------------------------------------------
# Training step and its parts
# --------------------------------------------------------------------------------------------

def _leaves(tensors: list[Tensor]) -> list[Tensor]:
    return [t.detach().requires_grad_() for t in tensors]


def _backward(outputs: list[Tensor]) -> None:
    torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])


def training_parts(network: StyleTransferNet, content: Tensor, style: Tensor, amp_dtype: torch.dtype | None,
                   timer: Callable[[Callable[[], object]], float]) -> dict[str, float]:
    """Seconds of each part of a training step, forward and backward, timed on its own with
    the inputs it meets in a real step: ``encoder`` (content and style without gradients, the
    result with), ``transform``, ``decoder``, ``content``, ``style``, ``nce``, ``kl``, and
    ``contrastive`` (the whole loss module, NCE and KL together)."""
    device = content.device
    with torch.no_grad(), autocast(device, amp_dtype):
        content_feats = network.encode_with_intermediate(content)
        style_feats = network.encode_with_intermediate(style)
        transformed = network.transform(content_feats[-1], style_feats[-1])
        result = network.decoder(transformed)
        result_feats = network.encode_with_intermediate(result)

    def encoder() -> None:
        with torch.no_grad(), autocast(device, amp_dtype):
            network.encode_with_intermediate(content)
            network.encode_with_intermediate(style)
        image = result.detach().requires_grad_()
        with autocast(device, amp_dtype):
            feats = network.encode_with_intermediate(image)
        _backward(feats)

    def transform() -> None:
        with autocast(device, amp_dtype):
            out = network.transform(content_feats[-1], style_feats[-1])
        _backward([out])

    def decoder() -> None:
        with autocast(device, amp_dtype):
            out = network.decoder(transformed.detach().requires_grad_())
        _backward([out])

    def content_loss() -> None:
        with autocast(device, amp_dtype):
            F.mse_loss(_leaves(result_feats[-1:])[0].float(), content_feats[-1].float()).backward()

    def style_part() -> None:
        with autocast(device, amp_dtype):
            sum(style_loss(r, s) for r, s in zip(_leaves(result_feats), style_feats)).backward()

    parts = {"encoder": encoder, "transform": transform, "decoder": decoder,
             "content": content_loss, "style": style_part}
    if network.contrastive is not None:
        parts.update(contrastive_parts(network.contrastive, result_feats, content_feats, amp_dtype))
    return {name: timer(fn) for name, fn in parts.items()}


def contrastive_parts(loss: CCPL, result_feats: list[Tensor], content_feats: list[Tensor],
                      amp_dtype: torch.dtype | None) -> dict[str, Callable[[], None]]:
    """The contrastive loss's parts of a step, forward and backward: ``nce``, ``kl`` (WCE) and
    ``contrastive`` (the whole module)."""
    device = content_feats[-1].device

    def term(name: str) -> Callable[[], None]:
        def run() -> None:
            with autocast(device, amp_dtype):
                _contrastive_term(loss, _leaves(result_feats), content_feats, name).backward()
        return run

    def whole() -> None:
        with autocast(device, amp_dtype):
            losses = loss(_leaves(result_feats), content_feats)
        sum(losses.values()).backward()

    return {"nce": term("nce"), **({"kl": term("kl")} if isinstance(loss, WCE) else {}), "contrastive": whole}


def _contrastive_term(loss: CCPL, feats_result: list[Tensor], feats_content: list[Tensor], term: str) -> Tensor:
    """The loss module's NCE or KL term alone (the module computes both together), over the
    same anchors' blocks and the same code paths as its forward."""
    layers = loss.layer_blocks(feats_result, feats_content)
    if term == "kl":
        return sum(neighbourhood_kl(blocks_result, blocks_content) for blocks_result, blocks_content, _ in layers)
    if isinstance(loss, WCE):
        return stacked_weighted_nce(loss, layers)
    return sum(loss.layer_loss(*layer)["nce"] for layer in layers)


def training_step_time(network: StyleTransferNet, content: Tensor, style: Tensor, amp_dtype: torch.dtype | None,
                       timer: Callable[[Callable[[], object]], float], compile_mode: str | None = None) -> float:
    """Seconds of one full training step as ``glfa/train.py`` runs it: forward, losses,
    backward and the Adam step; ``compile_mode`` (a ``torch.compile`` mode) compiles the network."""
    return timer(training_step_call(network, content, style, amp_dtype, compile_mode))


def training_step_call(network: StyleTransferNet, content: Tensor, style: Tensor, amp_dtype: torch.dtype | None,
                       compile_mode: str | None = None, check: bool = False) -> Callable[[], None]:
    """One full training step (forward, losses, backward, Adam) with its own optimiser. With
    ``check``, the loss terms are read back to the host and tested before the optimiser step,
    as ``glfa/train.py`` does every step."""
    optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler(content.device.type, enabled=amp_dtype == torch.float16)
    model = compiled(network, compile_mode)
    process = Process(0, 1, content.device)

    def step() -> None:
        losses, _ = forward_backward(model, optimizer, scaler, content, style, LOSS_WEIGHTS, amp_dtype)
        if not check or all(math.isfinite(v) for v in global_values(losses, False, process)[0].values()):
            scaler.step(optimizer)
            scaler.update()

    return step


def compiled(network: nn.Module, mode: str | None) -> nn.Module:
    """``network`` under ``torch.compile`` in ``mode`` ("default", "reduce-overhead" for CUDA
    graphs, ...), or as it is for None."""
    return network if mode is None else torch.compile(network, mode=mode)


def step_loop_seconds(network: StyleTransferNet, content: Tensor, style: Tensor, amp_dtype: torch.dtype | None,
                      steps: int, check: bool, compile_mode: str | None = None) -> float:
    """Seconds per step over ``steps`` back-to-back training steps, the clock read once around
    the loop. With ``check``, each step reads its loss terms back to the host and tests them
    before the optimiser step, as ``glfa/train.py`` does; that host synchronisation stops the CPU
    queueing the next step while the GPU finishes this one, and the difference is its cost."""
    step = training_step_call(network, content, style, amp_dtype, compile_mode, check)
    for _ in range(3):
        step()
    synchronize(content.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(content.device)
    return (time.perf_counter() - start) / steps


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def top_kernels(fn: Callable[[], object], device: torch.device, rows: int = 12, calls: int = 3) -> list[list[str]]:
    """The ``rows`` kernels with the most device time over ``calls`` profiled calls of ``fn``
    (after one unprofiled call): name, milliseconds per call, share of the profiled device
    time, launches per call. On the CPU, the operators with the most self CPU time."""
    fn()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        synchronize(device)
    attribute = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attribute, 0) > 0]
    if device.type == "cuda":  # kernels and copies only: operators have no self device time of their own
        events = [e for e in events if not e.key.startswith("aten::")]
    total = sum(getattr(e, attribute) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, attribute), reverse=True)
    table = []
    for event in events[:rows]:
        spent = getattr(event, attribute)
        name = event.key if len(event.key) <= 90 else event.key[:87] + "..."
        table.append([name.replace("|", "/"), f"{spent / 1000 / calls:.2f}", f"{100 * spent / total:.1f}%",
                      f"{event.count / calls:.0f}"])
    table.append(["all kernels", f"{total / 1000 / calls:.2f}", "100%", ""])
    return table


def optimizer_time(network: StyleTransferNet, timer: Callable[[Callable[[], object]], float]) -> float:
    """Seconds of the Adam step over the trainable parameters (gradients of ones)."""
    params = [p for p in network.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer = torch.optim.Adam(params, lr=1e-4)
    seconds = timer(optimizer.step)
    for p in params:
        p.grad = None
    return seconds


def wce_fwd_bwd_time(network: StyleTransferNet, content: Tensor, style: Tensor, amp_dtype: torch.dtype | None,
                     timer: Callable[[Callable[[], object]], float], reference: bool) -> float:
    """Seconds of WCE's forward and backward on a real step's features: ``net.WCE`` or, with
    ``reference``, the per-anchor implementation above."""
    loss = network.contrastive
    device = content.device
    with torch.no_grad(), autocast(device, amp_dtype):
        content_feats = network.encode_with_intermediate(content)
        style_feats = network.encode_with_intermediate(style)
        result = network.decoder(network.transform(content_feats[-1], style_feats[-1]))
        result_feats = network.encode_with_intermediate(result)

    def run() -> None:
        leaves = _leaves(result_feats)
        with autocast(device, amp_dtype):
            losses = reference_wce(leaves, content_feats, loss) if reference else loss(leaves, content_feats)
        (losses["nce"] + losses["kl"]).backward()

    return timer(run)


def reference_agreement(network: StyleTransferNet, content: Tensor, style: Tensor) -> float:
    """Largest absolute difference between ``net.WCE`` and the per-anchor reference on the
    same features and anchors (fp32)."""
    with torch.no_grad():
        content_feats = network.encode_with_intermediate(content)
        style_feats = network.encode_with_intermediate(style)
        result_feats = network.encode_with_intermediate(
            network.decoder(network.transform(content_feats[-1], style_feats[-1])))
        loss = network.contrastive
        anchors = [sample_anchors(*f.shape[2:], loss.num_s, f.device) for f in result_feats[-loss.num_l:]]
        fast = loss(result_feats, content_feats, anchors)
        slow = reference_wce(result_feats, content_feats, loss, anchors)
    return max(abs(fast[k].item() - slow[k].item()) for k in ("nce", "kl"))


# --------------------------------------------------------------------------------------------
# Data loading
# --------------------------------------------------------------------------------------------

def synthetic_photos(folder: Path, count: int, width: int, height: int, seed: int = 0) -> Path:
    """``count`` smooth, noisy JPEG photos of ``width``×``height`` in ``folder`` (for the loader)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        phase = rng.uniform(0, 6.28, 3)
        base = np.stack([np.sin(x / (97 + 13 * c) + y / (61 + 7 * c) + phase[c]) for c in range(3)], -1)
        pixels = (base * 80 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:03d}.jpg", quality=90)
    return folder


def loader_images_per_second(root: str | Path, image_size: int, crop: int, batch_size: int, workers: int,
                             batches: int, draft: bool, pin_memory: bool) -> float:
    """Images per second delivered by the training loader alone (resize, crop, to tensor)."""
    dataset = ImageFolderDataset(root, training_transform(image_size, crop), draft_size=image_size if draft else None)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=InfiniteSampler(len(dataset)), num_workers=workers,
                        pin_memory=pin_memory, persistent_workers=workers > 0, drop_last=True)
    batches_iter = iter(loader)
    for _ in range(max(1, workers)):       # warm-up: every worker has started
        next(batches_iter)
    start = time.perf_counter()
    for _ in range(batches):
        next(batches_iter)
    seconds = time.perf_counter() - start
    del batches_iter
    return batches * batch_size / seconds


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

def inference_call(stylizer: Stylizer, size: int, style_size: int) -> Callable[[], Tensor]:
    """Stylising one random ``size``×``size`` content image with one ``style_size`` style,
    inputs and result on the device."""
    device = stylizer.device
    content = torch.rand(3, size, size, device=device)
    style = torch.rand(3, style_size, style_size, device=device)
    return lambda: stylizer.stylize(content, [style], to_cpu=False)


def inference_cost(stylizer: Stylizer, size: int, style_size: int, warmup: int,
                   repeats: int) -> tuple[float, float | None]:
    """Median seconds and peak memory (bytes) of ``inference_call``."""
    run = inference_call(stylizer, size, style_size)
    seconds = time_call(run, warmup, repeats)
    return seconds, peak_memory(run, stylizer.device)


def prepare_device(device: torch.device) -> None:
    """The speed settings the scripts use (cuDNN autotuning, TF32); no denormals on the CPU."""
    configure_backends(device)
    torch.set_flush_denormal(True)


def random_modules(module: nn.Module) -> nn.Module:
    """Re-initialise convolutions (He) so random weights keep activations at a realistic scale."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return module


# --------------------------------------------------------------------------------------------
# Photos of any size: the working-size finish against the exact path (scripts/benchmark_sizes.py)
# --------------------------------------------------------------------------------------------

def photo_of_size(source: Path, megapixels: float, path: Path) -> tuple[int, int]:
    """``source`` resized (Lanczos) to about ``megapixels`` at its aspect ratio and saved as a JPEG
    (quality 92) at ``path``; returns its ``(width, height)``."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        scale = math.sqrt(megapixels * 1e6 / (image.width * image.height))
        size = (round(image.width * scale), round(image.height * scale))
        image.resize(size, Image.LANCZOS).save(path, quality=92)
    return size


def _api_case(content: str, style: str, options: dict, repeats: int, queue) -> None:
    """In a fresh process: the Stylizer's median seconds for one call on decoded photos (one
    untimed call first) and the process's peak resident memory, put on ``queue``."""
    stylizer = Stylizer.from_checkpoints(device="cpu", **options)
    with Image.open(content) as content_image, Image.open(style) as style_image:
        content_image.load()
        style_image.load()
        stylizer(content_image, style_image)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            stylizer(content_image, style_image)
            times.append(time.perf_counter() - start)
    queue.put((float(np.median(times)), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def api_seconds_and_peak(content: Path, style: Path, options: dict, repeats: int) -> tuple[float, int]:
    """``_api_case`` in a fresh process (so its peak memory is its own): median seconds of
    ``Stylizer(...)(content, style)`` with ``options``, and peak resident bytes."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_api_case, args=(str(content), str(style), options, repeats, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def command_seconds_and_peak(argv: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds of a whole command (``argv``, run in ``cwd``) and its peak resident bytes."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {process.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss * 1024


def panning_clip(source: Path, folder: Path, frames: int, width: int, height: int) -> list[Path]:
    """A clip of ``frames`` JPEG frames (quality 92) of ``width``×``height`` px in ``folder``: a
    window panning 4 px a frame across ``source``, scaled (Lanczos) to cover the whole pan; the
    frame files, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image = image.convert("RGB")
        scale = max((width + 4 * frames) / image.width, height / image.height)
        image = image.resize((math.ceil(image.width * scale), math.ceil(image.height * scale)), Image.LANCZOS)
    paths = []
    for index in range(frames):
        path = folder / f"frame{index + 1:04d}.jpg"
        image.crop((4 * index, 0, 4 * index + width, height)).save(path, quality=92)
        paths.append(path)
    return paths
