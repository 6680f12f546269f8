"""Editing a tenant archive the way an attacker would: rows and objects changed, the manifest's
counts and checksums made consistent again; only the signature cannot be redone."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


@dataclass
class EditableArchive:
    members: dict[str, bytes]

    @classmethod
    def load(cls, path: Path) -> EditableArchive:
        members: dict[str, bytes] = {}
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member)
                if member.isfile() and handle is not None:
                    members[member.name] = handle.read()
        return cls(members)

    @property
    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(self.members[MANIFEST])
        return manifest

    def rows(self, table: str) -> list[dict[str, Any]]:
        data = self.members.get(f"rows/{table}.jsonl", b"")
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def set_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.members[f"rows/{table}.jsonl"] = b"".join(
            json.dumps(row).encode() + b"\n" for row in rows
        )

    def add_row(self, table: str, row: dict[str, Any]) -> None:
        self.set_rows(table, [*self.rows(table), row])

    def objects(self) -> dict[str, bytes]:
        return {
            name.removeprefix("objects/"): data
            for name, data in self.members.items()
            if name.startswith("objects/")
        }

    def put_object(self, key: str, data: bytes) -> None:
        self.members[f"objects/{key}"] = data

    def save(self, path: Path) -> Path:
        """Write the edited archive with a manifest that agrees with its content."""
        manifest = self.manifest
        manifest["rows"] = {
            name.removeprefix("rows/").removesuffix(".jsonl"): len(
                [line for line in data.splitlines() if line.strip()]
            )
            for name, data in self.members.items()
            if name.startswith("rows/")
        }
        manifest["objects"] = sorted(self.objects())
        if "files" in manifest:
            manifest["files"] = {
                name: hashlib.sha256(data).hexdigest()
                for name, data in sorted(self.members.items())
                if name.startswith(("rows/", "objects/"))
            }
        self.members[MANIFEST] = json.dumps(manifest, indent=2).encode()
        with tarfile.open(path, "w:gz") as tar:
            for name, data in self.members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path
