"""The local web demo (app.py, glfa/app.py): the Gradio server on a random model, over Gradio's
HTTP API as the page uses it (photo inputs with the test photos as thumbnails, the result shown
and downloaded at full size), and its guards (files, Host, Origin, sizes, HEAD, slow and vanishing
clients, nothing contacted outside); then the page in a real headless browser with the shipped
model (skipped where selenium, chromium or chromedriver is missing). Decoding the uploads is
tested in test_uploads.py, which runs where Gradio is absent."""
import base64
import http.client
import io
import ipaddress
import json
import logging
import os
import re
import runpy
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the web demo needs Gradio: pip install -r requirements-demo.txt")

import glfa.app  # noqa: E402
from glfa.app import Demo, DemoServer, TimedProtocol  # noqa: E402
from glfa.cli import run_main  # noqa: E402
from glfa.errors import UserError  # noqa: E402
from glfa.inference import Stylizer  # noqa: E402
from helpers import NOT_AN_IMAGE, REPO_ROOT, photo_bytes, png_file, write_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas deprecations inside Gradio
PHOTOS = REPO_ROOT / "test"
MAX_SIDE = 256
MAX_UPLOAD = 4 * 2**20


def multipart(fields: dict[str, str | tuple[str, bytes]], boundary: str = "demo-test-7c3e") -> tuple[bytes, str]:
    """``fields`` (text, or ``(filename, bytes)`` for a file) as a multipart/form-data body and its type."""
    body = b""
    for name, value in fields.items():
        if isinstance(value, tuple):
            head, data = f'name="{name}"; filename="{value[0]}"\r\nContent-Type: application/octet-stream', value[1]
        else:
            head, data = f'name="{name}"', value.encode()
        body += f"--{boundary}\r\nContent-Disposition: form-data; {head}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# --------------------------------------------------------------------------------------------
# The demo's answers
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    decoder, transform = write_model(tmp_path_factory.mktemp("model"), 5)
    return Demo(Stylizer.from_checkpoints(decoder, transform, device="cpu"), max_side=MAX_SIDE)


def test_the_options_change_the_result(demo: Demo):
    content, style = photo_bytes(160, 96), photo_bytes(128, 128, "JPEG", seed=1)
    results = {}
    for option, extra in {"default": {}, "alpha": {"alpha": 0.3}, "colour": {"preserve_color": True},
                          "raw": {"smooth": False}}.items():
        result, message = demo.stylize(content, style, **extra)
        assert result.size == (160, 96) and message.startswith("<p>Done in "), message
        results[option] = np.asarray(result, dtype=np.float64)
    for option in ("alpha", "colour", "raw"):
        assert np.abs(results[option] - results["default"]).mean() > 0.5, option
    # the default is the finished result, as test.py and the API give it
    with Image.open(io.BytesIO(content)) as c, Image.open(io.BytesIO(style)) as s:
        np.testing.assert_array_equal(results["default"], np.asarray(demo.stylizer(c, s), dtype=np.float64))


def test_the_demo_returns_a_large_photo_at_its_own_size(demo: Demo):
    """Issue 26: finished at the working size, a photo larger than the old 1024-px cap comes back
    whole; without the finish it is scaled down to ``raw_max_side``."""
    demo = Demo(demo.stylizer, max_side=2000, raw_max_side=1024)
    content, style = photo_bytes(1600, 900), photo_bytes(128, 128, "JPEG", seed=1)
    result, message = demo.stylize(content, style)
    assert result.size == (1600, 900), message
    raw, message = demo.stylize(content, style, smooth=False)
    assert raw.size == (1024, 576), message


