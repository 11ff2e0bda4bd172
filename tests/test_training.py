"""The training loop's parts: rank-aware sampling, seeded crops, non-finite guard, pruning."""
import itertools
from pathlib import Path

import pytest
import torch

import glfa.train as training
from glfa.checkpoint import CheckpointError, load_state_dict, load_training_state, save_state_dict
from glfa.data import SeededCrops, make_loader
from glfa.distributed import Process
from glfa.model import build_training_network
from glfa.errors import UserError
from net import StyleTransferNet
from sampler import InfiniteSampler, SeededSampler, draw_seed
from train import parse_args


def run_training(flags: list[str], tmp_path: Path, *extra: str) -> int:
    args = parse_args([*flags, "--save_dir", str(tmp_path / "exp"), "--log_dir", str(tmp_path / "logs"), *extra])
    return training.train(args)


def take(sampler, count: int) -> list:
    return list(itertools.islice(sampler, count))


def test_ranks_split_every_pass_and_passes_are_reshuffled() -> None:
    size, ranks = 50, 3
    samplers = [InfiniteSampler(size, seed=7, rank=r, num_replicas=ranks) for r in range(ranks)]
    per_rank = -(-size // ranks)  # 17: the pass is padded to 51 by wrapping round
    passes = [take(s, 2 * per_rank) for s in samplers]
    first = [p[:per_rank] for p in passes]
    drawn = sorted(itertools.chain(*first))
    assert len(drawn) == 51 and set(drawn) == set(range(size))
    assert sum(len(set(a) & set(b)) for a, b in itertools.combinations(first, 2)) == 1  # only the padding
    second = [p[per_rank:] for p in passes]
    assert second != first and set(itertools.chain(*second)) == set(range(size))
    assert take(InfiniteSampler(size, seed=8, rank=0, num_replicas=ranks), per_rank) != first[0]


def test_sampler_resumes_mid_stream_across_a_pass_boundary() -> None:
    full = take(InfiniteSampler(10, seed=3, rank=1, num_replicas=2), 20)
    assert take(InfiniteSampler(10, seed=3, rank=1, num_replicas=2, start=3), 12) == full[3:15]
    keys = take(SeededSampler(InfiniteSampler(10, seed=3, rank=1, num_replicas=2, start=3)), 4)
    assert [k for k, _ in keys] == full[3:7]
    assert [s for _, s in keys] == [draw_seed(3, 1, p) for p in range(3, 7)]
    assert len({draw_seed(3, r, p) for r in range(2) for p in range(100)}) == 200


def test_crops_depend_on_the_draw_seed_not_on_the_worker(training_flags: list[str], tmp_path: Path) -> None:
    config = parse_args(training_flags)
    process = Process(0, 1, torch.device("cpu"))
    sizes = (config.image_size, config.crop_size, config.batch_size)
    loader, images = make_loader(config.content_dir, *sizes, 0, process, seed=5, start=0)
    in_main = take(iter(loader), 3)
    in_workers = take(iter(make_loader(config.content_dir, *sizes, 2, process, seed=5, start=0)[0]), 3)
    for (index_a, crops_a), (index_b, crops_b) in zip(in_main, in_workers):
        assert torch.equal(index_a, index_b) and torch.equal(crops_a, crops_b)
    dataset = SeededCrops(images)
    same_image = [dataset[(0, seed)][1] for seed in (11, 11, 12)]
    assert torch.equal(same_image[0], same_image[1]) and not torch.equal(same_image[0], same_image[2])
    assert in_main[0][1].shape == (2, 3, 16, 16)


def test_unused_projection_heads_are_frozen(training_flags: list[str]) -> None:
    config = parse_args([*training_flags, "--num_l", "2"])
    network = build_training_network(config, torch.device("cpu"))
    trainable = {id(p) for p in network.parameters() if p.requires_grad}
    heads = network.contrastive.heads
    assert not any(id(p) in trainable for p in heads[0].parameters())
    assert all(id(p) in trainable for p in itertools.chain(heads[1].parameters(), heads[2].parameters()))
    assert not any(id(p) in trainable for p in network.stages.parameters())


def test_keep_last_prunes_training_states_but_not_weights(training_flags: list[str], tmp_path: Path) -> None:
    earlier_run = tmp_path / "exp" / "training_state_iter_9.pth"  # a later state of another run is left alone
    save_state_dict({"x": torch.zeros(1)}, earlier_run)
    status = run_training(training_flags, tmp_path, "--contrastive", "none", "--max_iter", "4",
                          "--save_model_interval", "1", "--keep_last", "2")
    assert status == 0
    names = {p.name for p in (tmp_path / "exp").iterdir()}
    assert {n for n in names if n.startswith("training_state")} == {"training_state_iter_3.pth",
                                                                    "training_state_iter_4.pth", earlier_run.name}
    for i in range(1, 5):
        assert {f"decoder_iter_{i}.pth.tar", f"lct_iter_{i}.pth.tar", f"grid_iter_{i}.png"} <= names
    # The state loads with weights_only and matches the reference-format files of its iteration.
    state = torch.load(tmp_path / "exp" / "training_state_iter_4.pth", map_location="cpu", weights_only=True)
    assert state["iteration"] == 4 and state["draws"] == 8 and state["args"]["keep_last"] == 2
    decoder = load_state_dict(tmp_path / "exp" / "decoder_iter_4.pth.tar")
    assert decoder.keys() == state["decoder"].keys()
    assert all(torch.equal(decoder[k], state["decoder"][k]) for k in decoder)
    assert state["heads"] == {}


def test_weights_files_are_not_training_states(tmp_path: Path) -> None:
    path = tmp_path / "decoder_iter_1.pth.tar"
    save_state_dict({"11.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a training state"):
        load_training_state(path)


def test_resume_auto_without_a_state_starts_fresh(training_flags: list[str], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    assert run_training(training_flags, tmp_path, "--contrastive", "none", "--max_iter", "1", "--resume", "auto") == 0
    assert "starting from scratch" in capsys.readouterr().out
    assert (tmp_path / "exp" / "training_state_iter_1.pth").is_file()


def poison_iterations(monkeypatch: pytest.MonkeyPatch, bad: set[int]) -> None:
    """Make the content loss NaN at the given iterations (forward calls, counted from 1)."""
    forward = StyleTransferNet.forward
    calls = itertools.count(1)

    def poisoned(self, *args, **kwargs):
        losses, result = forward(self, *args, **kwargs)
        if next(calls) in bad:
            losses["content"] = losses["content"] * float("nan")
        return losses, result

    monkeypatch.setattr(StyleTransferNet, "forward", poisoned)


def test_nonfinite_loss_is_skipped_reported_and_stops_the_run(training_flags: list[str], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    poison_iterations(monkeypatch, {2, 4, 5})
    with pytest.raises(training.TrainingDiverged) as stop:
        run_training(training_flags, tmp_path, "--contrastive", "none", "--max_iter", "20",
                     "--save_model_interval", "3", "--max_nonfinite", "2", "--keep_last", "0")
    assert isinstance(stop.value, UserError) and "2 iterations in a row" in str(stop.value)
    assert "\n" not in str(stop.value) and "training_state_iter_5.pth" in str(stop.value)
    reports = [line for line in capsys.readouterr().err.splitlines() if "non-finite loss" in line]
    assert [r.split("iteration ")[1].split(" ")[0] for r in reports] == ["2", "4", "5"]
    assert all("content=nan" in r and "style=" in r and "step skipped" in r for r in reports)

    exp = tmp_path / "exp"
    state = load_training_state(exp / "training_state_iter_5.pth")
    assert state["iteration"] == 5 and state["draws"] == 10  # a resumed run takes new images
    # Steps 2, 4 and 5 were skipped: Adam took two steps, and the weights are those of iteration 3.
    assert all(int(s["step"]) == 2 for s in state["optimizer"]["state"].values())
    after_3 = load_state_dict(exp / "decoder_iter_3.pth.tar")
    assert all(torch.equal(after_3[k], v) for k, v in state["decoder"].items())
    assert not (exp / "decoder_iter_6.pth.tar").exists()


def test_structure_weight_turns_the_structure_loss_on(training_flags: list[str]) -> None:
    assert not build_training_network(parse_args(training_flags), torch.device("cpu")).structure
    network = build_training_network(parse_args([*training_flags, "--structure_weight", "2"]), torch.device("cpu"))
    assert network.structure == "correlation"
    flags = [*training_flags, "--structure_weight", "2", "--structure_terms", "contrast_structure"]
    assert build_training_network(parse_args(flags), torch.device("cpu")).structure == "contrast_structure"
