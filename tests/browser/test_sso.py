"""Single sign-on in the browser, through a real OpenID Connect provider on loopback.

The owner registers the tenant's provider on the Settings page; a platform admin verifies the
tenant's domain; a person of that domain then signs in with SSO (by the tenant's slug, then by
work email) and lands in the tenant without an invitation; a member's password is refused once
the tenant requires SSO; the owner links their own account. Failures land on /ui/sso as text.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Page, expect

from mtai.config import Settings
from tests.browser.conftest import log_in, log_out, open_page, screenshot
from tests.browser.test_web_ui import token_of
from tests.conftest import AdminFixture, TenantFixture, serving
from tests.support.oidc_provider import OidcProvider, running_provider


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[str]:
    """This module's own server: a deployment whose egress guard lets tenants' identity
    providers live on loopback (the shared server keeps refusing loopback)."""
    with serving(settings.model_copy(update={"egress_allow_hosts": "127.0.0.1"})) as url:
        yield url


@pytest.fixture
def oidc() -> Iterator[OidcProvider]:
    with running_provider() as provider:
        yield provider


async def sign_in_with_sso(page: Page, organisation_or_email: str, subject: str) -> None:
    """From the login page, through the provider's own page, back into mtai."""
    await page.get_by_role("button", name="Sign in with SSO").click()
    await page.get_by_label("Organisation or work email").fill(organisation_or_email)
    await page.get_by_role("button", name="Continue with SSO").click()
    await sign_in_at_provider(page, subject)


async def sign_in_at_provider(page: Page, subject: str) -> None:
    await page.locator('input[name="sub"]').fill(subject)
    await page.get_by_role("button", name="Authorize").click()
    await page.get_by_test_id("who").wait_for()


