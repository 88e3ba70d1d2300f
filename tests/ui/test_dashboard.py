"""The dashboard as a person uses it: a real headless Chromium driven by Selenium
against a real `ordinaut dev` (API, worker and scheduler on its own throwaway
PostgreSQL). Run by tests/ui/run.sh (from .ci/run); screenshots go to docs/screenshots/.

Every wait is an "eventually" poll with a generous deadline; nothing asserts speed.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("ORDINAUT_BIN", os.path.join(ROOT, "target", "debug", "ordinaut"))
SHOTS = os.path.join(ROOT, "docs", "screenshots")
ADMIN = "ui-admin-token-0123456789"
READONLY = "ui-readonly-token-0123456789"
DEADLINE = 60.0

state = {}


def eventually(what, check, deadline=DEADLINE):
    """Polls `check` until it returns a truthy value; fails naming `what`."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            value = check()
            if value:
                return value
        except (NoSuchElementException, StaleElementReferenceException, urllib.error.URLError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def api(method, path, body=None, token=ADMIN):
    """Calls /v1 with a token; returns (status, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(state["base"] + path, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, (json.loads(text) if text.startswith("{") else text)


def enqueue(kind, payload=None, queue="default", **extra):
    status, body = api("POST", "/v1/jobs", dict(queue=queue, kind=kind, payload=payload or {}, **extra))
    assert status == 201, (status, body)
    return body["id"]


def job(id_):
    status, body = api("GET", "/v1/jobs/" + id_)
    assert status == 200, (status, body)
    return body


def shell_kind(name, script, timeout=None):
    """The ordinaut.toml table of a command kind `name` that runs `script` with sh -c."""
    table = f'[kinds.{name}]\ntype = "command"\nprogram = "sh"\nargs = ["-c", "{script}"]\n'
    if timeout:
        table += f'timeout = "{timeout}"\n'
    return table


def setUpModule():
    work = tempfile.mkdtemp(prefix="ordinaut-ui-")
    # As root the local PostgreSQL runs as nobody, who must reach its data directory.
    os.chmod(work, 0o755)
    marker = os.path.join(work, "recovered")
    gate = os.path.join(work, "cloned")
    merge_ok = os.path.join(work, "merge-ok")
    with open(os.path.join(work, "ordinaut.toml"), "w") as f:
        f.write(f"""
[kinds.echo]
type = "command"
program = "cat"
timeout = "60s"

[kinds.slow]
type = "command"
program = "sleep"
args = ["300"]
timeout = "600s"

{shell_kind("always_fails", "echo boom >&2; exit 1")}
{shell_kind("flaky", f"test -e {marker} && echo recovered")}
{shell_kind("wait_gate", f"while ! test -e {gate}; do sleep 0.2; done; echo cloned", timeout="120s")}
{shell_kind("merge", f"test -e {merge_ok} && echo merged")}
[queues.pausable]
max_attempts = 1

[schedules.nightly_report]
cron = "30 2 * * *"
timezone = "Europe/Berlin"
queue = "default"
kind = "echo"
""")
    log = open(os.path.join(work, "dev.log"), "w")
    env = dict(os.environ)
    env.update(
        API_PORT="0",
        API_TOKENS=ADMIN,
        API_READONLY_TOKENS=READONLY,
        WORKER_QUEUES="default,pausable",
        LOG_LEVEL="info",
    )
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([BIN, "dev"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    state.update(work=work, marker=marker, gate=gate, merge_ok=merge_ok, proc=proc, log=log)

    def address():
        text = open(os.path.join(work, "dev.log")).read()
        m = re.search(r"dashboard on (http://127\.0\.0\.1:\d+)/ui", text)
        if proc.poll() is not None:
            raise AssertionError("ordinaut dev exited:\n" + text)
        return m and m.group(1)

    state["base"] = eventually("ordinaut dev to print the dashboard URL", address, 120)
    eventually("the API to be ready", lambda: api("GET", "/ready", token=None)[0] == 200, 120)

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="ordinaut-ui-chromium-")
    for flag in [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile}",
    ]:
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    state["driver"] = webdriver.Chrome(service=service, options=options)
    state["profile"] = profile
    os.makedirs(SHOTS, exist_ok=True)


def tearDownModule():
    driver = state.get("driver")
    if driver:
        driver.quit()
    proc = state.get("proc")
    if proc and proc.poll() is None:
        # Ctrl-C: dev stops its parts and its PostgreSQL.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    if state.get("log"):
        state["log"].close()
    if os.environ.get("KEEP_UI_WORKDIR") != "1":
        shutil.rmtree(state.get("work", ""), ignore_errors=True)
    shutil.rmtree(state.get("profile", ""), ignore_errors=True)


class Dashboard(unittest.TestCase):
    """In name order: later tests log in as they need."""

    @property
    def d(self):
        return state["driver"]

    def go(self, path):
        self.d.get(state["base"] + path)

    def shot(self, name):
        self.d.save_screenshot(os.path.join(SHOTS, name + ".png"))

    def text(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css).text

    def press(self, by, selector):
        """Clicks an element, finding it again when a live refresh replaced it between
        the find and the click."""
        def attempt():
            self.d.find_element(by, selector).click()
            return True
        eventually(f"a click on {selector}", attempt)

    def present(self, css):
        return len(self.d.find_elements(By.CSS_SELECTOR, css)) > 0

    def login(self, token):
        self.d.delete_all_cookies()
        self.go("/ui/login")
        box = self.d.find_element(By.ID, "token")
        box.clear()
        box.send_keys(token)
        self.d.find_element(By.ID, "login").click()
        eventually("the login to be answered", lambda: "/ui/login" not in self.d.current_url or self.present("#login-error"))

    def job_state(self):
        return self.d.find_element(By.CSS_SELECTOR, "#job").get_attribute("data-state")

    def test_01_a_wrong_token_sees_nothing(self):
        self.d.delete_all_cookies()
        for path in ["/ui", "/ui/jobs", "/ui/queues", "/ui/workers", "/ui/fragments/overview"]:
            self.go(path)
            self.assertIn("/ui/login", self.d.current_url, path)
            self.assertFalse(self.present("#queues-table"), path)
        self.login("not-a-configured-token")
        eventually("the refusal", lambda: "not one of API_TOKENS" in self.text("#login-error"))
        self.go("/ui/jobs")
        self.assertIn("/ui/login", self.d.current_url)
        self.assertFalse(self.present("#jobs-table"))
        self.assertEqual(api("GET", "/v1/jobs", token="not-a-configured-token")[0], 401)
        self.shot("login")

    def test_02_enqueue_from_the_ui_and_watch_it_complete_live(self):
        self.login(ADMIN)
        eventually("the admin badge", lambda: self.text("#role") == "admin")
        self.go("/ui/enqueue")
        self.d.find_element(By.ID, "kind").send_keys("echo")
        payload = self.d.find_element(By.ID, "payload")
        payload.clear()
        payload.send_keys('{"greeting": "hello from the dashboard", "html": "<b>not bold</b>"')
        eventually("the editor to flag invalid JSON", lambda: "Not valid JSON" in self.text("#payload-msg"))
        payload.send_keys("}")
        eventually("the editor to accept the JSON", lambda: self.text("#payload-msg") == "Valid JSON.")
        self.shot("enqueue")
        self.d.find_element(By.ID, "submit-enqueue").click()
        eventually("the job page", lambda: "/ui/jobs/" in self.d.current_url)
        # No reload from here on: the page updates itself.
        eventually("the job to reach completed on the page", lambda: self.job_state() == "completed")
        log = eventually("its captured output", lambda: self.text(".attempt pre.log"))
        self.assertIn("hello from the dashboard", log)
        # User content is text, never markup.
        self.assertIn("<b>not bold</b>", self.text("#payload"))
        self.assertFalse(self.present("#payload b"))
        state["echo_job"] = self.text("#job-id")
        self.shot("job")

    def test_03_cancel_a_running_job(self):
        self.login(ADMIN)
        id_ = enqueue("slow")
        self.go("/ui/jobs/" + id_)
        eventually("the job to be running", lambda: self.job_state() == "running")
        self.press(By.ID, "cancel")
        eventually("the job to be cancelled", lambda: self.job_state() == "cancelled")
        self.assertEqual(job(id_)["state"], "cancelled")

    def test_04_retry_a_failed_job(self):
        self.login(ADMIN)
        id_ = enqueue("flaky", max_attempts=1)
        self.go("/ui/jobs/" + id_)
        eventually("the job to fail", lambda: self.job_state() == "failed")
        open(state["marker"], "w").close()
        self.d.find_element(By.ID, "retry").click()
        eventually("the retried job to complete", lambda: self.job_state() == "completed")
        self.assertEqual(job(id_)["attempt"], 2)

    def test_05_bulk_retry_by_filter(self):
        self.login(ADMIN)
        ids = [enqueue("always_fails", {"n": n}, max_attempts=1) for n in range(3)]
        eventually("three failed jobs", lambda: all(job(i)["state"] == "failed" for i in ids))
        self.go("/ui/jobs?kind=always_fails&state=failed")
        eventually("the list to show them", lambda: len(self.d.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")) == 3)
        self.shot("jobs")
        Select(self.d.find_element(By.ID, "bulk-action")).select_by_value("retry")
        self.d.find_element(By.ID, "bulk-preview").click()
        eventually("the count of 3", lambda: self.d.find_element(By.ID, "bulk-count").get_attribute("data-count") == "3")
        self.shot("bulk-confirm")
        self.d.find_element(By.ID, "bulk-confirm").click()
        eventually("3 changed", lambda: self.d.find_element(By.ID, "bulk-result").get_attribute("data-affected") == "3")
        eventually("each to have run again", lambda: all(job(i)["attempt"] == 2 for i in ids))
        self.go("/ui/audit")
        row = eventually("the audit row", lambda: self.d.find_element(By.CSS_SELECTOR, '#audit-table tr[data-action="bulk_retry"]'))
        self.assertIn("API_TOKENS #1", row.text)
        self.assertIn("always_fails", row.text)
        self.shot("audit")

    def test_05b_bulk_cancel_of_ticked_jobs(self):
        self.login(ADMIN)
        ids = [enqueue("echo", {"n": n}, delay="1h") for n in range(3)]
        self.go("/ui/jobs?state=scheduled")
        eventually("the three delayed jobs", lambda: len(self.d.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")) == 3)
        for id_ in ids[:2]:
            self.press(By.CSS_SELECTOR, f'input.pick[value="{id_}"]')
        # The live refresh pauses while jobs are ticked: a change (another delayed job)
        # makes the page try to refresh, the refresh is held, and the ticks survive.
        root = self.d.find_element(By.TAG_NAME, "html")
        before = int(root.get_attribute("data-live-held") or 0)
        enqueue("echo", {"n": "later"}, delay="1h")
        eventually("the refresh to be held", lambda: int(root.get_attribute("data-live-held") or 0) > before)
        self.assertEqual(len(self.d.find_elements(By.CSS_SELECTOR, "input.pick:checked")), 2)
        Select(self.d.find_element(By.ID, "selected-action")).select_by_value("cancel")
        self.d.find_element(By.ID, "selected-preview").click()
        eventually("the count of 2", lambda: self.d.find_element(By.ID, "bulk-count").get_attribute("data-count") == "2")
        self.d.find_element(By.ID, "bulk-confirm").click()
        eventually("2 changed", lambda: self.d.find_element(By.ID, "bulk-result").get_attribute("data-affected") == "2")
        self.assertEqual([job(i)["state"] for i in ids], ["cancelled", "cancelled", "scheduled"])

    def test_06_pause_a_queue_and_workers_stop_taking_from_it(self):
        self.login(ADMIN)
        first = enqueue("echo", {"before": "pause"}, queue="pausable")
        eventually("a job on the running queue to complete", lambda: job(first)["state"] == "completed")
        self.go("/ui/queues")
        self.d.find_element(By.ID, "pause-pausable").click()
        # A click does not wait for the page it leads to: every read after one polls.
        eventually("the paused flash", lambda: "Queue paused" in self.text("#flash"))
        self.assertIn("paused", self.text('tr[data-queue="pausable"]'))
        held = enqueue("echo", {"while": "paused"}, queue="pausable")
        control = enqueue("echo", {"on": "default"})
        eventually("a job on another queue to complete", lambda: job(control)["state"] == "completed")
        # The worker kept claiming elsewhere and left the paused queue alone.
        self.assertEqual(job(held)["state"], "available")
        self.shot("queues")
        eventually("the resume button", lambda: self.d.find_element(By.ID, "resume-pausable")).click()
        eventually("the held job to complete after resume", lambda: job(held)["state"] == "completed")

    def test_07_overview_workers_and_schedules_pages(self):
        self.login(ADMIN)
        self.go("/ui")
        eventually("a live worker on the overview", lambda: self.text("#workers-alive") == "1")
        eventually("the charts", lambda: self.present("#chart-finished canvas") and self.present("#chart-waits canvas"))
        self.shot("overview")
        self.go("/ui/workers")
        self.assertIn("default", self.text("#workers-table"))
        # Busy and prefetched come with the worker's heartbeat (every few seconds).
        def reported():
            self.go("/ui/workers")
            return re.fullmatch(r"\d+", self.text("#workers-table td.prefetched"))
        eventually("the worker's prefetched count", reported)
        self.shot("workers")
        self.go("/ui/schedules")
        self.assertIn("nightly_report", self.text("#schedules-table"))
        self.assertIn("CET", self.text("#schedules-table"))
        # The next fire in the viewer's own zone (the browser's; UTC in this container).
        eventually("the next fire in the viewer's zone",
                   lambda: self.present('tr[data-schedule="nightly_report"] td.yours time[data-local]'))
        self.shot("schedules")
        # The dark theme follows the system setting.
        self.d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        self.go("/ui/jobs")
        self.shot("jobs-dark")
        self.d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        # A phone-width view of the overview.
        self.d.set_window_size(390, 844)
        self.go("/ui")
        self.shot("overview-phone")
        self.d.set_window_size(1280, 1000)

    def test_08_a_read_only_token_cannot_press_any_action(self):
        self.login(READONLY)
        eventually("the read-only badge", lambda: self.text("#role") == "read-only")
        failed = enqueue("always_fails", max_attempts=1)
        eventually("a failed job", lambda: job(failed)["state"] == "failed")
        for path in ["/ui/jobs/" + failed, "/ui/jobs/" + state.get("echo_job", failed), "/ui/queues",
                     "/ui/schedules", "/ui/jobs?state=failed", "/ui"]:
            self.go(path)
            for css in ["#cancel", "#retry", "#delete", "#copy", "#bulk-preview", "#selected-preview",
                        "input.pick", "#run-now", "#new-schedule", "[id^=pause-]",
                        "[id^=resume-]", "[id^=trigger-]", "[id^=edit-]"]:
                self.assertFalse(self.present(css), f"{css} on {path}")
        self.go("/ui/enqueue")
        self.assertFalse(self.d.find_element(By.ID, "submit-enqueue").is_enabled())
        # Even a hand-made request is refused, in the UI and in /v1.
        self.assertEqual(api("POST", "/v1/jobs/" + failed + "/retry", token=READONLY)[0], 403)
        self.assertEqual(api("GET", "/v1/jobs/" + failed, token=READONLY)[0], 200)
        self.assertEqual(job(failed)["state"], "failed")
        self.d.find_element(By.ID, "logout").click()
        eventually("the login page after logout", lambda: "/ui/login" in self.d.current_url)
        self.go("/ui/jobs")
        self.assertIn("/ui/login", self.d.current_url)

    def test_09_live_list_search_keyboard_and_contrast(self):
        self.login(ADMIN)
        # The jobs list follows the event stream: a new job shows up without a reload.
        self.go("/ui/jobs?queue=livelist")
        eventually("the event stream to open", lambda: self.d.find_element(By.TAG_NAME, "html").get_attribute("data-stream") == "open")
        live = enqueue("echo", {"target": "alpha.example"}, queue="livelist")
        eventually("the new job in the list", lambda: self.present(f'tr[data-job="{live}"]'))
        self.assertGreater(int(self.d.find_element(By.TAG_NAME, "html").get_attribute("data-live-events") or 0), 0)
        other = enqueue("echo", {"target": "beta.example"}, queue="livelist")
        eventually("the other job in the list", lambda: self.present(f'tr[data-job="{other}"]'))
        # Search by JSON path in the payload, submitted from the keyboard.
        box = self.d.find_element(By.ID, "search-payload")
        box.send_keys('$.target == "beta.example"')
        box.send_keys(Keys.ENTER)
        eventually("the search's answer", lambda: "payload=" in self.d.current_url and self.present(f'tr[data-job="{other}"]'))
        self.assertFalse(self.present(f'tr[data-job="{live}"]'))
        self.shot("jobs-search")
        # Keyboard: the first Tab reaches the skip link, which leads to the content; a
        # focused control shows a visible outline.
        self.go("/ui/jobs")
        self.d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        focused = self.d.switch_to.active_element
        self.assertEqual(focused.text, "Skip to content")
        focused.send_keys(Keys.TAB)
        nav = self.d.switch_to.active_element
        self.assertEqual(nav.tag_name, "a")
        self.assertNotEqual(nav.value_of_css_property("outline-style"), "none")
        # Contrast of text and form fields in both themes (WCAG: 4.5:1 text, 3:1 fields).
        ratios = """
            function lum(c) {
              var v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(function (x) {
                x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
              return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
            }
            function ratio(a, b) { var x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
            var bg = getComputedStyle(document.body).backgroundColor;
            var out = {};
            [["text", "body", "color"], ["muted", ".hint", "color"], ["link", "header nav a", "color"],
             ["field", "#search-text", "borderTopColor"]].forEach(function (p) {
              var el = document.querySelector(p[1]);
              out[p[0]] = el ? ratio(getComputedStyle(el)[p[2]], bg) : 0;
            });
            return out;"""
        for scheme in ["light", "dark"]:
            self.d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                   {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
            r = self.d.execute_script(ratios)
            for name in ["text", "muted", "link"]:
                self.assertGreaterEqual(r[name], 4.5, f"{name} contrast in {scheme}: {r}")
            self.assertGreaterEqual(r["field"], 3.0, f"field border contrast in {scheme}: {r}")
        self.d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    def workflow_state(self):
        return self.d.find_element(By.CSS_SELECTOR, "#workflow").get_attribute("data-state")

    def step_states(self):
        rows = self.d.find_elements(By.CSS_SELECTOR, "#workflow tr[data-step]")
        return {r.get_attribute("data-step"): r.get_attribute("data-state") for r in rows}

    def test_10_a_workflow_graph_updates_live_and_is_retried_from_the_ui(self):
        self.login(ADMIN)
        # The README's scan: clone, three tools in parallel, a merged report, a notification.
        tools = ["semgrep", "trivy", "gitleaks"]
        status, body = api("POST", "/v1/workflows", {"name": "scan acme/app", "jobs": [
            {"name": "clone", "queue": "default", "kind": "wait_gate", "payload": {"repo": "acme/app"}},
            *[{"name": t, "queue": "default", "kind": "echo", "payload": {"tool": t}, "depends_on": ["clone"]}
              for t in tools],
            {"name": "report", "queue": "default", "kind": "merge", "max_attempts": 1, "depends_on": tools},
            {"name": "notify", "queue": "default", "kind": "echo", "depends_on": ["report"]},
        ]})
        self.assertEqual(status, 201, body)
        wf = body["id"]
        steps = {s["name"]: s["job_id"] for s in api("GET", "/v1/workflows/" + wf)[1]["jobs"]}

        # A waiting step's job page names its workflow and what it waits on.
        self.go("/ui/jobs/" + steps["report"])
        eventually("the waiting step's page", lambda: self.job_state() == "waiting")
        self.assertEqual(self.text("#job-workflow"), "scan acme/app")
        for t in tools:
            self.assertTrue(self.present(f'#job-waits-on [data-dep="{t}"][data-state="waiting"]'), t)
        self.press(By.CSS_SELECTOR, "#job-workflow a")

        # The graph by stage while clone runs; no reload from here until the retry.
        eventually("the workflow page", lambda: "/ui/workflows/" + wf in self.d.current_url)
        eventually("clone to run", lambda: self.step_states().get("clone") == "enqueued")
        self.assertEqual(len(self.d.find_elements(By.CSS_SELECTOR, "#workflow section.stage")), 4)
        self.assertEqual(self.workflow_state(), "running")
        self.assertEqual({self.step_states()[t] for t in tools}, {"waiting"})
        open(state["gate"], "w").close()
        eventually("the tools to complete and the report to fail, live",
                   lambda: self.workflow_state() == "failed")
        states = self.step_states()
        self.assertEqual({states[t] for t in tools}, {"completed"}, states)
        self.assertEqual((states["report"], states["notify"]), ("failed", "cancelled"), states)

        # Retry from the UI: the report runs again, and the notification it had cancelled.
        open(state["merge_ok"], "w").close()
        self.press(By.ID, "retry")
        eventually("the retried flash", lambda: "enqueued again" in self.text("#flash"))
        eventually("the workflow to complete, live", lambda: self.workflow_state() == "completed")
        self.assertEqual(set(self.step_states().values()), {"completed"})
        self.assertEqual(api("GET", "/v1/jobs/" + steps["notify"])[1]["state"], "completed")
        self.shot("workflow")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or result.testsRun == 0 else 0)