@pytest.mark.parametrize("content, style, alpha, message", [
    (None, photo_bytes(64, 64), 1.0, "Choose a content photo: upload one or pick a test photo."),
    (photo_bytes(64, 64), b"", 1.0, "Choose a style photo: upload one or pick a test photo."),
    (b"%PDF-1.4 not a photo", photo_bytes(64, 64), 1.0, f"The content photo {NOT_AN_IMAGE}"),
    (photo_bytes(64, 64), photo_bytes(64, 64), 2.0, "alpha must be between 0 and 1, got 2.0"),
    (photo_bytes(4, 4), photo_bytes(64, 64), 1.0, "the content image is 4×4 px"),
])
def test_a_bad_request_gets_a_message(demo: Demo, content: bytes | None, style: bytes, alpha: float, message: str):
    result, answer = demo.stylize(content, style, alpha)
    assert result is None and answer.startswith(f'<p class="error">{message}'), answer


# --------------------------------------------------------------------------------------------
# The server, over Gradio's HTTP API
# --------------------------------------------------------------------------------------------

NETWORK = {"on": False, "outside": []}   # name lookups and connections to other hosts while on


def watch_network(event: str, args: tuple) -> None:
    """Audit hook: record every lookup or connection to a host that is not this machine."""
    if not NETWORK["on"] or event not in ("socket.connect", "socket.getaddrinfo"):
        return
    host = args[1][0] if event == "socket.connect" and isinstance(args[1], tuple) else args[0]
    if isinstance(host, (str, bytes)) and host not in ("localhost", b"localhost"):
        try:
            if ipaddress.ip_address(host if isinstance(host, str) else host.decode()).is_loopback:
                return
        except ValueError:
            pass
        NETWORK["outside"].append((event, host))


class Answer(NamedTuple):
    """A ``stylize`` call's answer as the page receives it."""
    shown: Image.Image | None       # the result on the page
    full: Image.Image | None        # the download
    message: str


class Api:
    """A served demo as its page talks to it: Gradio's upload route and ``stylize`` event."""

    def __init__(self, url: str):
        self.host, self.port = urlsplit(url).hostname, urlsplit(url).port

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def upload(self, data: bytes, name: str = "photo.png", headers: dict | None = None) -> tuple[int, bytes]:
        body, content_type = multipart({"files": (name, data)})
        return self.request("POST", "/gradio_api/upload", body, {"Content-Type": content_type, **(headers or {})})

    def file(self, data: bytes, name: str = "photo.png") -> dict:
        status, answer = self.upload(data, name)
        assert status == 200, answer
        return {"path": json.loads(answer)[0], "meta": {"_type": "gradio.FileData"}}

    def call(self, content: dict, style: dict, alpha: float = 1.0) -> tuple[str, object]:
        """One ``stylize`` call through the HTTP API with these file references: its closing event
        (``complete`` or ``error``) and that event's data."""
        request = json.dumps({"data": [content, style, alpha, False, False]}).encode()
        status, answer = self.request("POST", "/gradio_api/call/stylize", request, {"Content-Type": "application/json"})
        assert status == 200, answer
        status, stream = self.request("GET", f"/gradio_api/call/stylize/{json.loads(answer)['event_id']}")
        lines = stream.decode().splitlines()
        events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
        assert status == 200 and events[-1] in ("complete", "error"), stream
        return events[-1], json.loads(lines[lines.index(f"event: {events[-1]}") + 1].removeprefix("data: "))

    def image(self, reference: dict | None) -> Image.Image | None:
        """The image a file reference in an answer names, fetched as the page fetches it."""
        if reference is None:
            return None
        status, data = self.request("GET", urlsplit(reference["url"]).path)
        assert status == 200, data
        return Image.open(io.BytesIO(data))

    def stylize(self, content: bytes, style: bytes, alpha: float = 1.0) -> Answer:
        """One ``stylize`` call: the result as shown, the full-size download and the message."""
        event, (shown, download, message) = self.call(self.file(content), self.file(style), alpha)
        assert event == "complete" and download["__type__"] == "update", (shown, download, message)
        return Answer(self.image(shown), self.image(download["value"]), message)


