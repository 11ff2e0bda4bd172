"""The warm start and the short-budget options: the reconstruction objective, ``--init_*``,
the learning-rate schedules and the weight average (``--ema``)."""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import glfa.train as training
from glfa.checkpoint import load_state_dict, load_training_state
from glfa.errors import UserError
from glfa.schedule import WeightAverage, learning_rate
from helpers import lively, write_model
from net import LossWeights, ReconstructionNet, build_decoder, build_encoder, total_loss
from train import parse_args


def run(flags: list[str], save_dir: Path, *extra: str) -> int:
    return training.train(parse_args([*flags, "--save_dir", str(save_dir), "--log_dir", str(save_dir / "logs"),
                                      *extra]))


def test_reconstruction_loss_falls_and_its_terms_are_what_they_say() -> None:
    """The decoder alone learns to invert the encoder: pixel and feature losses fall over a few
    dozen steps on a fixed batch; each term equals its definition recomputed by hand."""
    torch.manual_seed(0)
    network = ReconstructionNet(lively(build_encoder("photo")), build_decoder("photo"), "photo")
    images = nn.functional.interpolate(torch.rand(2, 3, 4, 4), size=32, mode="bilinear")   # smooth photos
    losses, result = network(images)
    encoder = nn.Sequential(*network.stages)
    with torch.no_grad():
        assert losses["pixel"].item() == pytest.approx(nn.functional.mse_loss(result, images).item(), rel=1e-5)
        feature = nn.functional.mse_loss(encoder(result), encoder(images)).item()
    assert losses["content"].item() == pytest.approx(feature, rel=1e-5)
    assert losses.keys() == {"content", "pixel"}

    optimizer = torch.optim.Adam(network.decoder.parameters(), lr=1e-3)
    first = None
    for _ in range(60):
        losses, _ = network(images)
        loss = total_loss(losses, LossWeights())
        first = first if first is not None else {k: v.item() for k, v in losses.items()}
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses["pixel"].item() < 0.5 * first["pixel"]
    assert losses["content"].item() < 0.5 * first["content"]
    assert all(p.grad is None for p in network.stages.parameters())   # the encoder stays frozen


def test_reconstruction_run_needs_no_styles_and_writes_a_decoder_alone(training_flags: list[str],
                                                                        tmp_path: Path) -> None:
    flags = [f for i, f in enumerate(training_flags)
             if f != "--style_dir" and (i == 0 or training_flags[i - 1] != "--style_dir")]
    assert run(flags, tmp_path / "exp", "--objective", "reconstruction", "--max_iter", "3",
               "--save_model_interval", "3") == 0
    written = sorted(p.name for p in (tmp_path / "exp").iterdir() if p.suffix in (".tar", ".pth"))
    assert written == ["decoder_iter_3.pth.tar", "training_state_iter_3.pth"]
    state = load_training_state(tmp_path / "exp" / "training_state_iter_3.pth")
    assert state["transform"] == {} and state["heads"] == {} and state["args"]["objective"] == "reconstruction"
    decoder = load_state_dict(tmp_path / "exp" / "decoder_iter_3.pth.tar")
    assert decoder.keys() == build_decoder("photo").state_dict().keys()


def test_a_transfer_run_still_needs_styles(training_flags: list[str]) -> None:
    content = training_flags[training_flags.index("--content_dir") + 1]
    with pytest.raises(UserError, match="--style_dir is required"):
        parse_args(["--content_dir", content])


def test_init_starts_from_the_given_weights_with_a_fresh_optimiser(training_flags: list[str], tmp_path: Path) -> None:
    """One step at a tiny learning rate from ``--init_decoder``/``--init_transform``: the saved
    weights are the given ones (Adam's first step moves each by about the lr), the iteration
    count and the optimiser start from zero; a run without ``--init_*`` starts elsewhere."""
    decoder_file, transform_file = write_model(tmp_path / "given", 7, seed=3)
    assert run(training_flags, tmp_path / "init", "--init_decoder", str(decoder_file), "--init_transform",
               str(transform_file), "--lr", "1e-9", "--max_iter", "1", "--save_model_interval", "1") == 0
    given = {**load_state_dict(decoder_file), **load_state_dict(transform_file)}
    trained = {**load_state_dict(tmp_path / "init" / "decoder_iter_1.pth.tar"),
               **load_state_dict(tmp_path / "init" / "lct_iter_1.pth.tar")}
    assert given.keys() == trained.keys()
    for key in given:
        torch.testing.assert_close(trained[key], given[key], atol=1e-7, rtol=0)
    state = load_training_state(tmp_path / "init" / "training_state_iter_1.pth")
    assert state["iteration"] == 1
    steps = {float(moments["step"]) for moments in state["optimizer"]["state"].values()}
    assert steps == {1.0}

    assert run(training_flags, tmp_path / "fresh", "--lr", "1e-9", "--max_iter", "1", "--save_model_interval", "1") == 0
    fresh = load_state_dict(tmp_path / "fresh" / "decoder_iter_1.pth.tar")
    assert not torch.allclose(fresh["28.weight"], given["28.weight"])


