"""The web UI end to end, in a real browser against a running server.

One journey covers what the platform's users do first: the platform admin logs in, adds a
model, creates a tenant (inviting its owner) and gives it a budget; the owner accepts the
invitation choosing their own password, invites a member (who accepts alike), makes an API key,
uploads a document, waits for it, asks a question, opens the cited passage, sees the usage in
the chart, and revokes the key. Another test checks that a tenant admin's pages never show
another tenant's data.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx
from playwright.async_api import Page, expect

from mtai.runtime import Runtime
from tests.browser.conftest import log_in, log_out, open_page, screenshot
from tests.conftest import AdminFixture, TenantFixture, add_model, join
from tests.support.fake_upstreams import FakeUpstream

FACT = "The Zephyr gateway rotates its signing keys every 37 days."


def handbook(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(
        "# Zephyr operations handbook\n\n## Key rotation\n\n"
        f"{FACT} Operators confirm the rotation in the console.\n\n"
        "## Backups\n\nBackups run nightly and are kept for ninety days.\n"
    )
    return path


async def reload_until(page: Page, selector: str, seconds: float = 20) -> None:
    """Reload until `selector` is on the page: for data that lands asynchronously (usage)."""
    deadline = time.monotonic() + seconds
    while await page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, f"{selector} never appeared"
        await asyncio.sleep(0.5)
        await page.reload()


async def test_platform_admin_to_tenant_owner_journey(
    page: Page,
    live_server: str,
    platform_admin: AdminFixture,
    fake_upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    slug = f"ui-{secrets.token_hex(3)}"
    model = f"ui-model-{secrets.token_hex(3)}"
    owner_email = f"owner@{slug}.example"

    # The platform admin logs in and lands on the tenants page.
    await page.goto("/ui/")
    await screenshot(page, "01-login")
    await log_in(page, platform_admin.email, platform_admin.password)
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()

    # A model in the catalog, pointing at the fake OpenAI-compatible upstream.
    await open_page(page, "Models and prices")
    await page.get_by_role("button", name="Add model").click()
    form = page.get_by_role("dialog")
    await form.get_by_label("Name").fill(model)
    await form.get_by_label("Upstream model").fill("up-" + model)
    await form.get_by_label("Base URL").fill(f"{fake_upstream.base_url}/v1")
    await form.get_by_label("API key").fill("platform-key")
    await form.get_by_label("Input price per 1M tokens (USD)").fill("3")
    await form.get_by_label("Output price per 1M tokens (USD)").fill("15")
    await form.get_by_role("button", name="Save model").click()
    await expect(page.get_by_role("cell", name=model, exact=True)).to_be_visible()
    await screenshot(page, "02-models")

    # A tenant with an owner, who is invited: the invitation link is shown once.
    await open_page(page, "Tenants")
    await page.get_by_label("Name", exact=True).fill(f"UI {slug}")
    await page.get_by_label("Slug").fill(slug)
    await page.get_by_label("Owner email (optional)").fill(owner_email)
    await page.get_by_role("button", name="Create tenant").click()
    secret = page.get_by_label(f"Invitation link for the owner of {slug}.")
    await expect(secret).to_be_visible()
    owner_link = await secret.input_value()
    assert owner_link.startswith(live_server + "/ui/accept#token=inv_")
    await expect(page.get_by_role("cell", name=slug, exact=True)).to_be_visible()
    await screenshot(page, "03-tenant-created")
    await page.get_by_role("button", name="Done").click()

    # Its budget and limits.
    await page.get_by_role("button", name=f"Limits and models of {slug}").click()
    limits = page.get_by_role("dialog")
    await limits.get_by_label("Monthly budget (USD)").fill("25")
    await limits.get_by_label("Requests per minute").fill("600")
    await screenshot(page, "04-tenant-limits")
    await limits.get_by_role("button", name="Save").click()
    await expect(limits).to_be_hidden()
    listed = await page.request.get(
        "/api/v1/tenants/?limit=200", headers={"Authorization": f"Bearer {await token_of(page)}"}
    )
    tenants = await listed.json()
    ours = next(t for t in tenants["items"] if t["slug"] == slug)
    assert ours["settings"]["limits"] == {"rpm": 600, "monthly_usd": "25"}
    await open_page(page, "Platform usage")
    await expect(page.get_by_role("heading", name="Platform usage")).to_be_visible()
    await screenshot(page, "05-platform-usage")
    await open_page(page, "Platform audit")
    await expect(page.get_by_role("cell", name="tenant.create")).not_to_have_count(0)
    await screenshot(page, "05-platform-audit")
    await log_out(page)

    # The owner opens the invitation, chooses a password, and is in; then invites a member.
    await accept_as_new(page, owner_link, "owner-own-passphrase")
    await expect(page.get_by_test_id("who")).to_contain_text(f"UI {slug} (owner)")
    await open_page(page, "Users")
    await page.get_by_label("Email").fill(f"ana@{slug}.example")
    await page.get_by_role("button", name="Invite").click()
    ana_link = await page.get_by_label(f"Invitation link for ana@{slug}.example.").input_value()
    pending = page.get_by_role("table", name="Pending invitations")
    await expect(
        pending.get_by_role("cell", name=f"ana@{slug}.example", exact=True)
    ).to_be_visible()
    await screenshot(page, "06-users-invited")
    await page.get_by_role("button", name="Done").click()

    await open_page(page, "API keys")
    await page.get_by_label("Name").fill("ui-key")
    await page.get_by_role("button", name="Create key").click()
    key_field = page.get_by_label("Secret of the key ui-key.")
    await expect(key_field).to_be_visible()
    key = await key_field.input_value()
    await expect(page.get_by_role("button", name="Copy")).to_be_visible()
    await screenshot(page, "07-api-key-created")
    async with httpx.AsyncClient(base_url=live_server) as http:
        assert (await http.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 200
    await page.get_by_role("button", name="Done").click()
    await expect(key_field).to_be_hidden()

    # A document, uploaded and followed until it is ready.
    await open_page(page, "Knowledge bases")
    await page.get_by_label("Documents (PDF, DOCX, HTML, Markdown, text)").set_input_files(
        handbook(tmp_path, "zephyr-handbook.md")
    )
    await page.get_by_role("button", name="Upload").click()
    row = page.locator('tr[data-document="zephyr-handbook.md"]')
    await expect(row.locator(".badge")).to_have_text("ready", timeout=90_000)
    await expect(page.get_by_role("button", name="default", exact=True)).to_be_visible()
    await screenshot(page, "08-knowledge-ready")

    # The knowledge base's own search settings: the models offered, its language, weights.
    await page.get_by_role("button", name="default", exact=True).click()
    settings_form = page.get_by_role("form", name="Settings of default")
    model_options = settings_form.get_by_label("Embedding model").locator("option")
    await expect(model_options).to_contain_text(
        ["all-MiniLM-L6-v2 (384 dimensions, default)", "multilingual-e5-small (384 dimensions)"]
    )
    await expect(settings_form.get_by_label("Language of keyword search")).to_have_value("english")
    await expect(settings_form.get_by_label("Vector", exact=True)).to_be_disabled()
    await settings_form.get_by_label("Weights of its own").check()
    await settings_form.get_by_label("Vector", exact=True).fill("0.7")
    await settings_form.get_by_label("Keyword", exact=True).fill("0.3")
    await settings_form.get_by_role("button", name="Save settings").click()
    await expect(settings_form.get_by_role("status")).to_have_text("Saved.")
    await screenshot(page, "08b-knowledge-settings")
    async with httpx.AsyncClient(base_url=live_server) as http:
        bases = (await http.get("/api/v1/rag/collections", headers={"X-API-Key": key})).json()
    (saved,) = [b for b in bases["items"] if b["name"] == "default"]
    assert saved["weights"] == {"vector": 0.7, "keyword": 0.3}, saved
    assert (saved["language"], saved["embedding_model"]) == ("english", "all-MiniLM-L6-v2")

    # A question answered from it, streamed, with a citation that opens the passage.
    await open_page(page, "Chat")
    await page.get_by_label("Model").select_option(model)
    await page.get_by_label("Answer from documents").check()
    await page.get_by_label("Message", exact=True).fill("How often does Zephyr rotate its keys?")
    await page.get_by_label("Message", exact=True).press("Enter")
    answer = page.locator('.message[data-role="assistant"]').last
    await expect(answer.locator(".bubble")).to_have_text("Hello from the fake upstream.")
    citation = answer.get_by_role("button", name="[1] zephyr-handbook.md")
    await expect(citation).to_be_visible()
    await expect(
        page.get_by_role("button", name="How often does Zephyr rotate its keys?", exact=True)
    ).to_be_visible()
    await citation.click()
    passage = page.get_by_test_id("passage")
    await expect(passage).to_contain_text(FACT)
    await expect(passage).to_contain_text("Key rotation")
    await screenshot(page, "09-chat-citation")
    await page.keyboard.press("Escape")
    await expect(passage).to_be_hidden()
    sent = [r for r in fake_upstream.requests if r.model == "up-" + model][-1]
    assert FACT in str(sent.json), "the passage was not in the prompt sent upstream"

    # The source links to the retrieval inspector: the question searched again, the cited
    # passage marked, with its place in each list and the fused score.
    await citation.click()
    await page.get_by_role("link", name="Why this passage? See how the search ranked it").click()
    await expect(page.get_by_role("heading", name="Search and explain")).to_be_visible()
    await expect(page.get_by_label("Query")).to_have_value("How often does Zephyr rotate its keys?")
    cited = page.locator('tr[aria-current="true"]')
    await expect(cited).to_contain_text("zephyr-handbook.md")
    await expect(cited.locator("td").nth(2)).to_contain_text("#")  # rank · similarity
    await expect(cited.locator("td").nth(4)).not_to_have_text("—")  # the fused score
    await screenshot(page, "09b-search-explain")
    await page.get_by_label("Mode").select_option("keyword")
    await page.get_by_label("Query").fill("rotate keys")
    await page.get_by_role("button", name="Search", exact=True).click()
    first = page.locator("tbody tr").first
    await expect(first.locator("td").nth(2)).to_have_text("not found")  # keyword mode only
    await expect(first.locator("td").nth(3)).to_contain_text("#1")

    # The request in the usage chart and table.
    await open_page(page, "Usage and cost")
    await reload_until(page, f'tr[data-model="{model}"]')
    await expect(page.locator(".chart canvas")).to_be_visible()
    await expect(page.get_by_test_id("usage-totals")).to_contain_text("Requests")
    await screenshot(page, "10-usage")

    await open_page(page, "Audit log")
    await expect(page.get_by_role("cell", name="api_key.create")).to_be_visible()
    await screenshot(page, "11-audit")
    await open_page(page, "Prompt logs")
    await expect(page.get_by_role("heading", name="Prompt logs")).to_be_visible()
    await screenshot(page, "12-prompt-logs")

    # Revoking the key: the page says so, and the API refuses the key from then on.
    await open_page(page, "API keys")
    await page.get_by_role("button", name="Revoke ui-key").click()
    await expect(page.locator('tr[data-key-name="ui-key"] .badge')).to_have_text("revoked")
    await screenshot(page, "13-api-key-revoked")
    async with httpx.AsyncClient(base_url=live_server) as http:
        assert (await http.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 401

    # Rotating a key shows the new secret once; the new secret works.
    await page.get_by_label("Name").fill("rotating-key")
    await page.get_by_role("button", name="Create key").click()
    await page.get_by_role("button", name="Done").click()
    await page.get_by_role("button", name="Rotate rotating-key").first.click()
    rotated = await page.get_by_label("Secret of the key rotating-key.").input_value()
    await screenshot(page, "13-api-key-rotated")
    async with httpx.AsyncClient(base_url=live_server) as http:
        me = await http.get("/api/v1/auth/me", headers={"X-API-Key": rotated})
        assert me.status_code == 200
    await log_out(page)

    # The member accepts the invitation with their own password, and sees the workspace only.
    ana_password = "ana-first-passphrase"
    await accept_as_new(page, ana_link, ana_password)
    await expect(page.get_by_test_id("who")).to_contain_text("(member)")
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link")).to_have_text(
        ["Chat", "Knowledge bases", "Search and explain"]
    )
    await screenshot(page, "18-member-chat")

    # The member replaces the initial password, and logs in with the new one.
    await page.get_by_role("button", name="Password").click()
    dialog = page.get_by_role("dialog", name="Change password")
    await dialog.get_by_label("Current password").fill(ana_password)
    await dialog.get_by_label("New password (12 characters or more)").fill("ana-own-passphrase")
    await dialog.get_by_label("New password again").fill("ana-own-passphrase")
    await dialog.get_by_role("button", name="Change password").click()
    await expect(dialog.get_by_role("status")).to_contain_text("Your password is changed")
    await screenshot(page, "19-password-changed")
    # Every session ended with the change, this one too.
    await dialog.get_by_role("button", name="Log in again").click()
    await page.get_by_role("heading", name="Log in to mtai").wait_for()
    await log_in(page, f"ana@{slug}.example", "ana-own-passphrase")


async def accept_as_new(page: Page, link: str, password: str) -> None:
    """Open an invitation link as a person without an account, and choose a password."""
    await page.goto(link)
    await expect(page.get_by_test_id("invitation")).to_be_visible()
    await screenshot(page, "06-accept-invitation")
    await page.get_by_label("New password (12 characters or more)").fill(password)
    await page.get_by_label("New password again").fill(password)
    await page.get_by_role("button", name="Create my account and accept").click()
    await page.get_by_test_id("who").wait_for()


async def test_an_existing_account_accepts_by_logging_in(
    page: Page, live_server: str, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    """B's owner is invited to A: nothing is attached until they log in and accept."""
    await log_in(page, tenant_a.owner_email, tenant_a.owner_password)
    await open_page(page, "Users")
    await page.get_by_label("Email").fill(tenant_b.owner_email)
    await (
        page.get_by_role("form", name="Invite a person")
        .get_by_role("combobox")
        .select_option("admin")
    )
    await page.get_by_role("button", name="Invite").click()
    link = await page.get_by_label(f"Invitation link for {tenant_b.owner_email}.").input_value()
    await log_out(page)

    await page.goto(link)
    await expect(page.get_by_test_id("invitation")).to_contain_text("as admin")
    # Choosing a password for an account that exists is refused: log in instead.
    await page.get_by_label("New password (12 characters or more)").fill("someone-elses-guess")
    await page.get_by_label("New password again").fill("someone-elses-guess")
    await page.get_by_role("button", name="Create my account and accept").click()
    await expect(page.get_by_role("alert")).to_contain_text("login_to_accept")
    await page.get_by_label(f"Password of {tenant_b.owner_email}").fill(tenant_b.owner_password)
    await page.get_by_role("button", name="Log in and accept").click()
    await expect(page.get_by_test_id("who")).to_contain_text(f"{tenant_a.slug.upper()} (admin)")
    await screenshot(page, "20-existing-account-accepted")
    async with httpx.AsyncClient(base_url=live_server) as http:
        again = await http.post("/api/v1/invitations/lookup", json={"token": link.split("=")[1]})
        assert again.status_code == 410


