"""pytest set-up for the whole course folder.

nbval compares the cells marked ``# NBVAL_CHECK_OUTPUT`` with the expected
text stored in their metadata. When source notebooks are collected, make sure the reference arrays
for the current data file and weights exist first: the hidden tests in the
source notebooks compare against them. They are written once by running the
solutions (``course references``) and reused on later runs.

The companion notebooks run with ``SALIENCY_QUICK=1`` (small sample counts).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# The companion notebooks read SALIENCY_QUICK=1 as "fewer images and samples, the same story", so that each
# runs in seconds under nbval (nbval's kernels inherit this process's environment). `course run` and
# students run them in full.
os.environ.setdefault("SALIENCY_QUICK", "1")


def _network_of_the_course() -> None:
    """nbval's kernels run the notebooks with course.toml's network, as `course references` records them."""
    from course_tools.network import course_network
    from helpers.model import MODEL_ENV_VAR

    os.environ.setdefault(MODEL_ENV_VAR, course_network(ROOT))


_network_of_the_course()


def _give_kernels_the_references_threads() -> None:
    """nbval's kernels inherit this environment: they compute with the thread count the references were
    recorded with (``course_tools.references.REFERENCE_THREADS``), set before torch starts, since torch's
    results depend on it; one thread is also the fastest on a busy machine."""
    from course_tools.references import reference_thread_env

    os.environ.update(reference_thread_env())


_give_kernels_the_references_threads()


def _give_nbval_the_expected_outputs(items) -> None:
    """Committed notebooks carry no outputs: the expected text of each ``# NBVAL_CHECK_OUTPUT`` cell lives
    in its metadata (``course strip --refresh`` writes it), and is handed to nbval here."""
    from course_tools.notebooks import expected_outputs

    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and cell.get("cell_type") == "code" and "expected_output" in cell.metadata:
            cell.outputs = expected_outputs(cell)
            cell.execution_count = 1


def _current_reference_key() -> str:
    from helpers.autograde import reference_key
    from helpers.data import locate_data_file, sha256_of
    from helpers.model import load_squeezenet, weights_fingerprint

    data_hash = sha256_of(locate_data_file(download=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_squeezenet(device="cpu")
    return reference_key(data_hash, weights_fingerprint(model))


def pytest_collection_modifyitems(session, config, items):
    _give_nbval_the_expected_outputs(items)
    source = ROOT / "source"
    if not any(Path(str(item.fspath)).is_relative_to(source) for item in items):
        return
    if os.environ.get("SALIENCY_REFERENCES"):
        return
    key = _current_reference_key()
    if all((ROOT / "references" / key / name).is_file() for name in ("manifest.json", "timings.json")):
        return
    from course_tools.references import make_references

    print(f"\nwriting reference arrays {key} (once; `course references` does the same) ...")
    make_references(ROOT, log=lambda line: print(line))
