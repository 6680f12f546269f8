"""The one Settings object: every knob, read from the environment and `.env`."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mtai.db.vectors import HNSW_EF_SEARCH

# Values that people copy out of examples; refusing them in production is the point.
WEAK_SECRETS = frozenset(
    {"", "secret", "changeme", "change-me", "change_me", "password", "dev", "test", "sk-1234"}
)
MIN_SECRET_LENGTH = 32


class KeywordRanking(StrEnum):
    # ts_rank is the default: on the tuning set it ranks better than BM25, alone and in hybrid
    # search (docs/rag.md has every set).
    TS_RANK = "ts_rank"
    BM25 = "bm25"


class RerankProvider(StrEnum):
    NONE = "none"
    COHERE = "cohere"  # any Cohere-compatible /rerank endpoint (Cohere, Jina, vLLM, Infinity)
    BEDROCK = "bedrock"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MTAI_", env_file=".env", extra="ignore", populate_by_name=True
    )

    env: Environment = Field(
        default=Environment.PRODUCTION,
        description="development: missing secrets are generated; production: refuse to start.",
    )
    host: str = Field(default="127.0.0.1", description="Address `mtai serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `mtai serve` binds.")
    workers: int = Field(default=1, ge=1, le=64, description="Uvicorn worker processes.")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Addresses or CIDR networks of the proxies whose X-Forwarded-For is trusted "
        "for the client address, comma-separated: behind a load balancer, its subnets (on AWS the "
        "VPC CIDR). Never a wildcard: every client could then choose its own address.",
    )
    data_dir: Path = Field(
        default=Path(".mtai"), description="Embedded PostgreSQL data and generated dev secrets."
    )
    log_level: str = Field(default="INFO", description="Python log level name.")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "MTAI_DATABASE_URL"),
        description="PostgreSQL 15+ with pgvector. Unset: the embedded server under data_dir.",
    )
    database_migration_url: str | None = Field(
        default=None,
        description="Owner connection for migrations when DATABASE_URL is a restricted login.",
    )
    platform_database_url: str | None = Field(
        default=None,
        description="Login that is a member of the platform role only, for cross-tenant work; "
        "with it, DATABASE_URL's login must not reach that role. Unset: DATABASE_URL's login "
        "switches to it (must be a member of both roles). See docs/deployment.md.",
    )
    db_app_role: str = Field(
        default="mtai_app",
        # Its platform role, `<db_app_role>_platform`, must fit PostgreSQL's 63 characters too.
        pattern=r"^[a-z_][a-z0-9_]{0,53}$",
        description="NOSUPERUSER NOBYPASSRLS role every tenant connection switches to (SET ROLE); "
        "platform work runs as `<db_app_role>_platform`.",
    )
    db_pool_size: int = Field(default=10, ge=1, le=200, description="Connections per process.")
    db_platform_pool_size: int = Field(
        default=5,
        ge=1,
        le=200,
        description="Connections per process of the platform pool (with platform_database_url).",
    )
    hnsw_ef_search: int = Field(
        default=HNSW_EF_SEARCH,
        ge=1,
        le=1000,
        description="Candidates vector search's HNSW walk keeps: higher finds more of the exact "
        "nearest chunks, and takes longer.",
    )
    embedded_pg_port: int = Field(
        default=54329, ge=1024, le=65535, description="Port of the embedded PostgreSQL (127.0.0.1)."
    )

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "MTAI_REDIS_URL"),
        description="redis:// or rediss:// (TLS). Unset: in-process limits (one process only).",
    )
    redis_ca_file: str | None = Field(
        default=None, description="CA bundle for rediss:// with a private certificate authority."
    )
    limits_outage_policy: str = Field(
        default="refuse",
        pattern="^(refuse|local)$",
        description="When Redis is down: refuse (503) or local (per-process limits).",
    )
    limits_lease_seconds: float = Field(
        default=900.0,
        ge=1,
        le=86400,
        description="Life of an unsettled concurrency lease or budget reservation.",
    )
    login_attempts_per_ip: int = Field(
        default=100, ge=1, le=1_000_000, description="Login attempts per client IP per 5 minutes."
    )
    login_free_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Wrong passwords per (email, client address) before the back-off starts.",
    )
    login_backoff_base_seconds: float = Field(
        default=1.0,
        ge=0.1,
        le=3600,
        description="First back-off after the free failures; each further failure doubles it.",
    )
    login_backoff_max_seconds: float = Field(
        default=900.0, ge=1, le=86400, description="Longest login back-off for one client."
    )
    login_failure_memory_seconds: float = Field(
        default=3600.0,
        ge=60,
        le=7 * 86400,
        description="How long failures of an (email, client address) are remembered.",
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Public base URL (e.g. https://ai.example.com) for links in invitations; "
        "unset: links are relative (/ui/accept#token=...).",
    )
    invitation_ttl_seconds: int = Field(
        default=7 * 86400, ge=300, le=90 * 86400, description="Life of an invitation token."
    )
    invitation_show_token: bool = Field(
        default=True,
        description="Return an invitation's token to the inviting admin. With SMTP configured, "
        "false delivers it only by mail (the mailbox proves the person).",
    )
    sso_flow_seconds: int = Field(
        default=600,
        ge=60,
        le=3600,
        description="How long a single sign-on may take at the identity provider.",
    )
    sso_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="Timeout of each call to an identity provider."
    )
    sso_jwks_refresh_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Least time between two fetches of a provider's keys when an ID token names "
        "a key not cached (the provider rotated its keys).",
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server that mails invitations; unset: no mail is sent."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    smtp_user: str | None = Field(default=None, description="SMTP login, if the server needs one.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(
        default="mtai@localhost", max_length=320, description="Sender of invitation mails."
    )
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the SMTP connection with STARTTLS (certificate checked)."
    )
    smtp_timeout_seconds: float = Field(
        default=10.0, ge=1, le=120, description="Timeout of one SMTP delivery."
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="If set, /metrics requires 'Authorization: Bearer <token>'."
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without a token in production (only where the network keeps "
        "it private); without a token and without this, production refuses to start.",
    )
    health_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long /health answers from its last dependency probe: at most one "
        "probe (one storage write) per interval per process.",
    )
    metrics_max_tenants: int = Field(
        default=200, ge=1, le=100_000, description="Distinct tenant labels per process in /metrics."
    )
    jwt_secret: SecretStr | None = Field(default=None, description="HMAC key for access tokens.")
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 86400, description="Token lifetime.")
    key_pepper: SecretStr | None = Field(
        default=None, description="Secret mixed into API key hashes (HMAC-SHA256)."
    )
    encryption_key: SecretStr | None = Field(
        default=None, description="Key that encrypts provider credentials at rest."
    )
    archive_signing_key: SecretStr | None = Field(
        default=None,
        description="Key that signs tenant archives (HMAC-SHA256); unset: derived from "
        "MTAI_KEY_PEPPER. Set the same value on two deployments to move tenants between them.",
    )
    archive_max_bytes: int = Field(
        default=2 * 1024**3,
        ge=1024 * 1024,
        description="Largest tenant archive `mtai tenant import` reads, counted unpacked (it "
        "holds the archive in memory); a bigger one is refused before it is read.",
    )
    default_model: str = Field(
        default="extractive", description="Model used when neither request nor tenant names one."
    )
    models_file: Path | None = Field(
        default=None, description="TOML file of platform models, loaded into the catalog at start."
    )
    local_model_path: Path | None = Field(
        default=None,
        description="GGUF file for the `local` provider (default: packaged Gemma 3 270M).",
    )
    local_model_threads: int = Field(
        default=2, ge=1, le=64, description="CPU threads for local model."
    )
    egress_allow_hosts: str = Field(
        default="",
        description="Comma-separated host names, *.suffix wildcards, addresses or CIDR networks "
        "that tenant-chosen provider URLs may reach although private (also over http, any port).",
    )
    egress_allowed_ports: str = Field(
        default="443",
        pattern=r"^\s*\d{1,5}\s*(,\s*\d{1,5}\s*)*$",
        description="Comma-separated ports a tenant-chosen provider URL may use.",
    )
    provider_cache_size: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Provider clients (one per model endpoint and credential) kept per process.",
    )
    circuit_breaker_max_upstreams: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Upstreams (endpoint, credential, model) whose failures a process tracks.",
    )
    usage_flush_seconds: float = Field(
        default=1.0, ge=0.05, le=60, description="How often the usage spool is written to Postgres."
    )
    max_message_chars: int = Field(
        default=100_000, ge=100, description="Longest single chat message accepted (422 above)."
    )
    auth_cache_ttl_seconds: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="How long a process trusts a cached credential/tenant status without Postgres.",
    )
    auth_cache_max_negative_entries: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Remembered 'does not exist' answers (e.g. unknown API key prefixes), kept "
        "apart from real credentials so they cannot push them out of the auth cache.",
    )
    key_rotation_grace_seconds: int = Field(
        default=86400, ge=0, le=30 * 86400, description="Default life of a rotated-out key."
    )
    last_used_flush_seconds: float = Field(
        default=15.0, ge=0.1, le=600, description="How often API key last-used times are written."
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest JSON request body accepted (413 above)."
    )
    max_image_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        description="Largest image a chat message may carry as a data URL, decoded (413 above); "
        "a body holding one must also fit max_chat_request_bytes.",
    )
    max_chat_request_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest body of the gateway's chat APIs (/v1/chat/completions, "
        "/v1/responses, /v1/messages), which carry images inline (413 above).",
    )
    max_images_per_request: int = Field(
        default=20, ge=0, le=500, description="Images a chat request may carry, history included."
    )
    max_conversation_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="Largest conversation a Responses API `previous_response_id` continues: its "
        "stored turns' input and output, counted as JSON text (400 above). Unset: 4 x "
        "max_chat_request_bytes.",
    )
    responses_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days a stored Responses API response is kept (and can be retrieved or "
        "continued) before it is purged.",
    )

    storage_backend: str = Field(
        default="local",
        pattern="^(local|s3)$",
        description="Where uploaded originals are kept: local (storage_dir) or s3.",
    )
    storage_dir: Path | None = Field(
        default=None, description="Directory of the local object store (default: data_dir/objects)."
    )
    s3_bucket: str | None = Field(default=None, description="Bucket for storage_backend=s3.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, SeaweedFS); unset for AWS S3."
    )
    s3_region: str = Field(default="us-east-1", description="Region of the S3 bucket.")
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="S3 access key; unset: the AWS credential chain (task role)."
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret key; unset: the AWS credential chain (task role)."
    )
    queue_backend: str = Field(
        default="inprocess",
        pattern="^(inprocess|redis)$",
        description="Ingestion jobs: inprocess (the API runs them) or redis (run `mtai worker`).",
    )
    queue_name: str = Field(
        default="mtai:ingest", description="Redis stream that carries ingestion jobs."
    )
    worker_concurrency: int = Field(
        default=2, ge=1, le=64, description="Documents one worker process ingests at once."
    )
    ingest_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Tries per document before it is marked failed."
    )
    ingest_lease_seconds: float = Field(
        default=120.0,
        ge=5,
        le=3600,
        description="A document not heard from for this long is taken over by another worker.",
    )
    parse_timeout_seconds: float = Field(
        default=120.0,
        ge=1,
        le=3600,
        description="Wall-clock time one document's parse may take; its process is then killed.",
    )
    parse_cpu_seconds: int = Field(
        default=60, ge=1, le=3600, description="CPU time one document's parse process may use."
    )
    parse_memory_bytes: int = Field(
        default=1024 * 1024 * 1024,
        ge=256 * 1024 * 1024,
        description="Address space of one document's parse process (RLIMIT_AS).",
    )
    parse_max_pages: int = Field(default=2000, ge=1, description="Pages of a PDF, at most.")
    parse_max_chars: int = Field(
        default=10_000_000, ge=1000, description="Characters of text one document may yield."
    )
    parse_max_decompressed_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes a .docx (a ZIP archive) may unpack to, by its directory.",
    )
    parse_max_compression_ratio: float = Field(
        default=100.0,
        ge=2,
        description="How many times its own size a .docx may unpack to (above 1 MiB unpacked).",
    )
    ingest_max_chunks: int = Field(
        default=20_000, ge=1, description="Chunks one document may make (each is embedded)."
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="Embedding model of new knowledge bases (see docs/rag.md for the others).",
    )
    embedding_openai_base_url: str | None = Field(
        default=None, description="OpenAI-compatible embeddings endpoint, e.g. .../v1."
    )
    embedding_openai_api_key: SecretStr | None = Field(
        default=None, description="API key of that endpoint."
    )
    embedding_openai_model: str = Field(
        default="text-embedding-3-small", description="Model name on that endpoint."
    )
    embedding_openai_dimension: int = Field(
        default=1536, ge=1, le=16000, description="Vector size that model returns."
    )
    embedding_openai_query_prefix: str = Field(
        default="",
        max_length=100,
        description="Put before each search query that model embeds (E5: 'query: ').",
    )
    embedding_openai_passage_prefix: str = Field(
        default="",
        max_length=100,
        description="Put before each passage that model embeds (E5: 'passage: ').",
    )
    embedding_bedrock_model: str | None = Field(
        default=None, description="Bedrock embedding model id, e.g. amazon.titan-embed-text-v2:0."
    )
    embedding_bedrock_dimension: int = Field(
        default=1024, ge=1, le=16000, description="Vector size asked of the Bedrock model."
    )
    embedding_bedrock_region: str = Field(
        default="us-east-1", description="Region of the Bedrock embedding model."
    )
    embedding_bedrock_endpoint_url: str | None = Field(
        default=None, description="Bedrock Runtime endpoint override (tests, VPC endpoints)."
    )
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, description="Largest document accepted (413 above)."
    )
    max_documents_per_tenant: int = Field(
        default=10_000, ge=1, description="Documents a tenant may hold (default per tenant)."
    )
    max_collections_per_tenant: int = Field(
        default=100, ge=1, description="Knowledge bases a tenant may hold."
    )
    chunk_tokens: int = Field(
        default=200,
        ge=32,
        le=8192,
        description="Target chunk size in the embedding model's tokens.",
    )
    chunk_overlap_tokens: int = Field(
        default=40, ge=0, le=1024, description="Tokens repeated between neighbouring chunks."
    )
    rag_keyword_ranking: KeywordRanking = Field(
        default=KeywordRanking.TS_RANK, description="How keyword search ranks: ts_rank or bm25."
    )
    rag_bm25_k1: float = Field(
        default=1.2, ge=0, le=10, description="BM25's term-frequency saturation (k1), with bm25."
    )
    rag_bm25_b: float = Field(
        default=0.75, ge=0, le=1, description="BM25's length normalisation (b), with bm25."
    )
    rerank_provider: RerankProvider = Field(
        default=RerankProvider.NONE,
        description="Reranker for knowledge bases that turn reranking on: none, cohere, bedrock.",
    )
    rerank_model: str = Field(
        default="rerank-v3.5",
        description="Reranker model: its name at the endpoint, or its Bedrock model id.",
    )
    rerank_base_url: str | None = Field(
        default=None, description="Cohere-compatible endpoint, the URL before /rerank."
    )
    rerank_api_key: SecretStr | None = Field(default=None, description="API key of that endpoint.")
    rerank_bedrock_region: str = Field(
        default="us-east-1", description="Region of the Bedrock reranker model."
    )
    rerank_bedrock_endpoint_url: str | None = Field(
        default=None, description="Bedrock Agent Runtime endpoint override (tests, VPC endpoints)."
    )
    rerank_candidates: int = Field(
        default=20, ge=1, le=100, description="Fused passages a reranked search reorders."
    )
    rag_top_k: int = Field(
        default=5, ge=1, le=50, description="Passages put in the prompt when chat uses retrieval."
    )

    bootstrap_admin_email: str = Field(
        default="admin@mtai.local", description="Email of the first platform admin."
    )
    bootstrap_admin_password: SecretStr | None = Field(
        default=None,
        description="Password of the first platform admin; when set it is used and not printed.",
    )
    bootstrap_demo_tenant: str = Field(
        default="demo", description="Slug of the demo tenant made on first start; empty to skip."
    )

    @property
    def egress_allow_list(self) -> list[str]:
        return [entry.strip() for entry in self.egress_allow_hosts.split(",") if entry.strip()]

    @property
    def egress_port_list(self) -> list[int]:
        return [int(port) for port in self.egress_allowed_ports.split(",")]

    @property
    def migration_url(self) -> str:
        url = self.database_migration_url or self.database_url
        if not url:
            raise ValueError("database_url is not resolved yet")
        return url

    @property
    def conversation_byte_limit(self) -> int:
        """max_conversation_bytes, or room for four of the largest requests when unset."""
        return self.max_conversation_bytes or 4 * self.max_chat_request_bytes

    @property
    def is_development(self) -> bool:
        return self.env is Environment.DEVELOPMENT


def secret_problem(name: str, value: SecretStr | None) -> str | None:
    """Why a secret is unfit for production, or None when it is fine."""
    raw = value.get_secret_value() if value is not None else ""
    if raw.strip().lower() in WEAK_SECRETS:
        return f"{name} is empty or a well-known default"
    if len(raw) < MIN_SECRET_LENGTH:
        return f"{name} is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def metrics_problem(settings: Settings) -> str | None:
    """Why /metrics would be open to anyone in production, or None when it is not."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if settings.is_development or token.strip() or settings.metrics_public:
        return None
    return (
        "/metrics would answer anyone: set MTAI_METRICS_TOKEN to a random value (AWS: the "
        "<project>/metrics-token secret) and give it to your Prometheus scraper, or set "
        "MTAI_METRICS_PUBLIC=true if only a private network can reach /metrics"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
