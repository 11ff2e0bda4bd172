"""The local web demo behind ``app.py``: one page where a content and a style photo (uploaded, or
picked from ``test/``) are stylised with a chosen alpha, colour preservation and smoothing.

The server is the standard library's ``http.server``, so the demo needs nothing beyond the core
requirements. Uploads are read into memory and decoded there: nothing is written to disk. Photos
longer than ``max_side`` on a side are scaled down first, and the page says so; a file that is not
an image, a missing photo or a bad option is answered with a message for the page. The page is
HTML with a little JavaScript and loads nothing from outside.

Routes: ``GET /`` the page, ``GET /test/<content|style>/<name>`` a test photo, ``POST /stylize``
a ``multipart/form-data`` form (``content``/``style`` files or ``content_example``/``style_example``
names, ``alpha``, ``preserve_color``, ``smooth``) answered with JSON: ``image`` (a PNG data URL),
``width``, ``height``, ``filename``, ``notes`` and ``seconds``, or ``error``.
"""
import argparse
import base64
import email.parser
import email.policy
import html
import io
import json
import mimetypes
import re
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from PIL import Image

from glfa.errors import UserError
from glfa.flagtypes import unit_float
from glfa.images import UnreadableImage, list_images, load_rgb
from glfa.inference import Stylizer
from glfa.paths import REPO_ROOT

MAX_SIDE = 1024                   # px: longer photos are scaled down to this
MAX_UPLOAD = 64 * 2**20           # bytes in one request
EXAMPLES = REPO_ROOT / "test"     # test photos to pick from: content/ and style/
KINDS = ("content", "style")
# Pillow's own decoders for the extensions data.IMAGE_EXTENSIONS lists (JPEG opens phones' MPO
# files too); formats Pillow hands to outside programs through temporary files (EPS) are left out.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")


class Field(NamedTuple):
    """One field of a form: its file name (None for a plain field) and its bytes."""
    filename: str | None
    data: bytes


class Photo(NamedTuple):
    """A photo ready to stylise: the image, a name for the download, a note when it was scaled down."""
    image: Image.Image
    name: str
    note: str | None


