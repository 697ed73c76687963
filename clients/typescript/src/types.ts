/** The API's shapes, from the OpenAPI schema (src/schema.d.ts, made by `npm run schema`). */

import type { components } from "./schema.js";

/** An action as the gate returns it (contract §2). */
export type ActionData = components["schemas"]["Action"];
/** The body of POST /api/v1/actions. */
export type ProposalBody = components["schemas"]["Propose"];
/** The body of POST /api/v1/actions/{id}/outcome. */
export type OutcomeBody = components["schemas"]["OutcomeInput"];

/** The eight statuses (contract §2). */
export type Status =
  | "pending"
  | "needs_review"
  | "auto_approved"
  | "approved"
  | "rejected"
  | "blocked"
  | "expired"
  | "cancelled";

/** Params: what the tool call would do, as JSON. */
export type Params = Record<string, unknown>;

export interface Finding {
  rule?: string;
  outcome?: "pass" | "fail" | "error";
  effect?: string;
  message?: string;
  error?: string;
  path?: string;
  [key: string]: unknown;
}

export interface Decision {
  verdict?: "approve" | "reject";
  by?: string;
  reason?: string;
  at?: string;
  [key: string]: unknown;
}
