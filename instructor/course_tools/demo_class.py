"""Example submissions: the instructor's solutions, typical mistakes, and broken notebooks.

They are made from the released notebooks exactly as a student would make
them (answer cells filled in, everything else as released), so that grading
can be tried, tested and benchmarked on a realistic class:
``course demo-class`` writes them into ``submitted/``.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat

from .paths import assignments, source_notebooks

NB01, NB02, NB03, NB04 = ("01_data_and_model.ipynb", "02_vanilla_saliency.ipynb",
                          "03_reductions_and_histograms.ipynb", "04_smoothgrad.ipynb")


def solution_text(source: str) -> str:
    """The code between the solution markers, as a student would have written it."""
    return "\n".join(line for line in source.splitlines()
                     if "BEGIN SOLUTION" not in line and "END SOLUTION" not in line)


def solutions(root: Path, assignment: str) -> dict[str, dict[str, str]]:
    """notebook name -> {grade_id: the solution's answer}."""
    out: dict[str, dict[str, str]] = {}
    for nb_path in source_notebooks(root, assignment):
        nb = nbformat.read(nb_path, as_version=4)
        answers = {}
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution"):
                answers[meta["grade_id"]] = solution_text(cell.source)
        out[nb_path.name] = answers
    return out


@dataclass
class Scenario:
    """One example student: how their notebooks differ from the solutions."""

    assignment: str
    answers: dict[str, dict[str, str]] = field(default_factory=dict)   # notebook -> grade_id -> code
    blank: bool = False                                                  # untouched release
    only: tuple[str, ...] | None = None                                  # submit only these notebooks
    edit: Callable[[Path], None] | None = None                           # change the written files


def _replace_in(text: str, old: str, new: str) -> str:
    if old not in text:
        raise ValueError(f"demo scenario out of date: {old!r} not in the solution")
    return text.replace(old, new)


def scenarios(root: Path) -> dict[str, Scenario]:
    """The example class: name -> scenario.

    Every assignment found in ``source/`` gets ``solutions_<assignment>`` (full marks) and
    ``untouched_<assignment>`` (the release as handed out: 0). The typical mistakes and broken notebooks
    below are written against this course's own lab and homework, and are added only while their
    notebooks are there.
    """
    found = assignments(root)
    table = {}
    for assignment in found:
        table[f"solutions_{assignment}"] = Scenario(assignment)
        table[f"untouched_{assignment}"] = Scenario(assignment, blank=True)
    lab = solutions(root, "lab") if "lab" in found else {}
    hw = solutions(root, "homework") if "homework" in found else {}
    if {NB01, NB02, NB03} <= set(lab):
        table.update(_course_scenarios(lab, hw if NB04 in hw else None))
    return table


def _course_scenarios(lab: dict[str, dict[str, str]], hw: dict[str, dict[str, str]] | None) -> dict[str, Scenario]:
    """Typical mistakes and broken notebooks of the lab (01-03) and, if present, the homework (04)."""
    maxabs = lab[NB03]["maxabs_over_channels"]
    maxc = lab[NB03]["max_over_channels"]
    sal = lab[NB02]["compute_saliency"]

    def tamper_tests(folder: Path) -> None:
        path = folder / NB03
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_maxabs_over_channels":
                cell.source = "print('all tests passed')"
        nbformat.write(nb, path)

    def delete_test(folder: Path) -> None:
        path = folder / NB03
        nb = nbformat.read(path, as_version=4)
        nb.cells = [c for c in nb.cells
                    if c.metadata.get("nbgrader", {}).get("grade_id") != "test_max_over_channels"]
        nbformat.write(nb, path)

    def break_json(folder: Path) -> None:
        (folder / NB01).write_text('{"cells": [ this is not json')

    def rename(folder: Path) -> None:
        (folder / NB01).rename(folder / "01_data_and_model (1).ipynb")

    loop_catching = ("import time\nwhile True:\n    try:\n        time.sleep(0.1)\n"
                     "    except KeyboardInterrupt:\n        pass\n")
    table = {
        "no_abs": Scenario("lab", {NB03: {"maxabs_over_channels": _replace_in(maxabs, "gradients.abs().max", "gradients.max")}},
                           only=(NB03,)),
        "wrong_axis": Scenario("lab", {NB03: {"max_over_channels": _replace_in(maxc, "dim=1", "dim=2")}}, only=(NB03,)),
        "sum_not_max": Scenario("lab", {NB03: {"maxabs_over_channels": _replace_in(
            maxabs, "gradients.abs().max(dim=1).values", "gradients.abs().sum(dim=1)")}}, only=(NB03,)),
        "predicted_class": Scenario("lab", {NB02: {"compute_saliency": _replace_in(
            sal, "scores.gather(1, y.view(-1, 1))", "scores.gather(1, scores.argmax(1).view(-1, 1))")}}, only=(NB02,)),
        "accumulated_gradients": Scenario("lab", {NB02: {"compute_saliency": _replace_in(
            sal, "X = X.detach().clone().requires_grad_(True)", "X.requires_grad_(True)")}}, only=(NB02,)),
        "infinite_loop": Scenario("lab", {NB01: {"correct_class_scores": loop_catching + lab[NB01]["correct_class_scores"]},
                                          NB03: {"max_over_channels": "while True:\n    pass\n" + maxc}}),
        "kernel_crash": Scenario("lab", {NB02: {"compute_saliency": "import os\nos._exit(1)\n" + sal}}),
        "memory_hog": Scenario("lab", {NB01: {"correct_class_scores": "hog = [bytearray(1 << 30) for _ in range(64)]\n"
                                              + lab[NB01]["correct_class_scores"]}}, only=(NB01,)),
        "broken_json": Scenario("lab", edit=break_json),
        "missing_notebook": Scenario("lab", only=(NB01, NB03)),
        "renamed_notebook": Scenario("lab", edit=rename),
        "tampered_tests": Scenario("lab", {NB03: {"maxabs_over_channels": _replace_in(
            maxabs, "gradients.abs().max", "gradients.max")}}, only=(NB03,), edit=tamper_tests),
        "deleted_test_cell": Scenario("lab", only=(NB03,), edit=delete_test),
        "patched_comparisons": Scenario("lab", {NB03: {"maxabs_over_channels": PATCHER + _replace_in(
            maxabs, "gradients.abs().max(dim=1).values", "gradients.abs().sum(dim=1)")}}, only=(NB03,)),
    }
    if hw is None:
        return table
    sg = hw[NB04]["smoothgrad"]
    table.update({
        "smoothgrad_wrong_count": Scenario("homework", {NB04: {"smoothgrad": _replace_in(
            sg, "(total / n)", "(total / (n - 1))")}}),
        "smoothgrad_last_image_only": Scenario("homework", {NB04: {"smoothgrad": _replace_in(
            sg, "maps[i] = (total / n).numpy()", "maps[:] = (total / n).numpy()")}}),
        "noise_after_normalisation": Scenario("homework", {NB04: {"smoothgrad": _replace_in(sg,
            "            noisy = helpers.add_noise(X[i], noise_pct, rng)\n"
            "            grad = compute_saliency(helpers.preprocess(noisy), label, model)",
            "            x = helpers.preprocess(X[i])\n"
            "            x = x + torch.from_numpy(rng.normal(0.0, noise_pct * float(x.std()), size=tuple(x.shape))).float()\n"
            "            grad = compute_saliency(x, label, model)")}}),
        "smoothgrad_one_copy": Scenario("homework", {NB04: {"smoothgrad": _replace_in(_replace_in(
            sg, "for _ in range(n):", "for _ in range(1):"), "(total / n)", "total")}}),
        "smoothgrad_reused_noise": Scenario("homework", {NB04: {"smoothgrad": _replace_in(sg,
            "        for _ in range(n):\n            noisy = helpers.add_noise(X[i], noise_pct, rng)\n",
            "        noisy = helpers.add_noise(X[i], noise_pct, rng)\n        for _ in range(n):\n")}}),
        "smoothgrad_average_raw": Scenario("homework", {NB04: {"smoothgrad": _replace_in(_replace_in(_replace_in(sg,
            "total = torch.zeros(X.shape[1:3])", "total = 0"),
            "total += maxabs_over_channels(grad)[0]", "total = total + grad"),
            "maps[i] = (total / n).numpy()", "maps[i] = maxabs_over_channels(total / n)[0].numpy()")}}),
        "smoothgrad_rng_idiom": Scenario("homework", {NB04: {"smoothgrad": _replace_in(
            sg, "rng = np.random.default_rng() if rng is None else rng", "rng = np.random.default_rng(rng)")}}),
    })
    return table


# Everything a cheating student might patch inside the kernel.
PATCHER = '''import builtins, numpy, torch, helpers.checks, helpers.autograde
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.allclose = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
helpers.checks.compare_arrays = lambda *a, **k: helpers.checks.Verdict(True, "ok", {})
helpers.checks.assert_matches_reference = lambda *a, **k: None
helpers.checks.check_close = lambda *a, **k: None
helpers.autograde.HiddenChecks.compare = lambda *a, **k: None
builtins.AssertionError = type("AssertionError", (Exception,), {})
'''


def write_submission(root: Path, student: str, scenario: Scenario) -> Path:
    """Write one student's submission into ``submitted/<student>/<assignment>/``."""
    folder = root / "submitted" / student / scenario.assignment
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for nb_path in sorted((root / "release" / scenario.assignment).glob("*.ipynb")):
        if scenario.only is not None and nb_path.name not in scenario.only:
            continue
        nb = nbformat.read(nb_path, as_version=4)
        if not scenario.blank:
            answers = {**solutions(root, scenario.assignment)[nb_path.name],
                       **scenario.answers.get(nb_path.name, {})}
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("solution") and meta.get("grade_id") in answers:
                    cell.source = answers[meta["grade_id"]]
        nbformat.write(copy.deepcopy(nb), folder / nb_path.name)
    if scenario.edit is not None:
        scenario.edit(folder)
    (folder / "timestamp.txt").write_text("2026-11-20 12:00:00.000000 UTC")
    return folder


def make_demo_class(root: Path, names: list[str] | None = None, copies: int = 1) -> list[str]:
    """Write the example class (or the named scenarios); ``copies`` > 1 repeats them as student_2, ..."""
    table = scenarios(root)
    chosen = names or list(table)
    unknown = [name for name in chosen if name not in table]
    if unknown:
        raise ValueError(f"names: no demo scenario {', '.join(map(repr, unknown))} (there: {', '.join(table)})")
    written = []
    for copy_index in range(copies):
        for name in chosen:
            student = name if copy_index == 0 else f"{name}_{copy_index + 1}"
            write_submission(root, student, table[name])
            written.append(student)
    return written


__all__ = ["Scenario", "make_demo_class", "scenarios", "solutions", "write_submission"]
