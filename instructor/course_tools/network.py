"""The course's network: one setting, ``[model] name`` in ``course.toml``.

The instructor tools read it here and hand it to every kernel they start as ``$SALIENCY_MODEL``
(:data:`helpers.model.MODEL_ENV_VAR`): ``course run``, ``references``, ``build``, ``strip --refresh``
and the grader's sandboxed kernels. ``helpers`` never reads ``course.toml``: a notebook opened without
the variable (a student's laptop, Colab) gets the default network, SqueezeNet 1.1.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from helpers.model import DEFAULT_NETWORK, MODEL_ENV_VAR, NETWORKS

from .paths import CourseError

CONFIG_FILE = "course.toml"


def course_network(root: Path) -> str:
    """The network ``course.toml`` names in ``[model] name`` (:data:`helpers.model.DEFAULT_NETWORK` if absent).

    Parameters
    ----------
    root : pathlib.Path
        The course root.

    Raises
    ------
    CourseError
        If ``course.toml`` cannot be read as TOML, or ``[model]`` is not a table naming one of
        :data:`helpers.model.NETWORKS`.
    """
    path = Path(root) / CONFIG_FILE
    if not path.is_file():
        return DEFAULT_NETWORK
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as err:
        raise CourseError(f"{path} cannot be read as TOML: {err}") from err
    table = settings.get("model", {})
    if not isinstance(table, dict):
        raise CourseError(f"[model] in {path} must be a table: [model] name = \"{DEFAULT_NETWORK}\"")
    name = table.get("name", DEFAULT_NETWORK)
    if not isinstance(name, str) or name not in NETWORKS:
        raise CourseError(f"[model] name in {path} must be one of {', '.join(NETWORKS)}, got {name!r}")
    return name


def kernel_env(root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` with the course's network for a kernel (``$SALIENCY_MODEL``); an explicit value in ``env`` wins."""
    return {MODEL_ENV_VAR: course_network(root), **(env or {})}