async def token_of(page: Page) -> str:
    token: str = await page.evaluate("JSON.parse(sessionStorage.getItem('mtai.session')).token")
    return token


async def test_api_errors_are_shown_as_the_api_states_them(
    page: Page, platform_admin: AdminFixture, tenant_a: TenantFixture
) -> None:
    await page.goto("/ui/")
    await page.get_by_label("Email").fill(platform_admin.email)
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Email or password is wrong.")
    await expect(alert).to_contain_text("invalid_credentials")

    await log_in(page, platform_admin.email, platform_admin.password)
    await page.get_by_label("Name", exact=True).fill("Duplicate")
    await page.get_by_label("Slug").fill(tenant_a.slug)
    await page.get_by_role("button", name="Create tenant").click()
    await expect(page.get_by_role("alert")).to_contain_text("conflict")
    await screenshot(page, "14-api-error")


async def test_narrow_screen_and_keyboard(page: Page, tenant_a: TenantFixture) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto("/ui/")
    # Keyboard only: the fields in tab order, Enter submits.
    await page.get_by_label("Email").focus()
    await page.keyboard.type(tenant_a.owner_email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(tenant_a.owner_password)
    await page.keyboard.press("Enter")
    await page.get_by_test_id("who").wait_for()

    nav = page.get_by_role("navigation", name="Main")
    await expect(nav).to_be_hidden()
    menu = page.get_by_role("button", name="Menu")
    await menu.focus()
    await page.keyboard.press("Enter")
    await expect(menu).to_have_attribute("aria-expanded", "true")
    await expect(nav).to_be_visible()
    await screenshot(page, "15-narrow-menu")
    await nav.get_by_role("link", name="API keys").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    await expect(nav).to_be_hidden()
    await screenshot(page, "16-narrow-keys")


async def test_tenant_admin_never_sees_another_tenants_data(
    page: Page,
    live_server: str,
    runtime: Runtime,
    fake_upstream: FakeUpstream,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    tmp_path: Path,
) -> None:
    model = (await add_model(runtime, fake_upstream, "openai")).name
    secret_key_name = f"a-only-key-{secrets.token_hex(3)}"
    secret_question = f"What does Zephyr do, {secrets.token_hex(4)}?"
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        created = await http.post(
            "/api/v1/keys",
            json={"name": secret_key_name, "scopes": ["chat"]},
            headers=tenant_a.owner,
        )
        assert created.status_code == 201, created.text
        with handbook(tmp_path, "a-secret-handbook.md").open("rb") as f:
            uploaded = await http.post(
                "/api/v1/rag/documents", files={"file": f}, headers=tenant_a.owner
            )
        assert uploaded.status_code == 202, uploaded.text
        doc_id = uploaded.json()["id"]
        deadline = time.monotonic() + 90
        while (
            status := (
                await http.get(f"/api/v1/rag/documents/{doc_id}", headers=tenant_a.owner)
            ).json()["status"]
        ) != "ready":
            assert status != "failed"
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.3)
        answered = await http.post(
            "/api/v1/chat/",
            json={"message": secret_question, "model": model, "use_rag": True},
            headers=tenant_a.owner,
        )
        assert answered.status_code == 200, answered.text
        a_conversation = answered.json()["conversation_id"]
    a_markers = [
        tenant_a.slug,
        tenant_a.owner_email,
        f"member@{tenant_a.slug}.example",
        str(tenant_a.id),
        str(tenant_a.member_id),
        secret_key_name,
        "a-secret-handbook.md",
        secret_question,
        a_conversation,
        doc_id,
    ]

    await log_in(page, tenant_b.owner_email, tenant_b.owner_password)
    pages = {
        "Chat": "chat",
        "Knowledge bases": "knowledge",
        "Users": "users",
        "API keys": "keys",
        "Usage and cost": "usage",
        "Audit log": "audit",
        "Prompt logs": "prompt-logs",
    }
    for label, name in pages.items():
        await open_page(page, label)
        await page.wait_for_load_state("networkidle")
        await expect(page.locator("main")).not_to_contain_text("Loading")
        text = await page.locator("body").inner_text()
        html = await page.content()
        for marker in a_markers:
            assert marker not in text, f"{label} shows {marker}"
            assert marker not in html, f"{label} has {marker} in its markup"
        await screenshot(page, f"isolation-b-{name}")
    # B's own data is there, so the pages did load.
    await open_page(page, "Users")
    await expect(
        page.get_by_role("cell", name=f"member@{tenant_b.slug}.example", exact=True)
    ).to_be_visible()
    await open_page(page, "Usage and cost")
    await expect(page.locator(f'tr[data-model="{model}"]')).to_have_count(0)

    # No platform pages for a tenant admin, even by address.
    await page.goto("/ui/tenants")
    await expect(page.get_by_role("heading", name="Tenants")).to_have_count(0)
    await expect(page.get_by_role("link", name="Tenants")).to_have_count(0)

    # Nor A's records by address, from B's session in the browser.
    for path in (
        f"/api/v1/rag/documents/{doc_id}",
        f"/api/v1/chat/conversations/{a_conversation}",
        f"/api/v1/users/{tenant_a.member_id}",
    ):
        status = await page.evaluate(
            """async (path) => {
                const s = JSON.parse(sessionStorage.getItem('mtai.session'));
                const r = await fetch(path, {headers: {Authorization: 'Bearer ' + s.token}});
                return r.status;
            }""",
            path,
        )
        assert status == 404, (path, status)