@pytest.fixture(scope="module")
def server(demo: Demo) -> DemoServer:
    """The demo served on a free port in a thread, with a 1-second header timeout and body window,
    its network use watched from before it is built."""
    sys.addaudithook(watch_network)
    NETWORK["on"] = True
    with pytest.MonkeyPatch.context() as patch, DemoServer(demo, max_upload=MAX_UPLOAD) as server:
        patch.setattr(TimedProtocol, "header_timeout", 1.0)
        patch.setattr(TimedProtocol, "body_window", 1.0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield server
        server.shutdown()
        thread.join(timeout=10)
    NETWORK["on"] = False


@pytest.fixture(scope="module")
def api(server: DemoServer) -> Api:
    return Api(server.url)


def test_the_page_is_served_head_included_and_loads_nothing_from_outside(api: Api):
    status, page = api.request("GET", "/")
    assert status == 200 and b"Photorealistic style transfer" in page and b"longer than 256 px" in page
    elements = re.findall(rb"<(?:script|link|img|iframe)\b[^>]*>", page)
    assert elements and [element for element in elements if re.search(rb'(src|href)="(https?:)?//', element)] == []
    connection = http.client.HTTPConnection(api.host, api.port, timeout=10)
    connection.request("HEAD", "/")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"") and response.headers["Content-Type"].startswith("text/html")
    status, theme = api.request("GET", "/theme.css")
    assert status == 200 and b"http" not in theme.replace(b"http://www.w3.org/2000/svg", b"")


def test_a_pair_gives_the_result_shown_and_as_a_full_size_png(api: Api, server: DemoServer):
    shown, full, message = api.stylize(photo_bytes(200, 120), photo_bytes(128, 100, "JPEG", seed=1))
    assert shown.size == full.size == (200, 120) and (shown.format, full.format) == ("JPEG", "PNG")
    assert message.startswith("<p>Done in ") and message.endswith("s: 200×120 px.</p>")
    uploaded = api.file(b"just bytes")["path"]
    assert Path(uploaded).is_relative_to(server.files.name)  # Gradio's copy of an upload, in the private folder


def test_a_large_photo_is_scaled_down_and_the_page_says_so(api: Api):
    _, full, message = api.stylize(photo_bytes(1500, 600, "JPEG"), (PHOTOS / "style" / "fog_pier.jpg").read_bytes())
    assert full.size == (256, 102)
    assert message.endswith(
        "<p>The content photo was scaled down from 1500×600 to 256×102 px (this demo takes at most 256 px on a side).</p>\n"
        "<p>The style photo was scaled down from 640×400 to 256×160 px (this demo takes at most 256 px on a side).</p>")


def test_a_file_that_is_not_an_image_gets_a_message_and_the_demo_goes_on(api: Api):
    assert api.stylize(b"not a photo\n" * 100, photo_bytes(64, 64)) == (
        None, None, f'<p class="error">The content photo {NOT_AN_IMAGE}</p>')
    assert api.stylize(photo_bytes(64, 64), photo_bytes(64, 64)).full.size == (64, 64)


def test_an_oversized_upload_gets_one_clear_message(api: Api):
    """A PNG of a few bytes declaring 11000×10000 px is refused before decoding, in one line, and
    the download is turned off."""
    declared = png_file(11000, 10000, 0, 8, zlib.compress(b""))
    event, (shown, download, message) = api.call(api.file(photo_bytes(64, 64)), api.file(declared))
    assert event == "complete" and shown is None and (download["value"], download["interactive"]) == (None, False)
    assert message == ('<p class="error">The style photo is larger than this demo decodes (at most 100 Mpx): '
                       "it is 11000×10000 px</p>")


