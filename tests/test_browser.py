"""The published page in a real browser: headless Chromium driven by Playwright.

Debian's `chromium` package is the browser (`apt-get install chromium`; `.ci/run` installs it);
Playwright drives it through `executable_path`, so no browser is downloaded at test time. The
tests skip, saying why, where Playwright or Chromium is missing. The site is the session's build
of the published page (`published_site` in conftest.py: what `python build.py` makes here from
the committed frozen results), or the one in $MNIST_EXPLORED_SITE, served over HTTP on
127.0.0.1 by a thread of this process. Every request that would leave that server is refused and
fails the test that made it.

Screenshots (top of the page and each section; desktop and phone widths, light and dark) go to a
folder under pytest's temporary directory and, when $BROWSER_ARTIFACTS is set, are copied there;
the end of the run prints where they are.

Run with `python -m pytest -m browser`, or, against a site built earlier,
`MNIST_EXPLORED_SITE=/tmp/site python -m pytest tests/test_browser.py`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape as html_unescape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import ARTIFACTS_KEY

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # the test extras are not installed
    sync_playwright = None


def find_chromium() -> tuple[str | None, str]:
    """($CHROMIUM_PATH or Debian's chromium, or another distribution's name for it; else None,
    and why)."""
    if os.environ.get("CHROMIUM_PATH"):
        path = os.environ["CHROMIUM_PATH"]
        return shutil.which(path), f"$CHROMIUM_PATH={path} is not an executable"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name), ""
    return None, ("no Chromium installed: `apt-get install chromium` (Debian), or set "
                  "CHROMIUM_PATH to a Chromium or Chrome binary")


CHROMIUM, NO_CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,  # it needs a build of the real site
    pytest.mark.skipif(sync_playwright is None,
                       reason="Playwright is not installed: pip install -e '.[test]'"),
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]


@dataclass(frozen=True)
class Look:
    """A viewport and colour scheme the page is checked and photographed in."""

    name: str
    width: int
    height: int
    scheme: str  # "light" | "dark"
    phone: bool = False


LOOKS = [Look("desktop-light", 1280, 900, "light"), Look("desktop-dark", 1280, 900, "dark"),
         Look("phone-light", 390, 844, "light", phone=True),
         Look("phone-dark", 390, 844, "dark", phone=True)]
DESKTOP = LOOKS[0]
PHONE = LOOKS[2]


# --- the server, the browser, the artefacts folder -------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site_url(site_dir: Path) -> Iterator[str]:
    """The site served on 127.0.0.1 at a free port, by a thread of this process."""
    handler = functools.partial(QuietHandler, directory=str(site_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # Root in a container: no sandbox (Playwright's default), a small /dev/shm, and none
            # of the browser's own background traffic.
            args=["--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--force-color-profile=srgb"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where screenshots go; copied to $BROWSER_ARTIFACTS (if set) when the module ends."""
    folder = tmp_path_factory.mktemp("browser-artifacts")
    print(f"\nbrowser screenshots: {folder}")
    yield folder
    lines = [f"browser screenshots: {folder}"]
    if os.environ.get("BROWSER_ARTIFACTS"):
        target = Path(os.environ["BROWSER_ARTIFACTS"]).resolve()
        shutil.copytree(folder, target, dirs_exist_ok=True)
        lines.append(f"browser screenshots copied to $BROWSER_ARTIFACTS={target}")
    request.config.stash[ARTIFACTS_KEY].extend(lines)


@pytest.fixture(scope="module")
def mnist() -> dict[str, np.ndarray] | None:
    """The verified MNIST arrays from the data cache the build used (None where absent)."""
    from digits.data import default_cache_dir, read_cache

    arrays = read_cache(default_cache_dir(), log=lambda message: None)
    return arrays if len(arrays) == 4 else None


# --- one visit: a browser context that records what went wrong -------------------------------


@dataclass
class Visit:
    """A page opened in a fresh context, with its console errors, failed loads and every request
    that tried to leave the local server (refused)."""

    page: Page
    look: Look
    origin: str
    problems: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.outside, f"requests that left 127.0.0.1 (refused): {self.outside}"
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def visit(browser: Browser, site_url: str) -> Iterator[Callable[[Look], Visit]]:
    """Opens the site in a look, in a fresh context (closed after the test)."""
    contexts = []

    def open_page(look: Look) -> Visit:
        context = browser.new_context(
            viewport={"width": look.width, "height": look.height},
            device_scale_factor=2 if look.phone else 1, is_mobile=look.phone,
            has_touch=look.phone, color_scheme=look.scheme, reduced_motion="no-preference",
            service_workers="block")
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        result = Visit(page, look, urlsplit(site_url).netloc)

        def route(route) -> None:
            url = route.request.url
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob") or parts.netloc == result.origin:
                route.continue_()
            else:
                result.outside.append(url)
                route.abort("blockedbyclient")

        def on_console(message) -> None:
            # Errors from anywhere, and warnings from the page's own scripts (the browser's
            # own advice, e.g. on canvas readbacks made by these tests, comes with no URL).
            where = message.location.get("url", "")
            if message.type == "error" or (message.type == "warning"
                                           and urlsplit(where).netloc == result.origin):
                result.problems.append(f"console {message.type}: {message.text} ({where})")

        def on_response(response) -> None:
            if response.status >= 400:
                result.problems.append(f"HTTP {response.status}: {response.url}")

        def on_failed(request) -> None:
            if urlsplit(request.url).netloc == result.origin:
                result.problems.append(f"request failed: {request.url} ({request.failure})")

        context.route("**/*", route)
        page.on("console", on_console)
        page.on("pageerror", lambda error: result.problems.append(f"page error: {error}"))
        page.on("response", on_response)
        page.on("requestfailed", on_failed)
        page.goto(site_url + "index.html", wait_until="load")
        settle(page)
        return result

    yield open_page
    for context in contexts:
        context.close()


