"""Wiring: the process-wide resources that the API, the CLI and the tests share."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from mtai.config import Environment, KeywordRanking, Settings
from mtai.db.engine import Database
from mtai.db.notify import listen
from mtai.errors import ConfigurationError
from mtai.logging import get_logger
from mtai.providers.cache.stores import MemoryCacheStore, RedisCacheStore
from mtai.providers.egress import EgressPolicy
from mtai.providers.embeddings.minilm_onnx import OnnxMiniLMEmbedder
from mtai.providers.embeddings.registry import EmbedderRegistry
from mtai.providers.limits.backoff import BackoffPolicy, RedisBackoffStore
from mtai.providers.limits.redis_store import RedisLimitStore
from mtai.providers.limits.redis_store import connect as connect_redis
from mtai.providers.llm.registry import ProviderRegistry
from mtai.providers.mail import SmtpMailer
from mtai.providers.oidc import OidcClient
from mtai.providers.queue.ingest_queue import IngestQueue
from mtai.providers.rerank.registry import reranker_from
from mtai.providers.storage.base import ObjectStore
from mtai.providers.storage.factory import open_store
from mtai.rag.parsing import ContentLimits
from mtai.rag.parsing.sandbox import SandboxLimits
from mtai.services import secrets, tokenizer
from mtai.services.api_keys import ApiKeyService
from mtai.services.auth import Authenticator, LastUsedRecorder
from mtai.services.auth_cache import AuthCache
from mtai.services.catalog import Catalog
from mtai.services.chat import ChatService
from mtai.services.circuit_breaker import CircuitBreaker
from mtai.services.crypto import SecretBox
from mtai.services.documents import DocumentService
from mtai.services.embeddings import EmbeddingService
from mtai.services.gateway import Gateway
from mtai.services.ingestion import Ingestor
from mtai.services.invitations import InvitationService
from mtai.services.knowledge_bases import KnowledgeBaseService
from mtai.services.limits import LimitService, OutagePolicy
from mtai.services.llm_router import LLMRouter
from mtai.services.login_throttle import LoginThrottle
from mtai.services.metering import Meter
from mtai.services.metrics import Metrics
from mtai.services.reranking import RerankService
from mtai.services.retrieval import Bm25, Retriever
from mtai.services.sso import SsoService
from mtai.services.sso_settings import SsoSettings
from mtai.services.tenants import TenantService
from mtai.services.usage import UsageLedger
from mtai.services.usage_reports import UsageReports
from mtai.services.users import UserService

if TYPE_CHECKING:
    from mtai.services.scim import ScimService

log = get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cache: AuthCache[object]
    auth: Authenticator
    tenants: TenantService
    users: UserService
    invitations: InvitationService
    sso: SsoService
    sso_settings: SsoSettings
    login_throttle: LoginThrottle
    keys: ApiKeyService
    last_used: LastUsedRecorder
    catalog: Catalog
    registry: ProviderRegistry
    ledger: UsageLedger
    gateway: Gateway
    chat: ChatService
    usage: UsageReports
    embeddings: EmbeddingService
    reranking: RerankService
    limits: LimitService
    metrics: Metrics
    store: ObjectStore
    embedders: EmbedderRegistry
    queue: IngestQueue
    ingestor: Ingestor
    knowledge_bases: KnowledgeBaseService
    documents: DocumentService
    retriever: Retriever
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    listener_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @functools.cached_property
    def scim(self) -> ScimService:
        # Built at the first SCIM request: scim2-models takes 0.4 s to import, which every
        # `mtai` command would otherwise pay.
        from mtai.services.scim import ScimService

        return ScimService(self.db, self.cache, self.users)

    def listener_connected(self) -> None:
        # Whatever was announced while the listener was away is lost: forget it all.
        self.cache.clear()
        self.listener_ready.set()


async def check_roles(db: Database, app_role: str, env: Environment) -> None:
    """Refuse to start when row-level security would not bind the app's transactions."""
    try:
        role, superuser, bypass = await db.role_flags()
    except DBAPIError as exc:
        raise ConfigurationError(
            f"Cannot connect as the app role '{app_role}' ({exc.orig}). Run `mtai migrate` "
            "first: it creates the role and grants it to the migrating user."
        ) from exc
    if superuser or bypass:
        raise ConfigurationError(
            f"The app's database role '{role}' is a superuser or has BYPASSRLS, which would "
            "silently disable tenant isolation. Run `mtai migrate` (it creates a restricted role) "
            "or point DATABASE_URL at a NOSUPERUSER NOBYPASSRLS login."
        )
    try:
        role, superuser, bypass = await db.role_flags(platform=True)
    except DBAPIError as exc:
        raise ConfigurationError(
            f"Cannot switch to the platform role '{db.platform_role}' ({exc.orig}). Run "
            "`mtai migrate` (it creates the role); set MTAI_PLATFORM_DATABASE_URL to a login "
            "that is a member of it (`mtai migrate --create-logins`), or use a DATABASE_URL "
            "login that may SET ROLE to both roles (docs/deployment.md)."
        ) from exc
    if superuser or bypass:
        raise ConfigurationError(
            f"The platform role '{role}' is a superuser or has BYPASSRLS; it must be "
            "NOSUPERUSER NOBYPASSRLS (`mtai migrate` creates it so)."
        )
    if not db.separate_platform_login:
        if env is Environment.PRODUCTION:
            log.warning(
                "database.single_login",
                detail="DATABASE_URL's login serves tenant and platform transactions: SQL run "
                "through a tenant connection could switch to the platform role. Set "
                "MTAI_PLATFORM_DATABASE_URL and restrict DATABASE_URL (docs/deployment.md).",
            )
        return
    if env is Environment.PRODUCTION and await db.tenant_login_reaches_platform():
        raise ConfigurationError(
            f"DATABASE_URL's login is a member of the platform role '{db.platform_role}' (or "
            "could make itself one: CREATEROLE, superuser or BYPASSRLS), so SQL run through a "
            "tenant connection could read every tenant's rows. Point "
            "DATABASE_URL at a login that is a member of the app role only "
            "(`mtai migrate --create-logins` makes one; docs/deployment.md)."
        )


