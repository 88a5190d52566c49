"""A PNG of a report page, taken by headless Chromium through Playwright, with the network blocked.

Playwright drives the OS's Chromium (`HARNESS_CHROMIUM`, else /usr/bin/chromium or the first
chromium on PATH); it never downloads a browser. The tests open pages the same way (`open_page`).
The PNG names the cells the page shows in its `harness-cells` metadata (report.pngmeta): those of the
summary.json written beside the page with it.

    python -m harness.report.screenshot results/smoke/report.html results/smoke/report.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    found = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@contextmanager
def open_page(path: Path, width: int = 1400, height: int = 900):
    """(page, console errors, blocked requests): `path` loaded from file://, every non-file request aborted."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("no Chromium found: install it (apt-get install chromium) or set HARNESS_CHROMIUM")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            blocked: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(Path(path).resolve().as_uri())
            # the leaderboard page sets data-ready once its charts are drawn; the gate's page has no charts
            page.wait_for_function("document.body.dataset.ready || !document.getElementById('plotly-gz')",
                                   timeout=120_000)
            yield page, errors, blocked
        finally:
            browser.close()


def page_cells(path: Path) -> list[str] | None:
    """The cells of a leaderboard page: those of the summary.json beside it; None for a page without one."""
    import json

    from harness.report.pngmeta import cell_ids

    summary = Path(path).parent / "summary.json"
    return cell_ids(json.loads(summary.read_text(encoding="utf-8"))["rows"]) if summary.is_file() else None


def screenshot(path: Path, out: Path, select: int | None = 1) -> Path:
    """The whole page, with cell `select` (a headline row index) opened so its details show; the PNG names
    the page's cells (`page_cells`) in its metadata."""
    from harness.report.pngmeta import stamp

    with open_page(path) as (page, errors, _):
        if select is not None and page.evaluate("typeof window.selectCell") == "function":
            page.evaluate(f"window.selectCell({int(select)}, false)")
            page.wait_for_timeout(500)
        page.screenshot(path=str(out), full_page=True)
    if (cells := page_cells(path)) is not None:
        stamp(out, cells)
    if errors:
        print("console errors: " + "; ".join(errors), file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report.screenshot", description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--select", type=int, default=1, help="headline row to open (default 1, the first trained cell)")
    args = p.parse_args(argv)
    if not args.page.is_file():
        print(f"{args.page}: no such file", file=sys.stderr)
        return 2
    print(screenshot(args.page, args.out, args.select))
    return 0


if __name__ == "__main__":
    sys.exit(main())