SCROLL_THROUGH = """async () => {
  // Scroll to the end and back, so that lazy images and the GIF players' frames load.
  const pause = () => new Promise(r => setTimeout(r, 40));
  const step = Math.max(200, Math.floor(innerHeight * 0.75));
  for (let y = 0; y < document.scrollingElement.scrollHeight; y += step) {
    window.scrollTo({top: y, behavior: "instant"});
    await pause();
  }
  window.scrollTo({top: 0, behavior: "instant"});
  await document.fonts.ready;
}"""


def settle(page: Page) -> None:
    """Load everything the page will load (lazy images included) and return to its top."""
    page.evaluate(SCROLL_THROUGH)
    # A lazy image inside a hidden element (the static t-SNE figure under the live map) is never
    # fetched; test_every_image_decodes checks those files separately.
    page.wait_for_function("() => Array.from(document.images)"
                           ".every(i => i.complete || !i.getClientRects().length)")
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => !document.querySelector('div.tsne-map[data-src]:not([hidden])')"
                           " || document.querySelector('div.tsne-map[data-ready]')")
    # The drawing pad loads its weights when it nears the window (the scroll above): ready, or
    # hidden again because they failed to load (which the console reports).
    page.wait_for_function("() => !document.querySelector('div.draw-pad[data-src]:not([hidden])')"
                           " || document.querySelector('div.draw-pad[data-ready]')")


def wait_scrolled(page: Page) -> None:
    """Wait until the page stops scrolling (a smooth scroll may be animating)."""
    page.evaluate("""() => new Promise(resolve => {
      let last = scrollY, still = 0;
      const check = () => {
        still = scrollY === last ? still + 1 : 0;
        last = scrollY;
        if (still >= 5) resolve(true); else requestAnimationFrame(check);
      };
      requestAnimationFrame(check);
    })""")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "section"


# --- how the page renders, in each look -------------------------------------------------------


OVERFLOW = """() => {
  // Elements and text that stick out of the viewport sideways, outside any container that
  // scrolls or clips them (tables scroll inside their own box; that is allowed).
  const W = document.documentElement.clientWidth;
  const clipped = el => {
    for (let a = el.parentElement; a && a !== document.body && a !== document.documentElement;
         a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") return true;
    }
    return false;
  };
  const describe = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (typeof el.className === "string" && el.className.trim()
      ? "." + el.className.trim().split(/\\s+/).join(".") : "") +
    (el.closest("section[id]") ? " in #" + el.closest("section[id]").id : "");
  const out = [];
  const sticks = r => r.width > 0 && r.height > 0 &&
    ((r.right > W + 1 && r.left < W) || (r.left < -1 && r.right > 0));
  const offender = el => sticks(el.getBoundingClientRect()) && !clipped(el);
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    // Name the outermost element that sticks out, not each of its children.
    if (offender(el) && !(el.parentElement && offender(el.parentElement)))
      out.push(describe(el) + " spans x " + Math.round(r.left) + ".." + Math.round(r.right));
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim() || clipped(node.parentElement)) continue;
    range.selectNodeContents(node);
    const r = range.getBoundingClientRect();
    if (sticks(r)) out.push("text '" + node.textContent.trim().slice(0, 50) + "' in " +
      describe(node.parentElement) + " spans x " + Math.round(r.left) + ".." + Math.round(r.right));
  }
  return {viewport: W, scrollWidth: document.scrollingElement.scrollWidth,
          offenders: out.slice(0, 20)};
}"""

CONTRAST = """() => {
  // WCAG contrast of each visible text against the first opaque background behind it.
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = c => {
    const f = v => (v /= 255) <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const background = el => {
    for (let a = el; a; a = a.parentElement) {
      const c = rgb(getComputedStyle(a).backgroundColor);
      if (c.length >= 3 && (c.length === 3 || c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  const ratio = (a, b) => {
    const x = lum(a), y = lum(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  };
  const bodyBg = background(document.body), bodyFg = rgb(getComputedStyle(document.body).color);
  const low = [], seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || seen.has(el)) continue;
    seen.add(el);
    const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    if (!r.width || !r.height || cs.visibility === "hidden" ||
        el.closest("[hidden], svg, .skip, button:disabled")) continue;
    const fg = rgb(cs.color), bg = background(el), value = ratio(fg, bg);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.6) ? 3 : 4.5;
    if (value < needed) low.push(el.tagName.toLowerCase() +
      (typeof el.className === "string" && el.className ? "." + el.className : "") +
      (el.closest("section[id]") ? " in #" + el.closest("section[id]").id : "") +
      " '" + node.textContent.trim().slice(0, 40) + "' " + value.toFixed(2) + " < " + needed);
  }
  return {bodyBackground: lum(bodyBg), bodyText: lum(bodyFg), low: low.slice(0, 20)};
}"""

BROKEN_IMAGES = """() => Array.from(document.images)  // (an <img> with no source is a placeholder)
  .filter(i => (i.getAttribute("src") || i.getAttribute("srcset")))
  .filter(i => i.getClientRects().length)  // shown; hidden ones are decoded separately
  .filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0))
  .map(i => i.currentSrc || i.src)"""


