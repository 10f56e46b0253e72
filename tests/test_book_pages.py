"""Build the book (smoke profile) and open every page in headless Chromium: loads, maths typeset, figures, links.

The build goes to _build/pagetest (same _config.yml, except that MathJax is served from a local copy, since CI has
no CDN), with the same quiet settings as `make book`; a screenshot of every page is kept in _build/screenshots/ for
a person to look at. Pages must show no progress bars or loading messages, and every figure a numbered caption.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import nbformat
import pytest
import yaml

from diffclf_lite.book.assignments import PAGES
from test_repo import _toc_files  # tests/ is on sys.path (rootdir conftest)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "pagetest"
HTML = OUT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
MATHJAX_VERSION = "mathjax@3"
QUIET = dict(line.split("=", 1) for line in re.search(r"^QUIET := (.*)$", (ROOT / "Makefile").read_text(),
                                                            re.M).group(1).split())  # as make book sets them
# What a progress bar or a loader prints: "100%|###| 300/300 [00:39<00:00, 6.94it/s]", "Loading weights", ...
CHATTER = re.compile(r"\d+(?:\.\d+)?(?:it/s|s/it)\]|\|[█▏▎▍▌▋▊▉ ]{3,}\||Loading (?:weights|pipeline|checkpoint)|"
                     r"Writing model shards|Fetching \d+ files", re.I)


def _toc_pages() -> list[str]:
    """Every page of _toc.yml, without its suffix (book/intro, ...)."""
    return [re.sub(r"\.(md|ipynb)$", "", p) for p in _toc_files()]


def _source(page: str) -> Path:
    return next(p for p in (ROOT / f"{page}.md", ROOT / f"{page}.ipynb") if p.is_file())


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no Chromium found: install Debian's package (apt-get install -y chromium); .ci/run does it in CI")


def _mathjax() -> Path:
    """A local MathJax 3 (es5 folder): $MATHJAX_ES5, else npm's package cached under _build/node."""
    if os.environ.get("MATHJAX_ES5"):
        return Path(os.environ["MATHJAX_ES5"])
    es5 = ROOT / "_build" / "node" / "node_modules" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        npm = shutil.which("npm")
        if not npm:
            pytest.fail("MathJax 3 is needed offline: install npm (apt-get install -y npm) or set MATHJAX_ES5")
        subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                        str(es5.parents[2]), MATHJAX_VERSION], check=True, capture_output=True, timeout=300)
    return es5


