/**
 * The authenticated admin API under `/admin/`: tool-definition approvals, inventory, session
 * containment, server quarantine and recent audit events. See docs/admin-api.md.
 */
export {
  ADMIN_REASONS,
  type AdminApi,
  type AdminApiDeps,
  type AdminDecision,
  type AdminQuarantine,
  type AdminSessionInfo,
  type AdminSessions,
  createAdminApi,
} from './api.ts';
export {
  type AdminAuthenticate,
  type AdminAuthResult,
  type AdminGrant,
  type AdminIdentity,
  createAdminAuthenticator,
  DEFAULT_ADMIN_GRANT,
  isAdmin,
} from './auth.ts';
export { MAX_ADMIN_BODY_BYTES } from './http.ts';