@pytest.mark.parametrize("look", LOOKS, ids=[look.name for look in LOOKS])
def test_page_renders(visit, look: Look, artifacts: Path) -> None:
    """No console error, every image loaded, nothing sticking out sideways, readable text, the
    colour scheme followed; screenshots of the top of the page and of each section."""
    v = visit(look)
    page, folder = v.page, artifacts / look.name
    folder.mkdir()
    page.screenshot(path=folder / "00-top.png")
    sections = page.locator("main > section, main > aside, main > div > section")
    for i in range(sections.count()):
        section = sections.nth(i)
        name = section.evaluate("s => s.id || s.getAttribute('aria-label') || "
                                "(s.querySelector('h1, h2, h3') || {}).textContent || ''")
        section.screenshot(path=folder / f"{i + 1:02d}-{slug(name)}.png")

    assert page.evaluate(BROKEN_IMAGES) == []
    overflow = page.evaluate(OVERFLOW)
    assert overflow["scrollWidth"] <= overflow["viewport"], \
        f"the page scrolls sideways: {overflow}"
    assert overflow["offenders"] == [], overflow
    contrast = page.evaluate(CONTRAST)
    if look.scheme == "dark":
        assert contrast["bodyBackground"] < 0.05 and contrast["bodyText"] > 0.5, contrast
    else:
        assert contrast["bodyBackground"] > 0.8 and contrast["bodyText"] < 0.1, contrast
    assert contrast["low"] == [], "text below WCAG AA contrast:\n" + "\n".join(contrast["low"])
    v.assert_clean()


# --- every image, GIF and sprite sheet --------------------------------------------------------


DECODE_ALL = """async (markup) => {
  // Every image the page can show: those of its markup (`markup`: scripts replace some, e.g. a
  // GIF by its player's canvas), <img> and <source> now in it, the GIF players' frame sheets and
  // the t-SNE map's thumbnail sheets; each decoded by the browser.
  const urls = new Set();
  const add = u => u && urls.add(new URL(u, document.baseURI).href);
  markup.forEach(add);
  for (const el of document.querySelectorAll("img[src], img[srcset], source[srcset]")) {
    add(el.getAttribute("src"));
    for (const part of (el.getAttribute("srcset") || "").split(","))
      add(part.trim().split(/\\s+/)[0]);
  }
  const sprites = Array.from(document.querySelectorAll("figure[data-sprite]"),
                             f => f.dataset.sprite);
  sprites.forEach(add);
  const maps = Array.from(document.querySelectorAll("div.tsne-map[data-src]"));
  const sheets = [];
  for (const m of maps) {
    const raw = (window.mnistMapData || {})[m.dataset.key || "tsne"];
    const folder = new URL(m.dataset.src, document.baseURI);
    if (raw) for (const s of raw.sheets) sheets.push(new URL(s, folder).href);
  }
  sheets.forEach(add);
  const results = await Promise.all(Array.from(urls, async url => {
    const img = new Image();
    img.src = url;
    try { await img.decode(); } catch (e) { return {url, width: 0, height: 0}; }
    return {url, width: img.naturalWidth, height: img.naturalHeight};
  }));
  return {results, sprites: sprites.length, sheets: sheets.length, maps: maps.length,
          gifs: Array.from(urls).filter(u => /\\.gif$/i.test(u)).length};
}"""


def markup_images(html: str) -> list[str]:
    """The src and srcset URLs of the <img> and <source> tags in a page's HTML."""
    urls = []
    for tag in re.findall(r"<(?:img|source)\b[^>]*>", html, re.IGNORECASE):
        urls += re.findall(r'\ssrc="([^"]+)"', tag)
        for srcset in re.findall(r'\ssrcset="([^"]+)"', tag):
            urls += [part.split()[0] for part in srcset.split(",") if part.strip()]
    return [html_unescape(url) for url in urls]


def test_every_image_gif_and_sprite_loads(visit, site_dir: Path) -> None:
    v = visit(DESKTOP)
    page = v.page
    found = page.evaluate(DECODE_ALL, markup_images((site_dir / "index.html").read_text()))
    broken = [r["url"] for r in found["results"] if not (r["width"] > 0 and r["height"] > 0)]
    assert not broken, f"images that do not decode: {broken}"
    assert found["gifs"] > 0 and found["sprites"] > 0, found
    assert found["maps"] == 0 or found["sheets"] > 0, found
    # Every GIF player got its frames: its GIF was swapped for a canvas with controls.
    players = page.locator("figure.gif[data-sprite]")
    assert players.count() == found["sprites"]
    for i in range(players.count()):
        figure = players.nth(i)
        figure.scroll_into_view_if_needed()
        figure.locator("canvas.gif-canvas").wait_for(state="visible")
    assert page.evaluate(BROKEN_IMAGES) == []
    v.assert_clean()


# --- the table of contents --------------------------------------------------------------------


LANDED = """(id) => {
  const target = document.getElementById(id);
  if (!target) return {missing: true};
  const r = target.getBoundingClientRect(), se = document.scrollingElement;
  const x = r.left + Math.min(40, r.width / 2), y = Math.max(0, r.top) + 8;
  const hit = document.elementFromPoint(x, y);
  return {hash: decodeURIComponent(location.hash), top: r.top, bottom: r.bottom,
          height: innerHeight,
          atBottom: se.scrollTop + innerHeight >= se.scrollHeight - 2,
          covered: !(hit && target.contains(hit)),
          coveredBy: hit ? hit.tagName.toLowerCase() + "." + hit.className : null};
}"""


