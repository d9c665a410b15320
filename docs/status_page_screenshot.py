"""Takes docs/status-page.png: the status page of ``wincc-gateway demo`` in chromium.

Run from the repository root, with the dev extra installed and Debian's chromium:
``python docs/status_page_screenshot.py``. It starts the demo, lets the chart fill for a
while, sends one allowed and one refused write, and shoots the page.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import shutil
import sys
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
PAGE = re.compile(r"^Status page: (?P<url>http://\S+)$")
PUB = re.compile(r"^\s*(?P<command>mosquitto_pub .*)$")


async def shoot(output: Path, settle: float) -> None:
    """Run the demo, send two commands, shoot its status page."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "demo",
        "--tags",
        "300",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert demo.stdout is not None
    url = pub = None
    try:
        while url is None or pub is None:
            line = (await asyncio.wait_for(demo.stdout.readline(), 30)).decode().rstrip("\n")
            if not line:
                raise SystemExit("the demo ended early")
            if match := PAGE.match(line):
                url = match["url"]
            elif match := PUB.match(line):
                pub = shlex.split(match["command"])
        drain = asyncio.create_task(demo.stdout.read())
        await asyncio.sleep(settle)  # the chart fills
        refused = [*pub[:-4], "-t", "wincc/demo/cmd/write/System1/Area1/Pump1/Speed"]
        for command in (pub, [*refused, "-m", '{"value": 5, "id": "hmi-7"}']):
            tool = shutil.which(command[0]) or command[0]
            sent = await asyncio.create_subprocess_exec(tool, *command[1:])
            await sent.wait()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1080, "height": 920})
            await page.goto(url)
            await page.locator("#commands").get_by_text("hmi-7").wait_for()
            await page.wait_for_timeout(1500)  # one more snapshot: fresh rates
            await page.screenshot(path=str(output))  # the viewport: a small file
            await browser.close()
        drain.cancel()
    finally:
        demo.terminate()
        await demo.wait()


def main() -> None:
    """``--settle`` seconds of chart, then the shot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "status-page.png")
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(shoot(args.output, args.settle))


if __name__ == "__main__":
    main()
