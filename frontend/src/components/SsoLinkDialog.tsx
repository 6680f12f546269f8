// Linking one's own account to the tenant's identity provider (POST /api/v1/auth/sso/link): one
// sign-in at the provider, after which the person signs in with SSO.
import { authHeaders, authPost } from "../api";
import type { SsoLinkStarted, TenantRef } from "../types";
import { Dialog, ErrorMessage, useAction } from "./common";

export function SsoLinkDialog({ tenant, open, onClose }: { tenant: TenantRef; open: boolean; onClose: () => void }) {
  const action = useAction();
  const close = () => {
    action.clear();
    onClose();
  };
  const link = () =>
    void action.run(async () => {
      // authPost: "not set up here" answers 401, which must not end this session.
      const started = await authPost<SsoLinkStarted>("/api/v1/auth/sso/link", { tenant: tenant.slug }, authHeaders());
      window.location.assign(started.authorization_url);
    });
  return (
    <Dialog title="Link single sign-on" open={open} onClose={close}>
      <div className="stack">
        <p>
          Sign in once at the identity provider of {tenant.name}: this account is then linked to it, and you can use{" "}
          <strong>Sign in with SSO</strong> from then on (required when {tenant.name} enforces single sign-on).
        </p>
        <ErrorMessage error={action.error} />
        <button type="button" className="primary" disabled={action.busy} onClick={link}>
          Link single sign-on
        </button>
      </div>
    </Dialog>
  );
}
