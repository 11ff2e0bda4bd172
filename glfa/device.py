"""Where and in what precision the network runs: the device, the GPU backend settings and
mixed precision (``--device``, ``--amp``), shared by training, inference and the benchmarks."""
import contextlib

import torch

from glfa.errors import UserError

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``--device``: CUDA when present unless told otherwise. A name that is no device, a device
    other than the CPU or a CUDA GPU (``mps``, ``xpu``, ``meta``: this code is written and tested
    for those two), and a GPU this machine lacks are user errors."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device name (try 'cpu' or 'cuda')") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: this code runs on the CPU or a CUDA GPU (cpu, cuda, cuda:1…)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but no CUDA GPU is available (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                        "numbered from 0")
    return device


def configure_backends(device: torch.device) -> None:
    """Fast GPU settings: cuDNN picks the fastest algorithms, matmuls and convolutions may use TF32."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); without it oneDNN emulates
    bf16 and a convolution runs tens of times slower than in fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(dtype: torch.dtype | None, device: torch.device) -> None:
    """Refuse the half precisions a device runs far slower than fp32: fp16 on any CPU, bf16 on a
    CPU without native bf16 (about 70× slower for a 3×3 convolution on an AVX2-only CPU)."""
    if device.type != "cpu" or dtype is None:
        return
    if dtype == torch.float16:
        raise UserError("--amp fp16 is for GPUs: on the CPU it runs about 30× slower than fp32; use --amp off")
    if dtype == torch.bfloat16 and not cpu_has_native_bf16():
        raise UserError("--amp bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); this one emulates it, "
                        "tens of times slower than fp32: use --amp off")


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``--amp``: ``auto`` is bf16 on GPUs that support it and off elsewhere; a precision the
    device runs far slower than fp32 is refused (``check_precision``)."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    dtype = AMP_DTYPES[amp]
    check_precision(dtype, device)
    return dtype


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for the convolutions; the statistics and losses cast to fp32 themselves."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
