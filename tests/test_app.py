"""The local web demo (app.py, glfa/app.py): the server's answers to good and bad forms, on a
random model over plain HTTP; then the page in a real headless browser with the shipped model
(skipped where selenium, chromium or chromedriver is missing)."""
import base64
import io
import json
import os
import runpy
import select
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.error import HTTPError

import numpy as np
import pytest
from PIL import Image

from glfa.app import Demo, DemoServer
from glfa.errors import UserError
from glfa.inference import Stylizer
from helpers import REPO_ROOT, write_model

PHOTOS = REPO_ROOT / "test"
MAX_SIDE = 256
MAX_UPLOAD = 4 * 2**20


def photo_bytes(width: int, height: int, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A smooth colour gradient with a little noise, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    pixels = np.stack([x, y, 1 - x * y], -1) * 200 + rng.normal(0, 8, (height, width, 3)) + 20
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def post_form(url: str, fields: dict[str, str | tuple[str, bytes]]) -> tuple[int, dict]:
    """POST ``fields`` (text, or ``(filename, bytes)`` for a file) as multipart/form-data to
    ``url``stylize; the status and the JSON answer."""
    boundary = "----demo-test-boundary-7c3e"
    body = b""
    for name, value in fields.items():
        if isinstance(value, tuple):
            head = f'name="{name}"; filename="{value[0]}"\r\nContent-Type: application/octet-stream'
            data = value[1]
        else:
            head, data = f'name="{name}"', value.encode()
        body += f"--{boundary}\r\nContent-Disposition: form-data; {head}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "stylize", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except HTTPError as err:
        return err.code, json.load(err)


def result_image(answer: dict) -> Image.Image:
    header, data = answer["image"].split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> DemoServer:
    """A demo on a random photo model, serving on a free port in a thread."""
    decoder, transform = write_model(tmp_path_factory.mktemp("model"), 5)
    demo = Demo(Stylizer.from_checkpoints(decoder, transform, device="cpu"), max_side=MAX_SIDE, max_upload=MAX_UPLOAD)
    with DemoServer(demo) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server
        server.shutdown()


@pytest.fixture(scope="module")
def url(server: DemoServer) -> str:
    return server.url


def test_the_page_offers_the_test_photos_and_loads_nothing_from_outside(url: str):
    with urllib.request.urlopen(url) as response:
        page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html")
    for path in (*PHOTOS.glob("content/*.jpg"), *PHOTOS.glob("style/*.jpg")):
        assert f'<option value="{path.name}">' in page
    assert f"longer than {MAX_SIDE} px" in page
    assert "http://" not in page and "https://" not in page and 'src="//' not in page
    with urllib.request.urlopen(url + "test/style/dusk_lake.jpg") as response:
        assert response.read() == (PHOTOS / "style" / "dusk_lake.jpg").read_bytes()
    for outside in ("test/style/../../README.md", "test/style/%2E%2E%2Fcontent%2Fcoast_dune.jpg", "app.py"):
        with pytest.raises(HTTPError) as raised:
            urllib.request.urlopen(url + outside)
        assert raised.value.code == 404


def test_a_pair_gives_a_png_of_the_content_size(url: str):
    status, answer = post_form(url, {"content": ("my photo.png", photo_bytes(200, 120)),
                                     "style": ("dusk.jpg", photo_bytes(128, 100, "JPEG", seed=1)), "alpha": "0.8"})
    assert status == 200, answer
    image = result_image(answer)
    assert image.size == (200, 120) == (answer["width"], answer["height"]) and image.mode == "RGB"
    assert answer["filename"] == "my_photo_stylized_dusk.png" and answer["notes"] == []


def test_the_options_change_the_result(url: str):
    fields = {"content": ("c.png", photo_bytes(160, 96)), "style": ("s.jpg", photo_bytes(128, 128, "JPEG", seed=1))}
    results = {}
    for option, extra in {"plain": {}, "alpha": {"alpha": "0.3"}, "colour": {"preserve_color": "on"},
                          "smooth": {"smooth": "on"}}.items():
        status, answer = post_form(url, {**fields, **extra})
        assert status == 200, answer
        results[option] = np.asarray(result_image(answer), dtype=np.float64)
    for option in ("alpha", "colour", "smooth"):
        assert np.abs(results[option] - results["plain"]).mean() > 0.5, option


def test_a_large_photo_is_scaled_down_and_the_page_says_so(url: str):
    status, answer = post_form(url, {"content": ("wide.jpg", photo_bytes(1500, 600, "JPEG")),
                                     "style_example": "fog_pier.jpg"})
    assert status == 200, answer
    assert result_image(answer).size == (256, 102)
    assert answer["notes"] == [
        "The content photo was scaled down to 256×102 px (this demo takes at most 256 px on a side).",
        "The style photo was scaled down to 256×160 px (this demo takes at most 256 px on a side)."]


def test_a_file_that_is_not_an_image_gets_a_message_and_the_demo_goes_on(url: str):
    status, answer = post_form(url, {"content": ("notes.txt", b"not a photo\n" * 100), "style_example": "fog_pier.jpg"})
    assert (status, answer) == (400, {"error": "notes.txt is not an image that can be read: upload a photo "
                                               "(JPEG, PNG, WebP…) as the content"})
    truncated = photo_bytes(96, 96, "JPEG")[:300]
    status, answer = post_form(url, {"content_example": "coast_dune.jpg", "style": ("cut.jpg", truncated)})
    assert status == 400 and answer["error"].startswith("cut.jpg is not an image")
    postscript = io.BytesIO()                  # Pillow would hand it to Ghostscript through a temporary file
    Image.open(io.BytesIO(photo_bytes(64, 64))).save(postscript, "EPS")
    status, answer = post_form(url, {"content": ("c.eps", postscript.getvalue()), "style_example": "fog_pier.jpg"})
    assert status == 400 and answer["error"].startswith("c.eps is not an image")
    status, answer = post_form(url, {"content": ("c.png", photo_bytes(64, 64)), "style": ("s.png", photo_bytes(64, 64))})
    assert status == 200 and result_image(answer).size == (64, 64)


@pytest.mark.parametrize("fields, message", [
    ({"style_example": "fog_pier.jpg"}, "choose a content photo: upload one or pick a test photo"),
    ({"content_example": "coast_dune.jpg", "style": ("", b"")}, "choose a style photo"),
    ({"content_example": "../README.md", "style_example": "fog_pier.jpg"}, "there is no content test photo named"),
    ({"content_example": "coast_dune.jpg", "style_example": "fog_pier.jpg", "alpha": "2"},
     "alpha must be between 0 and 1, got 2"),
    ({"content": ("tiny.png", photo_bytes(4, 4)), "style_example": "fog_pier.jpg"}, "the content image is 4×4 px"),
])
def test_a_bad_form_gets_a_message(url: str, fields: dict, message: str):
    status, answer = post_form(url, fields)
    assert status == 400 and answer["error"].startswith(message), answer


def test_requests_that_are_no_form_or_too_large_get_a_message(url: str):
    def post(body: bytes, content_type: str) -> tuple[int, dict]:
        request = urllib.request.Request(url + "stylize", data=body, headers={"Content-Type": content_type})
        with pytest.raises(HTTPError) as raised:
            urllib.request.urlopen(request)
        return raised.value.code, json.load(raised.value)

    assert post(b'{"content": 1}', "application/json") == (400, {"error": "expected the form as multipart/form-data"})
    code, answer = post(b"x" * (MAX_UPLOAD + 1), "multipart/form-data; boundary=x")
    assert code == 413 and "at most 4 MB" in answer["error"]


def test_flags_their_help_and_their_one_line_errors(capsys: pytest.CaptureFixture):
    command = runpy.run_path(str(REPO_ROOT / "app.py"), run_name="app_under_test")
    parser, parse_args = command["build_parser"](), command["parse_args"]
    assert [action.option_strings for action in parser._actions if not (action.help or "").strip()] == []
    assert "(default: 127.0.0.1)" in parser.format_help() and "(default: None)" not in parser.format_help()
    args = parse_args([])
    assert (args.host, args.port, args.max_side, args.transform_path, args.transform) == ("127.0.0.1", 7860, 1024,
                                                                                          None, "lct")
    assert parse_args(["--LCT", "t.pth", "--port", "0"]).transform_path == "t.pth"
    for flags, error in ((["--port", "70000"], "must be a port number from 0 to 65535, got 70000"),
                         (["--max_side", "0"], "must be a positive integer, got 0")):
        with pytest.raises(SystemExit):
            parse_args(flags)
        assert error in capsys.readouterr().err


def test_a_busy_port_is_a_user_error(server: DemoServer):
    port = server.server_address[1]
    with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}: "):
        DemoServer(server.demo, "127.0.0.1", port)


