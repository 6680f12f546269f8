"""What a doctor check found: ok or not, what, and the fix (docs/troubleshooting.md)."""

from __future__ import annotations

from dataclasses import dataclass

CONNECT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    fix: str = ""