def test_the_result_is_shown_scaled_down_and_downloaded_whole(api: Api, demo: Demo, monkeypatch: pytest.MonkeyPatch):
    """Issue 28: the page shows the result at most ``PREVIEW_SIDE`` px on a side (a JPEG); the
    download button names its size and holds the full-size result, lossless, as a PNG."""
    monkeypatch.setattr(glfa.app, "PREVIEW_SIDE", 100)
    content, style = photo_bytes(240, 144), photo_bytes(128, 100, "JPEG", seed=1)
    event, (shown, download, message) = api.call(api.file(content), api.file(style))
    assert event == "complete" and message.startswith("<p>Done in "), message
    assert (download["label"], download["interactive"], download["value"]["orig_name"]) == (
        "Download 240×144 px (PNG)", True, "stylised.png")
    shown, full = api.image(shown), api.image(download["value"])
    assert (shown.format, shown.size, full.format, full.size) == ("JPEG", (100, 60), "PNG", (240, 144))
    expected, _ = demo.stylize(content, style, smooth=False)     # as the call asked: without the finish
    np.testing.assert_array_equal(np.asarray(full), np.asarray(expected))


def test_the_photo_inputs_preview_and_offer_the_test_photos_as_thumbnails(api: Api):
    """Issue 28: each input is an image component (the browser previews the photo) with its test
    photos as example thumbnails, which the demo serves; one picked as the page sends it (Gradio's
    copy) is stylised."""
    status, config = api.request("GET", "/config")
    assert status == 200, config
    components = {component["id"]: component for component in json.loads(config)["components"]}
    photos = {component["props"]["elem_id"]: component for component in components.values()
              if component["type"] == "image"}
    assert {kind: photos[kind]["props"]["sources"] for kind in ("content", "style")} == {
        "content": ["upload", "clipboard"], "style": ["upload", "clipboard"]}
    examples = {}
    for dataset in (component for component in components.values() if component["type"] == "dataset"):
        (target,) = dataset["props"]["component_ids"]
        examples[components[target]["props"]["elem_id"]] = [sample for (sample,) in dataset["props"]["samples"]]
    for kind in ("content", "style"):
        names = sorted(path.name for path in (PHOTOS / kind).iterdir())
        assert [sample["orig_name"] for sample in examples[kind]] == names
        for sample in examples[kind]:
            with Image.open(PHOTOS / kind / sample["orig_name"]) as photo:
                assert api.image(sample).size == photo.size
    event, outputs = api.call(examples["content"][0], examples["style"][0])
    assert event == "complete" and outputs[2].startswith("<p>Done in "), outputs


def test_uploads_reach_the_bounded_decoder_unopened_and_data_urls_are_ignored(api: Api,
                                                                               monkeypatch: pytest.MonkeyPatch):
    """``gr.Image`` would open each upload with Pillow and decode it whole (or a ``data:`` URL sent
    in a file's place, unbounded, since such a reference names no path for the guard to check):
    here Pillow opens only the bytes ``decode_upload`` is given, and a ``data:`` URL is not read."""
    opened = []
    open_image = Image.open

    def watched(source, *args, **kwargs):
        opened.append(source)
        return open_image(source, *args, **kwargs)

    monkeypatch.setattr(Image, "open", watched)
    content, style = api.file(photo_bytes(96, 64)), api.file(photo_bytes(64, 64))
    event, outputs = api.call(content, style)
    assert event == "complete" and outputs[2].startswith("<p>Done in "), outputs
    assert len(opened) == 2 and all(isinstance(source, io.BytesIO) for source in opened), opened
    opened.clear()
    data_url = {"url": "data:image/png;base64," + base64.b64encode(photo_bytes(64, 64)).decode(),
                "meta": {"_type": "gradio.FileData"}}
    event, outputs = api.call(data_url, style)
    assert event == "complete" and outputs[2] == ('<p class="error">Choose a content photo: upload one or pick a '
                                                  'test photo.</p>') and opened == []


def file_data(path: str | Path, **fields) -> dict:
    """A file reference as an API call sends it, naming any ``path``."""
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}, **fields}


REFUSED = (403, {"detail": "this demo reads only the photos uploaded to it (at most 4 MB each) and its test photos"})


