/**
 * `Gate`: propose, wait, get, cancel, report (contract §2).
 *
 * Every proposal carries an idempotency key (a fresh one unless given), so a retried POST after a
 * network error can never create a second action; network errors, timeouts, 502/503/504 and 429
 * are retried with exponential backoff (429 after its Retry-After). Waiting uses the API's long
 * poll (`?wait=`, at most 30 s a request). Times are in seconds, as in the API.
 */

import { Action } from "./action.js";
import {
  AuthenticationError,
  ConflictError,
  GateError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitedError,
} from "./errors.js";
import type { ActionData, OutcomeBody, Params, ProposalBody } from "./types.js";

export const MAX_LONG_POLL_SECONDS = 30;
const RETRIED_STATUSES = new Set([429, 502, 503, 504]);
const ERRORS: Record<number, typeof GateError> = {
  400: InvalidRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: InvalidRequestError,
};

export interface GateOptions {
  /** The gate's address, e.g. `https://gate.example` (no `/api/v1`). */
  baseUrl: string;
  /** The agent's token (`manage.py create_agent`). */
  token: string;
  /** Seconds a request may take, a long poll's wait added (default 10). */
  requestTimeoutSeconds?: number;
  /** Retries after a network error, a timeout, 429, 502, 503 or 504 (default 4). */
  retries?: number;
  /** The first retry's delay in seconds, doubled each time, jittered (default 0.25). */
  backoffSeconds?: number;
  /** A `fetch` to use instead of the platform's. */
  fetch?: typeof fetch;
}

export interface ProposeOptions {
  trajectory?: unknown;
  context?: Params;
  confidence?: number;
  rationale?: string;
  callbackUrl?: string;
  /** Same key and same body: the same action back (200), never a second one. Default: a fresh key. */
  idempotencyKey?: string;
  /** Hold the answer until the action is evaluated, at most this many seconds (≤ 30). */
  waitSeconds?: number;
}

export interface ReportOptions {
  executed: boolean;
  result?: unknown;
  error?: string;
  /** `paramsHash()` of the params executed (contract §6.3). */
  paramsHash?: string;
}

export function newIdempotencyKey(): string {
  return `gate-client/${globalThis.crypto.randomUUID().replaceAll("-", "")}`;
}

function waitQuery(seconds: number | undefined): string {
  if (seconds === undefined || !(seconds > 0)) return "";
  return `?wait=${Math.min(seconds, MAX_LONG_POLL_SECONDS)}`;
}

