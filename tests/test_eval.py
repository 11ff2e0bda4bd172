"""eval.py and glfa/eval.py: pairing, model flags, and a real run on ../shared/data/photo_pairs."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
from glfa.cli import run_main
from glfa.errors import UserError
from glfa.eval import latest_checkpoints, pairs_by_number, parse_model, read_pairs_file
from glfa.images import read_image
from glfa.inference import Stylizer
from helpers import lively
from net import build_decoder, build_transform

REPO = Path(__file__).resolve().parents[1]


def touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (16, 16), (90, 120, 200)).save(folder / name)


def test_pairs_match_by_trailing_number(tmp_path: Path, capsys: pytest.CaptureFixture):
    touch_images(tmp_path / "content", ["in1.png", "in2.png", "in10.png", "notes.png"])
    touch_images(tmp_path / "style", ["tar10.jpg", "tar1.png", "tar3.png"])
    pairs = pairs_by_number(tmp_path / "content", tmp_path / "style")
    assert [(p.name, p.content.name, p.style.name) for p in pairs] == [
        ("in1_tar1", "in1.png", "tar1.png"), ("in10_tar10", "in10.png", "tar10.jpg")]
    assert "number(s) 2, 3" in capsys.readouterr().err


def test_pairs_refuse_duplicate_numbers_and_no_overlap(tmp_path: Path):
    touch_images(tmp_path / "content", ["in1.png", "a1.png"])
    touch_images(tmp_path / "style", ["tar2.png"])
    with pytest.raises(UserError, match="two content images numbered 1"):
        pairs_by_number(tmp_path / "content", tmp_path / "style")
    (tmp_path / "content" / "a1.png").unlink()
    with pytest.raises(UserError, match="shares its number"):
        pairs_by_number(tmp_path / "content", tmp_path / "style")


def test_pairs_file_resolves_relative_paths_and_reports_bad_lines(tmp_path: Path):
    touch_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    listing = tmp_path / "pairs.txt"
    listing.write_text("# content style\nimgs/a.png imgs/b.png\n\nimgs/c.png, imgs/b.png  # comma works too\n")
    pairs = read_pairs_file(listing)
    assert [(p.name, p.content, p.style) for p in pairs] == [
        ("a_b", tmp_path / "imgs/a.png", tmp_path / "imgs/b.png"), ("c_b", tmp_path / "imgs/c.png", tmp_path / "imgs/b.png")]
    listing.write_text("imgs/a.png imgs/b.png\nimgs/a.png\n")
    with pytest.raises(UserError, match=r"pairs.txt:2: expected"):
        read_pairs_file(listing)
    listing.write_text("imgs/a.png imgs/missing.png\n")
    with pytest.raises(UserError, match=r"pairs.txt:1: image not found"):
        read_pairs_file(listing)


def test_model_flag_forms(tmp_path: Path):
    spec = parse_model("ours=d.pth,t.pth,SCT")
    assert (spec.name, spec.decoder, spec.transform, spec.kind) == ("ours", Path("d.pth"), Path("t.pth"), "sct")
    assert parse_model("b=x/decoder_iter_5.pth.tar,x/sct_iter_5.pth.tar").kind == "sct"
    assert parse_model("c=x/decoder_iter_5.pth.tar,x/lct_iter_5.pth.tar").kind == "lct"
    for name in ("decoder_iter_100.pth.tar", "lct_iter_100.pth.tar", "decoder_iter_900.pth.tar",
                 "lct_iter_900.pth.tar", "decoder_iter_1000.pth.tar"):     # 1000 has no transform yet
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoints(tmp_path) == (tmp_path / "decoder_iter_900.pth.tar", tmp_path / "lct_iter_900.pth.tar", "lct")
    assert parse_model(f"run={tmp_path}").decoder.name == "decoder_iter_900.pth.tar"
    for bad, message in (("nameless", "expected NAME="), ("a b=d,t", "may only hold"),
                         ("a=d,t,adain", "lct or sct"), (f"a={tmp_path / 'nowhere'}", "model folder not found")):
        with pytest.raises(UserError, match=message):
            parse_model(bad)


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory, training_flags: list[str]) -> Path:
    """A model trained for 2 iterations here by train.py (its folder)."""
    folder = tmp_path_factory.mktemp("trained")
    subprocess.run([sys.executable, str(REPO / "train.py"), *training_flags, "--max_iter", "2",
                    "--save_model_interval", "2", "--save_dir", str(folder), "--log_dir", str(folder / "logs")],
                   check=True, capture_output=True)
    return folder


def test_eval_on_photo_pairs_prints_table_and_writes_csv_markdown_figures(
        shared_dir: Path, vgg_relu3_1: Path, trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    pairs_dir = shared_dir / "data" / "photo_pairs"
    if not pairs_dir.is_dir():
        pytest.skip(f"{pairs_dir} not found")
    output = tmp_path / "eval"
    decoder, transform = trained_model / "decoder_iter_2.pth.tar", trained_model / "lct_iter_2.pth.tar"
    eval_cli.main(["--pairs_dir", str(pairs_dir), "--vgg", str(vgg_relu3_1), "--model", f"lct={trained_model}",
                   "--model", f"as_sct={decoder},{transform},sct", "--content_size", "32", "--figure_height", "64",
                   "--output", str(output), "--device", "cpu"])

    printed = capsys.readouterr().out
    pair_names = [f"in{n}_tar{n}" for n in range(1, 9)]
    assert "| model | SSIM ↑ | edge SSIM ↑ | Gram loss ↓ | mean/std loss ↓ | s / image |" in printed
    assert all(f"| {name} | lct |" in printed for name in pair_names)
    with open(output / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 * 2 + 2 + 2
    per_pair = [r for r in rows if r["pair"] not in ("average", "stderr")]
    for row in per_pair:
        assert -1 <= float(row["ssim"]) <= 1 and -1 <= float(row["edge_ssim"]) <= 1
        assert float(row["gram_loss"]) > 0 and float(row["mean_std_loss"]) > 0 and float(row["seconds"]) > 0
    for model in ("lct", "as_sct"):
        average = next(r for r in rows if r["pair"] == "average" and r["model"] == model)
        values = [float(r["ssim"]) for r in per_pair if r["model"] == model]
        assert float(average["ssim"]) == pytest.approx(sum(values) / len(values))
        stderr = next(r for r in rows if r["pair"] == "stderr" and r["model"] == model)
        mean = sum(values) / len(values)
        by_hand = (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5
        assert float(stderr["ssim"]) == pytest.approx(by_hand)
    lct_ssim = [float(r["ssim"]) for r in per_pair if r["model"] == "lct"]
    sct_ssim = [float(r["ssim"]) for r in per_pair if r["model"] == "as_sct"]
    assert lct_ssim != sct_ssim                       # the transform kind really differs
    report = (output / "metrics.md").read_text()
    assert report.startswith("### Mean ± standard error over 8 pair(s)")
    assert f"| as_sct | {float(average['ssim']):.4f} ± {float(stderr['ssim']):.4f} |" in report
    assert " ± " in report.split("### Per pair")[0] and " ± " not in report.split("### Per pair")[1]

    assert sorted(p.name for p in (output / "figures").iterdir()) == [f"{name}.png" for name in pair_names]
    with Image.open(output / "figures" / "in1_tar1.png") as figure:
        assert figure.height > 64 * 2                 # panels plus zoomed insets beneath
    with Image.open(output / "results" / "lct" / "in1_tar1.png") as result:
        assert min(result.size) == 32
    with Image.open(output / "contact_sheet.png") as sheet:
        assert sheet.height > 8 * 128


def test_eval_bad_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    touch_images(tmp_path / "pairs" / "content", ["in1.png"])
    touch_images(tmp_path / "pairs" / "style", ["tar1.png"])
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: eval_cli.main(["--pairs_dir", str(tmp_path / "pairs"), "--vgg", str(tmp_path / "vgg.pth"),
                                        "--model", f"m={tmp_path / 'd.pth'},{tmp_path / 't.pth'}",
                                        "--output", str(tmp_path / "out"), "--device", "cpu"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'vgg.pth'}"]
    assert not (tmp_path / "out" / "metrics.csv").exists()


def test_every_pair_pairs_all_contents_with_all_styles(tmp_path: Path):
    from glfa.eval import find_pairs
    touch_images(tmp_path / "content", ["forest.jpg", "dune.png"])
    touch_images(tmp_path / "style", ["night.jpg", "fog.jpg", "dusk.png"])
    pairs = find_pairs(content_dir=tmp_path / "content", style_dir=tmp_path / "style", every_pair=True)
    assert [p.name for p in pairs] == ["dune_dusk", "dune_fog", "dune_night", "forest_dusk", "forest_fog",
                                       "forest_night"]
    assert pairs[0].content == tmp_path / "content" / "dune.png" and pairs[0].style == tmp_path / "style" / "dusk.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no style images"):
        find_pairs(content_dir=tmp_path / "content", style_dir=tmp_path / "empty", every_pair=True)


def test_baselines_run_beside_the_model_and_reinhard_matches_the_function(
        training_vgg: Path, trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """``--baselines reinhard,adain`` add two rows per pair; Reinhard's result is exactly
    ``function.reinhard`` of the pair, AdaIN's differs from the LCT model's."""
    from function import reinhard
    photos = REPO / "test"
    eval_cli.main(["--content_dir", str(photos / "content"), "--style_dir", str(photos / "style"), "--every_pair",
                   "--vgg", str(training_vgg), "--model", f"lct={trained_model}", "--baselines", "reinhard,adain",
                   "--content_size", "32", "--figure_height", "48", "--output", str(tmp_path), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "| reinhard |" in printed and "| adain |" in printed
    with open(tmp_path / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["model"] for r in rows} == {"lct", "reinhard", "adain"}
    assert len(rows) == 3 * 12 + 3 + 3  # every pair, then an average and a standard-error row per model
    assert sorted(r["pair"] for r in rows if r["pair"] in ("average", "stderr")) == ["average"] * 3 + ["stderr"] * 3
    pair = "coast_dune_night_lake"
    content = read_image(photos / "content" / "coast_dune.jpg", 32)
    style = read_image(photos / "style" / "night_lake.jpg", 32)
    with Image.open(tmp_path / "results" / "reinhard" / f"{pair}.png") as saved:
        saved = torch.from_numpy(np.asarray(saved, dtype=np.float32) / 255).permute(2, 0, 1)
    assert (saved - reinhard(content, style)).abs().max() <= 1 / 255 + 1e-6
    with Image.open(tmp_path / "results" / "adain" / f"{pair}.png") as adain, \
            Image.open(tmp_path / "results" / "lct" / f"{pair}.png") as lct:
        assert np.abs(np.asarray(adain, dtype=np.float32) - np.asarray(lct, dtype=np.float32)).mean() > 0.1


def test_non_finite_metrics_are_an_error(tmp_path: Path):
    from glfa.eval import Row, check_metrics_finite
    check_metrics_finite([Row("a_b", "good", 0.5, 0.4, 1e-3, 0.1, 0.2, 0.0, 0.0, 1.0, 5.0)])
    with pytest.raises(UserError, match=r"non-finite metric\(s\) for broken on a_b \(ssim = nan\)"):
        check_metrics_finite([Row("a_b", "good", 0.5, 0.4, 1e-3, 0.1, 0.2, 0.0, 0.0, 1.0, 5.0), Row("a_b", "broken", float("nan"), 0.4, 1e-3, 0.1, 0.2, 0.0, 0.0, 1.0, 5.0)])


def test_issue20_11_a_pairs_file_that_is_not_utf8_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Case 11: ``eval.py --pairs FILE`` with bytes that are not UTF-8, even in a comment, gave a
    UnicodeDecodeError traceback; now one line naming the file and the byte's position."""
    touch_images(tmp_path / "imgs", ["a.png", "b.png"])
    listing = tmp_path / "pairs.txt"
    listing.write_bytes("# pairs\n# photos by Zoë\n".encode("latin-1") + b"imgs/a.png imgs/b.png\n")
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: eval_cli.main(["--pairs", str(listing), "--model", f"m={tmp_path / 'd.pth'},t.pth",
                                        "--output", str(tmp_path / "out"), "--device", "cpu"]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {listing} is not UTF-8 text: byte 0xeb at offset 22 (line 2); "
                                        "save it as UTF-8"]
    assert not (tmp_path / "out").exists()
    listing.write_bytes(b"\xef\xbb\xbf# pairs\nimgs/a.png imgs/b.png\n")       # UTF-8 with a byte-order mark
    assert [p.name for p in read_pairs_file(listing)] == ["a_b"]


