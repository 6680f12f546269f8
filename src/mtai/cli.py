"""The `mtai` command: serve, migrate, tenant/user/key/SSO administration, doctor."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mtai.config import Settings, get_settings
from mtai.db import embedded
from mtai.db.migrate import ensure_logins, upgrade
from mtai.db.models import SsoProvider
from mtai.errors import AppError, ConfigurationError
from mtai.logging import configure_logging
from mtai.providers.llm.capabilities import matrix
from mtai.providers.llm.registry import SUPPORT_BY_PROVIDER
from mtai.rag.evaluation import DatasetError, format_sets, load_dataset
from mtai.runtime import Runtime, open_runtime, reaper_task
from mtai.services import bootstrap, doctor, retrieval_eval, secrets
from mtai.services.invitations import Issued
from mtai.services.principal import ALL_SCOPES, Role, Scope, operator
from mtai.services.rank_fusion import parse_fusion
from mtai.services.retrieval import Bm25, Retriever
from mtai.services.sso_settings import DEFAULT_SCOPES, ProviderInput
from mtai.services.tenant_archive import ArchiveReport, TenantArchive, signing_key

app = typer.Typer(
    help="mtai: multi-tenant AI platform.", no_args_is_help=True, pretty_exceptions_enable=False
)
tenant_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure quality.", no_args_is_help=True)
sso_app = typer.Typer(help="Single sign-on and SCIM of a tenant.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="key")
app.add_typer(eval_app, name="eval")
app.add_typer(sso_app, name="sso")

T = TypeVar("T")
OPERATOR = operator()


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except (AppError, ConfigurationError) as exc:
        raise _fail(str(exc)) from exc


def _settings_with_database(settings: Settings) -> tuple[Settings, bool]:
    """Settings whose DATABASE_URL is set, starting the embedded server when it was not.

    Returns whether this call started the embedded server (so the caller stops it).
    """
    if settings.database_url:
        return settings, False
    if not settings.is_development:
        # In a container the embedded server would keep its data on a disk that a restart
        # throws away: a missing DATABASE_URL secret must stop the task, not lose data.
        raise ConfigurationError(
            "DATABASE_URL is not set. In production (MTAI_ENV=production) mtai needs an external "
            "PostgreSQL with pgvector: set DATABASE_URL=postgresql://user:pass@host:5432/db "
            "(AWS: the <project>/database-url secret). The embedded PostgreSQL is for "
            "MTAI_ENV=development only."
        )
    pgdata = settings.data_dir / "pgdata"
    was_running = embedded.running_port(pgdata) is not None
    server = embedded.start(pgdata, settings.embedded_pg_port)
    return settings.model_copy(update={"database_url": server.url}), not was_running


async def _with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    async with open_runtime(settings, background=False) as runtime:
        return await work(runtime)


def _prepared() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        settings, _ = _settings_with_database(settings)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from exc
    return settings


def _operate(work: Callable[[Runtime], Awaitable[None]]) -> None:
    """Run one operator command against the configured (or embedded) database."""
    _run(_with_runtime(_prepared(), work))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (MTAI_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (MTAI_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (MTAI_WORKERS).")] = None,
    migrate: Annotated[bool, typer.Option(help="Apply migrations before serving.")] = True,
) -> None:
    """Start the API (and, without DATABASE_URL, the embedded PostgreSQL)."""
    import uvicorn

    from mtai.app import refuse_unsafe

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        refuse_unsafe(settings)  # before migrating or starting anything
        settings, started = _settings_with_database(settings)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from exc
    assert settings.database_url is not None
    try:
        if migrate:
            _run(upgrade(settings.migration_url, settings.db_app_role))
        first = _run(
            _with_runtime(
                settings,
                lambda rt: bootstrap.first_start(
                    rt.db,
                    rt.tenants,
                    rt.keys,
                    admin_email=settings.bootstrap_admin_email,
                    admin_password=(
                        settings.bootstrap_admin_password.get_secret_value()
                        if settings.bootstrap_admin_password
                        else None
                    ),
                    demo_tenant=settings.bootstrap_demo_tenant,
                ),
            )
        )
        bind_host, bind_port = host or settings.host, port or settings.port
        _announce(first, f"http://{bind_host}:{bind_port}")
        # Worker processes read their settings again; hand them the resolved database.
        os.environ["DATABASE_URL"] = settings.database_url
        get_settings.cache_clear()
        # Uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit lets
        # the `finally` below stop the embedded PostgreSQL (e.g. on `docker stop`).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvicorn.run(
            "mtai.app:create_app",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=workers or settings.workers,
            log_config=None,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
    finally:
        if started:
            embedded.stop(settings.data_dir / "pgdata")


def _announce(first: bootstrap.FirstStart | None, url: str) -> None:
    typer.echo("")
    typer.secho(
        f"mtai is starting at {url}  (API docs: {url}/docs)", fg=typer.colors.GREEN, bold=True
    )
    typer.secho(f"Web UI: {url}/ui", fg=typer.colors.GREEN, bold=True)
    if first is None:
        typer.echo("Log in with your existing platform admin account.")
        return
    if first.admin_password is None:
        typer.echo(f"First start: platform admin {first.admin_email} created with the password")
        typer.echo("  in MTAI_BOOTSTRAP_ADMIN_PASSWORD (AWS: the <project>/admin-password secret).")
    else:
        typer.echo("First start: these credentials are shown once, store them now.")
        typer.echo(f"  platform admin email:    {first.admin_email}")
        typer.echo(f"  platform admin password: {first.admin_password}")
    if first.api_key:
        typer.echo(f"  API key for tenant '{first.tenant_slug}': {first.api_key}")
    typer.echo(
        f"  log in: curl -X POST {url}/api/v1/auth/login -H 'content-type: application/json' "
        f'-d \'{{"email":"{first.admin_email}","password":"..."}}\''
    )
    typer.echo("")


@app.command("worker")
def worker_cmd() -> None:
    """Run ingestion jobs from the Redis queue (MTAI_QUEUE_BACKEND=redis) until stopped."""
    settings = get_settings()
    configure_logging(settings.log_level)
    if settings.queue_backend != "redis":
        raise _fail(
            "`mtai worker` takes jobs from Redis, but MTAI_QUEUE_BACKEND is 'inprocess' (the API "
            "ingests documents itself). Set MTAI_QUEUE_BACKEND=redis and REDIS_URL on the API "
            "and on the workers."
        )
    if not settings.database_url:
        raise _fail("`mtai worker` needs DATABASE_URL, the same database as the API's.")
    _run(_work(settings))


async def _work(settings: Settings) -> None:
    async with open_runtime(settings, background=False) as runtime:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        tasks = [asyncio.create_task(runtime.queue.consume(), name="consume"), reaper_task(runtime)]
        typer.echo(
            f"worker: jobs from {settings.queue_name}, {settings.worker_concurrency} at once"
        )
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in [*tasks, stopping]:
            task.cancel()
        await asyncio.gather(*tasks, stopping, return_exceptions=True)
        for task in done - {stopping}:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error


@eval_app.command("retrieval")
def eval_retrieval(
    datasets: Annotated[
        list[Path],
        typer.Argument(help="Directories with documents.jsonl, queries.jsonl, qrels.tsv."),
    ],
    k: Annotated[int, typer.Option(help="Cut-off for nDCG and recall.")] = 10,
    fusion: Annotated[
        list[str] | None,
        typer.Option(
            help="Also score hybrid fused this way, METHOD:VECTOR_WEIGHT:KEYWORD_WEIGHT with "
            "METHOD rrf or convex (e.g. rrf:1:0.5); repeatable."
        ),
    ] = None,
    other_ranking: Annotated[
        bool,
        typer.Option(
            "--other-keyword-ranking",
            help="Also score keyword and hybrid search with the keyword ranking not configured "
            "(bm25 when MTAI_RAG_KEYWORD_RANKING is ts_rank, and the other way round).",
        ),
    ] = False,
    embedding_model: Annotated[
        str | None,
        typer.Option(
            help="Embedding model of the evaluated knowledge bases (default: "
            "MTAI_EMBEDDING_MODEL), e.g. multilingual-e5-small."
        ),
    ] = None,
) -> None:
    """nDCG@k, recall@k and MRR of vector, keyword and hybrid search on each dataset, in one
    table (format: eval/README.md)."""
    try:
        fusions = [parse_fusion(text) for text in fusion or ()]
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    loaded = {}
    for path in datasets:
        try:
            loaded[path.name] = load_dataset(path)
        except DatasetError as exc:
            raise _fail(str(exc)) from exc
    if len(loaded) < len(datasets):
        raise _fail("Two datasets have the same directory name: rename one.")

    async def work(runtime: Runtime) -> None:
        variants = {}
        if other_ranking:
            settings = runtime.settings
            if runtime.retriever.bm25 is None:
                bm25 = Bm25(settings.rag_bm25_k1, settings.rag_bm25_b)
                variants["bm25"] = Retriever(runtime.db, runtime.embedders, bm25=bm25)
            else:
                variants["ts_rank"] = Retriever(runtime.db, runtime.embedders)
        by_set = {}
        for name, data in loaded.items():
            typer.echo(
                f"{name}: {len(data.documents)} documents, {len(data.queries)} queries", err=True
            )
            by_set[name] = await retrieval_eval.evaluate(
                data,
                tenants=runtime.tenants,
                knowledge_bases=runtime.knowledge_bases,
                documents=runtime.documents,
                ingestor=runtime.ingestor,
                retriever=runtime.retriever,
                k=k,
                embedding_model=embedding_model,
                fusions=fusions,
                variants=variants,
                progress=lambda line: typer.echo(line, err=True),
            )
        typer.echo(format_sets(by_set))

    try:
        _operate(work)
    except retrieval_eval.EvaluationFailed as exc:
        raise _fail(str(exc)) from exc


@app.command("migrate")
def migrate_cmd(
    create_logins: Annotated[
        bool,
        typer.Option(
            help="Also create (or set the passwords of) the logins of DATABASE_URL and "
            "MTAI_PLATFORM_DATABASE_URL: members of the app role and of the platform role only. "
            "Needs MTAI_DATABASE_MIGRATION_URL (the owner)."
        ),
    ] = False,
) -> None:
    """Apply database migrations (as the schema owner)."""
    settings = _prepared()
    if create_logins and not (settings.database_migration_url and settings.platform_database_url):
        raise _fail(
            "--create-logins needs MTAI_DATABASE_MIGRATION_URL (the owner), DATABASE_URL "
            "and MTAI_PLATFORM_DATABASE_URL (the two logins to create)."
        )
    _run(upgrade(settings.migration_url, settings.db_app_role))
    typer.echo("migrations applied")
    if create_logins:
        assert settings.database_url is not None
        assert settings.database_migration_url is not None
        assert settings.platform_database_url is not None
        made = _run(
            ensure_logins(
                settings.database_migration_url,
                settings.db_app_role,
                tenant_url=settings.database_url,
                platform_url=settings.platform_database_url,
            )
        )
        typer.echo(f"logins ready: {made[0]} (tenant), {made[1]} (platform)")


@app.command("doctor")
def doctor_cmd(
    call_providers: Annotated[
        bool,
        typer.Option(
            "--call-providers", help="Also send each catalog model a one-token request (costs)."
        ),
    ] = False,
) -> None:
    """Check configuration and dependencies; each failure comes with its fix."""
    settings = get_settings()
    configure_logging("WARNING")
    results = asyncio.run(doctor.run(settings, call_providers=call_providers))
    for result in results:
        mark = (
            typer.style("ok  ", fg=typer.colors.GREEN)
            if result.ok
            else typer.style("FAIL", fg=typer.colors.RED)
        )
        typer.echo(f"[{mark}] {result.name}: {result.message}")
        if not result.ok and result.fix:
            typer.echo(f"       fix: {result.fix}")
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


@app.command("capabilities")
def capabilities_cmd() -> None:
    """Print the gateway's capability matrix (Markdown): per provider, each request feature
    forwarded natively, translated, or refused; docs/gateway.md holds the same table."""
    typer.echo(matrix(SUPPORT_BY_PROVIDER), nl=False)


@tenant_app.command("create")
def tenant_create(
    slug: str,
    name: Annotated[str | None, typer.Option(help="Display name (default: the slug).")] = None,
    owner_email: Annotated[
        str | None, typer.Option(help="Invite this email as owner (prints the invitation).")
    ] = None,
) -> None:
    async def work(rt: Runtime) -> None:
        tenant, issued = await rt.tenants.create(
            OPERATOR, slug=slug, name=name or slug, owner_email=owner_email
        )
        typer.echo(f"tenant {tenant.slug} created: {tenant.id}")
        if issued is not None:
            _print_invitation(rt, issued)
            await rt.invitations.flush()

    _operate(work)


@tenant_app.command("list")
def tenant_list() -> None:
    async def work(rt: Runtime) -> None:
        items, total = await rt.tenants.list(OPERATOR, status=None, limit=200, offset=0)
        for t in items:
            typer.echo(f"{t.id}  {t.slug:<24} {t.status:<10} {t.name}")
        typer.echo(f"{total} tenant(s)")

    _operate(work)


def _set_status(tenant: str, status: str, done: str) -> None:
    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        await rt.tenants.set_status(OPERATOR, found.id, status)
        typer.echo(f"tenant {found.slug} {done}")

    _operate(work)


@tenant_app.command("export")
def tenant_export(
    tenant: Annotated[str, typer.Argument(help="Tenant id or slug.")],
    file: Annotated[Path, typer.Argument(help="Archive to write (.tar.gz); it holds secrets.")],
) -> None:
    """Write all of a tenant's rows and documents into one portable archive."""

    async def work(rt: Runtime) -> None:
        report = await _archive(rt).export(tenant, file)
        _report(f"exported {report.tenant_slug} to {file}", report)

    _operate(work)


