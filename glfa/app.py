"""The local web demo behind ``app.py``: the Gradio page where a content and a style photo
(uploaded, or picked from ``test/``) are stylised, and the guarded server that serves it.

Gradio draws the page and queues the requests (one at a time: decoding and the model take turns).
The photo inputs preview in the browser, with the test photos as thumbnails; our code reads the
uploaded file's bytes itself (``page_answer``: Gradio's own image preprocessing would decode the
file, or a ``data:`` URL in the request, whole), and ``glfa.uploads.decode_upload`` decodes them in
memory within a pixel budget and at a reduced scale, so a small file that declares a huge image
costs neither gigabytes nor minutes. The result is shown scaled to ``PREVIEW_SIDE`` and downloaded
as a full-size PNG. Gradio stores each upload, and the files it serves, in a private temporary
folder that is emptied as files age and removed when the server stops. ``RequestGuard`` answers
only the page's own requests: a foreign ``Host`` (DNS rebinding) or ``Origin`` (another web page)
is refused, as are bodies over the upload limit and requests naming a file the demo does not hold
(``DemoFiles``: Gradio would read, copy or fetch whatever path or URL an API call names); uvicorn
serves it, with time limits on request headers and bodies and a bound on the connections one
client holds (``TimedProtocol``). Nothing is loaded from outside: no CDN, fonts, telemetry, version
check or share link.
"""
import argparse
import asyncio
import functools
import html
import ipaddress
import json
import os
import signal
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check

import gradio as gr  # noqa: E402
import h11  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.datastructures import Headers  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.types import ASGIApp, Receive, Scope, Send  # noqa: E402
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402

from glfa.errors import UserError  # noqa: E402
from glfa.flagtypes import unit_float  # noqa: E402
from glfa.images import PNG_LEVEL, list_images  # noqa: E402
from glfa.inference import Stylizer  # noqa: E402
from glfa.paths import EXAMPLES_DIR  # noqa: E402
from glfa.uploads import MAX_PIXELS, decode_upload  # noqa: E402

MAX_SIDE = 6000                   # px: longer photos are scaled down to this (finished at the working size)
RAW_MAX_SIDE = 1024               # px: the same without the finish, where the network sees every pixel
PREVIEW_SIDE = 2048               # px: the result as the page shows it (the download is full size)
RESULT_NAME = "stylised.png"      # the full-size download's file name
MAX_UPLOAD = 50 * 2**20           # bytes in one uploaded file (Gradio's max_file_size)
FORM_SLACK = 2**20                # bytes a request may carry beyond one file: its form fields; any other body
UPLOAD_ROUTE = "/gradio_api/upload"  # the one route whose body is a file
HEADER_TIMEOUT = 10.0             # s a client has to send a request's headers
BODY_WINDOW = 10.0                # s: in every such window a request body must advance by MIN_BODY_RATE × it
MIN_BODY_RATE = 16 * 2**10        # bytes/s a request body must keep up; a slower client is cut off
MAX_CONNECTIONS = 64              # connections and requests at once; more get a 503
MAX_CLIENT_CONNECTIONS = 16       # connections one client address may hold at once; more are closed
QUEUE_SIZE = 16                   # requests waiting for the model; more are turned away
CACHE_CLEANUP = (60, 900)         # every minute, Gradio deletes its files older than 15 minutes
EXAMPLES = EXAMPLES_DIR           # test photos to pick from: content/ and style/
KINDS = ("content", "style")
CSS = "#message p { margin: .2rem 0; } #message .error { color: #cf222e; font-weight: 600; }"


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

Answer = tuple[Image.Image | None, str]


