"""The training configuration and the run folder: the parser built from ``TrainConfig``'s
fields, the renamed flag's alias, the resume rules, and every name a run folder holds."""
import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from glfa.cli import training_parser
from glfa.checkpoint import save_training_state
from glfa.config import MAY_CHANGE, MUST_MATCH, TrainConfig, differences, resume_differences, saved_settings
from glfa.errors import UserError
from glfa.runfolder import RunFolder, model_files, shipped_model
from glfa.trainingstate import read_resume_state
from helpers import write_model
from net import NUM_L, NUM_S, TAU, LossWeights
from train import parse_args


def test_every_field_is_a_flag_with_its_default_and_help() -> None:
    parser = training_parser(None)
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    assert set(actions) == {f.name for f in dataclasses.fields(TrainConfig)}
    for field in dataclasses.fields(TrainConfig):
        assert actions[field.name].default == field.default and actions[field.name].help.strip()


def test_the_method_defaults_are_written_once() -> None:
    config = parse_args(["--content_dir", "c", "--style_dir", "s"])
    assert (config.num_s, config.num_l, config.tau) == (NUM_S, NUM_L, TAU)
    assert config.loss_weights == LossWeights()


def test_the_renamed_contrastive_weight_keeps_its_old_flag() -> None:
    old = parse_args(["--content_dir", "c", "--style_dir", "s", "--wce_weight", "2", "--kl_weight", "0.5"])
    new = parse_args(["--content_dir", "c", "--style_dir", "s", "--contrastive_weight", "2", "--kl_weight", "0.5"])
    assert old == new and old.contrastive_weight == 2.0
    assert old.loss_weights == LossWeights(nce=2.0, kl=1.0)
    assert saved_settings({"wce_weight": 3.0})["contrastive_weight"] == 3.0   # records written before the rename