@tenant_app.command("import")
def tenant_import(
    file: Annotated[Path, typer.Argument(help="Archive written by `mtai tenant export`.")],
    trust_unsigned: Annotated[
        bool,
        typer.Option(
            "--trust-unsigned",
            help="Import an archive this deployment did not sign (changed after export, or "
            "signed with another key); every row is still checked against its tenant.",
        ),
    ] = False,
) -> None:
    """Restore a tenant from an archive, into this deployment (all or nothing).

    Its members activate again: the import prints one invitation per member.
    """

    async def work(rt: Runtime) -> None:
        report = await _archive(rt).import_(file, OPERATOR, trust_unsigned=trust_unsigned)
        _report(f"imported {report.tenant_slug} ({report.tenant_id}) from {file}", report)
        for issued in report.invitations:
            invitation = issued.invitation
            typer.echo(
                f"  invitation for {invitation.email} ({invitation.role}), shown once, "
                f"expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC: token {issued.token} "
                f"(accept at {issued.accept_url})"
            )

    _operate(work)


def _archive(rt: Runtime) -> TenantArchive:
    resolved = secrets.resolve(rt.settings)
    return TenantArchive(
        rt.db,
        rt.store,
        rt.tenants,
        rt.invitations,
        resolved,
        signing_key(rt.settings, resolved),
        rt.settings.archive_max_bytes,
    )