class Demo:
    """What the page talks to: the model, the test photos to pick from, the largest side and the
    pixel budget. ``stylize`` answers one request; requests take turns (decoding included)."""

    def __init__(self, stylizer: Stylizer, max_side: int = MAX_SIDE, examples: Path = EXAMPLES,
                 max_pixels: int = MAX_PIXELS, raw_max_side: int = RAW_MAX_SIDE):
        self.stylizer = stylizer
        self.max_side, self.raw_max_side = max_side, min(raw_max_side, max_side)
        self.max_pixels = max_pixels
        self.examples = {kind: list_images(examples / kind) if (examples / kind).is_dir() else [] for kind in KINDS}
        self._lock = threading.Lock()

    def stylize(self, content: bytes | None, style: bytes | None, alpha: float = 1.0,
                preserve_color: bool = False, smooth: bool = True) -> Answer:
        """The result of one request from the uploaded files' bytes (None when it failed) and a
        message: the time taken and any notes, or what is wrong with the request. ``smooth``
        finishes the result at the photo's size (the default); without it the network's raw
        output, on photos scaled to ``raw_max_side``."""
        try:
            with self._lock:
                return self._stylize(content, style, alpha, preserve_color, smooth)
        except UserError as err:
            return None, f'<p class="error">{html.escape(str(err))}</p>'

    def _stylize(self, content: bytes | None, style: bytes | None, alpha: float, preserve_color: bool,
                 smooth: bool) -> Answer:
        try:
            alpha = unit_float(str(alpha))
        except argparse.ArgumentTypeError as err:
            raise UserError(f"alpha {err}") from None
        photos = {}
        for kind, data in zip(KINDS, (content, style)):
            if not data:
                raise UserError(f"Choose a {kind} photo: upload one or pick a test photo.")
            photos[kind] = decode_upload(data, self.max_side if smooth else self.raw_max_side, self.max_pixels,
                                         f"The {kind} photo")
        (content_image, content_note), (style_image, style_note) = photos.values()
        started = time.perf_counter()
        result = self.stylizer(content_image, style_image, alpha=alpha, preserve_color=preserve_color,
                               smooth=smooth)
        seconds = time.perf_counter() - started
        print(f"stylised {content_image.width}×{content_image.height} px in {seconds:.1f} s", flush=True)
        lines = [f"Done in {seconds:.1f} s: {result.width}×{result.height} px.", content_note, style_note]
        return result, "\n".join(f"<p>{html.escape(line)}</p>" for line in lines if line)


def uploaded_bytes(payload: dict | None) -> bytes | None:
    """The bytes of the file an image input's unprocessed value names (None if it names none):
    its path, which ``DemoFiles`` allowed. A ``data:`` URL in its place is ignored."""
    path = (payload or {}).get("path")
    return Path(path).read_bytes() if path else None


def page_answer(demo: Demo, folder: str, content: dict | None, style: dict | None, alpha: float,
                preserve_color: bool, smooth: bool) -> tuple[Image.Image | None, gr.DownloadButton, str]:
    """``demo``'s answer to the page's values, unprocessed (``gr.Image`` would decode the photos,
    or a ``data:`` URL sent in their place, whole, before our bounded decoder could apply its
    budget): the result at most ``PREVIEW_SIDE`` px on a side, the download button with the
    full-size PNG (written to ``folder``, Gradio's, which deletes it as it ages), and the message."""
    result, message = demo.stylize(uploaded_bytes(content), uploaded_bytes(style), alpha, preserve_color, smooth)
    if result is None:
        return None, gr.DownloadButton(value=None, interactive=False), message
    full_size = Path(tempfile.mkdtemp(dir=folder)) / RESULT_NAME
    result.save(full_size, compress_level=PNG_LEVEL)
    preview = result.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    return preview, gr.DownloadButton(f"Download {result.width}×{result.height} px (PNG)", str(full_size),
                                      interactive=True), message


def build_page(demo: Demo) -> gr.Blocks:
    """The Gradio page of ``demo``: the two photo inputs with the test photos as thumbnails, the
    options, the Stylise button, a message line, the result and its full-size download."""
    with gr.Blocks(title="Photorealistic style transfer", analytics_enabled=False,
                   delete_cache=CACHE_CLEANUP) as page:
        gr.Markdown("## Photorealistic style transfer\nThe content photo takes the style photo's colour and "
                    "tone (LCT + WCE), on this machine. The network works on a small copy and the finish "
                    "carries its colours to the photo's own size; photos longer than "
                    f"{demo.max_side} px on a side ({demo.raw_max_side} px without the finish) are scaled down.")
        inputs = []
        with gr.Row():
            for kind in KINDS:
                with gr.Column():
                    photo = gr.Image(label=f"{kind.capitalize()} photo", sources=["upload", "clipboard"],
                                     elem_id=kind, height=300, buttons=["fullscreen"])
                    gr.Examples([[str(path)] for path in demo.examples[kind]], [photo],
                                label="… or pick a test photo", examples_per_page=8, elem_id=f"{kind}_examples")
                    inputs.append(photo)
            with gr.Column():
                inputs += [gr.Slider(0, 1, value=1, step=0.05, label="Alpha (style strength)", elem_id="alpha"),
                           gr.Checkbox(label="Keep the content's colours", elem_id="preserve_color"),
                           gr.Checkbox(value=True, label="Finish (keeps the photo's structure; untick for the "
                                                         "network's raw output)", elem_id="smooth")]
                run = gr.Button("Stylise", variant="primary", elem_id="run")
        message = gr.HTML(elem_id="message")
        result = gr.Image(label="Result", format="jpeg", interactive=False, elem_id="result",
                          height=480, buttons=["fullscreen"])
        download = gr.DownloadButton("Download the result at full size (PNG)", interactive=False,
                                     elem_id="download")
        run.click(functools.partial(page_answer, demo, download.GRADIO_CACHE), inputs, [result, download, message],
                  api_name="stylize", concurrency_limit=1, preprocess=False)
    return page.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

