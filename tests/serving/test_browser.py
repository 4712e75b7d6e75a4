"""The retention workspace in real Chromium (Debian's, driven by Playwright; the Makefile installs it through apt
when absent): sign in, filter the at-risk list, open a Hebrew customer (right to left) and a Czech one, see the
score history chart, export the filtered view and read the file back. Screenshots go to the test's folder."""

from __future__ import annotations

import shutil
import socket
import threading

import pandas as pd
import pytest

from tests.serving.test_app import build_workspace

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


@pytest.fixture
def server(tmp_path):
    import uvicorn

    workspace = build_workspace(tmp_path / "data")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(workspace["app"], log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    try:
        yield {**workspace, "base": f"http://127.0.0.1:{port}"}
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_sign_in_filter_open_a_customer_and_export_in_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = server["base"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
            page.goto(f"{base}/lists/at_risk")
            assert page.url.startswith(f"{base}/login")  # not signed in: the sign-in page
            page.fill("#key", server["keys"]["marketer"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/lists/at_risk")
            assert page.locator("table.list tbody tr").count() == 4
            page.fill("input[name=tier]", "high")
            page.click("form.filters button[type=submit]")
            page.wait_for_url("**tier=high**")
            assert page.locator("table.list tbody tr").count() == 3
            assert "3 customers in this view" in " ".join(page.locator("p.summary").inner_text().split())
            page.screenshot(path=str(shots / "list.png"), full_page=True)

            with page.expect_download() as download:
                page.click("text=CSV")
            exported = pd.read_csv(download.value.path(), encoding="utf-8-sig")
            assert sorted(exported["customer_id"]) == ["C000", "C001", "C003"]

            page.click("a[href='/customers/C001']")
            page.wait_for_url(f"{base}/customers/C001")
            reasons = page.locator("ol.reasons[lang=he]")
            assert reasons.get_attribute("dir") == "rtl"
            assert reasons.evaluate("e => getComputedStyle(e).direction") == "rtl"
            assert page.locator("svg.chart circle").count() == 2  # the score history: two as-of dates
            assert page.locator("svg.waterfall rect").count() == 3  # two drivers and the other features
            page.screenshot(path=str(shots / "profile-he.png"), full_page=True)
            page.goto(f"{base}/customers/C000")
            assert page.locator("ol.reasons[lang=cs]").evaluate("e => getComputedStyle(e).direction") == "ltr"
            page.screenshot(path=str(shots / "profile-cs.png"), full_page=True)
            page.goto(f"{base}/campaigns")
            assert page.locator("table tbody tr").count() == 4  # two lists x two as-of dates
            page.screenshot(path=str(shots / "campaigns.png"), full_page=True)
            page.keyboard.press("Tab")  # keyboard navigable: the first link takes the focus
            assert page.evaluate("document.activeElement.tagName") == "A"
        finally:
            browser.close()
    assert all((shots / f).stat().st_size > 10_000 for f in ("list.png", "profile-he.png", "profile-cs.png",
                                                              "campaigns.png"))