def parse_limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits(
        timeout_seconds=settings.parse_timeout_seconds,
        cpu_seconds=settings.parse_cpu_seconds,
        memory_bytes=settings.parse_memory_bytes,
        content=ContentLimits(
            max_pages=settings.parse_max_pages,
            max_chars=settings.parse_max_chars,
            max_decompressed_bytes=settings.parse_max_decompressed_bytes,
            max_compression_ratio=settings.parse_max_compression_ratio,
        ),
    )


def reaper_task(runtime: Runtime) -> asyncio.Task[None]:
    """Whoever runs ingestion jobs also resends the ones nobody holds."""
    interval = max(1.0, runtime.settings.ingest_lease_seconds / 4)
    return asyncio.create_task(
        runtime.ingestor.run_reaper(runtime.queue.enqueue, interval), name="ingest-reaper"
    )


def _bm25(settings: Settings) -> Bm25 | None:
    if settings.rag_keyword_ranking is KeywordRanking.TS_RANK:
        return None
    return Bm25(settings.rag_bm25_k1, settings.rag_bm25_b)


def _queue(settings: Settings, ingestor: Ingestor) -> IngestQueue:
    if settings.queue_backend == "inprocess":
        return IngestQueue.in_process(ingestor.process, concurrency=settings.worker_concurrency)
    if not settings.redis_url:
        raise ConfigurationError(
            "MTAI_QUEUE_BACKEND=redis needs REDIS_URL (redis:// or rediss://); or set "
            "MTAI_QUEUE_BACKEND=inprocess to ingest inside the API process."
        )
    return IngestQueue.redis(
        settings.redis_url,
        ingestor.process,
        queue_name=settings.queue_name,
        concurrency=settings.worker_concurrency,
        redeliver_after_seconds=settings.ingest_lease_seconds,
        ca_file=settings.redis_ca_file,
    )