def host_allowed(host: str, port: int) -> bool:
    """Whether a ``Host`` header names this server in a way DNS rebinding cannot forge: an IP
    address, localhost or this machine's name, with the server's port."""
    name, _, given_port = host.rpartition(":")
    name = name.strip("[]").lower()
    if given_port != str(port) or not name:
        return False
    if name in ("localhost", socket.gethostname().lower()):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class DemoFiles:
    """The files a request may name: those uploaded to the demo (Gradio's private folder, where it
    also keeps its copies of the test photos) and the test photos themselves; each a regular file
    of at most ``max_bytes``. A path is judged on its name first (resolved, links followed), so a
    file elsewhere is refused alike whether it exists or not, and nothing is opened: a device or a
    FIFO never blocks the server."""

    def __init__(self, folder: str | Path, examples: list[Path], max_bytes: int):
        self.folder = Path(folder).resolve()
        self.examples = frozenset(path.resolve() for path in examples)
        self.max_bytes = max_bytes

    def allowed(self, path: object) -> bool:
        """Whether ``path`` (a file reference's path, as a request gives it) names such a file."""
        if not isinstance(path, str) or "\0" in path:
            return False
        resolved = Path(os.path.abspath(path)).resolve()
        if resolved not in self.examples and not resolved.is_relative_to(self.folder):
            return False
        try:
            info = resolved.stat()
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size <= self.max_bytes

    def named_paths(self, body: bytes) -> list[object]:
        """Every file reference's path in a JSON request body (the values of its ``path`` keys, at
        any depth); none in a body that is not JSON, which Gradio does not read either."""
        try:
            pending = [json.loads(body)]
        except (ValueError, RecursionError):
            return []
        paths = []
        while pending:
            value = pending.pop()
            if isinstance(value, dict):
                if "path" in value:
                    paths.append(value["path"])
                pending.extend(value.values())
            elif isinstance(value, list):
                pending.extend(value)
        return paths