async def test_a_platform_admin_in_a_tenant_chooses_where_to_work(
    page: Page, client: httpx.AsyncClient, platform_admin: AdminFixture, tenant_a: TenantFixture
) -> None:
    await join(client, tenant_a.owner, platform_admin.email, platform_admin.password, "admin")

    async def log_in_to(choice: str) -> None:
        await page.goto("/ui/")
        await page.get_by_label("Email").fill(platform_admin.email)
        await page.get_by_label("Password").fill(platform_admin.password)
        await page.get_by_role("button", name="Log in").click()
        await page.get_by_role("group", name="Organisation").get_by_label(choice).check()
        await page.get_by_role("button", name="Continue").click()
        await page.get_by_test_id("who").wait_for()

    await log_in_to("Platform administration")
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    await expect(page.get_by_role("cell", name=tenant_a.slug, exact=True)).to_be_visible()
    await expect(page.get_by_role("link", name="Chat")).to_have_count(0)
    await screenshot(page, "17-login-platform-choice")
    await log_out(page)

    await log_in_to(tenant_a.slug.upper())
    await expect(page.get_by_test_id("who")).to_contain_text(f"{tenant_a.slug.upper()} (admin)")
    await expect(page.get_by_role("link", name="Tenants")).to_have_count(0)
    await expect(page.get_by_role("link", name="Platform usage")).to_have_count(0)
