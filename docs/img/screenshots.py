"""Take the screenshots of docs/teaching.md from a running cluster (not part of the test suite).

    python run_cluster.py --dir /tmp/teach --no-day &      # prints the admin token
    p2pchain trickle --dir /tmp/teach &
    python docs/img/screenshots.py http://127.0.0.1:7050 TOKEN [--simulated-only]

Scenario 6 (a tampered node) has its own cluster:

    python run_cluster.py --dir /tmp/tampered --base-port 7150 --demo --tamper node3 &
    python docs/img/screenshots.py http://127.0.0.1:7150 TOKEN --tampered

Needs Debian's chromium and Playwright for Python (see tests/integration/test_dashboard.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def text(page, testid: str) -> str:
    return (page.get_by_test_id(testid).text_content() or "").strip()


def primary(page) -> str:
    for _ in range(120):
        roles = [n for n in ("node0", "node1", "node2", "node3") if text(page, f"role-{n}") == "primary"]
        if len(roles) == 1 and "in progress" not in text(page, "live-narrative"):
            return roles[0]
        page.wait_for_timeout(500)
    raise RuntimeError("no single primary")


def main(base: str, token: str, simulated_only: bool = False, tampered_only: bool = False) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        if tampered_only:
            tampered(page, base, token)
            browser.close()
            return
        if not simulated_only:
            live(page, base, token)
        simulated(page, base, token)
        browser.close()


def live(page, base: str, token: str) -> None:
    page.goto(f"{base}/ui?token={token}")
    page.wait_for_timeout(4000)
    page.screenshot(path=str(OUT / "teaching-normal.png"))

    old = primary(page)
    page.get_by_test_id(f"crash-{old}").click()
    page.wait_for_timeout(2500)
    page.screenshot(path=str(OUT / "teaching-view-change-during.png"))
    new = primary(page)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(OUT / "teaching-view-change.png"))
    page.get_by_test_id(f"restart-{old}").click()
    page.wait_for_timeout(4000)

    p0 = primary(page)
    page.get_by_test_id(f"mode-{p0}").select_option("equivocate")
    page.get_by_test_id(f"byzantine-{p0}").click()
    page.wait_for_timeout(6000)
    page.screenshot(path=str(OUT / "teaching-equivocation.png"))
    page.get_by_test_id(f"heal-{p0}").click()
    page.wait_for_timeout(4000)

    victim = next(n for n in ("node3", "node2", "node1") if n != primary(page))
    page.get_by_test_id(f"isolate-{victim}").click()
    page.wait_for_timeout(5000)
    page.screenshot(path=str(OUT / "teaching-partition.png"))
    page.get_by_test_id(f"heal-{victim}").click()
    page.wait_for_timeout(5000)
    page.screenshot(path=str(OUT / "teaching-heal.png"))


def tampered(page, base: str, token: str) -> None:
    """Scenario 6: node3 has halted its transaction channel; the others go on."""
    page.goto(f"{base}/ui?token={token}")
    for _ in range(60):
        if "halted" in (page.text_content("body") or ""):
            break
        page.wait_for_timeout(500)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(OUT / "teaching-tamper.png"))


def simulated(page, base: str, token: str) -> None:

    page.goto(f"{base}/ui?token={token}#sim")
    page.get_by_test_id("sim-scenario").select_option("crash-primary")
    page.get_by_test_id("sim-seed").fill("4")
    page.get_by_test_id("sim-new").click()
    page.wait_for_timeout(500)
    page.evaluate("window.dashboard.sim.clock = 2400")  # jump close to node0's restart
    page.get_by_test_id("sim-speed").fill("70")
    page.get_by_test_id("sim-play").click()
    for _ in range(120):
        if "caught up" in text(page, "sim-log"):
            break
        page.wait_for_timeout(250)
    page.get_by_test_id("sim-play").click()
    page.screenshot(path=str(OUT / "teaching-state-transfer.png"))

    page.get_by_test_id("sim-scenario").select_option("normal")
    page.get_by_test_id("sim-new").click()
    page.wait_for_timeout(500)
    for _ in range(200):  # step to the first PRE-PREPAREs on their way
        if page.locator('#sim-svg g.msg[data-type="pre-prepare"]').count():
            break
        page.get_by_test_id("sim-step").click()
        page.wait_for_timeout(100)
    page.locator('#sim-svg g.msg[data-type="pre-prepare"]').first.click()
    for _ in range(6):
        page.get_by_test_id("sim-step").click()
        page.wait_for_timeout(100)
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / "teaching-sim-drop.png"))

    page.goto(f"{base}/ui?token={token}#explorer")
    page.wait_for_timeout(1500)
    page.locator("#ex-blocks tbody tr.click").nth(0).click()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(OUT / "teaching-explorer.png"))
    page.goto(f"{base}/ui?token={token}#market")
    page.wait_for_timeout(1500)
    # the market view shows data once a market day has run on this cluster
    # (`python run_cluster.py` without --no-day); before that it says so
    page.screenshot(path=str(OUT / "teaching-market.png"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], simulated_only="--simulated-only" in sys.argv[3:],
         tampered_only="--tampered" in sys.argv[3:])
