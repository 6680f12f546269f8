"""`mtai doctor`: each check says what is wrong and how to fix it (docs/troubleshooting.md)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from mtai.config import Settings
from mtai.errors import ConfigurationError
from mtai.services.doctor import memory, platform, providers, redis
from mtai.services.doctor.result import CheckResult

__all__ = ["CheckResult", "run"]


async def run(settings: Settings, *, call_providers: bool = False) -> list[CheckResult]:
    results = [CheckResult("config", True, f"loaded; environment {settings.env.value}")]
    results += platform.secrets(settings)
    database = await platform.database(settings)
    results += database
    results.append(await redis.check(settings))
    results.append(await platform.storage(settings))
    models = []
    url = platform.database_url(settings)
    # The catalog lives in the database: read it only when every database check passed.
    if url is not None and all(r.ok for r in database):
        try:
            models = await providers.catalog(settings, url)
        except (ConfigurationError, DBAPIError) as exc:
            results.append(
                CheckResult("models", False, f"cannot read the model catalog: {exc}", "see above")
            )
        else:
            results += await providers.check(settings, models, call=call_providers)
    results.append(memory.check(settings, models))
    return results
