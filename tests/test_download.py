"""The encoder download helper against a local HTTP server on 127.0.0.1: a good file, junk, a 404,
an unreachable address."""
import hashlib
import io
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torch import nn

from glfa.checkpoint import load_encoder
from models import download
from net import vgg_layout

REPO_ROOT = Path(__file__).resolve().parents[1]


def vgg_bytes(children: int) -> bytes:
    """A state dict of the first ``children`` VGG children with random weights, as ``torch.save`` writes it."""
    torch.manual_seed(0)
    layers = nn.Sequential(*vgg_layout()[:children])
    buffer = io.BytesIO()
    torch.save(layers.state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    """Serves ``/photo.pth`` (VGG to relu3_1), ``/art.pth`` (to relu4_1), ``/junk.pth``; anything else is 404."""
    files = {"/photo.pth": vgg_bytes(18), "/art.pth": vgg_bytes(31), "/junk.pth": b"\x00not a checkpoint" * 100}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    httpd.shutdown()
    httpd.server_close()


def run_download(argv: list[str], capsys) -> tuple[int, str, str]:
    """``python -m models.download`` in-process: exit status, stdout, stderr."""
    with pytest.raises(SystemExit) as exit_info:
        download.run_main(lambda: download.main(argv))
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def test_fetches_a_valid_encoder_and_checks_it_loads(server, tmp_path, capsys):
    url, files = server
    output = tmp_path / "weights" / "vgg_normalised.pth"
    code, out, err = run_download(["--url", f"{url}/photo.pth", "--output", str(output)], capsys)
    assert code == 0, err
    assert output.read_bytes() == files["/photo.pth"]
    assert "photo mode (relu3_1)" in out and "not art mode" in out
    assert list(output.parent.iterdir()) == [output]               # no temporary file left behind
    encoder = load_encoder(output, "photo")
    first_conv = torch.load(io.BytesIO(files["/photo.pth"]), weights_only=True)["0.weight"]
    assert torch.equal(encoder[0].weight, first_conv)


def test_a_matching_sha256_is_accepted(server, tmp_path, capsys):
    url, files = server
    output = tmp_path / "vgg.pth"
    digest = hashlib.sha256(files["/photo.pth"]).hexdigest()
    code, _, err = run_download(["--url", f"{url}/photo.pth", "--output", str(output), "--sha256", digest], capsys)
    assert code == 0, err
    assert output.read_bytes() == files["/photo.pth"]


def test_an_art_mode_file_covers_both_modes(server, tmp_path, capsys):
    url, _ = server
    output = tmp_path / "vgg.pth"
    code, out, err = run_download(["--url", f"{url}/art.pth", "--output", str(output), "--mode", "art"], capsys)
    assert code == 0, err
    assert "photo mode (relu3_1) and art mode (relu4_1)" in out
    load_encoder(output, "art")


@pytest.mark.parametrize("served, extra, fragments", [
    ("photo.pth", ["--mode", "art"], ("not a usable VGG encoder for art mode", "missing layers")),
    ("junk.pth", [], ("not a usable VGG encoder", "not a readable PyTorch checkpoint")),
    ("missing.pth", [], ("HTTP 404",)),
    ("photo.pth", ["--sha256", "00ff"], ("does not match --sha256",)),
], ids=["photo-only file for art mode", "junk bytes", "404", "wrong SHA-256"])
def test_a_bad_download_is_one_clear_error_and_nothing_is_written(served, extra, fragments, server, tmp_path,
                                                                   capsys):
    url, _ = server
    output = tmp_path / "vgg.pth"
    code, _, err = run_download(["--url", f"{url}/{served}", "--output", str(output), *extra], capsys)
    assert_one_error_line(code, err, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_address_fails_fast_with_a_network_hint(tmp_path, capsys):
    with socket.socket() as probe:                       # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "vgg.pth"
    code, _, err = run_download(["--url", f"http://127.0.0.1:{port}/vgg.pth", "--output", str(output),
                                 "--timeout", "5"], capsys)
    assert_one_error_line(code, err, "cannot reach", "no network?", "--vgg")
    assert not output.exists()


def test_a_malformed_url_is_one_clear_error(tmp_path, capsys):
    code, _, err = run_download(["--url", "not-a-url", "--output", str(tmp_path / "vgg.pth")], capsys)
    assert_one_error_line(code, err, "--url", "not-a-url")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_good_file_is_kept_and_a_bad_one_reported(server, tmp_path, capsys):
    url, files = server
    output = tmp_path / "vgg.pth"
    output.write_bytes(files["/photo.pth"])
    code, out, _ = run_download(["--url", f"{url}/missing.pth", "--output", str(output)], capsys)
    assert code == 0 and "already there" in out
    output.write_bytes(b"junk")
    code, _, err = run_download(["--output", str(output)], capsys)
    assert_one_error_line(code, err, "--force")
    code, _, err = run_download(["--url", f"{url}/photo.pth", "--output", str(output), "--force"], capsys)
    assert code == 0 and output.read_bytes() == files["/photo.pth"]


def test_runs_as_a_module_from_the_repository_root(server, tmp_path):
    url, files = server
    output = tmp_path / "vgg.pth"
    result = subprocess.run([sys.executable, "-m", "models.download", "--url", f"{url}/photo.pth",
                             "--output", str(output)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert output.read_bytes() == files["/photo.pth"]
    bad = subprocess.run([sys.executable, "-m", "models.download", "--url", f"{url}/junk.pth",
                          "--output", str(tmp_path / "bad.pth")], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
