"""The notebooks in a real browser: JupyterLab in headless Chromium, driven by Selenium, in ci mode.

nbval runs the notebooks' code, but not what a learner sees: the JupyterLab frontend, its "Run All", and the
widgets. Here a JupyterLab server on loopback (a random free port, a token) serves temporary copies of the
notebooks; Chromium opens each one, clicks Run > Run All Cells, waits for the kernel, saves, and the test
reads the saved file (every code cell executed, no error output) and the page (the sweep widget of notebook
06 renders, redraws when its value changes, and its plot appears once).

Notebook 06 as a whole takes minutes, so the widget runs in a trimmed copy: 06's setup cell, one cell that
stands in for the sweep (sample result files from ``data/results/``), and 06's widget cell unchanged.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skips without them.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
# Headless flags for a machine without a display or a network beyond loopback: without the
# background-networking ones Chromium keeps trying to reach Google's hosts.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no browser: Chromium and chromedriver are not on PATH (apt-get install chromium chromium-driver; "
           ".ci/run installs them in CI)")

# Lab settings for a test: every cell in the DOM (no virtual scrolling), no news or update checks.
LAB_SETTINGS = {
    "notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
    "apputils-extension/notification.jupyterlab-settings": '{"fetchNews": "false", "checkForUpdates": false}',
}

# Stands in for 06's sweep: every run the widget asks for is one of the sample result files.
FAKE_SWEEP = '''
import matplotlib.pyplot as plt
import pandas as pd
from helpers import metrics

{grid}
samples = [metrics.read_result_csv(metrics.sample_path(name))
           for name in ("azure_results.csv", "openai_step_metrics.b64", "legacy_2023_results.csv")]


class Runs(dict):
    def __missing__(self, name):
        self[name] = samples[(len(self) + 1) % len(samples)]
        return self[name]


curves, frames = Runs(), {{"local": samples[0]}}
'''


@dataclass
class Lab:
    url: str
    token: str
    root: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on loopback serving an empty temporary folder, in ci mode."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    root.mkdir()
    for name, text in LAB_SETTINGS.items():
        path = home / "settings" / "@jupyterlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "COURSE_MODE": "ci", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore", "COURSE_OUTPUTS": str(home / "outputs"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "IPYTHONDIR": str(home / "ipython")}
    log = (home / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(home / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield Lab(url, token, root)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(what: str, condition, timeout: float, interval: float = 0.25, driver=None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            shot = ""
            if driver is not None:   # what the page showed, for the failure message
                shot = Path(os.environ.get("TMPDIR", "/tmp")) / f"test_browser_{int(time.time())}.png"
                driver.save_screenshot(str(shot))
                shot = f" (screenshot: {shot})"
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{shot}")
        time.sleep(interval)


def _click_menu(driver, menu: str, command: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//li[contains(@class, 'lm-MenuBar-item')][normalize-space()='{menu}']").click()
    selector = f".lm-Menu-item[data-command='{command}']"
    _wait(f"the menu item {command}", lambda: driver.find_elements(By.CSS_SELECTOR, selector), 10, driver=driver)
    driver.find_element(By.CSS_SELECTOR, selector).click()


# Each code cell's prompt ("[3]:", "[*]:", "[ ]:"; empty where the input is collapsed) and the kernel's
# status as the notebook's toolbar shows it, read in one call.
PROMPTS_JS = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!panel) return [[], null];
const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
return [[...panel.querySelectorAll('.jp-CodeCell')].map(c => c.querySelector('.jp-InputPrompt').textContent.trim()),
        status ? status.getAttribute('data-status') : null];
"""


def _kernel_ready(lab: Lab, name: str) -> bool:
    """Whether the server has a kernel for ``name`` that has started and is idle."""
    with urllib.request.urlopen(f"{lab.url}/api/sessions?token={lab.token}", timeout=5) as reply:
        sessions = json.load(reply)
    return any(s["path"].endswith(name) and (s.get("kernel") or {}).get("execution_state") == "idle"
               for s in sessions)