def test_init_with_a_wrong_file_is_one_clear_error(training_flags: list[str], tmp_path: Path) -> None:
    decoder_file, transform_file = write_model(tmp_path / "given", 7)
    with pytest.raises(UserError, match="swapped"):
        run(training_flags, tmp_path / "exp", "--init_decoder", str(transform_file), "--max_iter", "1")
    with pytest.raises(UserError, match="reconstruction trains the decoder alone"):
        run(training_flags, tmp_path / "exp", "--objective", "reconstruction", "--init_transform",
            str(transform_file), "--max_iter", "1")


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_short_budget_schedules_fall_from_lr_to_the_floor(schedule: str) -> None:
    rate = lambda i, **kw: learning_rate(1e-3, 0.0, i, schedule, 101, 1e-5, **kw)  # noqa: E731
    assert rate(0) == pytest.approx(1e-3)
    assert rate(100) == pytest.approx(1e-5)
    assert rate(50) == pytest.approx((1e-3 + 1e-5) / 2)
    quarter = (1 + math.cos(math.pi / 4)) / 2 if schedule == "cosine" else 0.75
    assert rate(25) == pytest.approx(1e-5 + (1e-3 - 1e-5) * quarter)
    assert all(rate(i) >= rate(i + 1) for i in range(120))
    assert rate(500) == pytest.approx(1e-5)   # past max_iter (a resumed, extended run) it stays on the floor
    assert rate(0, warmup_iters=4) == pytest.approx(rate(0) / 4)
    assert rate(3, warmup_iters=4) == pytest.approx(rate(3))


def test_the_reference_schedule_is_the_default_and_unchanged() -> None:
    config = parse_args(["--content_dir", "c", "--style_dir", "s"])
    assert (config.lr_schedule, config.lr_decay, config.ema, config.warmup_iters) == ("reference", 5e-5, 0.0, 0)
    assert learning_rate(1e-4, 5e-5, 1000) == pytest.approx(1e-4 / 1.05)


def test_weight_average_is_the_exponential_moving_average() -> None:
    layer = nn.Linear(2, 2)
    start = {k: v.clone() for k, v in layer.state_dict().items()}
    average = WeightAverage({"decoder": layer}, decay=0.9)
    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update()
    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update()
    expected = start["weight"] * 0.9 ** 2 + (start["weight"] + 1) * 0.9 * 0.1 + (start["weight"] + 2) * 0.1
    torch.testing.assert_close(average.state_dict()["decoder"]["weight"], expected)
    torch.testing.assert_close(average.state_dict()["decoder"]["bias"], start["bias"])


def test_ema_weights_are_saved_beside_and_resume_exactly(training_flags: list[str], tmp_path: Path) -> None:
    ema = ["--ema", "0.5", "--save_model_interval", "2", "--keep_last", "0"]
    assert run(training_flags, tmp_path / "whole", *ema, "--max_iter", "4") == 0
    assert run(training_flags, tmp_path / "parts", *ema, "--max_iter", "2") == 0
    assert run(training_flags, tmp_path / "parts", *ema, "--max_iter", "4", "--resume", "auto") == 0
    for name in ("decoder_iter_4.pth.tar", "lct_iter_4.pth.tar"):
        whole = load_state_dict(tmp_path / "whole" / "ema" / name)
        parts = load_state_dict(tmp_path / "parts" / "ema" / name)
        raw = load_state_dict(tmp_path / "whole" / name)
        assert all(torch.equal(whole[k], parts[k]) for k in whole)
        assert any(not torch.equal(whole[k], raw[k]) for k in whole)
    assert run(training_flags, tmp_path / "late", "--max_iter", "2", "--save_model_interval", "2") == 0
    assert run(training_flags, tmp_path / "late", *ema, "--max_iter", "4", "--resume", "auto") == 0
    assert (tmp_path / "late" / "ema" / "decoder_iter_4.pth.tar").is_file()   # an average begun on resume


def test_time_limit_saves_everything_and_stops(training_flags: list[str], tmp_path: Path, monkeypatch) -> None:
    """``--time_limit``: once the minutes have passed, the weights, a grid and a training state
    are written for the iteration reached, the run ends with status 0, and it resumes."""
    clock = iter(range(0, 10_000, 25))                         # 25 s a call of the monotonic clock
    monkeypatch.setattr(training.time, "monotonic", lambda: float(next(clock)))
    assert run(training_flags, tmp_path / "exp", "--time_limit", "1", "--max_iter", "50",
               "--save_model_interval", "50") == 0
    states = sorted(int(p.name.split("_")[-1].split(".")[0]) for p in (tmp_path / "exp").glob("training_state_*"))
    assert len(states) == 1 and 1 <= states[0] < 50
    assert (tmp_path / "exp" / f"decoder_iter_{states[0]}.pth.tar").is_file()
    assert (tmp_path / "exp" / f"grid_iter_{states[0]}.png").is_file()


def test_a_frozen_decoder_stays_as_it_started_while_the_transform_learns(training_flags: list[str],
                                                                         tmp_path: Path) -> None:
    decoder_file, transform_file = write_model(tmp_path / "given", 7, seed=5)
    assert run(training_flags, tmp_path / "exp", "--init_decoder", str(decoder_file), "--init_transform",
               str(transform_file), "--freeze_decoder", "--max_iter", "2", "--save_model_interval", "2") == 0
    given, kept = load_state_dict(decoder_file), load_state_dict(tmp_path / "exp" / "decoder_iter_2.pth.tar")
    assert all(torch.equal(given[k], kept[k]) for k in given)
    trained = load_state_dict(tmp_path / "exp" / "lct_iter_2.pth.tar")
    assert any(not torch.equal(v, load_state_dict(transform_file)[k]) for k, v in trained.items())
    with pytest.raises(UserError, match="leaves nothing to train"):
        parse_args([*training_flags, "--objective", "reconstruction", "--freeze_decoder"])