async def test_sso_journey(
    page: Page,
    live_server: str,
    platform_admin: AdminFixture,
    tenant_a: TenantFixture,
    oidc: OidcProvider,
) -> None:
    # Unique per run: a verified domain belongs to one tenant of the deployment.
    domain = f"corp-{secrets.token_hex(3)}.example"
    owner_domain = tenant_a.owner_email.split("@")[1]
    tenant_name = tenant_a.slug.upper()

    # The owner registers the provider: the redirect URI to give it, then its issuer and client.
    await log_in(page, tenant_a.owner_email, tenant_a.owner_password)
    await open_page(page, "Settings")
    await expect(page.get_by_label("Redirect URI")).to_have_value(
        f"{live_server}/api/v1/auth/sso/callback"
    )
    form = page.get_by_role("form", name="Identity provider")
    await form.get_by_label("Issuer URL").fill(oidc.issuer)
    await form.get_by_label("Client ID").fill("mtai-browser")
    # The provider refuses public clients (no secret) at its token endpoint.
    await form.get_by_label("Client secret").fill("browser-client-secret")
    await form.get_by_label("Allowed email domains").fill(f"{domain}, {owner_domain}")
    await form.get_by_label("Groups claim of the ID token").fill("groups")
    for group, role in (("mtai-admins", "admin"), ("mistake", "member"), ("mtai-owners", "owner")):
        await form.get_by_role("button", name="Add group").click()
        rows = await form.get_by_placeholder("Group name").count()
        await form.get_by_label(f"Group {rows}", exact=True).fill(group)
        await form.get_by_label(f"Role of group {rows}").select_option(role)
    await form.get_by_role("button", name="Remove group 2").click()
    await form.get_by_label("Just-in-time provisioning").check()
    await form.get_by_label("Require SSO for members").check()
    await screenshot(page, "sso-01-settings-form")
    await form.get_by_role("button", name="Save single sign-on").click()
    await expect(page.get_by_text("Saved.", exact=True)).to_be_visible()
    # The client secret is never shown back; left empty, the stored one is kept.
    await expect(form.get_by_label("Client secret (stored; leave empty to keep it)")).to_have_value(
        ""
    )
    await expect(form.get_by_label("Group 2", exact=True)).to_have_value("mtai-owners")
    async with httpx.AsyncClient(base_url=live_server) as http:
        stored = (await http.get("/api/v1/sso", headers=tenant_a.owner)).json()
    assert stored["issuer"] == oidc.issuer
    assert (stored["client_id"], stored["has_client_secret"]) == ("mtai-browser", True)
    assert sorted(stored["allowed_domains"]) == sorted([domain, owner_domain])
    assert stored["group_roles"] == {"mtai-admins": "admin", "mtai-owners": "owner"}
    assert stored["groups_claim"] == "groups"
    assert (stored["jit_provisioning"], stored["enforce_sso"], stored["enabled"]) == (
        True,
        True,
        True,
    )

    # SCIM: a token shown once, then revoked.
    await page.get_by_role("button", name="Generate SCIM token").click()
    scim_token = page.get_by_label("SCIM token.")
    assert (await scim_token.input_value()).startswith("scim_")
    await expect(page.get_by_label("SCIM base URL")).to_have_value(f"{live_server}/scim/v2")
    await screenshot(page, "sso-02-scim-token")
    await page.get_by_role("button", name="Done").click()
    await page.get_by_role("button", name="Revoke SCIM token").click()
    await expect(page.get_by_role("button", name="Revoke SCIM token")).to_have_count(0)

    # A platform administrator verifies the domain, so its people may join just in time.
    async with httpx.AsyncClient(base_url=live_server) as http:
        verified = await http.put(
            f"/api/v1/sso/domains/{domain}",
            json={"verified": True},
            headers={**platform_admin.headers, "X-Tenant-ID": str(tenant_a.id)},
        )
    assert verified.status_code == 200, verified.text
    await page.reload()
    await expect(page.get_by_test_id("verified-domains")).to_contain_text(domain)
    await screenshot(page, "sso-03-settings-saved")
    await log_out(page)

    # Alice has no mtai account: she signs in with SSO and lands in the tenant, with her
    # group's role.
    oidc.set_user("alice", email=f"alice@{domain}", groups=["mtai-admins"])
    await page.get_by_role("button", name="Sign in with SSO").click()
    await page.get_by_label("Organisation or work email").fill(tenant_a.slug)
    await screenshot(page, "sso-04-login-sso")
    await page.get_by_role("button", name="Continue with SSO").click()
    await expect(page.locator('input[name="sub"]')).to_be_visible()
    assert page.url.startswith(oidc.issuer)
    await sign_in_at_provider(page, "alice")
    await expect(page.get_by_test_id("who")).to_have_text(f"alice@{domain} · {tenant_name} (admin)")
    assert page.url == f"{live_server}/ui/chat"
    await screenshot(page, "sso-05-signed-in")
    async with httpx.AsyncClient(base_url=live_server) as http:
        me = await http.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {await token_of(page)}"}
        )
    assert me.status_code == 200, me.text
    assert (me.json()["email"], me.json()["tenant_id"], me.json()["role"]) == (
        f"alice@{domain}",
        str(tenant_a.id),
        "admin",
    )
    await log_out(page)

    # The tenant requires SSO: the member's password is refused, and SSO offered instead.
    await page.get_by_label("Email").fill(tenant_a.member_email)
    await page.get_by_label("Password").fill(tenant_a.member_password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Sign in with SSO")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("sso_required")
    await expect(page.get_by_label("Organisation or work email")).to_have_value(tenant_a.slug)
    await screenshot(page, "sso-06-sso-required")
    # Her password proves her account, which she links to her provider account once.
    oidc.set_user("mary", email=f"mary@{domain}")
    await page.get_by_role("button", name="Link SSO with my password").click()
    await sign_in_at_provider(page, "mary")
    await expect(page.get_by_test_id("who")).to_have_text(
        f"{tenant_a.member_email} · {tenant_name} (member)"
    )
    await log_out(page)
    await page.get_by_role("button", name="Sign in with SSO").click()

    # A work email finds the tenant by its verified domain.
    await page.get_by_label("Organisation or work email").fill(f"alice@{domain}")
    await page.get_by_role("button", name="Continue with SSO").click()
    await sign_in_at_provider(page, "alice")
    await expect(page.get_by_test_id("who")).to_contain_text(f"alice@{domain} · {tenant_name}")
    await log_out(page)

    # The owner (whose password still works: break-glass) links their account to the provider.
    oidc.set_user("boss", email=tenant_a.owner_email, groups=["mtai-owners"])
    await log_in(page, tenant_a.owner_email, tenant_a.owner_password)
    await page.get_by_role("button", name="Link SSO").click()
    dialog = page.get_by_role("dialog", name="Link single sign-on")
    await screenshot(page, "sso-07-link-dialog")
    await dialog.get_by_role("button", name="Link single sign-on").click()
    await sign_in_at_provider(page, "boss")
    await expect(page.get_by_test_id("who")).to_have_text(
        f"{tenant_a.owner_email} · {tenant_name} (owner)"
    )
    await open_page(page, "Audit log")
    await expect(page.get_by_role("cell", name="sso.link", exact=True)).to_have_count(2)
    await screenshot(page, "sso-08-linked")
    await log_out(page)

    # From now on the owner signs in through the provider too; then removes it.
    await sign_in_with_sso(page, tenant_a.slug, "boss")
    await expect(page.get_by_test_id("who")).to_contain_text(tenant_a.owner_email)
    await open_page(page, "Settings")
    await page.get_by_role("button", name="Remove provider").click()
    await expect(page.get_by_text("Single sign-on is removed.")).to_be_visible()
    await expect(page.get_by_label("Issuer URL")).to_have_value("")
    await expect(page.get_by_role("button", name="Generate SCIM token")).to_have_count(0)


async def test_sso_failures_are_shown_as_text(page: Page, tenant_b: TenantFixture) -> None:
    # A tenant without a provider: the same answer as a slug that does not exist.
    for organisation in (tenant_b.slug, f"no-such-org-{secrets.token_hex(3)}"):
        await page.goto("/ui/")
        await page.get_by_role("button", name="Sign in with SSO").click()
        await page.get_by_label("Organisation or work email").fill(organisation)
        await page.get_by_role("button", name="Continue with SSO").click()
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text("Single sign-on is not set up for this organisation")
        await expect(alert).to_contain_text("sso_not_configured")
        assert page.url.endswith("/ui/sso")  # the outcome comes in a cookie, not the URL
    await screenshot(page, "sso-09-not-set-up")
    await page.get_by_role("link", name="Back to the login page").click()
    await expect(page.get_by_role("heading", name="Log in to mtai")).to_be_visible()

    # Nothing waiting to be exchanged (no hand-off cookie).
    await page.goto("/ui/sso")
    await expect(page.get_by_role("alert")).to_contain_text("sso_handoff_invalid")

    # A message in the URL is anyone's text: the page does not show it.
    await page.goto("/ui/")  # from another path: a fragment alone would not reload the page
    await page.goto(f"/ui/sso#error=sso_denied&message={quote('Call +1 555 0100 now')}")
    await expect(page.get_by_role("alert")).to_contain_text("sso_handoff_invalid")
    await expect(page.get_by_text("Call +1 555 0100 now")).to_have_count(0)