def parse_form(content_type: str, body: bytes) -> dict[str, Field]:
    """The fields of a ``multipart/form-data`` body by name (the standard library's MIME parser,
    which keeps binary parts intact)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise UserError("expected the form as multipart/form-data")
    header = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise UserError("the form could not be read")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = Field(part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def decode_upload(data: bytes, draft_size: int) -> Image.Image:
    """An uploaded image decoded in memory as RGB, if it is in one of ``UPLOAD_FORMATS``
    (``data.load_rgb``: EXIF orientation, JPEGs drafted at about ``draft_size``)."""
    Image.init()                                     # registers every format, not only the common ones
    try:
        Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS).close()
    except (OSError, SyntaxError, ValueError) as err:
        raise UnreadableImage(str(err)) from None
    return load_rgb(io.BytesIO(data), draft_size)


class Demo:
    """What the page talks to: the model, the test photos to pick from and the largest side.
    ``stylize`` answers one form; calls to the model take turns."""

    def __init__(self, stylizer: Stylizer, max_side: int = MAX_SIDE, examples: Path = EXAMPLES,
                 max_upload: int = MAX_UPLOAD):
        self.stylizer = stylizer
        self.max_side = max_side
        self.max_upload = max_upload
        self.examples = {kind: {path.name: path for path in list_images(examples / kind)}
                         if (examples / kind).is_dir() else {} for kind in KINDS}
        self._model_lock = threading.Lock()

    def page(self) -> str:
        """The HTML page, with the test photos as choices."""
        text = PAGE.replace("<!--max_side-->", str(self.max_side))
        for kind in KINDS:
            options = "".join(f'<option value="{html.escape(name)}">{html.escape(name)}</option>'
                              for name in self.examples[kind])
            text = text.replace(f"<!--{kind}_options-->", options)
        return text

    def example_file(self, url_path: str) -> Path | None:
        """The test photo that ``/test/<kind>/<name>`` names, None for any other path."""
        match = re.fullmatch(r"/test/(content|style)/([^/]+)", url_path)
        return self.examples[match[1]].get(match[2]) if match else None

    def stylize(self, content_type: str, body: bytes) -> dict:
        """Stylise the pair a form names, with its options; the answer for the page (see the
        module's docstring). A bad form is a ``UserError`` whose message is for the page."""
        form = parse_form(content_type, body)
        try:
            alpha = unit_float(form["alpha"].data.decode()) if "alpha" in form else 1.0
        except (argparse.ArgumentTypeError, UnicodeDecodeError) as err:
            raise UserError(f"alpha {err}") from None
        content, style = (self.photo(form, kind) for kind in KINDS)
        started = time.perf_counter()
        with self._model_lock:
            result = self.stylizer(content.image, style.image, alpha=alpha,
                                   preserve_color="preserve_color" in form, smooth="smooth" in form)
        seconds = time.perf_counter() - started
        png = io.BytesIO()
        result.save(png, "PNG")
        print(f"stylised {content.name} with {style.name} at {result.width}×{result.height} in {seconds:.1f} s",
              flush=True)
        return {"image": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii"),
                "width": result.width, "height": result.height,
                "filename": f"{content.name}_stylized_{style.name}.png",
                "notes": [photo.note for photo in (content, style) if photo.note], "seconds": round(seconds, 1)}

    def photo(self, form: dict[str, Field], kind: str) -> Photo:
        """The ``kind`` photo of a form, uploaded or picked, as RGB at most ``max_side`` px on a side."""
        upload, example = form.get(kind), form.get(f"{kind}_example")
        if upload is not None and upload.data:
            shown = upload.filename or f"the {kind} upload"
            try:
                image = decode_upload(upload.data, self.max_side)
            except UnreadableImage:
                raise UserError(f"{shown} is not an image that can be read: upload a photo "
                                f"(JPEG, PNG, WebP…) as the {kind}") from None
            name = upload.filename or kind
        elif example is not None and example.data:
            name = example.data.decode("utf-8", "replace")
            if name not in self.examples[kind]:
                raise UserError(f"there is no {kind} test photo named {name!r}")
            image = load_rgb(self.examples[kind][name], self.max_side)
        else:
            raise UserError(f"choose a {kind} photo: upload one or pick a test photo")
        image, note = self.fit(image, kind)
        return Photo(image, re.sub(r"[^\w-]+", "_", Path(name).stem)[:60] or kind, note)

    def fit(self, image: Image.Image, kind: str) -> tuple[Image.Image, str | None]:
        """``image`` scaled down to at most ``max_side`` px on a side, and a note saying so."""
        width, height = image.size
        if max(width, height) <= self.max_side:
            return image, None
        scale = self.max_side / max(width, height)
        size = max(1, round(width * scale)), max(1, round(height * scale))
        note = (f"The {kind} photo was scaled down to {size[0]}×{size[1]} px "
                f"(this demo takes at most {self.max_side} px on a side).")
        return image.resize(size, Image.Resampling.LANCZOS), note


class Handler(BaseHTTPRequestHandler):
    """The routes of the module's docstring; the ``Demo`` is the server's."""

    server: "DemoServer"
    server_version = "glfa-demo"

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/":
            self.reply(HTTPStatus.OK, "text/html; charset=utf-8", self.server.demo.page().encode())
        elif (photo := self.server.demo.example_file(path)) is not None:
            self.reply(HTTPStatus.OK, mimetypes.guess_type(photo.name)[0] or "application/octet-stream",
                       photo.read_bytes())
        else:
            self.reply_json(HTTPStatus.NOT_FOUND, {"error": f"nothing at {path}"})

    def do_POST(self) -> None:
        demo = self.server.demo
        if urlsplit(self.path).path != "/stylize":
            self.reply_json(HTTPStatus.NOT_FOUND, {"error": "post the form to /stylize"})
            return
        declared = self.headers.get("Content-Length", "")
        if not declared.isdigit():
            self.close_connection = True
            self.reply_json(HTTPStatus.LENGTH_REQUIRED, {"error": "the upload's length is missing"})
            return
        length = int(declared)
        if length > demo.max_upload:
            while length > 0 and (chunk := self.rfile.read(min(length, 2**20))):  # so the browser reads the answer
                length -= len(chunk)
            self.reply_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            {"error": f"the photos are too large together: this demo takes at most "
                                      f"{demo.max_upload // 2**20} MB per request"})
            return
        body = self.rfile.read(length)
        try:
            self.reply_json(HTTPStatus.OK, demo.stylize(self.headers.get("Content-Type", ""), body))
        except UserError as err:
            self.reply_json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
        except Exception as err:  # noqa: BLE001 - the page gets a message, the terminal the trace
            traceback.print_exc()
            self.reply_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"stylising failed: {err}"})

    def reply(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: HTTPStatus, answer: dict) -> None:
        self.reply(status, "application/json", json.dumps(answer).encode())

    def log_message(self, format: str, *args) -> None:
        """Quiet: ``Demo.stylize`` prints a line per result, failures print their trace."""


