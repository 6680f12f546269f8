"""Development secrets: processes starting together on one data directory agree on them."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mtai.config import Settings
from mtai.services import secrets


def resolve_in(data_dir: str) -> tuple[str, str, str]:
    settings = Settings(_env_file=None, env="development", data_dir=Path(data_dir))
    found = secrets.resolve(settings)
    return found.jwt_secret, found.key_pepper, found.encryption_key


def test_processes_starting_at_once_share_one_set_of_secrets(tmp_path: Path) -> None:
    with ProcessPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(resolve_in, [str(tmp_path)] * 32))
    assert len(set(results)) == 1
    assert resolve_in(str(tmp_path)) == results[0]
    assert not list(tmp_path.glob("*.partial"))
    assert (tmp_path / secrets.DEV_SECRETS_FILE).stat().st_mode & 0o777 == 0o600