def call_naming(api: Api, content: dict, style: dict, route: str = "/gradio_api/call/stylize") -> tuple[int, dict]:
    """POST a ``stylize`` call with these file references: the status and the JSON answer."""
    status, answer = api.request("POST", route, json.dumps({"data": [content, style, 1.0, False, False]}).encode(),
                                 {"Content-Type": "application/json"})
    return status, json.loads(answer)


def test_issue27_item1_a_request_reads_only_uploads_and_test_photos(api: Api, server: DemoServer, tmp_path: Path):
    """issue 27 item 1: a call naming a file outside the upload folder (a photo, a missing file, a
    device, a 2 GB file, a URL, a path climbing out of the folder), by any route, is refused alike
    for files that exist and files that do not, and nothing is read, copied or fetched; the page's
    own files (uploads, the test photos) are stylised."""
    outside = tmp_path / "secret.png"
    outside.write_bytes(photo_bytes(64, 64))
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as file:                      # sparse: 2 GB declared, nothing written
        file.truncate(2 * 2**30)
    folder = Path(server.files.name)
    uploaded = api.file(photo_bytes(64, 64))
    stored = sorted(folder.rglob("*"))
    for named in (file_data(outside), file_data(tmp_path / "missing.png"), file_data("/dev/zero"), file_data(huge),
                  file_data(f"{folder}/{os.path.relpath(outside, folder)}"),                 # climbing out
                  file_data(f"http://127.0.0.1:{server.port}/gradio_api/file={outside}"),
                  file_data(outside, is_stream=True), {"path": str(outside)}, file_data(outside, url=str(outside))):
        assert call_naming(api, named, uploaded) == REFUSED, named
        assert call_naming(api, uploaded, named) == REFUSED, named
    for route in ("/gradio_api/run/stylize", "/gradio_api/api/stylize", "/gradio_api/queue/join"):
        assert call_naming(api, file_data(outside), uploaded, route) == REFUSED, route
    assert sorted(folder.rglob("*")) == stored          # nothing copied in
    for content in (file_data(PHOTOS / "content" / "coast_dune.jpg"), uploaded):   # a test photo as the page sends it
        event, outputs = api.call(content, uploaded)
        assert event == "complete" and outputs[0] is not None and outputs[2].startswith("<p>Done in "), outputs


def test_issue27_item1_files_in_the_upload_folder_are_bounded_and_never_block(api: Api, server: DemoServer):
    """issue 27 item 1: even in the upload folder a file over the upload limit is refused unread, and
    a FIFO or a link out of the folder is refused at once instead of blocking or being followed."""
    folder = Path(server.files.name) / "planted"
    folder.mkdir()
    try:
        huge, fifo, link = folder / "huge.png", folder / "fifo.png", folder / "link.png"
        with huge.open("wb") as file:
            file.truncate(MAX_UPLOAD + 1)
        os.mkfifo(fifo)
        link.symlink_to(Path("/dev/zero"))
        uploaded = api.file(photo_bytes(64, 64))
        for path in (huge, fifo, link):
            assert call_naming(api, uploaded, file_data(path)) == REFUSED, path
        assert api.stylize(photo_bytes(64, 64), photo_bytes(64, 64)).full.size == (64, 64)
    finally:
        shutil.rmtree(folder)


