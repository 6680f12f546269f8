"""First start: one platform admin even when API processes start together; a given password
is used and never printed."""

from __future__ import annotations

import asyncio
import secrets

from mtai.config import Settings
from mtai.db.migrate import upgrade
from mtai.runtime import open_runtime
from mtai.services import bootstrap
from tests.conftest import make_settings
from tests.support.postgres import fresh_database


async def test_simultaneous_first_starts_make_one_admin(pg_admin_url: str) -> None:
    with fresh_database(pg_admin_url) as url:
        await upgrade(url, "mtai_app")
        settings: Settings = make_settings(url)
        async with open_runtime(settings, background=False) as rt:
            given = secrets.token_urlsafe(24)
            results = await asyncio.gather(
                *(
                    bootstrap.first_start(
                        rt.db,
                        rt.tenants,
                        rt.keys,
                        admin_email="root@example.com",
                        demo_tenant="",
                        admin_password=given,
                    )
                    for _ in range(4)
                )
            )
            made = [r for r in results if r is not None]
            assert len(made) == 1
            assert made[0].admin_password is None  # given, so never shown
            logged_in = await rt.auth.login("root@example.com", given, None)
            assert logged_in.user.is_platform_admin
