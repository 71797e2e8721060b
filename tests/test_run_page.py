"""A search run's offline HTML report, opened in headless Chromium as a reader would: it
renders, no console errors, no request leaves the file, every image loads; the same run
gives the same bytes; links to the trials' logs resolve."""

from __future__ import annotations

import hashlib
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from coordinator.app import run_search
from coordinator.config.experiment import SearchOptions
from coordinator.reporting.tables import write_report
from coordinator.store.rundir import RunStore
from tests import chromium

pytestmark = pytest.mark.xdist_group("run-page")  # one worker: the module's fixtures are built once, not once per xdist worker


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "img":
            self.imgs.append(str(a.get("src")))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, small_csv: Path) -> Path:
    tmp = tmp_path_factory.mktemp("page")
    os.environ["COORD_PLOTS"] = "1"  # module-wide: monkeypatch is per test
    try:
        out = run_search(SearchOptions(models=("glm",), data=str(small_csv), target="home_win",
                                       time_col="season", folds=2, trials=5, run_dir=str(tmp / "run")))
    finally:
        os.environ.pop("COORD_PLOTS", None)
    return Path(out["files"]["html"])


def test_the_page_links_every_trials_logs_and_embeds_every_figure(page: Path) -> None:
    parsed = _Links()
    parsed.feed(page.read_text(encoding="utf-8"))
    logs = [h for h in parsed.hrefs if h.startswith("../trials/")]
    assert len(logs) == 10 and all((page.parent / h).resolve().is_file() for h in logs)  # stdout + stderr x 5
    assert all(src.startswith("data:image/png;base64,") for src in parsed.imgs)  # nothing outside the file
    assert len(parsed.imgs) == len(list(page.parent.rglob("*.png"))) >= 5  # history, importances, ... timeline
    text = page.read_text(encoding="utf-8")
    assert "Top configurations: glm" in text and "Best per model" in text and "<h2>Hosts</h2>" in text
    before = hashlib.sha256(page.read_bytes()).hexdigest()
    write_report(RunStore.open(page.parent.parent), plots=True)  # coord report RUN: the same bytes
    assert hashlib.sha256(page.read_bytes()).hexdigest() == before


def test_chromium_renders_it_offline_without_errors(page: Path, tmp_path: Path) -> None:
    if chromium.binary() is None:
        pytest.fail("no headless Chromium: scripts/install.sh installs chromium-headless-shell")
    seen = chromium.check_page(page)
    assert seen.title.startswith("coord run ")
    assert seen.console == []
    assert [u for u in seen.requests if not u.startswith("data:")] == [page.resolve().as_uri()]  # nothing else
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in seen.images), seen.images
    assert seen.screenshot.startswith(b"\x89PNG") and len(seen.screenshot) > 20_000
    (tmp_path / "screenshot.png").write_bytes(seen.screenshot)


def test_the_browser_check_sees_a_broken_image_and_a_request_out(tmp_path: Path) -> None:
    """The check can fail: a page with an image that does not decode and one on the network."""
    if chromium.binary() is None:
        pytest.fail("no headless Chromium: scripts/install.sh installs chromium-headless-shell")
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><title>bad</title></head><body>'
                   '<img src="data:image/png;base64,AAAA" alt="broken">'
                   '<img src="http://127.0.0.1:9/x.png" alt="remote"></body></html>')
    seen = chromium.check_page(bad)
    assert [i["width"] for i in seen.images] == [0, 0]
    assert "http://127.0.0.1:9/x.png" in seen.requests and seen.console
