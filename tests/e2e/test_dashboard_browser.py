"""The dashboard in a real headless Chromium (Debian's chromium, driven through the system
chromedriver; nothing downloaded) on the whole local stack as ``falcon up`` starts it: submit a
replay search from the page with the token, watch its trial table grow to completion without a
reload, open the report, cancel a second search and see it stop, a model name with markup shown
as text, dead letters arriving live. Screenshots of every page (1280x800) go to bench/results/ui/,
and the delay between an event (its envelope ``ts``) and the page applying it to
bench/results/ui/latency.json."""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from schemas import Event
from services.platform.bus import KafkaPublisher
from services.platform.settings import Settings
from tests.conftest import keep_logs_on_failure
from tests.helpers import PROFILES, REPO, TARGETS
from tools import localstack

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [pytest.mark.e2e, pytest.mark.ui,
              pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                 reason="Debian's chromium and chromium-driver are not installed "
                                        "(scripts/setup.sh installs them)")]
TOKEN = "browser-test-token"
SHOTS = REPO / "bench" / "results" / "ui"
TRIAL_REAL_S = 0.6                       # a simulated 15-minute replay trial takes this long here
EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
UPDATES: list[dict] = []                 # every live update the pages applied (lag measured in the page)


@pytest.fixture(scope="module")
def dash(tmp_path_factory, request):
    home = tmp_path_factory.mktemp("falcon-home")
    keep_logs_on_failure(request, home)
    base = replace(Settings(), session_timeout_s=2.0, heartbeat_s=0.2, trial_time_scale=TRIAL_REAL_S / 900)
    saved = os.environ.get("FALCON_UI_TOKEN")
    os.environ["FALCON_UI_TOKEN"] = TOKEN            # the dashboard reads it from its environment
    try:
        info = localstack.up(home, base, runners=2, broker_port=localstack.free_port(),
                             redis_port=localstack.free_port(), ui_port=localstack.free_port())
    finally:
        os.environ.pop("FALCON_UI_TOKEN") if saved is None else os.environ.__setitem__("FALCON_UI_TOKEN", saved)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield f"http://127.0.0.1:{info.ui_port}", info.settings(base)
    localstack.down(home)
    if UPDATES:
        write_latency(UPDATES)


@pytest.fixture(scope="module")
def browser(dash):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
              "--window-size=1280,800", "--disable-gpu"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    d.set_page_load_timeout(30)
    yield d
    d.quit()


# -- helpers ---------------------------------------------------------------------------------
def wait(fn, timeout_s=30.0, every_s=0.05, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            out = fn()
        except Exception:        # noqa: BLE001 - element not there yet, page in flux
            out = None
        if out:
            return out
        time.sleep(every_s)
    raise AssertionError(f"{what} not reached in {timeout_s}s")


def open_page(d, url):
    d.get(url)
    wait(lambda: d.execute_script("return window.__falcon && window.__falcon.connected"), 15, what="live stream")
    d.execute_script("window.__loadedOnce = 'yes'")           # gone if the page ever reloads


def keep_updates(d):
    UPDATES.extend(d.execute_script("return window.__falcon ? window.__falcon.updates : []") or [])


def shot(d, name):
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def text(d, css):
    """An element's text, read in one go (live updates replace elements under a held reference)."""
    return d.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)


def trial_rows(d):
    return len(d.find_elements("css selector", "#part-trials tr[data-trial]"))


def status(d):
    return text(d, "#part-summary .badge")


