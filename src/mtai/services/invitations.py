"""Invitations: the only way a membership is made, with the consent of the invited person.

A tenant admin invites an email with a role; the answer is the same whether or not an identity
with that email exists anywhere. The invitation carries a one-time, expiring token (only its
SHA-256 is stored), shown once to the inviting admin and mailed when SMTP is configured. The
person accepts with the token: a new identity chooses its own password; an existing identity
must be logged in as itself. Nothing is attached to an identity without both.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.engine import Database
from mtai.db.models import Invitation, Tenant
from mtai.db.repositories import invitations as invitations_repo
from mtai.db.repositories import memberships as memberships_repo
from mtai.db.repositories import sso as sso_repo
from mtai.db.repositories import tenants as tenants_repo
from mtai.db.repositories import users as users_repo
from mtai.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from mtai.logging import get_logger
from mtai.providers.mail import SmtpMailer
from mtai.services import audit, passwords
from mtai.services.api_keys import creator_of
from mtai.services.auth import member_cache_key, user_cache_key
from mtai.services.auth_cache import AuthCache
from mtai.services.invalidation import invalidate
from mtai.services.principal import Principal, Role
from mtai.services.users import check_may_manage, normalise_email

log = get_logger(__name__)
INVITATION_MARK = "inv_"  # tells invitation tokens apart from API keys (mtai_)
INVALID = (
    "This invitation cannot be used: it is unknown, expired, revoked or already accepted. "
    "Ask the administrator who invited you for a new invitation."
)


@dataclass(frozen=True)
class Issued:
    invitation: Invitation
    token: str
    accept_url: str


@dataclass(frozen=True)
class Accepted:
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None


def new_token() -> str:
    return INVITATION_MARK + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    # The token is 256 random bits: a plain SHA-256 cannot be reversed or guessed.
    return hashlib.sha256(token.encode()).digest()


def accept_url(public_url: str | None, token: str) -> str:
    """In the fragment: browsers never send it, so it stays out of access logs and Referers."""
    return f"{(public_url or '').rstrip('/')}/ui/accept#token={token}"


def is_pending(invitation: Invitation, now: datetime) -> bool:
    return (
        invitation.accepted_at is None
        and invitation.revoked_at is None
        and invitation.expires_at > now
    )


async def issue(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    email: str,
    role: Role | None,
    invited_by: uuid.UUID | None,
    ttl_seconds: int,
    public_url: str | None,
    platform_admin: bool = False,
    token_shown: bool = True,
) -> Issued:
    """The pending invitation of `email` (created, or its token replaced), in the caller's session.

    No permission checks: callers are the services below and operator paths (CLI, tenant
    import). `tenant_id=None` is a platform activation (needs `platform_admin`).
    """
    email = normalise_email(email)
    if (tenant_id is None) != (role is None) or (tenant_id is None and not platform_admin):
        raise InvalidInput("An invitation names a tenant and a role, or is a platform activation.")
    token = new_token()
    now = datetime.now(UTC)
    fields = {
        "token_hash": token_digest(token),
        "role": role.value if role is not None else None,
        "platform_admin": platform_admin,
        "token_shown": token_shown,
        "invited_by": invited_by,
        "created_at": now,
        "expires_at": now + timedelta(seconds=ttl_seconds),
    }
    existing = await invitations_repo.open_for(session, tenant_id, email)
    if existing is not None:
        invitation = await invitations_repo.update(session, existing, **fields)
    else:
        invitation = await invitations_repo.create(
            session, tenant_id=tenant_id, email=email, **fields
        )
    return Issued(invitation, token, accept_url(public_url, token))


class InvitationService:
    def __init__(
        self,
        db: Database,
        cache: AuthCache[object],
        *,
        ttl_seconds: int,
        public_url: str | None,
        show_token: bool,
        mailer: SmtpMailer | None,
    ) -> None:
        self.db = db
        self.cache = cache
        self.ttl_seconds = ttl_seconds
        self.public_url = public_url
        # Without a mailer the token must be shown: it would reach no one otherwise.
        self.show_token = show_token or mailer is None
        self.mailer = mailer
        self._mails: set[asyncio.Task[None]] = set()

    # -- issuing ----------------------------------------------------------------------------

    async def invite(self, actor: Principal, *, email: str, role: Role) -> Issued:
        """A tenant admin invites; owners alone invite owners."""
        tenant_id = actor.require_tenant_admin()
        check_may_manage(actor, None, role)
        email = normalise_email(email)
        async with self.db.tenant(tenant_id) as session:
            user = await users_repo.get_by_email(session, email)
            # Tells only about this tenant's own members, which the admin can list anyway.
            if user is not None and await memberships_repo.get(session, tenant_id, user.id):
                raise Conflict(
                    f"{email} is already a member of this tenant; change their role instead.",
                    code="already_a_member",
                )
            # Re-inviting replaces the pending invitation: only those who may revoke it may.
            pending = await invitations_repo.open_for(session, tenant_id, email)
            if pending is not None and is_pending(pending, datetime.now(UTC)):
                check_may_manage(actor, Role(pending.role) if pending.role else None, role)
            issued = await self._issue(
                session, actor, tenant_id, email, role, shown=self.show_token
            )
            tenant = await tenants_repo.get(session, tenant_id)
        self._mail(issued, tenant)
        return issued

    async def issue_operator(
        self, *, tenant_id: uuid.UUID, email: str, role: Role, actor: Principal | None = None
    ) -> Issued:
        """The operator's path (tenant creation, CLI): no membership checks, audited, mailed."""
        async with self.db.platform() as session:
            issued = await self._issue(
                session, actor, tenant_id, email, role, shown=self.show_token
            )
            tenant = await tenants_repo.get(session, tenant_id)
        self._mail(issued, tenant)
        return issued

    async def issue_in(
        self,
        session: AsyncSession,
        actor: Principal | None,
        *,
        tenant_id: uuid.UUID,
        email: str,
        role: Role,
    ) -> Issued:
        """issue_operator inside the caller's transaction, for a caller that prints the token
        (it mails with `mail`)."""
        return await self._issue(session, actor, tenant_id, email, role, shown=True)

    async def issue_platform_activation(self, email: str) -> Issued:
        """For the operator: a new identity that will be a platform administrator once accepted."""
        async with self.db.platform() as session:
            issued = await issue(
                session,
                tenant_id=None,
                email=email,
                role=None,
                invited_by=None,
                ttl_seconds=self.ttl_seconds,
                public_url=self.public_url,
                platform_admin=True,
                token_shown=self.show_token,
            )
            await audit.record(
                session,
                None,
                "invitation.create",
                tenant_id=None,
                target_type="invitation",
                target_id=issued.invitation.id,
                details={"email": issued.invitation.email, "platform_admin": True},
            )
        self._mail(issued, None)
        return issued

    async def _issue(
        self,
        session: AsyncSession,
        actor: Principal | None,
        tenant_id: uuid.UUID,
        email: str,
        role: Role,
        *,
        shown: bool,
    ) -> Issued:
        issued = await issue(
            session,
            tenant_id=tenant_id,
            email=email,
            role=role,
            invited_by=await creator_of(session, actor) if actor is not None else None,
            ttl_seconds=self.ttl_seconds,
            public_url=self.public_url,
            token_shown=shown,
        )
        await audit.record(
            session,
            actor,
            "invitation.create",
            tenant_id=tenant_id,
            target_type="invitation",
            target_id=issued.invitation.id,
            details={"email": issued.invitation.email, "role": role},
        )
        return issued

    def shown(self, issued: Issued) -> tuple[str | None, str | None]:
        """(token, accept_url) as the inviting admin may see them."""
        return (issued.token, issued.accept_url) if self.show_token else (None, None)

    def mail(self, issued: Issued, tenant: Tenant | None) -> None:
        self._mail(issued, tenant)

    def _mail(self, issued: Issued, tenant: Tenant | None) -> None:
        """Deliver in the background: the answer never waits for (or tells about) the mail."""
        if self.mailer is None:
            return
        what = f"{tenant.name} as {issued.invitation.role}" if tenant else "mtai as administrator"
        body = (
            f"You are invited to join {what}.\n\n"
            f"Accept the invitation here (it expires {issued.invitation.expires_at:%Y-%m-%d %H:%M} "
            f"UTC):\n{issued.accept_url}\n\n"
            "If you already have an account, log in with it and accept; otherwise choose your "
            "password there. If you did not expect this mail, ignore it.\n"
        )
        task = asyncio.create_task(self._deliver(issued.invitation.email, what, body))
        self._mails.add(task)
        task.add_done_callback(self._mails.discard)

    async def flush(self) -> None:
        """Wait for the mails under way (a CLI command must not exit before they are sent)."""
        if self._mails:
            await asyncio.gather(*self._mails, return_exceptions=True)

    async def _deliver(self, to: str, what: str, body: str) -> None:
        assert self.mailer is not None
        try:
            await self.mailer.send(to, f"Invitation to {what}", body)
        except Exception:
            log.exception("invitation.mail_failed")

    # -- tenant admins -------------------------------------------------------------------------

    async def list_pending(
        self, actor: Principal, *, limit: int, offset: int
    ) -> tuple[list[Invitation], int]:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            return await invitations_repo.list_pending(
                session, tenant_id, datetime.now(UTC), limit=limit, offset=offset
            )

    async def revoke(self, actor: Principal, invitation_id: uuid.UUID) -> None:
        tenant_id = actor.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            invitation = await invitations_repo.get(session, invitation_id)
            if (
                invitation is None
                or invitation.tenant_id != tenant_id
                or not is_pending(invitation, datetime.now(UTC))
            ):
                raise NotFound("No pending invitation with this id in this tenant.")
            check_may_manage(actor, None, Role(invitation.role) if invitation.role else None)
            await invitations_repo.update(session, invitation, revoked_at=datetime.now(UTC))
            await audit.record(
                session,
                actor,
                "invitation.revoke",
                tenant_id=tenant_id,
                target_type="invitation",
                target_id=invitation.id,
                details={"email": invitation.email},
            )

    # -- the invited person --------------------------------------------------------------------

    async def lookup(self, token: str) -> tuple[Invitation, Tenant | None]:
        """What a token invites to, for the accept page; 410 if it cannot be used."""
        async with self.db.platform() as session:
            invitation = await self._usable(session, token)
            tenant = (
                await tenants_repo.get(session, invitation.tenant_id)
                if invitation.tenant_id
                else None
            )
        return invitation, tenant

    async def pending_for(self, actor: Principal) -> list[tuple[Invitation, Tenant]]:
        """Invitations addressed to the logged-in caller's email (accepting needs the token).

        Only for an identity that proved it reads that address's mail: an identity activated
        with a token someone else saw (the inviting admin) may not be the address's owner, and
        must not learn which tenants invite that address.
        """
        if actor.user_id is None or actor.api_key_id is not None:
            raise Forbidden(
                "Only a logged-in person has invitations; log in (not with an API key).",
                code="login_required",
            )
        async with self.db.platform() as session:
            user = await users_repo.get(session, actor.user_id)
            if user is None or not user.email_verified:
                return []
            return await invitations_repo.pending_for_email(session, user.email, datetime.now(UTC))

    async def accept(
        self,
        token: str,
        *,
        password: str | None,
        display_name: str,
        caller: Principal | None,
    ) -> Accepted:
        """Accept once. A new identity chooses its password; an existing one must be the caller."""
        now = datetime.now(UTC)
        async with self.db.platform() as session:
            invitation = await self._usable(session, token)
            user = await users_repo.get_by_email(session, invitation.email)
            # An identity without a password (made by `mtai tenant import`) activates like a
            # new one: no one could log in as it, so the token holder chooses its password. One
            # that a tenant's identity provider vouches for is that provider's to sign in: a
            # token holder choosing its password would take over its memberships.
            if user is None or (
                user.password_hash is None and not await sso_repo.is_bound(session, user.id)
            ):
                if not password:
                    raise InvalidInput(
                        "Choose a password (12 or more characters) to activate your account.",
                        code="password_required",
                    )
                passwords.check_strength(password)
                password_hash = await passwords.hash_password(password)
                # Whoever saw the token could be activating; only a mailed-only token proves
                # that the person reads this address's mail.
                verified = not invitation.token_shown
                if user is None:
                    user = await users_repo.create(
                        session,
                        email=invitation.email,
                        password_hash=password_hash,
                        display_name=display_name,
                        is_platform_admin=invitation.platform_admin,
                        email_verified=verified,
                    )
                else:
                    await users_repo.update(
                        session,
                        user,
                        password_hash=password_hash,
                        display_name=display_name or user.display_name,
                        is_platform_admin=user.is_platform_admin or invitation.platform_admin,
                        email_verified=verified,
                    )
                    await invalidate(session, self.cache, user_cache_key(user.id))
            else:
                if caller is None or caller.user_id != user.id or caller.api_key_id is not None:
                    raise Conflict(
                        f"An account for {invitation.email} already exists: log in with it, "
                        "then accept this invitation (the link stays valid).",
                        code="login_to_accept",
                    )
                if invitation.platform_admin and not user.is_platform_admin:
                    await users_repo.update(session, user, is_platform_admin=True)
                    await invalidate(session, self.cache, user_cache_key(user.id))
                if not invitation.token_shown and not user.email_verified:
                    await users_repo.update(session, user, email_verified=True)
            tenant_id = invitation.tenant_id
            if tenant_id is not None and invitation.role is not None:
                if await memberships_repo.get(session, tenant_id, user.id) is None:
                    await memberships_repo.add(
                        session, tenant_id=tenant_id, user_id=user.id, role=invitation.role
                    )
                await invalidate(session, self.cache, member_cache_key(tenant_id, user.id))
            await invitations_repo.update(
                session, invitation, accepted_at=now, accepted_user_id=user.id
            )
            await audit.record(
                session,
                Principal(tenant_id=tenant_id, user_id=user.id),
                "invitation.accept",
                tenant_id=tenant_id,
                target_type="invitation",
                target_id=invitation.id,
                details={"email": invitation.email, "role": invitation.role},
            )
        return Accepted(user.id, tenant_id)

    @staticmethod
    async def _usable(session: AsyncSession, token: str) -> Invitation:
        digest = token_digest(token.strip())
        invitation = await invitations_repo.by_token_hash(session, digest)
        if (
            invitation is None
            or not hmac.compare_digest(invitation.token_hash, digest)
            or not is_pending(invitation, datetime.now(UTC))
        ):
            raise Gone(INVALID, code="invitation_invalid")
        return invitation
