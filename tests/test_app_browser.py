"""Real-browser test of the Gradio app: headless system Chromium driven by Playwright.

Opens the page served by the ``app_url`` fixture (conftest.py), visits each
tab, uploads a photo on the pose tab, moves the yaw slider, renders a
one-frame pose path and checks what the page shows.  Screenshots go to the
test's tmp dir.  Needs the Debian package ``chromium`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import TESTDATA

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RENDER_TIMEOUT_MS = 120_000
"""Bound on waiting for one rendered result (a frame costs ~12-20 s on a 2-core CPU)."""

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="system Chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(app_url: str):  # noqa: F811
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(app_url, timeout=60_000)
        yield page
        browser.close()


def _open_tab(page, name: str):
    """Click a tab and return its visible panel."""
    page.get_by_role("tab", name=name).click()
    panel = page.get_by_role("tabpanel").filter(visible=True)
    sync_api.expect(panel).to_have_count(1)
    return panel


def test_every_tab_shows_its_inputs_and_the_device(page, tmp_path: Path) -> None:
    sync_api.expect(page.get_by_text("Device: cpu")).to_be_visible()
    for tab, expected in [("Audio-driven", "Speech"), ("Video-driven", "Driving video"),
                          ("Pose & expression", "Render a pose path")]:
        panel = _open_tab(page, tab)
        sync_api.expect(panel.get_by_text(expected).first).to_be_visible()
        page.screenshot(path=tmp_path / f"tab_{tab.split()[0].lower()}.png", full_page=True)


def test_pose_tab_preview_follows_the_slider_and_renders_a_pose_path(page, tmp_path: Path) -> None:
    panel = _open_tab(page, "Pose & expression")
    panel.locator("input[type=file]").first.set_input_files(str(TESTDATA / "images" / "astronaut.png"))
    preview = page.locator("#pose-preview img")
    sync_api.expect(preview).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    first_src = preview.get_attribute("src")

    yaw = panel.locator("input[type=range][aria-label*='yaw']")
    box = yaw.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    sync_api.expect(preview).not_to_have_attribute("src", first_src, timeout=RENDER_TIMEOUT_MS)
    page.screenshot(path=tmp_path / "pose_preview.png", full_page=True)
    assert float(panel.locator("input[type=number][aria-label*='yaw']").input_value()) > 10

    panel.get_by_label("Max frames", exact=False).fill("1")
    panel.get_by_role("button", name="Render a pose path").click()
    video = page.locator("#pose-path-video video")
    sync_api.expect(video).to_have_attribute("src", re.compile(r"pose_path\.mp4"), timeout=RENDER_TIMEOUT_MS)
    page.screenshot(path=tmp_path / "pose_path.png", full_page=True)