def test_toc_links_land_on_their_sections(visit) -> None:
    v = visit(DESKTOP)
    page = v.page
    links = page.locator("nav a[href^='#']")
    targets = [h[1:] for h in links.evaluate_all("els => els.map(a => a.getAttribute('href'))")]
    sections = page.locator("main section[id]").evaluate_all("els => els.map(s => s.id)")
    missing = [s for s in sections if s not in targets]
    assert not missing, f"sections the contents do not link to: {missing}"
    for i, target in enumerate(targets):
        links.nth(i).click()
        wait_scrolled(page)
        where = page.evaluate(LANDED, target)
        assert not where.get("missing"), f"#{target}: no element with that id"
        assert where["hash"] == f"#{target}", where
        at_top = -2 <= where["top"] <= max(120, 0.2 * where["height"])
        assert at_top or (where["atBottom"] and where["top"] < where["height"] - 60), \
            f"#{target} is not at the top of the window after its link: {where}"
        assert not where["covered"], f"#{target}'s top is covered after its link: {where}"
    v.assert_clean()


# --- the t-SNE map ----------------------------------------------------------------------------


PICK_POINTS = """(root) => {
  // One point per digit, well inside the canvas and the window, that the map itself would pick
  // at that (whole-pixel) position.
  const m = root.tsneMap, canvas = root.querySelector(".tsne-map-stage > canvas");
  const r = canvas.getBoundingClientRect(), found = {};
  for (let i = 0; i < m.n && Object.keys(found).length < 10; i++) {
    const digit = m.label(i);
    if (digit in found) continue;
    const p = m.screenOf(i), x = Math.round(p.x), y = Math.round(p.y);
    if (x < r.left + 24 || x > r.right - 24 || y < r.top + 24 || y > r.bottom - 24) continue;
    if (x > innerWidth - 24 || y > innerHeight - 24 || x < 24 || y < 24) continue;
    if (m.visibleNear(x, y) !== i || document.elementFromPoint(x, y) !== canvas) continue;
    found[digit] = {i, x, y, index: m.index(i)};
  }
  return found;
}"""

COLOR_COUNTS = """(root) => new Promise(resolve => requestAnimationFrame(() =>
    requestAnimationFrame(() => {
  // How many canvas pixels carry each digit's colour, once the next frame is drawn.
  const canvas = root.querySelector(".tsne-map-stage > canvas"), g = canvas.getContext("2d");
  const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
  const colors = window.mnistMapData[root.dataset.key || "tsne"].colors.map(
    h => [1, 3, 5].map(k => parseInt(h.slice(k, k + 2), 16)));
  const counts = colors.map(() => 0);
  for (let p = 0; p < px.length; p += 4) {
    if (px[p + 3] !== 255) continue;
    for (let c = 0; c < colors.length; c++)
      if (px[p] === colors[c][0] && px[p + 1] === colors[c][1] && px[p + 2] === colors[c][2]) {
        counts[c]++;
        break;
      }
  }
  resolve(counts);
})))"""

TIP = """(root) => {
  const tip = root.querySelector(".tsne-map-tip"), thumb = tip.querySelector("canvas");
  const px = thumb.getContext("2d").getImageData(0, 0, 28, 28).data, grey = [];
  for (let p = 0; p < px.length; p += 4) grey.push(px[p]);
  return {hidden: tip.hidden, index: tip.dataset.index, text: tip.textContent, grey};
}"""


def tooltip_image(text: str, n_train: int) -> tuple[int, int, str]:
    """'digit 7 · training image #12,345' -> (7, position in train + test, text)."""
    match = re.match(r"digit (\d) \u00b7 (training|test) image #([\d,]+)$", text)
    assert match, f"unexpected tooltip text: {text!r}"
    number = int(match.group(3).replace(",", ""))
    return int(match.group(1)), number if match.group(2) == "training" else n_train + number, text


def check_tooltip(tip: dict, point: dict, labels: np.ndarray, images: np.ndarray | None,
                  n_train: int) -> int:
    """The tooltip names the hovered point's digit and image, and shows that image."""
    assert not tip["hidden"] and tip["index"] == str(point["i"]), (tip["index"], point)
    digit, index, text = tooltip_image(tip["text"], n_train)
    assert index == point["index"], (text, point)
    assert digit == labels[index], f"{text}: MNIST says {labels[index]}"
    if images is not None:  # the thumbnail is that image (4-bit grey, ink dark on white)
        ink = 255 - np.array(tip["grey"], dtype=float)
        truth = images[index].reshape(-1).astype(float)
        assert np.corrcoef(ink, truth)[0, 1] > 0.95, f"{text}: the thumbnail is another image"
    return digit


def open_map(page: Page, site_dir: Path) -> tuple:
    """The map's root, a handle on it, its data decoded by Python, and one point per digit to
    point at, with the map scrolled to the middle of the window."""
    from digits.tsne_map import decode_map_data

    root = page.locator("div.tsne-map[data-ready='true']")
    assert root.count() == 1, "the t-SNE map did not start"
    data = decode_map_data((site_dir / root.get_attribute("data-src")).read_text())
    root.locator(".tsne-map-stage > canvas").evaluate(
        "c => c.scrollIntoView({block: 'center', behavior: 'instant'})")
    wait_scrolled(page)
    handle = root.element_handle()
    return root, handle, data, handle.evaluate(PICK_POINTS)