def test_requests_take_turns_decoding_included(api: Api, demo: Demo, monkeypatch: pytest.MonkeyPatch):
    active, seen = [0], []
    decode, stylizer = glfa.app.decode_upload, demo.stylizer

    def watched(function):
        def call(*args, **kwargs):
            active[0] += 1
            seen.append((active[0], demo._lock.locked()))
            time.sleep(0.1)
            try:
                return function(*args, **kwargs)
            finally:
                active[0] -= 1
        return call

    monkeypatch.setattr(glfa.app, "decode_upload", watched(decode))
    monkeypatch.setattr(demo, "stylizer", watched(stylizer))
    results = []
    threads = [threading.Thread(target=lambda: results.append(api.stylize(photo_bytes(96, 64), photo_bytes(64, 64))))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [answer.full.size for answer in results] == [(96, 64)] * 3
    assert len(seen) == 9 and set(seen) == {(1, True)}     # one at a time, each under the model's lock


def test_foreign_hosts_and_origins_are_refused(api: Api, server: DemoServer):
    port = server.port
    for host, status in ((f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200), (f"[::1]:{port}", 200),
                         (f"evil.example:{port}", 403), (f"127.0.0.1.nip.io:{port}", 403),
                         (f"127.0.0.1:{port + 1}", 403), ("127.0.0.1", 403)):
        assert api.request("GET", "/", headers={"Host": host})[0] == status, host
    stored = sorted(Path(server.files.name).rglob("*"))
    for origin in ("http://evil.example", "null", f"http://localhost:{port + 1}", f"https://127.0.0.1:{port}"):
        status, answer = api.upload(photo_bytes(64, 64), headers={"Origin": origin})
        assert (status, json.loads(answer)) == (403, {"detail": "this demo answers only its own page, not other sites"})
        status, _ = api.request("POST", "/gradio_api/call/stylize", b'{"data": []}',
                                {"Origin": origin, "Content-Type": "application/json"})
        assert status == 403
        status, _ = api.request("OPTIONS", "/gradio_api/upload", headers={"Origin": origin,
                                                                          "Access-Control-Request-Method": "POST"})
        assert status == 403
    assert sorted(Path(server.files.name).rglob("*")) == stored   # nothing was written
    assert api.upload(photo_bytes(64, 64), headers={"Origin": f"http://127.0.0.1:{port}"})[0] == 200


def send_head(server: DemoServer, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """POST to the upload route a request head with ``headers`` and only ``body`` (none: the body
    the head announces is never sent); the answer's status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("POST", "/gradio_api/upload")
        for name, value in {"Content-Type": "multipart/form-data; boundary=b", **headers}.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_oversized_endless_and_many_part_requests_are_refused_quickly(api: Api, server: DemoServer):
    started = time.perf_counter()
    status, answer = send_head(server, {"Content-Length": str(60 * 2**20)})    # refused before any byte of it
    assert (status, json.loads(answer)) == (413, {"detail": "the file is too large: this demo takes at most 4 MB "
                                                            "per photo"})
    assert send_head(server, {"Transfer-Encoding": "chunked"}, b"5\r\nhello\r\n0\r\n\r\n")[0] == 411
    status, answer = api.upload(b"\0" * (MAX_UPLOAD + 1000))        # within the request limit, over the file limit
    assert status == 413 and b"File size exceeded" in answer
    fields = b"".join(b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\n\r\n' for _ in range(80_000))
    status, answer = api.request("POST", "/gradio_api/upload", fields + b"--b--\r\n",
                                 {"Content-Type": "multipart/form-data; boundary=b"})
    assert len(fields) > 3 * 2**20 and status == 400 and b"Too many fields" in answer
    lines = b"ab\n" * (MAX_UPLOAD // 3 - 100)                        # one part of 3-byte lines, just under 4 MB
    assert api.upload(lines, "lines.png")[0] == 200
    assert time.perf_counter() - started < 10


def test_a_client_slow_with_its_headers_is_cut_off_and_holds_nothing(api: Api, server: DemoServer):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())   # never finished
        started = time.monotonic()
        assert api.request("GET", "/")[0] == 200                   # others are served meanwhile
        assert slow.recv(100) == b"" and time.monotonic() - started < 5


def slow_upload(server: DemoServer, address: str) -> socket.socket:
    """A connection from ``address`` that sends an upload's headers and one byte of its body."""
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(address, 0))
    slow.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 100000\r\n"
                 "Content-Type: multipart/form-data; boundary=b\r\n\r\n-".encode())
    return slow


def closed(connection: socket.socket) -> bool:
    """Whether the server closed ``connection`` (waiting up to its timeout)."""
    try:
        return connection.recv(100) == b""
    except ConnectionResetError:
        return True


