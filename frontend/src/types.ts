// The API's response shapes, as docs/api.md and /openapi.json describe them.
export type Role = "owner" | "admin" | "member";

export interface TenantRef {
  id: string;
  slug: string;
  name: string;
  role: Role;
}

export interface UserInfo {
  id: string;
  email: string;
  display_name: string;
  is_platform_admin: boolean;
  tenant: TenantRef | null;
  tenants: TenantRef[];
}

export interface LoginResponse {
  access_token: string;
  expires_in: number;
  user: UserInfo;
}

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

export interface Tenant {
  id: string;
  slug: string;
  name: string;
  status: string;
  settings: Record<string, unknown>;
  created_at: string;
}

export interface TenantCreated extends Tenant {
  owner_invitation: InvitationIssued | null;
}

export interface Limits {
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
  monthly_usd: string | null;
  monthly_tokens: number | null;
}

export interface LimitsView {
  limits: Limits;
  consumption: Record<string, unknown>;
}

export interface CatalogModel {
  name: string;
  provider: string;
  upstream_model: string;
  base_url: string | null;
  region: string | null;
  has_api_key: boolean;
  context_window: number;
  max_output_tokens: number;
  input_price_per_1m: string;
  output_price_per_1m: string;
  timeout_seconds: number;
  max_retries: number;
  fallbacks: string[];
  enabled: boolean;
}

export interface ChatModel {
  name: string;
  provider: string;
  is_default: boolean;
}

export interface Member {
  id: string;
  email: string;
  display_name: string;
  role: Role;
  is_active: boolean;
  member_since: string;
}

/** The answer to an invitation: the same shape whether or not the person has an account. */
export interface InvitationIssued {
  id: string;
  email: string;
  role: Role;
  status: "pending";
  expires_at: string;
  /** Shown once; null when the server delivers it by mail only. */
  token: string | null;
  accept_url: string | null;
}

export interface Invitation {
  id: string;
  email: string;
  role: Role;
  status: "pending";
  created_at: string;
  expires_at: string;
  invited_by: string | null;
}

export interface InvitationLookup {
  email: string;
  role: Role | null;
  tenant: { id: string; slug: string; name: string } | null;
  platform_admin: boolean;
  expires_at: string;
}

export interface MyInvitation {
  id: string;
  email: string;
  role: Role;
  tenant: { id: string; slug: string; name: string };
  expires_at: string;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

export interface ApiKeyCreated extends ApiKey {
  key: string;
}

export interface Collection {
  id: string;
  name: string;
  description: string;
  embedding_model: string;
  embedding_dim: number;
  weights: { vector: number; keyword: number } | null;
  rerank: boolean;
  language: string;
}

export interface CollectionUpdated extends Collection {
  reembedding: number;
}

export interface EmbeddingModel {
  name: string;
  dimension: number;
  max_tokens: number;
  is_default: boolean;
}

export interface ListPlace {
  rank: number;
  score: number;
}

export interface Explanation {
  vector: ListPlace | null;
  keyword: ListPlace | null;
  fused_score: number;
  fusion: { method: string; vector: number; keyword: number } | null;
  rerank_score: number | null;
}

export interface SearchHit {
  chunk_id: string;
  document_id: string;
  collection_id: string;
  title: string;
  text: string;
  heading: string;
  page: number | null;
  ordinal: number;
  score: number;
  explain: Explanation | null;
}

export interface SearchResponse {
  mode: string;
  results: SearchHit[];
}

export interface DocumentInfo {
  id: string;
  collection_id: string;
  title: string;
  filename: string | null;
  kind: string | null;
  size_bytes: number;
  status: string;
  progress: number;
  error: string | null;
  chunk_count: number;
  created_at: string;
}

export interface Upload extends DocumentInfo {
  duplicate: boolean;
}

export interface Citation {
  number: number;
  document_id: string;
  title: string;
  chunk_id: string;
  snippet: string;
  score: number;
  heading: string;
  page: number | null;
}

export interface Passage {
  chunk_id: string;
  document_id: string;
  title: string;
  text: string;
  heading: string;
  page: number | null;
  ordinal: number;
}

export interface Conversation {
  id: string;
  title: string;
  model: string;
  updated_at: string;
}

export interface ChatMessage {
  role: string;
  content: string;
  citations: Citation[];
}

export interface ConversationDetail extends Conversation {
  messages: ChatMessage[];
}

export interface DailyUsage {
  tenant_id: string;
  day: string;
  model: string;
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: string;
}

export interface UsageTotals {
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: string;
}

export interface UsageReport {
  since: string | null;
  until: string | null;
  totals: UsageTotals;
  daily: DailyUsage[];
}

export interface AuditEvent {
  id: number;
  tenant_id: string | null;
  actor_type: string;
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  details: Record<string, unknown>;
  created_at: string;
}

export interface PromptLog {
  request_id: string;
  model: string;
  prompt: { role?: string; content?: string }[];
  response: string;
  created_at: string;
}

/** The tenant's identity provider (GET /api/v1/sso); the client secret is never sent back. */
export interface SsoProvider {
  issuer: string;
  client_id: string;
  has_client_secret: boolean;
  scopes: string[];
  allowed_domains: string[];
  verified_domains: string[];
  groups_claim: string | null;
  group_roles: Record<string, Role>;
  jit_provisioning: boolean;
  enforce_sso: boolean;
  enabled: boolean;
  has_scim_token: boolean;
  redirect_uri: string;
  scim_base_url: string;
  updated_at: string;
}

export interface ScimToken {
  token: string;
  scim_base_url: string;
}

export interface SsoLinkStarted {
  authorization_url: string;
}