def test_alpha_blends_every_model_and_leaves_the_baselines(tmp_path: Path):
    """``--alpha 0.5``: the model's saved result is ``Stylizer.stylize(..., alpha=0.5)`` of the pair
    and differs from full stylisation; Reinhard is unchanged. (A random model with lively weights,
    and the shipped encoder, whose results move with alpha far more than a 2-iteration one's.)"""
    torch.manual_seed(0)
    decoder, transform = tmp_path / "decoder_iter_1.pth.tar", tmp_path / "lct_iter_1.pth.tar"
    torch.save(lively(build_decoder("photo")).state_dict(), decoder)
    torch.save(lively(build_transform("lct", "photo")).state_dict(), transform)
    photos = REPO / "test"
    flags = ["--content_dir", str(photos / "content"), "--style_dir", str(photos / "style"), "--every_pair",
             "--model", f"lct={decoder},{transform}", "--baselines", "reinhard",
             "--content_size", "32", "--figure_height", "48", "--device", "cpu"]
    eval_cli.main([*flags, "--alpha", "0.5", "--output", str(tmp_path / "half")])
    eval_cli.main([*flags, "--output", str(tmp_path / "full")])
    stylizer = Stylizer.from_checkpoints(decoder=decoder, transform=transform, device="cpu")
    pair = "coast_dune_night_lake"
    content = read_image(photos / "content" / "coast_dune.jpg", 32)
    style = read_image(photos / "style" / "night_lake.jpg", 32)

    def saved(run: str, model: str) -> np.ndarray:
        with Image.open(tmp_path / run / "results" / model / f"{pair}.png") as image:
            return np.asarray(image, dtype=np.float32) / 255

    expected = stylizer.stylize(content, [style], alpha=0.5).permute(1, 2, 0).numpy()
    assert np.abs(saved("half", "lct") - expected).max() <= 1 / 255 + 1e-6
    assert np.abs(saved("half", "lct") - saved("full", "lct")).mean() > 0.02
    assert np.array_equal(saved("half", "reinhard"), saved("full", "reinhard"))