def test_a_config_is_frozen_and_checked_when_built() -> None:
    config = TrainConfig(content_dir="c", style_dir="s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    with pytest.raises(UserError, match="--crop_size must be at least 12"):
        config.replace(crop_size=8)
    with pytest.raises(UserError, match="--num_l 4 exceeds"):
        config.replace(num_l=4)
    with pytest.raises(UserError, match="--ema must be between 0 and 1"):
        config.replace(ema=1.5)


def test_resume_rules_come_from_the_fields(tmp_path: Path) -> None:
    config = TrainConfig(content_dir=str(tmp_path), style_dir="s")
    saved = {**config.as_record(), "contrastive": "ccpl", "lr": 5.0, "device": "cuda", "save_dir": "elsewhere"}
    clashes, changes = resume_differences(saved, config)
    assert clashes == [("contrastive", "ccpl", "wce")]
    assert changes == [("lr", 5.0, config.lr)]                       # paths and devices are the run's own
    assert {f.metadata["resume"] for f in dataclasses.fields(TrainConfig)} == {MUST_MATCH, MAY_CHANGE, None}
    relative = os.path.relpath(tmp_path)
    assert differences({**config.as_record(), "content_dir": relative}, config) == []   # the same folder
    assert saved_settings({})["objective"] == "transfer"             # states written before --objective
    with pytest.raises(UserError, match="not a dict"):
        differences(None, config)


def test_a_run_folder_names_every_file(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    assert folder.decoder(7).name == "decoder_iter_7.pth.tar" and folder.transform(7, "sct").name == "sct_iter_7.pth.tar"
    assert folder.state(7).name == "training_state_iter_7.pth" and folder.record(7).name == "iter_7.json"
    assert folder.grid(7).name == "grid_iter_7.png" and folder.averaged.path == tmp_path / "ema"
    assert folder.latest_model() is None and folder.training_states() == []
    write_model(tmp_path, 5)
    write_model(tmp_path, 20)
    folder.decoder(30).write_bytes(b"")                              # no transform beside it: incomplete
    latest = folder.latest_model()
    assert (latest.iteration, latest.kind, latest.transform.name) == (20, "lct", "lct_iter_20.pth.tar")
    assert [m.iteration for m in folder.models()] == [5, 20]
    folder.record(20).write_text(json.dumps({"args": {"lr": 1}}))
    folder.record(5).write_text("[1, 2")
    assert folder.read_record(20) == {"args": {"lr": 1}} and folder.read_record(5) is None
    folder.transform(20, "sct").write_bytes(b"")
    with pytest.raises(UserError, match="both lct_ and sct_"):
        folder.models()


def test_states_are_pruned_oldest_first_and_later_runs_are_left(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    for n in (1, 2, 3, 9):
        folder.state(n).write_bytes(b"")
    folder.prune_states(keep_last=2, iteration=3)
    assert [n for n, _ in folder.training_states()] == [2, 3, 9]
    (tmp_path / ".decoder_iter_4.pth.tar.tmp123").write_bytes(b"")
    assert folder.remove_temporary_files() == 1


def test_the_shipped_model_is_the_latest_complete_pair_there(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="the shipped model is missing"):
        shipped_model(tmp_path)
    write_model(tmp_path, 3)
    assert shipped_model(tmp_path) == (tmp_path / "decoder_iter_3.pth.tar", tmp_path / "lct_iter_3.pth.tar")
    assert model_files("a", "b") == (Path("a"), Path("b"))
    with pytest.raises(UserError, match="no model ships for art mode"):
        model_files(None, None, "art")


def test_issue27_item11_a_frozen_decoder_needs_one_to_start_from(tmp_path: Path, capsys) -> None:
    """issue 27 item 11: --freeze_decoder without --init_decoder froze a random decoder, exit 0,
    no note; refused, also when --resume auto finds no state to take the decoder from."""
    base = ["--content_dir", "c", "--style_dir", "s", "--freeze_decoder", "--save_dir", str(tmp_path)]
    with pytest.raises(UserError, match="give --init_decoder"):
        parse_args(base)
    with pytest.raises(UserError, match="found no training state .* a random decoder would stay random"):
        read_resume_state(parse_args([*base, "--resume", "auto"]))
    decoder, _ = write_model(tmp_path / "model", 1)
    assert read_resume_state(parse_args([*base, "--resume", "auto", "--init_decoder", str(decoder)])) is None


def test_issue27_item12_schedules_that_cannot_do_what_they_say_are_refused() -> None:
    """issue 27 item 12: --lr_schedule linear --lr 1e-4 --min_lr 1 rose to 1.0, and --warmup_iters
    100 --max_iter 2 never passed 1% of --lr, both silently; also --min_lr with the reference
    schedule, which does not use it."""
    base = ["--content_dir", "c", "--style_dir", "s"]
    for flags, message in ((["--lr_schedule", "linear", "--lr", "1e-4", "--min_lr", "1"],
                            "--min_lr 1 is above --lr 0.0001: the linear schedule falls from --lr to --min_lr"),
                           (["--warmup_iters", "100", "--max_iter", "2"],
                            "--warmup_iters 100 is not shorter than --max_iter 2"),
                           (["--min_lr", "1e-6"], "--lr_schedule reference does not use it")):
        with pytest.raises(UserError, match=re.escape(message)):
            parse_args([*base, *flags])
    assert parse_args([*base, "--lr_schedule", "cosine", "--min_lr", "1e-6", "--warmup_iters", "1",
                       "--max_iter", "2"]).min_lr == 1e-6


def test_issue27_item13_reconstruction_refuses_the_transfer_losses() -> None:
    """issue 27 item 13: --objective reconstruction ignored --structure_weight and
    --identity_weight (while it refused --init_transform); every transfer-only loss is refused."""
    base = ["--content_dir", "c", "--objective", "reconstruction"]
    for flags in (["--structure_weight", "100"], ["--identity_weight", "50"], ["--style_weight", "3"],
                  ["--structure_terms", "contrast_structure"]):
        with pytest.raises(UserError, match=f"^{flags[0]}: --objective reconstruction has no such loss"):
            parse_args([*base, *flags])
    assert parse_args([*base, "--pixel_weight", "5", "--content_weight", "2"]).pixel_weight == 5


def test_issue27_also_resume_and_init_flags(tmp_path: Path, capsys) -> None:
    """issue 27, also seen: --resume auto silently won over --init_decoder. A found state now says
    the --init_* flags are not used; --resume PATH with them is refused."""
    decoder, transform = write_model(tmp_path / "model", 1)
    base = ["--content_dir", "c", "--style_dir", "s", "--save_dir", str(tmp_path / "run")]
    with pytest.raises(UserError, match="give one or the other"):
        parse_args([*base, "--resume", str(tmp_path / "state.pth"), "--init_decoder", str(decoder)])
    config = parse_args([*base, "--resume", "auto", "--init_decoder", str(decoder), "--init_transform", str(transform)])
    state = {"iteration": 1, "draws": 2, "world_size": 1, "decoder": {}, "transform": {}, "heads": {},
             "optimizer": {"state": {}, "param_groups": []}, "scaler": {}, "args": config.as_record()}
    save_training_state(state, RunFolder(config.save_dir).state(1))
    capsys.readouterr()
    assert read_resume_state(config)[0]["iteration"] == 1
    assert "note: --init_decoder and --init_transform not used: the run continues from the weights of" in \
        capsys.readouterr().out
