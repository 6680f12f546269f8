"""LiteLLM's proxy in a virtualenv of its own (.venv-litellm), for the gateway comparison.

Its dependencies (pinned fastapi, pydantic, openai, ...) must not touch mtai's venv, so it gets
a separate one, created and installed on first use (idempotent: a marker file names the
installed version), with the interpreter that runs the benchmarks:

    python -m bench.litellm_env          # create/update .venv-litellm, print the litellm path

The pin is the newest release whose `proxy` extra installs from the package index here: the
extras of 1.108 and later pin litellm-proxy-extras / litellm-proxy versions that the index does
not carry, and the 1.107 line is no longer on it (pulled). Raise the pin only to a release
whose `litellm[proxy]` installs in a fresh venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.common import ROOT

LITELLM_VERSION = "1.106.12"
VENV = ROOT / ".venv-litellm"
MARKER = VENV / f".installed-litellm-{LITELLM_VERSION}"


def litellm_bin() -> Path:
    return VENV / "bin" / "litellm"


def ensure_litellm() -> Path:
    """The `litellm` executable of .venv-litellm, installing litellm[proxy] there if needed."""
    if MARKER.exists() and litellm_bin().exists():
        return litellm_bin()
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"[bench] creating {VENV}", flush=True)
        done = subprocess.run(  # noqa: S603  # our own interpreter
            [sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"Could not create {VENV}: {done.stderr[-2000:]}")
        # Keep the venv out of git even before .gitignore names it.
        (VENV / ".gitignore").write_text("*\n")
    for old in VENV.glob(".installed-litellm-*"):
        old.unlink()
    spec = f"litellm[proxy]=={LITELLM_VERSION}"
    print(f"[bench] installing {spec} into {VENV} (once; about a minute)", flush=True)
    done = subprocess.run(  # noqa: S603  # fixed argv
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            spec,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    if done.returncode != 0 or not litellm_bin().exists():
        errors = "\n".join(
            line for line in done.stderr.splitlines() if not line.startswith("WARNING")
        )
        raise RuntimeError(
            f"Could not install {spec} into {VENV} (PyPI must be reachable):\n{errors[-3000:]}"
        )
    MARKER.write_text(spec + "\n")
    return litellm_bin()


if __name__ == "__main__":
    print(ensure_litellm())
