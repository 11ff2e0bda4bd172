"""The network a training run trains: the method's network built from the configuration, its
encoder and ``--init_*`` weights loaded, wrapped for the run's processes, and one forward and
backward pass of a batch."""
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from glfa.checkpoint import load_decoder, load_encoder, load_transform
from glfa.config import TrainConfig
from glfa.device import autocast
from glfa.distributed import Process
from net import ContrastiveSpec, EncoderDecoder, LossWeights, build_network, total_loss


def build_training_network(config: TrainConfig, device: torch.device) -> EncoderDecoder:
    """The network ``config`` describes, encoder weights loaded, ``--init_*`` weights in, on ``device``;
    with ``--freeze_decoder`` the decoder takes no gradients.

    Projection heads of layers the contrastive loss does not use (``--num_l`` below the mode's
    layer count) are frozen: they never get a gradient, and DDP would wait for one.
    """
    contrastive = ContrastiveSpec(config.contrastive, config.num_s, config.num_l, config.tau)
    network = build_network(config.training_mode, config.transform, contrastive,
                            encoder=load_encoder(config.vgg, config.training_mode),
                            objective=config.objective,
                            identity=config.identity_weight + config.identity_feature_weight > 0,
                            structure=config.structure_terms if config.structure_weight > 0 else None,
                            finish=config.finish)
    if config.init_decoder:
        network.decoder.load_state_dict(load_decoder(config.init_decoder, config.training_mode).state_dict())
    if config.init_transform:
        transform = load_transform(config.init_transform, config.training_mode, config.transform)
        network.transform.load_state_dict(transform.state_dict())
    if contrastive_of(network) is not None:
        heads = network.contrastive.heads
        heads[:len(heads) - config.num_l].requires_grad_(False)
    if config.freeze_decoder:
        network.decoder.requires_grad_(False)
    network = network.to(device)
    if config.channels_last:
        network = network.to(memory_format=torch.channels_last)
    return network


def contrastive_of(network: EncoderDecoder) -> nn.Module | None:
    """The network's contrastive loss (with its projection heads), None when it has none."""
    return getattr(network, "contrastive", None)


def trained_modules(network: EncoderDecoder) -> dict[str, nn.Module]:
    """The decoder and, for the transfer objective, the transform: what is saved as weights."""
    transform = getattr(network, "transform", None)
    return {"decoder": network.decoder, **({"transform": transform} if transform is not None else {})}


def wrap_for_training(network: EncoderDecoder, compile_network: bool, process: Process) -> nn.Module:
    """DistributedDataParallel across ranks, then ``torch.compile`` when asked."""
    model: nn.Module = network
    if process.distributed:
        device_ids = [process.device.index] if process.device.type == "cuda" else None
        model = DistributedDataParallel(network, device_ids=device_ids)
    return torch.compile(model) if compile_network else model


def forward_backward(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     content: Tensor, style: Tensor | None, weights: LossWeights,
                     amp_dtype: torch.dtype | None) -> tuple[dict[str, Tensor], Tensor]:
    """Losses and gradients of one batch. Returns the loss terms (``total`` last) and the result;
    the optimiser step is the caller's, once it knows the losses are finite on every rank."""
    with autocast(content.device, amp_dtype):
        losses, result = model(content, style)
    loss = total_loss(losses, weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    return {**losses, "total": loss}, result