function retryAfter(response: Response): number | null {
  const value = response.headers.get("Retry-After");
  if (value === null || value.trim() === "") return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? seconds : null;
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorFor(response: Response, body: unknown): GateError {
  const detail =
    body !== null && typeof body === "object" && "detail" in body ? (body as { detail: unknown }).detail : undefined;
  const message = `HTTP ${response.status}: ${String(detail ?? (typeof body === "string" ? body : JSON.stringify(body)))}`;
  if (response.status === 429) return new RateLimitedError(message, retryAfter(response), { statusCode: 429, body });
  const ErrorClass = ERRORS[response.status] ?? GateError;
  return new ErrorClass(message, { statusCode: response.status, body });
}

const sleep = (seconds: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

export class Gate {
  readonly baseUrl: string;
  readonly retries: number;
  readonly backoffSeconds: number;
  readonly requestTimeoutSeconds: number;
  private readonly token: string;
  private readonly fetcher: typeof fetch;

  constructor(options: GateOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.retries = options.retries ?? 4;
    this.backoffSeconds = options.backoffSeconds ?? 0.25;
    this.requestTimeoutSeconds = options.requestTimeoutSeconds ?? 10;
    this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  private delay(attempt: number, response: Response | null): number {
    const after = response?.status === 429 ? retryAfter(response) : null;
    if (after !== null) return after;
    return this.backoffSeconds * 2 ** attempt * (0.5 + Math.random() / 2);
  }

  private async call(method: string, path: string, body?: unknown, waitSeconds?: number): Promise<unknown> {
    const query = waitQuery(waitSeconds);
    const timeout = (this.requestTimeoutSeconds + (query ? Math.min(waitSeconds ?? 0, MAX_LONG_POLL_SECONDS) : 0)) * 1000;
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    for (let attempt = 0; ; attempt += 1) {
      let response: Response | null = null;
      try {
        response = await this.fetcher(`${this.baseUrl}${path}${query}`, {
          method,
          headers,
          body: body === undefined ? null : JSON.stringify(body),
          signal: AbortSignal.timeout(timeout),
        });
      } catch (error) {
        if (attempt >= this.retries) throw new GateError(`cannot reach the gate at ${this.baseUrl}`, { cause: error });
      }
      if (response !== null) {
        if (!RETRIED_STATUSES.has(response.status) || attempt >= this.retries) {
          const parsed = await readBody(response);
          if (response.status >= 400) throw errorFor(response, parsed);
          return parsed;
        }
        await response.body?.cancel();
      }
      await sleep(this.delay(attempt, response));
    }
  }

  /** Propose an action; with `waitSeconds`, held until it is evaluated (at most 30 s). */
  async propose(actionType: string, params: Params, options: ProposeOptions = {}): Promise<Action> {
    const body: ProposalBody = {
      action_type: actionType,
      params,
      idempotency_key: options.idempotencyKey ?? newIdempotencyKey(),
    };
    if (options.trajectory !== undefined && options.trajectory !== null) {
      body.trajectory = options.trajectory as ProposalBody["trajectory"];
    }
    if (options.context !== undefined) body.context = options.context;
    if (options.confidence !== undefined) body.confidence = options.confidence;
    if (options.rationale !== undefined) body.rationale = options.rationale;
    if (options.callbackUrl !== undefined) body.callback_url = options.callbackUrl;
    return new Action((await this.call("POST", "/api/v1/actions", body, options.waitSeconds)) as ActionData);
  }

  /** The action; with `waitSeconds`, held until it is final (at most 30 s). */
  async get(actionId: string, options: { waitSeconds?: number } = {}): Promise<Action> {
    const path = `/api/v1/actions/${encodeURIComponent(actionId)}`;
    return new Action((await this.call("GET", path, undefined, options.waitSeconds)) as ActionData);
  }

  /** The action once final, or as it stands when `timeoutSeconds` have passed (default: no limit). */
  async wait(actionId: string, options: { timeoutSeconds?: number } = {}): Promise<Action> {
    const deadline = options.timeoutSeconds === undefined ? null : Date.now() + options.timeoutSeconds * 1000;
    for (;;) {
      const left = deadline === null ? MAX_LONG_POLL_SECONDS : (deadline - Date.now()) / 1000;
      const action = await this.get(actionId, { waitSeconds: Math.max(left, 0) });
      if (action.final || left <= 0) return action;
    }
  }

  /** Withdraw a pending or held action; already cancelled counts as done. */
  async cancel(actionId: string): Promise<Action> {
    try {
      return new Action((await this.call("POST", `/api/v1/actions/${encodeURIComponent(actionId)}/cancel`)) as ActionData);
    } catch (error) {
      if (error instanceof ConflictError) {
        const action = await this.get(actionId);
        if (action.status === "cancelled") return action; // a retried cancel whose first try went through
      }
      throw error;
    }
  }

  /** Say once what happened when the agent acted (contract §2); a retried report counts once. */
  async report(actionId: string, options: ReportOptions): Promise<Action> {
    const body: OutcomeBody = { executed: options.executed };
    if (options.result !== undefined && options.result !== null) body.result = options.result;
    if (options.error) body.error = options.error;
    if (options.paramsHash !== undefined) body.params_hash = options.paramsHash;
    try {
      const path = `/api/v1/actions/${encodeURIComponent(actionId)}/outcome`;
      return new Action((await this.call("POST", path, body)) as ActionData);
    } catch (error) {
      if (error instanceof ConflictError) {
        const action = await this.get(actionId);
        const outcome = action.data.outcome as { executed?: boolean } | null;
        if (outcome && outcome.executed === options.executed) return action; // a retried report
      }
      throw error;
    }
  }
}
