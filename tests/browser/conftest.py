"""Browser tests: Playwright driving Debian's Chromium against the app on a loopback port.

No browser is downloaded: Playwright launches the system Chromium (`MTAI_CHROMIUM`, default
/usr/bin/chromium, which `make test` installs with apt). Screenshots go to
test-artifacts/screenshots (or `MTAI_SCREENSHOT_DIR`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = os.environ.get("MTAI_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("MTAI_SCREENSHOT_DIR", "test-artifacts/screenshots"))
# Without these, Chromium keeps calling Google's hosts, which this offline machine refuses.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which(CHROMIUM)
    if found is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run `make test` (it installs Debian's chromium) "
            "or set MTAI_CHROMIUM to a Chromium binary."
        )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return found


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser, live_server: str) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 860})
    made.set_default_timeout(15_000)
    yield made
    await made.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def page(context: BrowserContext, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    opened = await context.new_page()
    # window.confirm() before destructive actions: the user says yes.
    opened.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(error.stack or str(error)))
    yield opened
    if request.node.stash.get(FAILED, False):
        await screenshot(opened, f"FAILED-{request.node.name}")
    assert not errors, f"the page raised: {errors}"


async def screenshot(page: Page, name: str) -> None:
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


async def log_in(page: Page, email: str, password: str) -> None:
    await page.goto("/ui/")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_test_id("who").wait_for()


async def log_out(page: Page) -> None:
    await page.get_by_role("button", name="Log out").click()
    await page.get_by_role("heading", name="Log in to mtai").wait_for()


async def open_page(page: Page, label: str) -> None:
    await page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()
