/** Autonomy Gate's TypeScript client: gate an agent's tool calls (contract §2, §4). */

export { Action, APPROVED, FINAL } from "./action.js";
export { Gate, MAX_LONG_POLL_SECONDS, newIdempotencyKey } from "./client.js";
export type { GateOptions, ProposeOptions, ReportOptions } from "./client.js";
export {
  ActionBlocked,
  ActionCancelled,
  ActionExpired,
  ActionRejected,
  ApprovalTimeout,
  AuthenticationError,
  ConflictError,
  GateError,
  InvalidRequestError,
  NotApproved,
  NotFoundError,
  ParamsNotApplicable,
  PermissionDeniedError,
  RateLimitedError,
  raiseUnlessApproved,
} from "./errors.js";
export { canonicalJson, paramsHash, pythonFloatRepr } from "./params-hash.js";
export { requiresApproval } from "./requires-approval.js";
export type { RequiresApprovalOptions } from "./requires-approval.js";
export type { ActionData, Decision, Finding, OutcomeBody, Params, ProposalBody, Status } from "./types.js";
export type { components, paths } from "./schema.js";
export { signWebhook, verifySignature } from "./webhooks.js";
export type { VerifyOptions } from "./webhooks.js";