def api_submit(base_url, **body):
    req = urllib.request.Request(base_url + "/api/searches", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Falcon-Token": TOKEN})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["search_id"]


def replay(model, **kw):
    return {"model": model, "replay_table": str(TARGETS / f"reg-{model}.csv"),
            "profile": str(PROFILES / model / "operators.csv"), **kw}


def severe_console_errors(d):
    return [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]


def first_shown(updates):
    """Each event once: the first update that showed it on a page."""
    first: dict[str, dict] = {}
    for u in updates:
        if u["event_id"] not in first or u["lag_ms"] < first[u["event_id"]]["lag_ms"]:
            first[u["event_id"]] = u
    return list(first.values())


def stats(values):
    v = sorted(values)           # p95: nearest rank
    return {"n": len(v), "p50_ms": statistics.median(v), "p95_ms": v[math.ceil(0.95 * len(v)) - 1], "max_ms": v[-1]}


def write_latency(updates):
    shown = first_shown(updates)
    by_type: dict[str, list] = {}
    for u in shown:
        by_type.setdefault(u["type"], []).append(u["lag_ms"])
    recorded: dict[str, float] = {}       # a trial result: when the page showed it recorded by the searcher
    for u in updates:
        if u["type"] == "trial-completed" and u["stage"] != "arrived":
            recorded[u["event_id"]] = min(recorded.get(u["event_id"], 1e12), u["lag_ms"])
    out = {"what": "envelope ts of an event -> the page in Chromium applied the update that shows it (Date.now()); "
                   "each event counted once, at its first update",
           **stats(u["lag_ms"] for u in shown), "by_event_type": {k: stats(v) for k, v in sorted(by_type.items())},
           "trial_recorded": {"what": "trial-completed ts -> the page shows the trial recorded in the searcher's "
                                      "state (includes the searcher's decision of the next trial)",
                              **(stats(recorded.values()) if recorded else {})}}
    (SHOTS / "latency.json").write_text(json.dumps(out, indent=2) + "\n")


# -- the tests ---------------------------------------------------------------------------------
def test_submit_from_the_page_and_watch_the_trials_arrive_live(dash, browser):
    url, _ = dash
    d = browser
    open_page(d, url + "/")
    d.find_element("id", "token").send_keys(TOKEN)
    d.find_element("css selector", "#submit-box summary").click()
    form = d.find_element("id", "submit-form")
    for name, value in replay("gru", max_trials=10, seed=3).items():
        field = form.find_element("name", name)
        field.clear()
        field.send_keys(str(value))
    form.find_element("css selector", "button[type=submit]").click()
    link = wait(lambda: d.find_element("id", "submitted-link"), 10, what="submission accepted")
    search_id = link.text
    # the new search appears in the list without a reload, and moves on
    wait(lambda: d.find_element("css selector", f'#search-rows tr[data-id="{search_id}"]'), 15, what="row")
    wait(lambda: d.find_element("css selector", f'#search-rows tr[data-id="{search_id}"]')
         .get_attribute("data-status") == "running", 30, what="search running")
    shot(d, "searches")
    keep_updates(d)

    link.click()
    wait(lambda: d.current_url.endswith(search_id))
    open_page(d, d.current_url)
    seen = [trial_rows(d)]
    shot_taken = False
    deadline = time.monotonic() + 60
    while status(d) != "completed" and time.monotonic() < deadline:
        n = trial_rows(d)
        if n != seen[-1]:
            seen.append(n)
        if n >= 4 and not shot_taken:
            shot(d, "search-running")
            shot_taken = True
        time.sleep(0.05)
    assert status(d) == "completed", seen
    assert trial_rows(d) == 10 and len(set(seen)) >= 4, f"the table grew in {seen}: not live"
    assert d.execute_script("return window.__loadedOnce") == "yes"          # never reloaded
    rec = text(d, "#part-recommendation")
    assert "recommended configuration" in rec.lower() and "gputype=" in rec
    assert d.find_elements("css selector", "#chart canvas"), "no chart drawn"
    assert not d.find_element("id", "cancel-form").is_displayed()
    wait(lambda: "search-completed" in text(d, "#part-timeline"), 10, what="the result in the timeline")
    shot(d, "search-completed")
    d.execute_script("window.scrollTo(0, document.querySelector('#part-trials').offsetTop - 60)")
    shot(d, "search-trials")
    keep_updates(d)
    assert not severe_console_errors(d)

    # the full report behind the link
    href = wait(lambda: d.find_element("id", "report-link").get_attribute("href"), 10, what="the report link")
    d.get(href)
    wait(lambda: "Serving configuration for gru" in text(d, "h1"), 60, what="report")
    images = d.find_elements("css selector", "img")
    assert len(images) >= 3 and all(d.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    shot(d, "report")


def test_cancel_a_search_from_its_page_and_see_it_stop(dash, browser):
    url, _ = dash
    d = browser
    search_id = api_submit(url, **replay("mobilenet-v2", max_trials=60, strategy="random"))
    open_page(d, f"{url}/searches/{search_id}")
    wait(lambda: trial_rows(d) >= 2, 60, what="two trials")
    form = d.find_element("id", "cancel-form")
    assert form.is_displayed()
    form.find_element("name", "reason").send_keys("wrong model <oops>")
    form.find_element("css selector", "button").click()
    wait(lambda: status(d) == "cancelled", 15, what="cancelled")
    at_cancel = trial_rows(d)
    wait(lambda: not text(d, "#part-inflight").strip(), 15, what="the trial in flight recorded")
    time.sleep(4 * TRIAL_REAL_S)
    final = trial_rows(d)
    assert at_cancel <= final <= at_cancel + 1 and final < 60     # the one in flight is recorded, nothing after
    assert status(d) == "cancelled" and not form.is_displayed()
    summary = text(d, "#part-summary")
    assert "cancelled: wrong model <oops> (by dashboard)" in summary          # shown as text
    wait(lambda: "search-cancelled" in text(d, "#part-timeline"), 10, what="the cancel in the timeline")
    wait(lambda: d.find_element("id", "report-link").is_displayed(), 10,    # appears once the search is stored
         what="the report link")
    assert d.execute_script("return window.__loadedOnce") == "yes"
    shot(d, "search-cancelled")
    keep_updates(d)


def test_a_model_name_with_markup_is_shown_as_text(dash, browser):
    url, _ = dash
    d = browser
    search_id = api_submit(url, **{**replay("gru", max_trials=3, strategy="random"), "model": EVIL})
    open_page(d, f"{url}/searches/{search_id}")
    assert text(d, "h1 .model-name") == EVIL
    wait(lambda: status(d) == "completed", 60, what="completed")
    open_page(d, url + "/")
    # the list re-renders live: read the cell in one go, and give the new row its moment to arrive
    wait(lambda: text(d, f'#search-rows tr[data-id="{search_id}"] td.model') == EVIL, 15, what="the name as text")
    assert d.execute_script("return typeof window.__pwned") == "undefined"
    assert not d.find_elements("css selector", "main img")                 # the <img> is text, not an element
    shot(d, "searches-markup-as-text")
    keep_updates(d)


def test_runners_page_shows_their_classes_trials_and_heartbeats(dash, browser):
    url, _ = dash
    d = browser
    # hour-long simulated trials (2.4 s here): each stays on a runner long enough to be seen running
    search_id = api_submit(url, **replay("resnet-101", max_trials=6, strategy="random", trial_seconds=3600))
    open_page(d, url + "/runners")
    rows = wait(lambda: d.find_elements("css selector", "#part-runners tbody tr:not(.stale)"), 10, what="runners")
    assert len(rows) == 2
    page = text(d, "#part-runners")
    assert "live-cpu" in page and "replay" in page and "ago" in page
    wait(lambda: search_id in text(d, "#part-runners"), 60, what="a current trial shown live")
    shot(d, "runners")
    keep_updates(d)


def test_dead_letters_arrive_live(dash, browser):
    url, settings = dash
    d = browser
    open_page(d, url + "/dead-letters")

    async def poison():
        async with KafkaPublisher(settings) as pub:
            await pub.publish_raw("model-submitted", b"\x00\x01 this is not msgpack", key=b"poison")
            await pub.publish(Event("search-cancelled", "no-such-search", {"reason": "<b>bold</b>",
                                                                            "requested_by": "test"}, "test"))
    asyncio.run(poison())
    wait(lambda: "not msgpack" in text(d, "#part-dead-letters"), 20, what="dead letter shown")
    wait(lambda: "unknown search id 'no-such-search'" in text(d, "#part-dead-letters"), 20, what="second")
    assert "model-submitted" in text(d, "#part-dead-letters") and "search-control" in text(d, "#part-dead-letters")
    assert d.execute_script("return window.__loadedOnce") == "yes"
    shot(d, "dead-letters")
    keep_updates(d)


def test_an_unknown_search_is_a_404_page(dash, browser):
    url, _ = dash
    d = browser
    d.get(url + "/searches/%3Cscript%3Ewindow.__pwned%3D3%3C%2Fscript%3E")
    assert text(d, "h1") == "Not found" and "<script>window.__pwned=3</script>" in text(d, "main")
    assert d.execute_script("return typeof window.__pwned") == "undefined"
    shot(d, "not-found")


def test_page_updates_reach_the_browser_within_a_second(dash):
    """Measured in the pages above: each event's lag from its envelope ts to the first page update
    that showed it (a trial result shows as arrived at once, then as recorded by the searcher)."""
    shown = first_shown(UPDATES)
    assert len(shown) >= 20
    s = stats(u["lag_ms"] for u in shown)
    assert s["p50_ms"] < 1000 and s["p95_ms"] < 1000, s
    write_latency(UPDATES)