def _report(headline: str, report: ArchiveReport) -> None:
    typer.echo(headline)
    for table, count in report.rows.items():
        typer.echo(f"  {table}: {count} row(s)")
    typer.echo(f"  document originals: {report.objects}")
    for note in report.notes:
        typer.secho(f"  note: {note}", fg=typer.colors.YELLOW)


@tenant_app.command("suspend")
def tenant_suspend(tenant: Annotated[str, typer.Argument(help="Tenant id or slug.")]) -> None:
    _set_status(tenant, "suspended", "suspended")


@tenant_app.command("reactivate")
def tenant_reactivate(tenant: Annotated[str, typer.Argument(help="Tenant id or slug.")]) -> None:
    _set_status(tenant, "active", "reactivated")


@tenant_app.command("delete")
def tenant_delete(
    tenant: Annotated[str, typer.Argument(help="Tenant id or slug.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a tenant with all its rows and documents (export it first to keep a copy)."""
    if not yes:
        typer.confirm(
            f"Delete tenant {tenant} with all its data? `mtai tenant export` keeps a copy.",
            abort=True,
        )

    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        await rt.tenants.delete(OPERATOR, found.id)
        typer.echo(f"tenant {found.slug} deleted")

    _operate(work)


def _print_invitation(rt: Runtime, issued: Issued) -> None:
    invitation = issued.invitation
    what = f"as {invitation.role}" if invitation.role else "as platform administrator"
    typer.echo(
        f"invitation for {invitation.email} {what}, "
        f"expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    token, url = rt.invitations.shown(issued)
    if token is None:
        typer.echo("  delivered by mail only (MTAI_INVITATION_SHOW_TOKEN=false)")
        return
    typer.echo(f"  token (shown once): {token}")
    typer.echo(f"  accept at: {url}")
    typer.echo("  The person chooses their own password there, or logs in if they have an account.")


@user_app.command("create")
def user_create(
    email: str,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant id or slug to invite the user to.")
    ] = None,
    role: Annotated[Role, typer.Option(help="Role in that tenant.")] = Role.MEMBER,
    platform_admin: Annotated[
        bool, typer.Option(help="Make a platform administrator (an activation for a new one).")
    ] = False,
) -> None:
    """Invite a person: they accept with the printed token and choose their own password."""
    if tenant is None and not platform_admin:
        raise _fail("give --tenant (to invite a member) or --platform-admin")

    async def work(rt: Runtime) -> None:
        if platform_admin:
            existing = await rt.users.grant_platform_admin(OPERATOR, email)
            if existing is not None:
                typer.echo(f"user {existing.email} is a platform administrator: {existing.id}")
            else:
                _print_invitation(rt, await rt.invitations.issue_platform_activation(email))
        if tenant is not None:
            found = await rt.tenants.resolve(tenant)
            issued = await rt.invitations.issue_operator(
                tenant_id=found.id, email=email, role=role, actor=OPERATOR
            )
            _print_invitation(rt, issued)
        await rt.invitations.flush()

    _operate(work)


def _set_active(email: str, active: bool) -> None:
    async def work(rt: Runtime) -> None:
        user = await rt.users.set_active(OPERATOR, email, active=active)
        state = "enabled" if active else "disabled, every session ended"
        typer.echo(f"user {user.email} {state}")

    _operate(work)


@user_app.command("disable")
def user_disable(email: str) -> None:
    """Disable an identity in every tenant and end its sessions (its tenants' keys stay)."""
    _set_active(email, False)


@user_app.command("enable")
def user_enable(email: str) -> None:
    """Enable a disabled identity again (it logs in again)."""
    _set_active(email, True)


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="Tenant id or slug.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "cli",
    scope: Annotated[
        list[Scope] | None, typer.Option(help="Repeat for several (default: all).")
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Expire after N days.")] = None,
) -> None:
    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        acting = operator(found.id)
        expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
        key, plaintext = await rt.keys.create(
            acting, name=name, scopes=scope or sorted(ALL_SCOPES), expires_at=expires
        )
        typer.echo(f"key {key.id} ({', '.join(key.scopes)}) for {found.slug}; shown once:")
        typer.echo(plaintext)

    _operate(work)


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from the API or `key create`).")],
    tenant: Annotated[str, typer.Option(help="Tenant id or slug.")],
) -> None:
    import uuid

    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        acting = operator(found.id)
        try:
            parsed = uuid.UUID(key_id)
        except ValueError as exc:
            raise AppError(f"'{key_id}' is not a key id (a UUID).") from exc
        await rt.keys.revoke(acting, parsed)
        typer.echo(f"key {key_id} revoked")

    _operate(work)


TenantOption = Annotated[str, typer.Option(help="Tenant id or slug.")]


def _print_provider(provider: SsoProvider) -> None:
    typer.echo(f"issuer:            {provider.issuer}")
    typer.echo(f"client id:         {provider.client_id}")
    typer.echo(f"client secret:     {'set' if provider.client_secret_encrypted else 'none'}")
    typer.echo(f"scopes:            {' '.join(provider.scopes)}")
    typer.echo(f"allowed domains:   {', '.join(provider.allowed_domains) or '(any)'}")
    typer.echo(f"verified domains:  {', '.join(provider.verified_domains) or '(none)'}")
    typer.echo(f"groups claim:      {provider.groups_claim or '(none)'}")
    for group, role in sorted(provider.group_roles.items()):
        typer.echo(f"  group {group!r} -> {role}")
    typer.echo(f"just-in-time:      {'on' if provider.jit_provisioning else 'off'}")
    typer.echo(f"enforce SSO:       {'on' if provider.enforce_sso else 'off'}")
    typer.echo(f"enabled:           {'yes' if provider.enabled else 'no'}")
    typer.echo(f"SCIM token:        {'set' if provider.scim_token_hash else 'none'}")


@sso_app.command("show")
def sso_show(tenant: TenantOption) -> None:
    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        _print_provider(await rt.sso_settings.get(operator(found.id)))

    _operate(work)


@sso_app.command("configure")
def sso_configure(
    tenant: TenantOption,
    issuer: Annotated[str, typer.Option(help="The provider's issuer URL (https).")],
    client_id: Annotated[str, typer.Option(help="The client (application) id.")],
    client_secret_stdin: Annotated[
        bool,
        typer.Option(help="Read the client secret from standard input (never from argv)."),
    ] = False,
    scope: Annotated[list[str] | None, typer.Option(help="Repeat for several.")] = None,
    domain: Annotated[list[str] | None, typer.Option(help="Allowed email domain; repeat.")] = None,
    groups_claim: Annotated[str | None, typer.Option(help="ID token claim of groups.")] = None,
    group_role: Annotated[
        list[str] | None, typer.Option(help="GROUP=ROLE (owner, admin, member); repeat.")
    ] = None,
    jit: Annotated[bool, typer.Option(help="Just-in-time provisioning.")] = False,
    enforce: Annotated[bool, typer.Option(help="Members must use SSO.")] = False,
    enabled: Annotated[bool, typer.Option(help="Offer sign-in through it.")] = True,
) -> None:
    """Register or replace the tenant's OpenID Connect provider (its discovery is checked)."""
    secret = sys.stdin.readline().strip() if client_secret_stdin else None
    mapping: dict[str, str] = {}
    for pair in group_role or []:
        group, sep, role = pair.rpartition("=")
        if not sep or not group:
            raise _fail(f"--group-role takes GROUP=ROLE, not {pair!r}")
        mapping[group] = role

    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        provider = await rt.sso_settings.configure(
            operator(found.id),
            ProviderInput(
                issuer=issuer,
                client_id=client_id,
                client_secret=secret,
                scopes=scope or list(DEFAULT_SCOPES),
                allowed_domains=domain or [],
                groups_claim=groups_claim,
                group_roles=mapping,
                jit_provisioning=jit,
                enforce_sso=enforce,
                enabled=enabled,
            ),
        )
        _print_provider(provider)

    _operate(work)


@sso_app.command("enforce")
def sso_enforce(
    tenant: TenantOption,
    on: Annotated[bool, typer.Option("--on/--off", help="Require SSO for members.")],
) -> None:
    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        await rt.sso_settings.set_enforced(operator(found.id), on)
        typer.echo(f"SSO {'enforced' if on else 'optional'} for {found.slug}")

    _operate(work)


@sso_app.command("verify-domain")
def sso_verify_domain(
    tenant: TenantOption,
    domain: Annotated[str, typer.Argument(help="An allowed domain the tenant owns.")],
    unverify: Annotated[bool, typer.Option(help="Withdraw the verification.")] = False,
) -> None:
    """Vouch that the tenant owns a domain: sign-in by email and JIT provisioning use it."""

    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        provider = await rt.sso_settings.set_domain_verified(
            operator(found.id), domain, verified=not unverify
        )
        typer.echo(f"verified domains of {found.slug}: {', '.join(provider.verified_domains)}")

    _operate(work)


@sso_app.command("scim-token")
def sso_scim_token(
    tenant: TenantOption,
    revoke: Annotated[bool, typer.Option(help="Revoke the token instead.")] = False,
) -> None:
    """A new SCIM bearer token (the previous one stops working); shown once."""

    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        if revoke:
            await rt.sso_settings.revoke_scim_token(operator(found.id))
            typer.echo(f"SCIM token of {found.slug} revoked")
            return
        token = await rt.sso_settings.issue_scim_token(operator(found.id))
        typer.echo(f"SCIM token for {found.slug} (base URL <public URL>/scim/v2); shown once:")
        typer.echo(token)

    _operate(work)


@sso_app.command("remove")
def sso_remove(tenant: TenantOption) -> None:
    async def work(rt: Runtime) -> None:
        found = await rt.tenants.resolve(tenant)
        await rt.sso_settings.remove(operator(found.id))
        typer.echo(f"identity provider of {found.slug} removed")

    _operate(work)