@pytest.fixture(scope="module")
def site():
    """Build the book into _build/pagetest, serve it on localhost, open every page: (base URL, chromium, DOMs)."""
    chromium, es5 = _chromium(), _mathjax()
    env = {**os.environ, "DIFFCLF_PROFILE": "smoke", "OMP_NUM_THREADS": "1", "JUPYTER_PREFER_ENV_PATH": "1", **QUIET}
    env.pop("MPLBACKEND", None)  # kernels keep their inline backend, so figures are drawn
    students = subprocess.run([sys.executable, "-m", "diffclf_lite.book.assignments", "--root", str(ROOT),  # downloads
                               "--out", str(ROOT / "_build" / "student")], cwd=ROOT, capture_output=True, text=True)
    assert students.returncode == 0, "the student notebooks the teacher pages offer:\n" + students.stderr[-3000:]
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("sphinx", {}).setdefault("config", {})["mathjax_path"] = "mathjax/tex-chtml.js"
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    (OUT / "_config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    jb = Path(sys.executable).with_name("jupyter-book")
    build = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(OUT), "--config",
                            str(OUT / "_config.yml"), "-W", "-n", "--keep-going"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, "book build failed (warnings are errors):\n" + (build.stdout + build.stderr)[-6000:]
    shutil.copytree(es5, HTML / "_static" / "mathjax")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    urls = [urljoin(base, f"{page}.html") for page in _toc_pages()]
    with ThreadPoolExecutor(max_workers=2) as pool:  # one Chromium per page, two at a time
        doms = dict(zip(urls, pool.map(lambda u: _chromium_run(chromium, "--dump-dom", u), urls)))
    yield base, chromium, doms
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _chromium_run(chromium: str, *args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        run = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                              *args], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


class _Links(HTMLParser):
    """Collects the URLs a page points to (links, images, scripts, stylesheets) and its element ids."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        for attr in ("href", "src"):
            if a.get(attr):
                self.urls.append((tag, a[attr]))


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _local_file(url: str) -> Path:
    path = HTML / unquote(urlparse(url).path).lstrip("/")
    return path / "index.html" if path.is_dir() else path


def _image_outputs(page: str) -> int:
    """How many images the executed notebook's outputs hold (what the page must show)."""
    nb = nbformat.read(OUT / "_build" / "jupyter_execute" / f"{page}.ipynb", as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(m.startswith("image/") for m in o.get("data", {})))


def _has_maths(page: str) -> bool:
    path = _source(page)
    text = path.read_text(encoding="utf-8") if path.suffix == ".md" else "\n".join(
        c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    return bool(re.search(r"\$[^$\n]+\$|\{math\}", text))


@pytest.mark.parametrize("page", _toc_pages())
def test_page_loads_typesets_maths_shows_figures_and_links_resolve(site, page: str) -> None:
    base, _, doms = site
    url = urljoin(base, f"{page}.html")
    dom = doms[url]
    assert "<h1" in dom and "</html>" in dom.lower(), f"{url} did not render a page"
    if _has_maths(page):
        assert "<mjx-container" in dom, f"{page}: maths not typeset (no mjx-container; did MathJax load?)"
        assert "<mjx-merror" not in dom, f"{page}: MathJax reports a TeX error on the page"
    parsed = _parse(dom)
    images = [src for tag, src in parsed.urls if tag == "img" and "_images/" in src]
    if _source(page).suffix == ".ipynb":
        expected = _image_outputs(page)
        assert len(images) >= expected, f"{page}: {len(images)} figures shown, {expected} computed"
        if Path(page).name not in PAGES:  # a chapter has figures; a page like running_at_scale may have none
            assert expected >= 1, f"{page}: a chapter without a single figure"
    broken = []
    for tag, ref in parsed.urls:
        target = urljoin(url, ref)
        if not target.startswith(base) or urlparse(ref).scheme in ("mailto", "javascript", "data"):
            continue  # external links are not ours to check offline
        file = _local_file(target)
        if not file.is_file() or file.stat().st_size == 0:
            broken.append(ref)
        elif urlparse(target).fragment and file.suffix == ".html":
            ids = _parse(file.read_text(encoding="utf-8")).ids
            if unquote(urlparse(target).fragment) not in ids:
                broken.append(ref)
    assert not broken, f"{page}: links that do not resolve in the built site: {sorted(set(broken))}"
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I))
    chatter = sorted({m.group(0) for m in CHATTER.finditer(text)})
    assert not chatter, f"{page}: progress bars or loading messages on the page: {chatter[:5]}"
    if _source(page).suffix == ".ipynb":
        figures = len(re.findall(r'<img[^>]+src="[^"]*_images/', dom))
        numbered = len(re.findall(r'class="caption-number"[^>]*>\s*Fig\.', dom))
        assert numbered >= figures, f"{page}: {figures} figures, {numbered} with a numbered caption"
    if page.endswith("results"):
        blocks = len(re.findall(r"^```\{glue\}", _source(page).read_text(encoding="utf-8"), re.M))
        assert dom.count("<table") >= blocks >= 1, f"results page shows {dom.count('<table')} of {blocks} tables"


def test_a_screenshot_of_every_page_for_a_person_to_look_at(site) -> None:
    from PIL import Image

    base, chromium, _ = site
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    blank = []
    for page in _toc_pages():
        shot = SHOTS / f"{page.replace('/', '__')}.png"
        _chromium_run(chromium, f"--screenshot={shot}", "--window-size=1280,2400", urljoin(base, f"{page}.html"))
        with Image.open(shot) as im:
            colours = im.convert("RGB").resize((320, 600)).getcolors(maxcolors=1_000_000)
            if im.size != (1280, 2400) or len(colours) <= 50:
                blank.append(f"{shot.name} ({len(colours)} colours)")
    assert not blank, f"pages that look blank: {blank}"
    print(f"{len(list(SHOTS.glob('*.png')))} screenshots in {SHOTS.relative_to(ROOT)}")