class RequestGuard:
    """ASGI middleware in front of Gradio. It refuses a foreign ``Host`` (403), an ``Origin`` other
    than the page's own (403: another web page cannot make the demo compute or read its answers), a
    chunked body (411), an upload over ``max_upload`` bytes and a form's fields and any other body
    over ``FORM_SLACK`` (413), and a request naming a file ``files`` does not allow (403); answers
    HEAD as GET without the body; and keeps a client that went away mid-upload out of the log."""

    def __init__(self, app: ASGIApp, port: int, max_upload: int, files: DemoFiles):
        self.app, self.port, self.max_upload, self.files = app, port, max_upload, files

    def refusal(self, scope: Scope) -> JSONResponse | None:
        """The answer refusing this request, or None to let it through."""
        headers = Headers(scope=scope)
        host, origin = headers.get("host", ""), headers.get("origin")
        if not host_allowed(host, self.port):
            return JSONResponse({"detail": f"this demo answers only at its own address, not {host!r}"}, 403)
        if origin is not None and origin != f"{scope['scheme']}://{host}":
            return JSONResponse({"detail": "this demo answers only its own page, not other sites"}, 403)
        if "transfer-encoding" in headers:
            return JSONResponse({"detail": "send the request's length (Content-Length)"}, 411)
        length = headers.get("content-length", "0")
        limit = self.max_upload + FORM_SLACK if scope["path"] == UPLOAD_ROUTE else FORM_SLACK
        if not length.isdigit() or int(length) > limit:
            return JSONResponse({"detail": f"the file is too large: this demo takes at most "
                                           f"{self.max_upload / 2**20:g} MB per photo"}, 413)
        return None

    async def checked_body(self, scope: Scope, receive: Receive) -> tuple[Receive, JSONResponse | None]:
        """A request's body read whole (other than an upload's, it is small) and checked for the
        files it names: a ``receive`` that hands the body on, and the refusal of a file ``files``
        does not allow (None if there is none)."""
        if scope["path"] == UPLOAD_ROUTE or scope["method"] in ("GET", "HEAD"):
            return receive, None
        body, more, message = b"", True, {"type": "http.request"}
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not all(self.files.allowed(path) for path in self.files.named_paths(body)):
            return receive, JSONResponse({"detail": "this demo reads only the photos uploaded to it (at most "
                                                    f"{self.max_upload / 2**20:g} MB each) and its test photos"}, 403)
        first = [{"type": "http.request", "body": body, "more_body": False} if message["type"] == "http.request"
                 else message]

        async def replay() -> dict:
            return first.pop() if first else await receive()
        return replay, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (refusal := self.refusal(scope)) is not None:
            await refusal(scope, receive, send)
            return
        if scope["method"] == "HEAD":  # uvicorn still sends no body: it knows the request was HEAD
            scope = dict(scope, method="GET")
        receive, refusal = await self.checked_body(scope, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            pass  # the client went away mid-upload: nobody to answer, nothing to report


class TimedProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, bounding what a slow or greedy client holds. A connection whose
    request headers are not complete ``header_timeout`` s after it opened or after its last answer
    is closed (uvicorn's keep-alive timer is reset by every byte, so a client trickling headers would
    hold its connection for ever); so is one whose request body advances by less than
    ``min_body_rate`` × ``body_window`` bytes in a window of ``body_window`` s (unless the server
    itself has paused reading); and a connection beyond ``max_client_connections`` from one
    address is closed at once, so one client cannot take every connection."""

    header_timeout = HEADER_TIMEOUT
    body_window = BODY_WINDOW
    min_body_rate = MIN_BODY_RATE
    max_client_connections = MAX_CLIENT_CONNECTIONS
    _timer: asyncio.TimerHandle | None = None
    _body_bytes = 0                    # bytes received in the current body window

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None and sum(
                1 for other in self.connections if other.client and other.client[0] == address
        ) > self.max_client_connections:
            transport.close()
            return
        self._arm(self.header_timeout, self._headers_overdue)

    def data_received(self, data: bytes) -> None:
        receiving_body = self.conn.their_state is h11.SEND_BODY
        super().data_received(data)
        if receiving_body:
            self._body_bytes += len(data)
        elif self.conn.their_state is h11.SEND_BODY:     # the headers are in and a body follows
            self._body_bytes = 0
            self._arm(self.body_window, self._body_check)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm(self.header_timeout, self._headers_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def _arm(self, delay: float, check: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, check)

    def _headers_overdue(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def _body_check(self) -> None:
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        if not self.flow.read_paused and self._body_bytes < self.min_body_rate * self.body_window:
            self.transport.close()
            return
        self._body_bytes = 0
        self._arm(self.body_window, self._body_check)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (0: a free port); one that cannot is a user error."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


class DemoServer:
    """``demo``'s page served by uvicorn on ``host:port`` (0: a free port) behind ``RequestGuard``,
    with Gradio's files in a private temporary folder removed on exit. ``serve_forever`` runs it
    until ``shutdown``; use it as a context manager."""

    def __init__(self, demo: Demo, host: str = "127.0.0.1", port: int = 0, max_upload: int = MAX_UPLOAD):
        self.socket = listening_socket(host, port)
        self.host, self.port = host, self.socket.getsockname()[1]
        self.files = tempfile.TemporaryDirectory(prefix="glfa-demo-")
        self._previous_files = os.environ.get("GRADIO_TEMP_DIR")
        os.environ["GRADIO_TEMP_DIR"] = self.files.name  # Gradio reads it while building and while serving
        app = gr.mount_gradio_app(
            FastAPI(openapi_url=None, docs_url=None, redoc_url=None), build_page(demo), path="/",
            max_file_size=max_upload, allowed_paths=[str(path) for paths in demo.examples.values() for path in paths],
            footer_links=[], run_history=False, ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False,
            show_error=False, theme=gr.themes.Default(font=["system-ui", "sans-serif"],
                                                      font_mono=["ui-monospace", "monospace"]), css=CSS)
        files = DemoFiles(self.files.name, [path for paths in demo.examples.values() for path in paths], max_upload)
        config = uvicorn.Config(RequestGuard(app, self.port, max_upload, files), http=TimedProtocol,
                                ws="none", proxy_headers=False, log_level="warning",
                                limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.socket])

    def shutdown(self) -> None:
        self.server.should_exit = True

    def __enter__(self) -> "DemoServer":
        return self

    def __exit__(self, *exc) -> None:
        self.socket.close()
        self.files.cleanup()
        if self._previous_files is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = self._previous_files


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(demo: Demo, host: str, port: int) -> None:
    """Serve ``demo`` on ``host:port`` until interrupted, after printing its address. SIGTERM
    stops it as Ctrl+C does (uvicorn shuts down, then re-raises the signal), so Gradio's folder is
    removed either way."""
    signal.signal(signal.SIGTERM, _terminated)
    with DemoServer(demo, host, port) as server:
        print(f"The demo is at {server.url} (Ctrl+C stops it)", flush=True)
        server.serve_forever()