def truth(mnist: dict | None, data: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and images) by position in train + test: MNIST's own where the data cache holds
    it, else the labels the build wrote into the map, decoded by Python."""
    if mnist is not None:
        return (np.concatenate([mnist["train-labels-idx1-ubyte"], mnist["t10k-labels-idx1-ubyte"]]),
                np.concatenate([mnist["train-images-idx3-ubyte"], mnist["t10k-images-idx3-ubyte"]]))
    labels = np.full(int(data["index"].max()) + 1, -1)
    labels[data["index"]] = data["labels"]
    return labels, None


TIP_SHOWS = """([root, i]) => {
  const tip = root.querySelector(".tsne-map-tip");
  return !tip.hidden && tip.dataset.index === String(i) && !tip.hasAttribute("data-loading");
}"""


def test_tsne_map_hover_and_class_buttons(visit, site_dir: Path, mnist) -> None:
    v = visit(DESKTOP)
    page = v.page
    root, handle, data, points = open_map(page, site_dir)
    labels, images = truth(mnist, data)
    assert len(points) >= 5, f"too few digits to point at: {points}"

    # Hover: the tooltip names the digit under the pointer and shows its image.
    for point in points.values():
        page.mouse.move(point["x"], point["y"])
        page.wait_for_function(TIP_SHOWS, arg=[handle, point["i"]])
        check_tooltip(handle.evaluate(TIP), point, labels, images, data["n_train"])
    page.mouse.move(1, 1)  # off the map: the tooltip goes
    page.wait_for_function("root => root.querySelector('.tsne-map-tip').hidden", arg=handle)

    # The class buttons hide and show one digit's points, and only those.
    before = handle.evaluate(COLOR_COUNTS)
    assert all(count > 0 for count in before), before
    keys = root.locator("button.tsne-map-key")
    assert keys.count() == 10
    for digit in range(10):
        key = keys.nth(digit)
        key.click()
        assert key.get_attribute("aria-pressed") == "false"
        hidden = handle.evaluate(COLOR_COUNTS)
        assert hidden[digit] == 0, f"digit {digit} still drawn after its button: {hidden}"
        others = [c for c in range(10) if c != digit]
        assert all(hidden[c] >= before[c] for c in others), (before, hidden)
        if str(digit) in points:  # pointing at a hidden digit names no such digit
            point = points[str(digit)]
            page.mouse.move(point["x"], point["y"])
            page.wait_for_timeout(100)
            tip = handle.evaluate(TIP)
            assert tip["hidden"] or not tip["text"].startswith(f"digit {digit} "), tip["text"]
            page.mouse.move(1, 1)
        key.click()
        assert key.get_attribute("aria-pressed") == "true"
        assert handle.evaluate(COLOR_COUNTS) == before, f"digit {digit} did not come back"
    root.get_by_role("button", name="Hide every digit").click()
    assert handle.evaluate(COLOR_COUNTS) == [0] * 10
    root.get_by_role("button", name="Show every digit").click()
    assert handle.evaluate(COLOR_COUNTS) == before
    v.assert_clean()


def test_tsne_map_replaces_the_static_figure(visit) -> None:
    """While the interactive map runs, the figure's static image is not shown as well."""
    v = visit(DESKTOP)
    shown = v.page.evaluate("""() => Array.from(
        document.querySelectorAll("figure.has-tsne-map img:not(.tsne-map img)"))
      .filter(i => i.getClientRects().length && getComputedStyle(i).visibility !== "hidden")
      .map(i => i.getAttribute("src"))""")
    assert v.page.locator("figure.has-tsne-map div.tsne-map[data-ready='true']").count() == 1
    assert shown == [], f"static images shown beside the interactive map: {shown}"
    v.assert_clean()


def test_tsne_map_tap_on_a_phone(visit, site_dir: Path, mnist) -> None:
    """On a touch screen a tap pins the tooltip of the digit tapped."""
    v = visit(PHONE)
    page = v.page
    root, handle, data, points = open_map(page, site_dir)
    labels, images = truth(mnist, data)
    assert points, "no digit to tap"
    point = next(iter(points.values()))
    page.touchscreen.tap(point["x"], point["y"])
    page.wait_for_function(TIP_SHOWS, arg=[handle, point["i"]])
    check_tooltip(handle.evaluate(TIP), point, labels, images, data["n_train"])
    v.assert_clean()


# --- the GIF player ---------------------------------------------------------------------------


FRAME_SHOWN = """async ([figure, frame]) => {
  // Whether the player's canvas shows exactly `frame` of its sprite sheet.
  const canvas = figure.querySelector("canvas.gif-canvas"), w = canvas.width, h = canvas.height;
  const columns = parseInt(figure.dataset.columns, 10);
  const sprite = new Image();
  sprite.src = figure.dataset.sprite;
  await sprite.decode();
  const ref = document.createElement("canvas");
  ref.width = w; ref.height = h;
  ref.getContext("2d").drawImage(sprite, (frame % columns) * w, Math.floor(frame / columns) * h,
                                 w, h, 0, 0, w, h);
  const a = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const b = ref.getContext("2d").getImageData(0, 0, w, h).data;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}"""


