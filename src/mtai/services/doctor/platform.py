"""Doctor checks of configuration, secrets, the database and object storage."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from mtai.config import Environment, Settings, metrics_problem, secret_problem
from mtai.db import embedded
from mtai.db.engine import Database
from mtai.db.migrate import (
    ServerUnfit,
    check_server,
    current_revision,
    describe,
    head_revision,
)
from mtai.errors import ConfigurationError
from mtai.providers.storage.base import StorageUnavailable
from mtai.providers.storage.factory import open_store
from mtai.services.doctor.result import CONNECT_TIMEOUT_SECONDS, CheckResult


def secrets(settings: Settings) -> list[CheckResult]:
    results = []
    for name, value in (
        ("MTAI_JWT_SECRET", settings.jwt_secret),
        ("MTAI_KEY_PEPPER", settings.key_pepper),
        ("MTAI_ENCRYPTION_KEY", settings.encryption_key),
    ):
        problem = secret_problem(name, value)
        if problem is None:
            results.append(CheckResult(name, True, "set and strong"))
        elif settings.env is Environment.DEVELOPMENT:
            results.append(
                CheckResult(
                    name,
                    True,
                    f"{problem}; development mode generates one under {settings.data_dir}",
                )
            )
        else:
            results.append(
                CheckResult(
                    name,
                    False,
                    problem,
                    "set it to 32+ random characters (AWS: Secrets Manager, injected by the task "
                    "definition): python -c 'import secrets; print(secrets.token_urlsafe(48))'",
                )
            )
    open_metrics = metrics_problem(settings)
    if open_metrics is None:
        results.append(CheckResult("/metrics", True, "needs a token, or may be open here"))
    else:
        results.append(
            CheckResult(
                "/metrics",
                False,
                f"{open_metrics}; the API refuses to start like this",
                "see docs/deployment.md, 'Metrics'",
            )
        )
    return results


def _explain_connect_error(exc: BaseException, where: str) -> CheckResult:
    root = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(root)
    if isinstance(root, asyncpg.InvalidPasswordError) or "password authentication failed" in text:
        return CheckResult(
            "database",
            False,
            f"{where} rejected the user name or password",
            "check the credentials in DATABASE_URL (AWS: the database secret)",
        )
    if isinstance(root, asyncpg.InvalidCatalogNameError) or "does not exist" in text:
        return CheckResult(
            "database",
            False,
            f"{where}: {text}",
            "create the database (CREATE DATABASE ...) or fix its name in DATABASE_URL",
        )
    if isinstance(root, ConnectionRefusedError | socket.gaierror | OSError) or "refused" in text:
        return CheckResult(
            "database",
            False,
            f"cannot connect to {where}: {text}",
            "check host and port in DATABASE_URL, that PostgreSQL runs, and that "
            "security groups allow the API tasks to reach it on 5432",
        )
    return CheckResult(
        "database",
        False,
        f"{where}: {type(root).__name__}: {text}",
        "see docs/troubleshooting.md, 'Database connection issues'",
    )


def database_url(settings: Settings) -> str | None:
    """DATABASE_URL, or the embedded PostgreSQL's if it runs; None if there is neither."""
    if settings.database_url:
        return settings.database_url
    pgdata = (settings.data_dir / "pgdata").resolve()
    port = embedded.running_port(pgdata)
    return embedded.EmbeddedPostgres(pgdata, port).url if port is not None else None


async def database(settings: Settings) -> list[CheckResult]:
    url = database_url(settings)
    if url is None:
        return [
            CheckResult(
                "database",
                True,
                "DATABASE_URL unset: `mtai serve` will start the embedded PostgreSQL",
            )
        ]
    where = describe(url)
    try:
        await asyncio.wait_for(check_server(url), CONNECT_TIMEOUT_SECONDS)
    except TimeoutError:
        return [
            CheckResult(
                "database",
                False,
                f"no answer from {where} in {CONNECT_TIMEOUT_SECONDS:.0f}s",
                "the host is unreachable: check security groups / network ACLs and the host",
            )
        ]
    except ConfigurationError as exc:
        reachable = CheckResult("database", True, f"reachable at {where}")
        fix = exc.fix if isinstance(exc, ServerUnfit) else "check DATABASE_URL"
        return [reachable, CheckResult("pgvector", False, str(exc), fix)]
    except (OSError, DBAPIError, InterfaceError, OperationalError, asyncpg.PostgresError) as exc:
        return [_explain_connect_error(exc, where)]
    results = [
        CheckResult("database", True, f"reachable at {where}"),
        CheckResult("pgvector", True, "extension available"),
    ]
    current, head = await current_revision(url), head_revision()
    if current != head:
        results.append(
            CheckResult(
                "migrations",
                False,
                f"database at {current or 'no revision'}, code at {head}",
                "run `mtai migrate` (scripts/build-and-deploy.sh runs it as a one-off task)",
            )
        )
        return results
    results.append(CheckResult("migrations", True, f"current ({head})"))
    db = Database(
        url,
        app_role=settings.db_app_role,
        platform_url=settings.platform_database_url,
        pool_size=1,
        platform_pool_size=1,
    )
    try:
        role, superuser, bypass = await db.role_flags()
        if superuser or bypass:
            results.append(
                CheckResult(
                    "app role",
                    False,
                    f"'{role}' bypasses row-level security",
                    "ALTER ROLE ... NOSUPERUSER NOBYPASSRLS, or re-run `mtai migrate`",
                )
            )
        else:
            results.append(
                CheckResult("app role", True, f"'{role}' is bound by row-level security")
            )
    except DBAPIError as exc:
        results.append(
            CheckResult(
                "app role",
                False,
                f"cannot SET ROLE {settings.db_app_role}: {exc.orig}",
                "run `mtai migrate` as the database owner",
            )
        )
    finally:
        await db.dispose()
    return results


async def storage(settings: Settings) -> CheckResult:
    """A real write, read and delete in the configured object store."""
    try:
        store = open_store(settings)
    except ConfigurationError as exc:
        return CheckResult("storage", False, str(exc), "set the variables it names")
    try:
        await asyncio.wait_for(store.check(), CONNECT_TIMEOUT_SECONDS * 2)
    except StorageUnavailable as exc:
        # The message already says what to do (bucket, permission, endpoint).
        return CheckResult("storage", False, exc.detail, "see docs/troubleshooting.md, storage")
    except TimeoutError:
        return CheckResult(
            "storage",
            False,
            f"{store.name} storage did not answer within {CONNECT_TIMEOUT_SECONDS * 2:.0f} s",
            "check MTAI_S3_ENDPOINT_URL and that the network allows the tasks to reach S3",
        )
    finally:
        await store.aclose()
    return CheckResult("storage", True, f"{store.name}: write, read and delete work")