def test_issue27_item2_slow_bodies_are_cut_off_and_one_client_cannot_hold_every_connection(api: Api,
                                                                                           server: DemoServer):
    """issue 27 item 2: a client trickling request bodies from one address holds at most
    ``max_client_connections`` connections (more are closed at once) while others are served, and
    each trickling body is cut off after a window in which it did not keep up."""
    count = TimedProtocol.max_client_connections
    slow = [slow_upload(server, "127.0.0.2") for _ in range(count + 4)]
    try:
        started = time.monotonic()
        assert api.request("GET", "/")[0] == 200                   # others are served meanwhile
        for connection in slow[count:]:
            connection.settimeout(0.5)
            assert closed(connection)                               # over the limit: closed at once
        for connection in slow[:count]:
            connection.settimeout(10)
            assert closed(connection)                               # too slow: cut off after the window
        assert time.monotonic() - started < 8
        assert api.upload(photo_bytes(64, 64))[0] == 200
    finally:
        for connection in slow:
            connection.close()


def test_clients_that_go_away_leave_no_traceback(api: Api, server: DemoServer, capfd: pytest.CaptureFixture):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("uvicorn.error").addHandler(handler)
    try:
        head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 3000000\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        with socket.create_connection(("127.0.0.1", server.port)) as gone:     # leaves mid-upload
            gone.sendall(head.encode() + b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"'
                         b"\r\n\r\n" + b"x" * 100_000)
            time.sleep(0.3)
        for path in ("/", "/gradio_api/call/stylize/0123"):                 # resets before reading the answer
            with socket.create_connection(("127.0.0.1", server.port)) as gone:
                gone.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
                gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.5)
        assert api.request("GET", "/")[0] == 200
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    assert [record.getMessage() for record in records if record.levelno >= logging.WARNING] == []
    assert "Traceback" not in capfd.readouterr().err


def test_the_server_contacts_nothing_outside(api: Api):
    """Since before the page was built (analytics, version checks, fonts, share links): only loopback."""
    assert api.stylize(photo_bytes(64, 64), photo_bytes(64, 64)).full.size == (64, 64)
    assert NETWORK["outside"] == []


def test_gradio_files_live_in_a_private_folder_removed_on_exit(demo: Demo):
    before = os.environ.get("GRADIO_TEMP_DIR")
    with DemoServer(demo) as other:
        folder = Path(other.files.name)
        assert os.environ["GRADIO_TEMP_DIR"] == str(folder) and folder.stat().st_mode & 0o077 == 0
    assert not folder.exists() and os.environ.get("GRADIO_TEMP_DIR") == before


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def test_flags_their_help_and_their_one_line_errors(capsys: pytest.CaptureFixture):
    command = runpy.run_path(str(REPO_ROOT / "app.py"), run_name="app_under_test")
    parser, parse_args = command["build_parser"](), command["parse_args"]
    assert [action.option_strings for action in parser._actions if not (action.help or "").strip()] == []
    assert "(default: 127.0.0.1)" in parser.format_help() and "(default: None)" not in parser.format_help()
    args = parse_args([])
    assert (args.host, args.port, args.max_side, args.transform_path, args.transform) == ("127.0.0.1", 7860, 6000,
                                                                                          None, "lct")
    assert parse_args(["--LCT", "t.pth", "--port", "0"]).transform_path == "t.pth"
    for flags, error in ((["--port", "70000"], "must be a port number from 0 to 65535, got 70000"),
                         (["--max_side", "0"], "must be a positive integer, got 0")):
        with pytest.raises(SystemExit):
            parse_args(flags)
        assert error in capsys.readouterr().err