class DemoServer(ThreadingHTTPServer):
    """An HTTP server for ``demo``; each request in its own thread."""

    daemon_threads = True

    def __init__(self, demo: Demo, host: str = "127.0.0.1", port: int = 0):
        self.demo = demo
        try:
            super().__init__((host, port), Handler)
        except OSError as err:
            raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def serve(demo: Demo, host: str, port: int) -> None:
    """Serve ``demo`` on ``host:port`` until interrupted, after printing its address."""
    with DemoServer(demo, host, port) as server:
        print(f"The demo is at {server.url} (Ctrl+C stops it)", flush=True)
        server.serve_forever()


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Photorealistic style transfer</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; background: #f6f7f9;
         max-width: 1280px; margin: 0 auto; padding: 1.25rem 1.5rem; }
  h1 { font-size: 1.35rem; margin: 0 0 .2rem; }
  .lead { margin: 0 0 1rem; color: #57606a; }
  form { display: grid; grid-template-columns: 1fr 1fr 1.2fr auto; gap: 1rem 1.75rem; align-items: start;
         background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 1rem 1.25rem; }
  fieldset { border: 0; margin: 0; padding: 0; display: grid; gap: .5rem; min-width: 0; }
  legend { font-weight: 600; padding: 0; margin-bottom: .5rem; }
  select, input[type=file], input[type=range] { font: inherit; font-size: .9rem; width: 100%; box-sizing: border-box; margin: 0; }
  select { padding: .2rem; }
  label { font-size: .95rem; }
  label.check { display: flex; gap: .45rem; align-items: center; }
  .actions { align-self: end; }
  button { font: inherit; font-weight: 600; padding: .6rem 1.6rem; border: 0; border-radius: 6px;
           background: #1f6feb; color: #fff; cursor: pointer; }
  button:disabled { background: #8c959f; cursor: progress; }
  #message { min-height: 1.4em; margin: .8rem 0 0; }
  #message.error { color: #cf222e; font-weight: 600; }
  #notes { margin: .2rem 0 0; padding-left: 1.2rem; color: #9a6700; }
  .panels { display: grid; grid-template-columns: repeat(3, 1fr); gap: 1rem; margin-top: .8rem; }
  figure { margin: 0; background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: .5rem; }
  figure img { display: block; width: 100%; height: auto; border-radius: 4px; }
  img:not([src]) { display: none; }
  figcaption { display: flex; justify-content: space-between; font-size: .9rem; color: #57606a; padding: .4rem .1rem 0; }
  @media (max-width: 900px) { form { grid-template-columns: 1fr 1fr; } }
  @media (max-width: 600px) { form, .panels { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<h1>Photorealistic style transfer</h1>
<p class="lead">The content photo takes the style photo's colour and tone (LCT + WCE), on this machine.
Photos stay in memory and are never stored; those longer than <!--max_side--> px on a side are scaled down.</p>
<form id="form">
  <fieldset><legend>Content photo</legend>
    <input type="file" id="content" name="content" accept="image/*">
    <select id="content_example" name="content_example" aria-label="content test photo">
      <option value="">… or pick a test photo</option><!--content_options--></select>
  </fieldset>
  <fieldset><legend>Style photo</legend>
    <input type="file" id="style" name="style" accept="image/*">
    <select id="style_example" name="style_example" aria-label="style test photo">
      <option value="">… or pick a test photo</option><!--style_options--></select>
  </fieldset>
  <fieldset><legend>Options</legend>
    <label for="alpha">Alpha (style strength): <output id="alpha_value">1.00</output></label>
    <input type="range" id="alpha" name="alpha" min="0" max="1" step="0.05" value="1">
    <label class="check"><input type="checkbox" id="preserve_color" name="preserve_color"> Keep the content's colours</label>
    <label class="check"><input type="checkbox" id="smooth" name="smooth"> Smooth (edge-aware filter)</label>
  </fieldset>
  <div class="actions"><button id="run" type="submit">Stylise</button></div>
</form>
<p id="message" role="status"></p>
<ul id="notes"></ul>
<div class="panels">
  <figure><img id="content_preview" alt="content photo"><figcaption>Content</figcaption></figure>
  <figure><img id="style_preview" alt="style photo"><figcaption>Style</figcaption></figure>
  <figure><img id="result" alt="result"><figcaption><span id="result_caption">Result</span>
    <a id="download" hidden>Download</a></figcaption></figure>
</div>
<script>
const $ = id => document.getElementById(id);

function show(kind) {
  const file = $(kind).files[0], example = $(kind + "_example").value;
  const preview = $(kind + "_preview");
  if (file) preview.src = URL.createObjectURL(file);
  else if (example) preview.src = "/test/" + kind + "/" + encodeURIComponent(example);
  else preview.removeAttribute("src");
}

function say(text, isError, notes = []) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
  $("notes").replaceChildren(...notes.map(note => Object.assign(document.createElement("li"), {textContent: note})));
}

for (const kind of ["content", "style"]) {
  $(kind).addEventListener("change", () => { $(kind + "_example").value = ""; show(kind); });
  $(kind + "_example").addEventListener("change", () => { $(kind).value = ""; show(kind); });
  $(kind + "_preview").addEventListener("error", event => event.target.removeAttribute("src"));
}
$("alpha").addEventListener("input", () => { $("alpha_value").textContent = Number($("alpha").value).toFixed(2); });

$("form").addEventListener("submit", async event => {
  event.preventDefault();
  $("run").disabled = true;
  say("Stylising…", false);
  try {
    let response;
    try {
      response = await fetch("/stylize", {method: "POST", body: new FormData($("form"))});
    } catch {
      throw new Error("The demo's server cannot be reached: is python app.py still running?");
    }
    const answer = await response.json().catch(() => ({error: "The server's answer could not be read."}));
    if (!response.ok || answer.error) throw new Error(answer.error);
    const url = URL.createObjectURL(await (await fetch(answer.image)).blob());
    $("result").src = url;
    Object.assign($("download"), {href: url, download: answer.filename, hidden: false});
    $("result_caption").textContent = `Result, ${answer.width}×${answer.height} px`;
    say(`Done in ${answer.seconds.toFixed(1)} s.`, false, answer.notes);
  } catch (error) {
    $("result").removeAttribute("src");
    $("download").hidden = true;
    $("result_caption").textContent = "Result";
    say(error.message, true);
  } finally {
    $("run").disabled = false;
  }
});
</script>
</body>
</html>
"""
