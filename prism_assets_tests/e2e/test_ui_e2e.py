"""The real Dagster UI in headless Chromium: launch a backfill of two source partitions, wait for it
to succeed, then verify the rows with DuckDB. Needs Debian's chromium and chromium-driver
(`make browser`, which `make test` runs); skipped with the reason where they are missing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from prism_assets.core import duck
from prism_assets.core.storage import Lakehouse

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]  # workspace.yaml
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PARTITIONS = ("gsm8k", "humaneval")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 1.0):
    """Poll `condition` until it returns something truthy; an element the page re-rendered meanwhile (stale), or a
    click something still covers (an alert or overlay fading out), counts as not there yet."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (StaleElementReferenceException, ElementClickInterceptedException):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def clicked(element) -> bool | None:
    """Click `element` if there is one: a wait_for condition, so a covered click is tried again."""
    if element is None:
        return None
    element.click()
    return True


@pytest.fixture()
def dagster_ui(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")  # the project's instance settings, as `make ui`
    env = {**os.environ, "DAGSTER_HOME": str(home), "PRISM_LAKEHOUSE_URI": str(tmp_path / "lakehouse")}
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    log = open(tmp_path / "dagster_dev.log", "w")
    process = subprocess.Popen(
        [str(dagster), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return urllib.request.urlopen(f"{url}/server_info", timeout=2).status == 200
        except OSError:
            assert process.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
            return False

    try:
        wait_for(up, 180, "dagster dev to serve the UI")
        yield url, Lakehouse(str(tmp_path / "lakehouse")), tmp_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture()
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian chromium and chromium-driver are not installed (run `make browser` as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def test_backfill_two_source_partitions_from_the_ui(dagster_ui, browser):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    url, lakehouse, scratch = dagster_ui

    def button(label: str):
        return next((b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip().startswith(label)), None)

    def menu_item(label: str):
        return next((li for li in browser.find_elements(By.TAG_NAME, "li") if li.text.strip() == label), None)

    try:
        # Later stages (sampling, teacher logits) need every source; backfill the stages before them.
        before_sampling = urllib.parse.quote(" or ".join(
            f'group:"{group}"' for group in ("ingest", "normalize", "buckets", "redundancy")))
        browser.get(f"{url}/asset-groups~{before_sampling}")
        wait_for(lambda: button("Materialize all"), 90, "the asset graph")
        body = browser.find_element(By.TAG_NAME, "body").text
        assert {"ingest", "normalize", "buckets"} <= set(body.split())  # groups are shown

        def open_launch_dialog():
            try:
                if skip := button("Skip"):  # the community dialog shown on a first visit, sometimes late
                    skip.click()
                    return None
                dialogs = [
                    d for d in browser.find_elements(By.CSS_SELECTOR, "[role=dialog]")
                    if "Partition selection" in d.text
                ]
                if dialogs:
                    return dialogs[0]
                button("Materialize all").click()
            except WebDriverException:  # an overlay or an alert still in front of the button (fading out): retry
                pass
            return None

        dialog = wait_for(open_launch_dialog, 60, "the launch dialog")
        for partition in PARTITIONS:
            if not menu_item(partition):
                wait_for(lambda: clicked(next(iter(browser.find_elements(
                    By.XPATH, "//*[contains(@class, 'TagSelector')]")), None)), 10, "the partition selector")
            wait_for(lambda p=partition: clicked(menu_item(p)), 10, f"partition {partition} in the selector")
        wait_for(lambda: clicked(dialog.find_element(By.XPATH, ".//*[contains(text(), 'Launch runs')]")), 10,
                 "the dialog's title (closes the menu)")
        wait_for(lambda: (all(p in dialog.text.split("\n") for p in PARTITIONS)
                          and button("Launch backfill").is_enabled()),
                 10, "both partitions to be selected")
        wait_for(lambda: clicked(button("Launch backfill")), 10, "the backfill to launch")
        link = wait_for(lambda: next((a.get_attribute("href") for a in browser.find_elements(By.TAG_NAME, "a")
                                      if "/runs/b/" in (a.get_attribute("href") or "")), None), 30, "the backfill link")
        browser.get(link)

        def status():
            text = browser.find_element(By.TAG_NAME, "body").text
            for final in ("Succeeded", "Failed", "Canceled", "Completed with failures"):
                if f"Status\n{final}" in text:
                    return final
            browser.refresh() if int(time.monotonic()) % 15 == 0 else None
            return None

        assert wait_for(status, 540, "the backfill to finish", interval=2) == "Succeeded"
    finally:
        browser.save_screenshot(str(scratch / "last_screen.png"))

    # Dagster ran everything downstream of the two partitions: the source stage for gsm8k and humaneval,
    # cross-source duplicate matching, then clusters and caps for every skill bucket.
    with duck.connect(lakehouse) as con:
        counts = dict(con.execute("SELECT source_dataset, count(*) FROM bucket_labels GROUP BY 1").fetchall())
        raw = dict(con.execute("SELECT source_dataset, count(*) FROM raw_prompts GROUP BY 1").fetchall())
        [(representatives, clustered, capped)] = con.execute("""
            SELECT (SELECT count(*) FROM near_duplicates WHERE is_representative),
                   (SELECT count(*) FROM prompt_clusters), (SELECT count(*) FROM diversity_caps)""").fetchall()
    assert counts == {"gsm8k": 400, "humaneval": 164}
    assert raw == counts  # nothing quarantined in these two sources, nothing else materialized
    assert representatives == clustered == capped > 500
    assert not lakehouse.exists("sampling_manifest")  # the filtered graph was what "Materialize all" launched