def test_a_missing_model_is_one_error_line(tmp_path: Path):
    done = subprocess.run([sys.executable, str(REPO_ROOT / "app.py"), "--decoder", str(tmp_path / "none.pth"),
                           "--device", "cpu", "--port", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "none.pth" in done.stderr


# --------------------------------------------------------------------------------------------
# The page in a real browser
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by selenium through the system chromedriver."""
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed (pip install -r requirements-demo.txt)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("no chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
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


def test_the_page_stylises_two_uploaded_photos_in_a_browser(browser, app_url: str, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app_url)
    browser.find_element(By.ID, "content").send_keys(str(PHOTOS / "content" / "forest_path.jpg"))
    browser.find_element(By.ID, "style").send_keys(str(PHOTOS / "style" / "dusk_lake.jpg"))
    browser.find_element(By.ID, "run").click()
    size = WebDriverWait(browser, 120).until(lambda page: page.execute_script(
        "const image = document.getElementById('result');"
        "return image.complete && image.naturalWidth ? [image.naturalWidth, image.naturalHeight] : null;"))
    assert size == [640, 400]
    download = browser.find_element(By.ID, "download")
    assert download.is_displayed() and download.get_attribute("download") == "forest_path_stylized_dusk_lake.png"
    assert browser.find_element(By.ID, "message").text.startswith("Done in ")

    not_a_photo = tmp_path / "notes.txt"
    not_a_photo.write_text("not a photo\n")
    browser.find_element(By.ID, "content").send_keys(str(not_a_photo))
    browser.find_element(By.ID, "run").click()
    message = browser.find_element(By.ID, "message")
    WebDriverWait(browser, 60).until(lambda page: message.get_attribute("class") == "error")
    assert message.text == "notes.txt is not an image that can be read: upload a photo (JPEG, PNG, WebP…) as the content"
    assert not download.is_displayed()