def mailer(settings: Settings) -> SmtpMailer | None:
    """The invitation mailer, when SMTP is configured."""
    if not settings.smtp_host:
        return None
    return SmtpMailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        user=settings.smtp_user,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_seconds,
    )


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, background: bool = True) -> AsyncIterator[Runtime]:
    if not settings.database_url:
        raise ConfigurationError(
            "DATABASE_URL is not set. Start with `mtai serve` (it runs the embedded PostgreSQL) "
            "or set DATABASE_URL=postgresql://user:pass@host:5432/db."
        )
    resolved = secrets.resolve(settings)
    db = Database(
        settings.database_url,
        app_role=settings.db_app_role,
        platform_url=settings.platform_database_url,
        pool_size=settings.db_pool_size,
        platform_pool_size=settings.db_platform_pool_size,
        hnsw_ef_search=settings.hnsw_ef_search,
    )
    cache: AuthCache[object] = AuthCache(
        settings.auth_cache_ttl_seconds,
        max_negative_entries=settings.auth_cache_max_negative_entries,
    )
    last_used = LastUsedRecorder(db)
    auth = Authenticator(
        db,
        cache,
        jwt_secret=resolved.jwt_secret,
        key_pepper=resolved.key_pepper,
        jwt_ttl_seconds=settings.jwt_ttl_seconds,
        last_used=last_used,
    )
    egress = EgressPolicy.from_settings(settings)
    box = SecretBox(resolved.encryption_key)
    catalog = Catalog(
        db,
        cache,
        box,
        default_model=settings.default_model,
        egress=egress,
    )
    registry = ProviderRegistry(
        egress=egress,
        max_providers=settings.provider_cache_size,
        local_model_path=settings.local_model_path,
        local_threads=settings.local_model_threads,
    )
    ledger = UsageLedger(
        db,
        settings.data_dir / "usage-spool",
        responses_retention=timedelta(days=settings.responses_retention_days),
    )
    usage = UsageReports(db)
    redis = (
        connect_redis(settings.redis_url, ca_file=settings.redis_ca_file)
        if settings.redis_url
        else None
    )
    limits = LimitService(
        RedisLimitStore(redis) if redis is not None else None,
        usage.month_spend,
        policy=OutagePolicy(settings.limits_outage_policy),
        lease_seconds=settings.limits_lease_seconds,
    )
    metrics = Metrics(settings.metrics_max_tenants)
    meter = Meter(auth, catalog, limits, ledger, metrics)
    local_embedder = OnnxMiniLMEmbedder()
    embedders = EmbedderRegistry(settings, local=local_embedder)
    store = open_store(settings)
    ingestor = Ingestor(
        db,
        store,
        embedders,
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        lease_seconds=settings.ingest_lease_seconds,
        max_attempts=settings.ingest_max_attempts,
        parse_limits=parse_limits(settings),
        max_chunks=settings.ingest_max_chunks,
        meter=meter,
    )
    queue = _queue(settings, ingestor)
    reranker = reranker_from(settings)
    knowledge_bases = KnowledgeBaseService(
        db,
        embedders,
        store,
        queue.enqueue,
        max_per_tenant=settings.max_collections_per_tenant,
        meter=meter,
        can_rerank=reranker is not None,
    )
    retriever = Retriever(
        db,
        embedders,
        meter=meter,
        bm25=_bm25(settings),
        reranker=reranker,
        rerank_candidates=settings.rerank_candidates,
    )
    shared_cache = RedisCacheStore(redis) if redis is not None else MemoryCacheStore()
    gateway = Gateway(
        auth,
        catalog,
        registry,
        LLMRouter(CircuitBreaker(max_keys=settings.circuit_breaker_max_upstreams)),
        ledger,
        metrics,
        shared_cache,
        meter=meter,
        retriever=retriever,
        source_tokens=settings.chunk_tokens,
    )
    oidc = OidcClient(
        egress,
        timeout_seconds=settings.sso_timeout_seconds,
        jwks_refresh_seconds=settings.sso_jwks_refresh_seconds,
    )
    users = UserService(db, cache)
    invitations = InvitationService(
        db,
        cache,
        ttl_seconds=settings.invitation_ttl_seconds,
        public_url=settings.public_url,
        show_token=settings.invitation_show_token,
        mailer=mailer(settings),
    )
    runtime = Runtime(
        settings=settings,
        db=db,
        cache=cache,
        auth=auth,
        tenants=TenantService(db, cache, store, invitations),
        users=users,
        invitations=invitations,
        sso=SsoService(db, cache, box, oidc, shared_cache, flow_seconds=settings.sso_flow_seconds),
        sso_settings=SsoSettings(db, cache, box, oidc),
        login_throttle=LoginThrottle(
            RedisBackoffStore(redis) if redis is not None else None,
            BackoffPolicy(
                free=settings.login_free_failures,
                base_ms=int(settings.login_backoff_base_seconds * 1000),
                max_ms=int(settings.login_backoff_max_seconds * 1000),
                memory_ms=int(settings.login_failure_memory_seconds * 1000),
            ),
        ),
        keys=ApiKeyService(
            db,
            cache,
            pepper=resolved.key_pepper,
            default_grace_seconds=settings.key_rotation_grace_seconds,
        ),
        last_used=last_used,
        catalog=catalog,
        registry=registry,
        ledger=ledger,
        gateway=gateway,
        chat=ChatService(db, gateway),
        usage=usage,
        limits=limits,
        metrics=metrics,
        embeddings=EmbeddingService(local_embedder, meter),
        reranking=RerankService(reranker, meter),
        store=store,
        embedders=embedders,
        queue=queue,
        ingestor=ingestor,
        knowledge_bases=knowledge_bases,
        documents=DocumentService(
            db,
            auth,
            store,
            knowledge_bases,
            queue.enqueue,
            max_upload_bytes=settings.max_upload_bytes,
            max_documents=settings.max_documents_per_tenant,
            lease_seconds=settings.ingest_lease_seconds,
            meter=meter,
        ),
        retriever=retriever,
    )
    try:
        await check_roles(db, settings.db_app_role, settings.env)
        # Credentials still in the unbound format are bound to their tenant before any read.
        await catalog.reencrypt_legacy()
        await catalog.ensure_defaults()
        # Loading the tokenizer's vocabulary takes a while: not on the first request.
        await asyncio.to_thread(tokenizer.count, "warm up")
        if settings.models_file is not None and background:
            names = await catalog.load_file(settings.models_file)
            log.info("catalog.loaded", file=str(settings.models_file), models=names)
        # Records spooled by a process that died are drained at once.
        await ledger.drain()
        await queue.start()
        if background:
            runtime.tasks.append(
                asyncio.create_task(
                    listen(settings.database_url, cache.invalidate, runtime.listener_connected),
                    name="auth-listener",
                )
            )
            runtime.tasks.append(
                asyncio.create_task(
                    last_used.run(settings.last_used_flush_seconds), name="last-used-flush"
                )
            )
            runtime.tasks.append(
                asyncio.create_task(ledger.run(settings.usage_flush_seconds), name="usage-drain")
            )
            if queue.name == "inprocess":
                runtime.tasks.append(reaper_task(runtime))
        yield runtime
    finally:
        for task in runtime.tasks:
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
        try:
            await last_used.flush()
        except Exception:
            log.exception("last_used.final_flush_failed")
        try:
            await ledger.close()
        except Exception:
            log.exception("usage.final_drain_failed")  # the spool file stays for the next start
        await queue.aclose()
        await registry.aclose()
        await embedders.aclose()
        if reranker is not None:
            await reranker.aclose()
        await store.aclose()
        await limits.aclose()
        await db.dispose()
