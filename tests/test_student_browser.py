"""The student's path in a real browser: JupyterLab, a release notebook, *Run All*.

A student opens ``release/lab/03_reductions_and_histograms.ipynb`` in JupyterLab, pastes
``compute_saliency`` from notebook 2, answers exercise 3a with a typical mistake (the magnitudes instead of the
signed values) and runs all cells. The page must then show the exercise prompts, the written question (it
once sat inside the answer cell, which nbgrader empties) and the visible test's message about the mistake, and
no test plumbing (``NBVAL``).

Needs Debian's ``chromium`` and Python's ``playwright`` (pinned in requirements.txt; its own browser download
is never used: ``executable_path`` points at chromium). Skipped cleanly where either is missing. Takes
about a minute on a quiet 2-core machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "release" / "lab" / "03_reductions_and_histograms.ipynb"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASTED = '''def compute_saliency(X, y, model):
    X = X.detach().clone().requires_grad_(True)
    correct = model(X).gather(1, y.view(-1, 1)).squeeze(1)
    correct.backward(torch.ones_like(correct))
    return X.grad'''
MISTAKE = '''def max_over_channels(gradients):
    return gradients.abs().max(dim=1).values'''

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _student_copy(folder: Path) -> Path:
    """The release notebook with the paste cell and exercise 3a answered, as a student would."""
    nb = nbformat.read(RELEASE, as_version=4)
    answers = {"paste_compute_saliency": PASTED, "max_over_channels": MISTAKE}
    for cell in nb.cells:
        grade_id = (cell.metadata.get("nbgrader") or {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers.pop(grade_id)
    assert not answers, f"cells not found in the release notebook: {sorted(answers)}"
    path = folder / RELEASE.name
    nbformat.write(nb, path)
    return path


def _start_jupyterlab(folder: Path, port: int, token: str, env: dict[str, str]) -> subprocess.Popen:
    settings = folder / ".settings"
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))   # every cell in the page, not only visible ones
    args = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={folder / '.workspaces'}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = open(folder / "jupyterlab.log", "w")
    proc = subprocess.Popen(args, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"JupyterLab did not start: {(folder / 'jupyterlab.log').read_text()[-2000:]}")


def test_run_all_shows_prompts_question_and_the_visible_test_message(tmp_path, data_file, slowdown):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is pinned in requirements.txt")
    folder = tmp_path / "student"
    folder.mkdir()
    notebook = _student_copy(folder)
    env = {**os.environ, "SALIENCY_DATA": str(data_file), "SALIENCY_WEIGHTS": "untrained",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter_config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("MPLBACKEND", None)
    port, token = _free_port(), secrets.token_hex(16)
    server = _start_jupyterlab(folder, port, token, env)
    wait_ms = int(120_000 * slowdown)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=wait_ms)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                                   "#jp-main-statusbar :text('Idle')", timeout=wait_ms)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
            message = "the largest of 0.5, -2.0, 0.1 is 0.5"
            outputs = "Array.from(document.querySelectorAll('.jp-OutputArea-output')).map(e => e.textContent)"
            page.wait_for_function(f"text => {outputs}.some(o => o.includes(text))", arg=message, timeout=wait_ms)
            text = page.eval_on_selector(".jp-Notebook", "element => element.textContent")
            shown = page.evaluate(outputs)
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    for prompt in ("Exercise 3a: max over channels", "Exercise 3b: max of absolute values over channels",
                   "Question (2 points, graded by hand)", "Describe the two histograms",
                   "Write your answer in the cell below", "YOUR ANSWER HERE"):
        assert prompt in text, f"{prompt!r} is not on the page"
    (failure,) = [o for o in shown if message in o]    # the visible test's output, not its source
    assert "AssertionError" in failure
    assert not any("NotImplementedError" in o for o in shown), "Run All stopped before the answered exercise"
    assert "NBVAL" not in text
