"""Render a run's report.html in headless Chromium and check it is self-contained, as a browser sees it.

    .venv/bin/python benchmarks/render_report.py [RUN_OR_REPORT] [--screenshot docs/report-screenshot.png]

The report is copied alone into an empty directory (so a relative link to a file beside it cannot load) and
opened from there with a probe script appended. The probe, run by Chromium after the page loads, records
every resource the page fetched (`performance.getEntriesByType("resource")`: anything here is a reference to
outside the file) and, for every <img>, whether it decoded (`naturalWidth > 0`). Chromium prints the DOM with
`--dump-dom`; the probe's findings are read back from it. Then a screenshot is taken of the unmodified report
and checked to be a real picture (not one flat colour). Exits 1 when any check fails.
Writes benchmarks/results/render_report.json. Needs `chromium` (`make browser` installs it).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "render_report.json"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-background-networking", "--virtual-time-budget=5000"]
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({src: i.src.slice(0, 30), ok: i.complete && i.naturalWidth > 0,
                                               w: i.naturalWidth, h: i.naturalHeight}));
  const fetched = performance.getEntriesByType("resource").map(e => e.name).filter(n => !n.startsWith("data:"));
  const out = document.createElement("pre");
  out.id = "dlopt-probe";
  out.textContent = JSON.stringify({images: imgs, fetched: fetched, title: document.title});
  document.body.appendChild(out);
});
</script>"""


def find_report(arg: str | None) -> Path:
    if arg:
        p = Path(arg).resolve()
        return p if p.suffix == ".html" else p / "report.html"
    found = sorted((ROOT / "artifacts").glob("*/*/report.html"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("no report.html under artifacts/; run `make demo` first or give a run directory")
    return found[-1]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    raise SystemExit("chromium not found; run `make browser` (installs Debian's chromium)")


def probe(browser: str, report: Path, tmp: Path) -> dict:
    page = tmp / "probe" / "report.html"
    page.parent.mkdir()
    text = report.read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE, "utf-8")
    dom = subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="dlopt-probe">(.*?)</pre>', dom, re.S)
    if not found:
        raise SystemExit("chromium ran but the probe did not report (page failed to load?)")
    return json.loads(html.unescape(found.group(1)))


def screenshot(browser: str, report: Path, dest: Path, tmp: Path) -> dict:
    from PIL import Image, ImageStat

    alone = tmp / "shot" / "report.html"
    alone.parent.mkdir()
    shutil.copyfile(report, alone)
    subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp / 'profile2'}", "--window-size=1600,1500",
                    f"--screenshot={dest}", alone.as_uri()], capture_output=True, timeout=120, check=True)
    with Image.open(dest) as im:
        stddev = max(ImageStat.Stat(im.convert("RGB")).stddev)
        return {"path": str(dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest),
                "size": list(im.size), "pixel_stddev": round(stddev, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", nargs="?", help="a run directory or its report.html (default: newest under artifacts/)")
    ap.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "report-screenshot.png")
    args = ap.parse_args()
    report, browser = find_report(args.report), chromium()
    with tempfile.TemporaryDirectory() as tmp:
        seen = probe(browser, report, Path(tmp))
        shot = screenshot(browser, report, args.screenshot.resolve(), Path(tmp))
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
    broken = [i for i in seen["images"] if not i["ok"]]
    checks = {"no_external_fetches": not seen["fetched"], "images_present": bool(seen["images"]),
              "every_image_decoded": not broken, "screenshot_not_blank": shot["pixel_stddev"] > 5}
    result = {"report": str(report.relative_to(ROOT) if report.is_relative_to(ROOT) else report),
              "browser": version, "images": len(seen["images"]), "images_broken": broken,
              "external_fetches": seen["fetched"], "screenshot": shot, "checks": checks, "passed": all(checks.values())}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"{len(seen['images'])} images, {len(seen['fetched'])} external fetches; screenshot {shot['path']}; "
          f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