def test_a_busy_port_and_a_missing_model_are_one_error_line(demo: Demo, server: DemoServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture):
    with pytest.raises(UserError, match=f"^cannot listen on 127.0.0.1:{server.port}: "):
        DemoServer(demo, "127.0.0.1", server.port)
    main = runpy.run_path(str(REPO_ROOT / "app.py"), run_name="app_under_test")["main"]
    with pytest.raises(SystemExit) as exited:
        run_main(lambda: main(["--decoder", str(tmp_path / "none.pth"), "--device", "cpu", "--port", "0"]))
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: ") and "none.pth" in err


# --------------------------------------------------------------------------------------------
# The page in a real browser
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Headless Debian chromium driven by selenium through the system chromedriver, on a fresh profile
    with its background traffic (updates, sync) off."""
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed (pip install -r requirements-demo.txt)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("no chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1280,900",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    from selenium.webdriver.chrome.service import Service
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def app_url():
    """``python app.py --port 0`` with the shipped model, as a user starts it; its address."""
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "app.py"), "--port", "0", "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output, deadline = "", time.monotonic() + 120
    while "http://" not in output:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"app.py did not start: {output}{process.stdout.read()}")
        if select.select([process.stdout], [], [], 1)[0]:
            output += process.stdout.readline()
    yield output[output.index("http://"):].split()[0]
    process.terminate()
    process.wait(timeout=30)


def shown_size(page, selector: str) -> list[int] | None:
    """The natural size of the image ``selector`` finds on ``page``, once it has loaded."""
    return page.execute_script(f"const image = document.querySelector('{selector}');"
                               "return image && image.complete && image.naturalWidth ? "
                               "[image.naturalWidth, image.naturalHeight] : null;")


def test_the_page_previews_stylises_and_downloads_in_a_browser(browser, app_url: str, tmp_path: Path):
    """Issue 28: an upload and a test photo picked by its thumbnail are previewed, the result is
    shown, and its download is the full-size PNG; a broken upload gets the message."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    browser.get(app_url)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#content input[type=file]")
               and page.find_elements(By.ID, "download"))
    thumbnails = {Path(urlsplit(image.get_attribute("src")).path).name: image
                  for image in browser.find_elements(By.CSS_SELECTOR, "#style_examples img")}
    assert sorted(thumbnails) == sorted(path.name for path in (PHOTOS / "style").iterdir())
    assert browser.find_element(By.ID, "download").get_attribute("disabled")   # nothing to download yet
    browser.find_element(By.CSS_SELECTOR, "#content input[type=file]").send_keys(
        str(PHOTOS / "content" / "forest_path.jpg"))
    thumbnails["dusk_lake.jpg"].click()
    assert wait.until(lambda page: shown_size(page, "#content img")) == [640, 400]     # the previews
    assert wait.until(lambda page: shown_size(page, "#style img")) == [640, 400]
    browser.find_element(By.ID, "run").click()
    assert wait.until(lambda page: shown_size(page, "#result img")) == [640, 400]
    assert browser.find_element(By.ID, "message").text.startswith("Done in ")
    download = browser.find_element(By.ID, "download")
    assert download.text == "Download 640×400 px (PNG)"
    download.click()
    wait.until(lambda _: (tmp_path / "stylised.png").is_file() and not list(tmp_path.glob("*.crdownload")))
    with Image.open(tmp_path / "stylised.png") as downloaded:
        assert (downloaded.format, downloaded.size) == ("PNG", (640, 400))
    origin = app_url.rstrip("/")
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
    assert loaded and [url for url in loaded if not url.startswith((origin, "data:", "blob:"))] == []

    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo\n")
    browser.find_element(By.CSS_SELECTOR, "#content button[aria-label='Remove Image']").click()
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#content input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#content input[type=file]").send_keys(str(broken))
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#content img"))
    browser.find_element(By.ID, "run").click()
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#message .error"))
    assert browser.find_element(By.ID, "message").text == f"The content photo {NOT_AN_IMAGE}"
    assert browser.find_elements(By.CSS_SELECTOR, "#result img") == []
    assert browser.find_element(By.ID, "download").get_attribute("disabled")