def run_all(driver, lab: Lab, notebook: nbformat.NotebookNode, name: str, timeout: float):
    """Open ``notebook`` in JupyterLab, Run All, wait for the kernel, save; return the saved notebook."""
    path = lab.root / name
    nbformat.write(notebook, path)
    n_code = sum(c.cell_type == "code" for c in notebook.cells)
    driver.get(f"{lab.url}/lab/tree/{name}?token={lab.token}")

    def opened():
        prompts, status = driver.execute_script(PROMPTS_JS)
        return len(prompts) == n_code and status == "idle" and _kernel_ready(lab, name)

    _wait(f"{name} to open with an idle kernel", opened, 60, driver=driver)
    _click_menu(driver, "Run", "runmenu:run-all")
    _wait(f"Run All to start in {name}", lambda: driver.execute_script(PROMPTS_JS)[0][0] != "[ ]:", 20, driver=driver)

    def finished():
        prompts, status = driver.execute_script(PROMPTS_JS)
        return status == "idle" and "[*]:" not in prompts and _kernel_ready(lab, name)

    _wait(f"{name} to finish running", finished, timeout, interval=0.5, driver=driver)
    _click_menu(driver, "File", "docmanager:save")

    def saved():   # the file as the frontend holds it, once it has the run's outputs
        notebook = nbformat.read(path, as_version=4)
        return notebook if all(c.execution_count for c in notebook.cells if c.cell_type == "code") else None

    return _wait(f"{name} to be saved after the run", saved, 20, driver=driver)


def assert_ran_cleanly(saved: nbformat.NotebookNode):
    for index, cell in enumerate(saved.cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count, f"cell {index} did not run:\n{cell.source}"
        if "raises-exception" in cell.metadata.get("tags", []):
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {index} failed: {errors[0].ename}: {errors[0].evalue}\n{cell.source}"


def test_notebook_00_runs_all_in_the_browser(browser, lab):
    notebook = nbformat.read(NOTEBOOKS / "00_why_fine_tune.ipynb", as_version=4)
    saved = run_all(browser, lab, notebook, "00.ipynb", timeout=120)
    assert_ran_cleanly(saved)
    assert [c.execution_count for c in saved.cells if c.cell_type == "code"] == list(
        range(1, 1 + sum(c.cell_type == "code" for c in saved.cells))), "Run All runs every cell once, in order"


def trimmed_sweep_notebook() -> tuple[nbformat.NotebookNode, int]:
    """06's setup cell, a stand-in for its sweep, and its widget cell unchanged; and the widget cell's index."""
    notebook = nbformat.read(NOTEBOOKS / "06_read_the_metrics.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    widget = [c for c in code if "ipywidgets" in c.source]
    assert len(widget) == 1, "expected one widget cell in notebook 06"
    grid = re.search(r"^SWEEP_EPOCHS, SWEEP_MULTIPLIERS = .*$", "\n".join(c.source for c in code), re.M)
    assert grid, "notebook 06 no longer sets SWEEP_EPOCHS, SWEEP_MULTIPLIERS in one line: update FAKE_SWEEP"
    notebook.cells = [code[0], nbformat.v4.new_code_cell(FAKE_SWEEP.format(grid=grid.group())), widget[0]]
    return notebook, 2


WIDGET_JS = """
const cell = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')[arguments[0]];
const out = cell.querySelector('.jp-OutputArea');
const imgs = [...out.querySelectorAll('img')];
return {outputs: out.querySelectorAll('.jp-OutputArea-output').length,
        selects: out.querySelectorAll('.widget-dropdown select').length,
        sliders: out.querySelectorAll('.widget-slider, .widget-hslider').length,
        images: imgs.length,
        src: imgs.length ? imgs[0].src : null,
        loaded: imgs.length ? imgs[0].complete && imgs[0].naturalWidth > 0 : false};
"""


def test_sweep_widget_renders_once_and_redraws(browser, lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    notebook, index = trimmed_sweep_notebook()
    saved = run_all(browser, lab, notebook, "06_sweep_widget.ipynb", timeout=60)
    assert_ran_cleanly(saved)
    outputs = saved.cells[index].outputs
    assert len(outputs) == 1 and {WIDGET_VIEW, "image/png"} <= set(outputs[0].data), \
        "the widget cell gives one output holding the widget view and its static PNG"

    state = _wait("the widget to render", lambda: (lambda s: s if s["selects"] and s["loaded"] else None)(
        browser.execute_script(WIDGET_JS, index)), 20)
    assert state["sliders"] == 1, "the multiplier slider is missing"
    assert state["images"] == 1 and state["outputs"] == 1, f"the plot must appear once where widgets render: {state}"
    image = browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")[index] \
        .find_element(By.TAG_NAME, "img")
    before = image.screenshot_as_png

    select = Select(browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
                    [index].find_element(By.CSS_SELECTOR, ".widget-dropdown select"))
    select.select_by_index(1)
    after = _wait("the plot to redraw", lambda: (lambda s: s if s["src"] != state["src"] and s["loaded"] else None)(
        browser.execute_script(WIDGET_JS, index)), 20)
    assert after["images"] == 1 and after["outputs"] == 1, f"the redraw added a plot: {after}"
    image = browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")[index] \
        .find_element(By.TAG_NAME, "img")
    assert image.screenshot_as_png != before, "the plot's pixels did not change"
