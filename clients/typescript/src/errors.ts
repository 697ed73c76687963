/** What can go wrong, as classes an agent can catch (`instanceof`) and explain to its model. */

import type { Action } from "./action.js";

export interface GateErrorOptions {
  statusCode?: number | undefined;
  body?: unknown;
  cause?: unknown;
}

/** The gate answered with an error, or could not be reached after the retries. */
export class GateError extends Error {
  readonly statusCode: number | undefined;
  readonly body: unknown;

  constructor(message: string, options: GateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.statusCode = options.statusCode;
    this.body = options.body;
  }
}

/** 401: the token is missing, wrong or revoked. */
export class AuthenticationError extends GateError {}

/** 403: a disabled agent or action type, or a type this agent may not propose. */
export class PermissionDeniedError extends GateError {}

/** 404: no such action (or another agent's). */
export class NotFoundError extends GateError {}

/** 409: the action's state does not allow this, or an idempotency key reused with another body. */
export class ConflictError extends GateError {}

/** 400 (or 413): the request is malformed; `body` holds the field errors. */
export class InvalidRequestError extends GateError {}

/** 429 after the retries: `retryAfter` seconds, when the gate said. */
export class RateLimitedError extends GateError {
  readonly retryAfter: number | null;

  constructor(message: string, retryAfter: number | null, options: GateErrorOptions = {}) {
    super(message, options);
    this.retryAfter = retryAfter;
  }
}

/** The gate did not let the action through. `reason` says why, in words a model can use. */
export class NotApproved extends GateError {
  readonly action: Action;
  readonly status: string;
  readonly reason: string;

  constructor(action: Action) {
    super(`${action.actionType} ${action.id} was ${action.status}: ${action.reason}`);
    this.action = action;
    this.status = action.status;
    this.reason = action.reason;
  }
}

/** A reviewer rejected it; `reason` is the reviewer's (or says they gave none). */
export class ActionRejected extends NotApproved {}

/** The policy refused it (invalid params, a block rule, block-level risk). */
export class ActionBlocked extends NotApproved {}

/** Nobody decided in time. Not a rejection: nobody said no, and nobody said yes. */
export class ActionExpired extends NotApproved {}

/** The agent withdrew it (for example after an approval timeout). */
export class ActionCancelled extends NotApproved {}

/** A reviewer approved edited params that the wrapper cannot pass to the function (a `params`
 * mapping it cannot invert). The function did not run; the outcome was reported as not executed. */
export class ParamsNotApplicable extends GateError {
  readonly action: Action;
  readonly reason: string;

  constructor(action: Action, problem: string) {
    super(`${action.actionType} ${action.id} was approved with edited params: ${problem}`);
    this.action = action;
    this.reason = problem;
  }
}

/** The caller stopped waiting while the action was still undecided (pending or needs_review).
 *
 * Not a denial: the action may still be approved later. `cancelled` tells whether the client
 * withdrew it (the wrapper does by default), so that a late approval cannot be acted on. `status`
 * is the status it was still in when the wait ended (before any withdrawal). */
export class ApprovalTimeout extends GateError {
  readonly action: Action;
  readonly waitedSeconds: number;
  readonly cancelled: boolean;
  readonly status: string;

  constructor(action: Action, waitedSeconds: number, options: { cancelled?: boolean; undecidedStatus?: string } = {}) {
    const cancelled = options.cancelled ?? false;
    const status = options.undecidedStatus ?? action.status;
    const then = cancelled ? " and was withdrawn" : "; it may still be decided";
    super(`${action.actionType} ${action.id} still ${status} after ${Math.round(waitedSeconds)}s${then}`);
    this.action = action;
    this.waitedSeconds = waitedSeconds;
    this.cancelled = cancelled;
    this.status = status;
  }
}

const REFUSALS: Record<string, new (action: Action) => NotApproved> = {
  rejected: ActionRejected,
  blocked: ActionBlocked,
  expired: ActionExpired,
  cancelled: ActionCancelled,
};

/** The action when the agent may act on it; else the typed refusal, carrying the reason. */
export function raiseUnlessApproved(action: Action): Action {
  if (action.approved) return action;
  throw new (REFUSALS[action.status] ?? NotApproved)(action);
}