def test_gif_player_plays_pauses_and_seeks(visit) -> None:
    v = visit(DESKTOP)
    page = v.page
    figure = page.locator("figure.gif[data-sprite]").filter(
        has=page.locator("canvas.gif-canvas")).first
    figure.scroll_into_view_if_needed()
    frames = int(figure.get_attribute("data-frames"))
    period_ms = 1000 / float(figure.get_attribute("data-fps"))
    assert frames > 2
    handle = figure.element_handle()
    button = figure.locator(".gif-player button")
    slider = figure.locator(".gif-player input[type='range']")
    label = figure.locator(".gif-player output")
    changes = "([s, v]) => s.value !== v"

    def shows(frame: int) -> None:
        assert slider.input_value() == str(frame)
        assert label.inner_text() == f"frame {frame + 1} / {frames}"
        assert page.evaluate(FRAME_SHOWN, [handle, frame]), f"the canvas is not frame {frame}"

    # Plays on its own: the frame advances.
    assert "Pause" in button.inner_text()
    start = slider.input_value()
    page.wait_for_function(changes, arg=[slider.element_handle(), start])

    # Pauses: the frame holds.
    button.click()
    assert "Play" in button.inner_text()
    held = slider.input_value()
    page.wait_for_timeout(3 * period_ms + 200)
    shows(int(held))

    # Seeks with the slider (keyboard, and setting a value): shows that frame, stays paused.
    slider.focus()
    page.keyboard.press("End")
    shows(frames - 1)
    page.keyboard.press("Home")
    shows(0)
    page.keyboard.press("ArrowRight")
    shows(1)
    middle = frames // 2
    slider.fill(str(middle))
    shows(middle)
    page.wait_for_timeout(2 * period_ms + 200)
    shows(middle)
    assert "Play" in button.inner_text()

    # Plays again from there.
    button.click()
    assert "Pause" in button.inner_text()
    page.wait_for_function(changes, arg=[slider.element_handle(), str(middle)])
    v.assert_clean()


# --- the drawing pad (templates/static/draw_pad.js, digits/drawing.py) ------------------------

# The page's forward pass against torch's, with the same float16 weights: both compute in
# float32, in different orders (the page adds nine taps' products in double precision and then
# to a float32 sum; torch's kernels block and vectorise the sums), so they differ by float32
# rounding, about 1e-7 of a logit per layer. Logits are at most a few tens, so 1e-3 is
# a hundred times that and still far below anything that could change a class.
LOGIT_TOLERANCE = 1e-3
# The page's preprocessing against digits/drawing.py's on the same bitmaps: the same
# arithmetic in double precision, but numpy sums in another order (pairwise, BLAS), so a value
# that lands on exactly .5 may round the other way: one grey level at most.
PIXEL_TOLERANCE = 1

PAD_INPUT = """(root) => {
  // The 28 x 28 preview canvas (what the network reads), as grey levels.
  const c = root.querySelector("canvas.draw-pad-preview"), g = c.getContext("2d");
  const px = g.getImageData(0, 0, c.width, c.height).data, grey = [];
  for (let p = 0; p < px.length; p += 4) grey.push(px[p]);
  return grey;
}"""

PAD_STATE = """(root) => ({
  updates: Number(root.getAttribute("data-updates") || 0),
  input: root.drawPad.input(),
  probabilities: root.drawPad.probabilities(),
  ink: root.drawPad.ink(),
  bars: Array.from(root.querySelectorAll(".draw-pad-bars li"), li => ({
    width: parseFloat(li.querySelector(".draw-pad-bar").style.width),
    text: li.querySelector(".draw-pad-value").textContent, top: li.classList.contains("top")})),
  status: root.querySelector(".draw-pad-status").textContent,
  maps: Array.from(root.querySelectorAll("canvas.draw-pad-map"), c => {
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let p = 0; p < px.length; p += 4) if (px[p] + px[p + 1] + px[p + 2] > 60) lit++;
    return lit;
  })
})"""


def open_pad(page: Page) -> tuple:
    """The pad's root (ready), its element handle and its drawing canvas, scrolled into view."""
    root = page.locator("div.draw-pad[data-ready='true']")
    assert root.count() == 1, "the drawing pad did not start"
    root.locator("canvas.draw-pad-ink").evaluate(
        "c => c.scrollIntoView({block: 'center', behavior: 'instant'})")
    wait_scrolled(page)
    return root, root.element_handle(), root.locator("canvas.draw-pad-ink")


def pad_net(site_dir: Path, root) -> tuple:
    """The network and examples the page loaded, decoded by Python from the same file."""
    from digits.drawing import decode_pad_script

    return decode_pad_script((site_dir / root.get_attribute("data-src")).read_text())


def stroke_path(box: dict, shape: str = "seven") -> list[tuple[float, float]]:
    """Points of a digit-like stroke inside the canvas box, in page coordinates."""
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    corners = {"seven": [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)],
               "one": [(0.5, 0.15), (0.52, 0.85)]}[shape]
    points = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:]):
        points += [(x + w * (ax + (bx - ax) * t / 12), y + h * (ay + (by - ay) * t / 12))
                   for t in range(12)]
    points.append((x + w * corners[-1][0], y + h * corners[-1][1]))
    return points


def draw_with_mouse(page: Page, points: list) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point)
    page.mouse.up()


