/** `requiresApproval`: the function runs only once the gate approves the call it describes. */

import type { Action } from "./action.js";
import type { Gate } from "./client.js";
import { ApprovalTimeout, ConflictError, ParamsNotApplicable, raiseUnlessApproved } from "./errors.js";
import { paramsHash } from "./params-hash.js";
import type { Params } from "./types.js";

type PerCall<A extends unknown[], T> = T | ((...args: A) => T);

export interface RequiresApprovalOptions<A extends unknown[]> {
  gate: Gate;
  actionType: string;
  /** The params of the proposal from the call's arguments (default: the first argument, an object).
   * With a mapping, a reviewer's edit cannot be passed back to the function: ParamsNotApplicable. */
  params?: (...args: A) => Params;
  context?: PerCall<A, Params | undefined>;
  trajectory?: PerCall<A, unknown>;
  confidence?: PerCall<A, number | undefined>;
  rationale?: PerCall<A, string | undefined>;
  /** A key per call (e.g. from the framework's tool-call id): a re-run of the same call proposes
   * the same action instead of a second one. Default: a fresh key each call. */
  idempotencyKey?: (...args: A) => string | undefined;
  /** How long to wait for a decision, in seconds (default 300; null: no limit). */
  timeoutSeconds?: number | null;
  /** Withdraw the action when the wait times out (default true), so a late approval is not acted on. */
  cancelOnTimeout?: boolean;
  /** Report the outcome after running (default true). */
  reportOutcome?: boolean;
  /** Told of the action as soon as it is proposed, and again once decided (its id, its review URL). */
  onAction?: (action: Action) => void;
}

function perCall<A extends unknown[], T>(value: PerCall<A, T> | undefined, args: A): T | undefined {
  return typeof value === "function" ? (value as (...args: A) => T)(...args) : value;
}

function firstArgumentParams(args: unknown[]): Params {
  const first = args[0];
  if (first === null || typeof first !== "object" || Array.isArray(first)) {
    throw new TypeError("requiresApproval: the function's first argument must be its params object (or give `params`)");
  }
  return first as Params;
}

function jsonable(value: unknown): unknown {
  try {
    return JSON.stringify(value) === undefined ? undefined : value;
  } catch {
    return undefined;
  }
}

/**
 * Gate a function: each call is proposed as `actionType` with its first argument as params (or
 * `params(...args)`), the decision is awaited (long poll, up to `timeoutSeconds`), and the
 * function runs only when the action is `approved` or `auto_approved`. When a reviewer edited the
 * params (`approved_params`), it runs with those in place of its first argument, and the outcome
 * names the params it ran with (`params_hash`).
 *
 * Refused: ActionRejected / ActionBlocked / ActionExpired / ActionCancelled, each with `reason`.
 * Undecided after `timeoutSeconds`: ApprovalTimeout (the action withdrawn first, unless
 * `cancelOnTimeout: false`). After running, the outcome is reported: executed with the result
 * when it is JSON, or not executed with the error's text (then rethrown). A call whose action
 * already has an outcome (the same `idempotencyKey` again) does not run twice: it returns the result
 * reported the first time (ConflictError when that time it did not execute).
 */
export function requiresApproval<P extends Params, R, Rest extends unknown[]>(
  fn: (params: P, ...rest: Rest) => R | Promise<R>,
  options: RequiresApprovalOptions<[P, ...Rest]>,
): (params: P, ...rest: Rest) => Promise<R> {
  const { gate, actionType } = options;
  const timeoutSeconds = options.timeoutSeconds === undefined ? 300 : options.timeoutSeconds;
  const cancelOnTimeout = options.cancelOnTimeout ?? true;
  const reportOutcome = options.reportOutcome ?? true;

  async function runDecided(action: Action, args: [P, ...Rest], proposed: Params): Promise<R> {
    options.onAction?.(action);
    raiseUnlessApproved(action);
    const outcome = action.data.outcome as { executed?: boolean; result?: unknown; error?: string } | null;
    if (outcome) {
      // A re-run of a call already carried out (its idempotency key proposed this action before,
      // e.g. a crashed run resumed): never run twice.
      if (outcome.executed) return outcome.result as R;
      throw new ConflictError(
        `${action.actionType} ${action.id} was already reported as not executed (${outcome.error || "no error given"}); ` +
          "propose again with a new idempotency key",
      );
    }
    const edited = action.approvedParams;
    let callArgs = args;
    let executedHash: string;
    if (edited === null) {
      executedHash = await paramsHash(proposed);
    } else {
      if (options.params !== undefined) {
        const problem = new ParamsNotApplicable(action, "params maps the arguments: an edit cannot be mapped back");
        if (reportOutcome) await gate.report(action.id, { executed: false, error: problem.message });
        throw problem;
      }
      const [, ...rest] = args;
      callArgs = [edited as P, ...rest] as [P, ...Rest];
      // The gate's hash of its edit is exact (a float typed as 50.0 reads here as 50).
      executedHash = action.approvedParamsHash ?? (await paramsHash(edited));
    }
    let result: R;
    try {
      result = await fn(...callArgs);
    } catch (error) {
      if (reportOutcome) {
        const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        await gate.report(action.id, { executed: false, error: text, paramsHash: executedHash });
      }
      throw error;
    }
    if (reportOutcome) {
      await gate.report(action.id, { executed: true, result: jsonable(result), paramsHash: executedHash });
    }
    return result;
  }

  return async (...args: [P, ...Rest]): Promise<R> => {
    const proposed = options.params ? options.params(...args) : firstArgumentParams(args);
    const proposeOptions: Parameters<Gate["propose"]>[2] = {};
    const context = perCall(options.context, args);
    const trajectory = perCall(options.trajectory, args);
    const confidence = perCall(options.confidence, args);
    const rationale = perCall(options.rationale, args);
    const idempotencyKey = options.idempotencyKey?.(...args);
    if (context !== undefined) proposeOptions.context = context;
    if (trajectory !== undefined) proposeOptions.trajectory = trajectory;
    if (confidence !== undefined) proposeOptions.confidence = confidence;
    if (rationale !== undefined) proposeOptions.rationale = rationale;
    if (idempotencyKey !== undefined) proposeOptions.idempotencyKey = idempotencyKey;

    let action = await gate.propose(actionType, proposed, proposeOptions);
    options.onAction?.(action);
    action = await gate.wait(action.id, timeoutSeconds === null ? {} : { timeoutSeconds });
    if (action.final) return runDecided(action, args, proposed);

    const undecidedStatus = action.status;
    if (cancelOnTimeout) {
      try {
        action = await gate.cancel(action.id);
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
        action = await gate.get(action.id); // decided between the wait and the cancel
      }
      if (action.final && action.status !== "cancelled") return runDecided(action, args, proposed);
    }
    throw new ApprovalTimeout(action, timeoutSeconds ?? 0, { cancelled: cancelOnTimeout, undecidedStatus });
  };
}