def draw_with_finger(page: Page, points: list) -> None:
    """One finger on the touch screen (Chromium turns touches into pointer events)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart",
                                          "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})
    for x, y in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def check_reading(page: Page, handle, before: int) -> dict:
    """After a change, the pad read its input once more: the preview shows the input, the
    bars its probabilities (those of the page's own predict), every conv panel lit."""
    page.wait_for_function("([root, n]) => Number(root.getAttribute('data-updates')) > n",
                           arg=[handle, before])
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
    state = handle.evaluate(PAD_STATE)
    assert handle.evaluate(PAD_INPUT) == state["input"]
    assert any(state["input"]), "the network's input is blank after a stroke"
    probabilities = np.array(state["probabilities"])
    logits = np.array(page.evaluate("(x) => window.mnistPad.predict(Uint8Array.from(x))",
                                    state["input"]))
    np.testing.assert_allclose(probabilities, softmax(logits), atol=1e-6)
    widths = np.array([bar["width"] for bar in state["bars"]])
    np.testing.assert_allclose(widths, 100 * probabilities, atol=0.01)
    assert [bar["top"] for bar in state["bars"]] == list(np.arange(10) == probabilities.argmax())
    assert all(bar["text"].endswith("%") for bar in state["bars"])
    assert all(lit > 0 for lit in state["maps"]), state["maps"]
    return state


def test_draw_pad_model_agrees_with_torch(visit, site_dir: Path, mnist) -> None:
    """100 test images through the page's network and through torch with the same float16
    weights (decoded by Python from the page's file): logits within LOGIT_TOLERANCE."""
    import torch

    from digits.drawing import folded_module

    v = visit(DESKTOP)
    root, handle, _ = open_pad(v.page)
    net, examples = pad_net(site_dir, root)
    if mnist is not None:
        images = mnist["t10k-images-idx3-ubyte"][:100]
    else:  # no data cache here: the examples and random ink
        rng = np.random.default_rng(0)
        random = rng.integers(0, 256, (100 - len(examples), 28, 28)) * (rng.random((100 - len(
            examples), 28, 28)) < 0.2)
        images = np.concatenate([np.stack([e["pixels"] for e in examples]), random])
    images = np.asarray(images, np.uint8)
    page_logits = np.array(v.page.evaluate(
        "(xs) => xs.map(x => window.mnistPad.predict(Uint8Array.from(x)))",
        images.reshape(len(images), -1).tolist()))
    with torch.no_grad():
        torch_logits = folded_module(net)(torch.from_numpy(images.copy())[:, None].float()
                                          / 255).numpy()
    difference = float(np.abs(page_logits - torch_logits).max())
    print(f"\ndrawing pad: max |page logit - torch logit| over {len(images)} test images: "
          f"{difference:.2e} (tolerance {LOGIT_TOLERANCE:g})")
    assert page_logits.shape == (len(images), 10)
    assert difference < LOGIT_TOLERANCE
    assert (page_logits.argmax(1) == torch_logits.argmax(1)).all()
    if mnist is not None:  # a trained network: it reads most of them right
        labels = mnist["t10k-labels-idx1-ubyte"][:100]
        assert (page_logits.argmax(1) == labels).mean() > 0.8
    # The asset's size is the one the page states.
    metrics = json.loads((site_dir / "data" / "hidden_layers" / "metrics.json").read_text())
    asset = site_dir / root.get_attribute("data-src")
    assert metrics["pad_script_bytes"] == asset.stat().st_size
    v.assert_clean()


def test_draw_pad_preprocessing_matches_python(visit, mnist) -> None:
    """Fixed high-resolution bitmaps through the page's preprocessing and digits/drawing.py's:
    within PIXEL_TOLERANCE grey levels."""
    from digits.drawing import preprocess

    bitmaps = []
    rng = np.random.default_rng(7)
    sources = (mnist["t10k-images-idx3-ubyte"][:4] if mnist is not None
               else rng.integers(0, 256, (4, 28, 28)) * (rng.random((4, 28, 28)) < 0.3))
    for k, digit in enumerate(sources):  # test digits enlarged (by 7 to 13), placed off-centre
        big = np.kron(np.asarray(digit, np.uint8), np.ones((7 + 2 * k, 7 + 2 * k), np.uint8))
        canvas = np.zeros((big.shape[0] + 60, big.shape[1] + 90), np.uint8)
        canvas[10 + 5 * k:10 + 5 * k + big.shape[0], 80 - 20 * k:80 - 20 * k + big.shape[1]] = big
        bitmaps.append(canvas)
    ring = np.hypot(*np.mgrid[-150:150, -110:110] / np.array([130, 80])[:, None, None])
    bitmaps.append(np.clip((1 - np.abs(ring - 0.8) / 0.12) * 255, 0, 255).astype(np.uint8))  # 0
    line = np.zeros((320, 200), np.uint8)
    line[20:300, 97:104] = 255  # a thin 1: narrower than a pixel once scaled
    bitmaps.append(line)
    v = visit(DESKTOP)
    page_out = v.page.evaluate(
        "(items) => items.map(b => Array.from(window.mnistPad.preprocess("
        "Uint8Array.from(b.ink), b.width, b.height)))",
        [{"ink": b.ravel().tolist(), "width": b.shape[1], "height": b.shape[0]} for b in bitmaps])
    worst = 0
    for bitmap, ours in zip(bitmaps, page_out):
        expected = preprocess(bitmap).astype(int).ravel()
        assert expected.any()
        worst = max(worst, int(np.abs(np.array(ours) - expected).max()))
    print(f"\ndrawing pad: max pixel difference, page vs Python preprocessing, over "
          f"{len(bitmaps)} bitmaps: {worst} grey level(s) (tolerance {PIXEL_TOLERANCE})")
    assert worst <= PIXEL_TOLERANCE
    v.assert_clean()


def test_draw_pad_reads_a_stroke_clears_and_loads_test_digits(visit, site_dir: Path) -> None:
    from digits.drawing import preprocess

    v = visit(DESKTOP)
    page = v.page
    root, handle, canvas = open_pad(page)
    net, examples = pad_net(site_dir, root)
    before = handle.evaluate(PAD_STATE)
    assert before["probabilities"] is None and not any(before["input"])
    assert root.locator(".draw-pad-status").inner_text() == \
        root.locator(".draw-pad-status").get_attribute("data-empty")

    # A mouse stroke: the preview, bars and maps follow; the input is the Python
    # preprocessing of the very ink on the canvas.
    draw_with_mouse(page, stroke_path(canvas.bounding_box()))
    state = check_reading(page, handle, before["updates"])
    ink = np.array(state["ink"]["alpha"], np.uint8).reshape(state["ink"]["side"], -1)
    assert np.abs(np.array(state["input"]) - preprocess(ink).ravel().astype(int)).max() \
        <= PIXEL_TOLERANCE

    # Clear: blank input, empty bars.
    root.locator("button.draw-pad-clear").click()
    page.wait_for_function("root => !root.drawPad.probabilities()", arg=handle)
    cleared = handle.evaluate(PAD_STATE)
    assert not any(cleared["input"]) and all(bar["width"] == 0 for bar in cleared["bars"])

    # Each test digit loads as it is; the mistakes are read as the classifiers section recorded.
    buttons = root.locator("button.draw-pad-example")
    assert buttons.count() == len(examples) and any(e["mistake"] for e in examples)
    for k, example in enumerate(examples):
        updates = handle.evaluate(PAD_STATE)["updates"]
        buttons.nth(k).click()
        state = check_reading(page, handle, updates)
        assert state["input"] == example["pixels"].ravel().tolist()
        predicted = int(np.argmax(state["probabilities"]))
        if example["probability"] > 0.9:  # far from a tie: float16 cannot change it
            assert predicted == example["predicted"], (k, example["index"])
        assert f"{example['index']:,}" in state["status"]
        assert (buttons.nth(k).get_attribute("class").endswith("mistake")) == example["mistake"]
    v.assert_clean()


@pytest.mark.parametrize("look", LOOKS, ids=[look.name for look in LOOKS])
def test_draw_pad_in_each_look(visit, look: Look, artifacts: Path) -> None:
    """Drawn by mouse on a desktop and by a finger on a phone (390 px, touch): the pad reads the
    stroke, fits the window, follows the colour scheme; a screenshot of each."""
    v = visit(look)
    page = v.page
    root, handle, canvas = open_pad(page)
    box = canvas.bounding_box()
    before = handle.evaluate(PAD_STATE)["updates"]
    if look.phone:
        assert page.evaluate("() => matchMedia('(pointer: coarse)').matches")
        assert canvas.evaluate("c => getComputedStyle(c).touchAction") == "none"
        scroll = page.evaluate("() => scrollY")
        draw_with_finger(page, stroke_path(box, "one"))
        # The finger drew; it did not scroll the page.
        assert page.evaluate("() => scrollY") == scroll
    else:
        draw_with_mouse(page, stroke_path(box))
    check_reading(page, handle, before)
    pad = root.bounding_box()
    width = page.evaluate("() => document.documentElement.clientWidth")
    assert pad["x"] >= 0 and pad["x"] + pad["width"] <= width, (pad, width)
    assert box["width"] >= 200 and abs(box["width"] - box["height"]) < 1, box
    background = canvas.evaluate("c => getComputedStyle(c).backgroundColor")
    page_background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == page_background  # the pad's paper follows the theme
    folder = artifacts / "draw-pad"
    folder.mkdir(exist_ok=True)
    root.screenshot(path=folder / f"{look.name}.png")
    v.assert_clean()


def test_page_without_javascript(browser, site_url: str) -> None:
    """With JavaScript off the pad stays hidden and a note says it needs JavaScript; the
    static figures stay."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(site_url + "index.html", wait_until="load")
        assert not page.locator("div.draw-pad").is_visible()
        note = page.locator(".draw-pad-nojs")
        assert note.is_visible() and "JavaScript" in note.inner_text()
        assert page.locator("#embeddings-tsne_map img").is_visible()
    finally:
        context.close()


def test_page_from_disk_draws_offline(browser, site_dir: Path) -> None:
    """Opened as a file (file://), the page loads the pad's weights and reads a stroke, with no
    request that leaves the site's folder and no console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        outside: list[str] = []
        folder = site_dir.resolve().as_uri()

        def route(r) -> None:
            if r.request.url.startswith((folder + "/", "data:", "blob:")):
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort("blockedbyclient")

        context.route("**/*", route)
        page.on("request", lambda r: None if r.url.startswith((folder + "/", "data:", "blob:"))
                else outside.append(r.url))
        page.goto((site_dir / "index.html").resolve().as_uri(), wait_until="load")
        settle(page)
        root, handle, canvas = open_pad(page)
        before = handle.evaluate(PAD_STATE)["updates"]
        draw_with_mouse(page, stroke_path(canvas.bounding_box()))
        check_reading(page, handle, before)
        assert page.locator("div.tsne-map[data-ready='true']").count() == 1
        assert not outside, f"requests that left the site's folder: {outside}"
        assert not problems, problems
    finally:
        context.close()
