/** An action as the gate returns it (contract §2), with the questions an agent asks of it. */

import type { ActionData, Decision, Finding, Params, Status } from "./types.js";

export const APPROVED: ReadonlySet<string> = new Set(["auto_approved", "approved"]);
export const FINAL: ReadonlySet<string> = new Set([
  "auto_approved",
  "approved",
  "rejected",
  "blocked",
  "expired",
  "cancelled",
]);

function asParams(value: unknown): Params {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? { ...(value as Params) } : {};
}

export class Action {
  constructor(readonly data: ActionData) {}

  get id(): string {
    return String(this.data.id);
  }

  get status(): Status {
    return this.data.status as Status;
  }

  get actionType(): string {
    return String(this.data.action_type ?? "");
  }

  /** Where a reviewer decides it (a path on the gate). */
  get reviewUrl(): string {
    return String(this.data.review_url ?? "");
  }

  /** The agent may act: `auto_approved` or `approved`. */
  get approved(): boolean {
    return APPROVED.has(this.status);
  }

  get final(): boolean {
    return FINAL.has(this.status);
  }

  /** The params as proposed. */
  get params(): Params {
    return asParams(this.data.params);
  }

  /** A reviewer's edit of the params (contract §6.3), or null when not edited. */
  get approvedParams(): Params | null {
    const edited = this.data.approved_params;
    return edited === null || edited === undefined ? null : asParams(edited);
  }

  /** The gate's hash of the params the agent may act with (null while it may not act). */
  get approvedParamsHash(): string | null {
    return this.data.approved_params_hash ?? null;
  }

  /** What an agent acts with: the reviewer's edit when there is one, else the proposed params. */
  get paramsToExecute(): Params {
    return this.approvedParams ?? this.params;
  }

  get decision(): Decision | null {
    return (this.data.decision as Decision | null | undefined) ?? null;
  }

  get findings(): Finding[] {
    return [...((this.data.findings as Finding[] | undefined) ?? [])];
  }

  /** Why it stands as it does, in words a model can use: the decision's reason; a reviewer's
   * decision without one says so (the policy's findings are not the reviewer's reason); else the
   * checks it did not pass. */
  get reason(): string {
    if (this.status === "expired") return "nobody decided before the review deadline (expired, not rejected)";
    if (this.status === "cancelled") return "withdrawn by the agent";
    const decision = this.decision ?? {};
    const by = decision.by;
    if (decision.reason) return by && by !== "policy" ? `${decision.reason} (${by})` : String(decision.reason);
    if (by && by !== "policy") {
      const verdict = decision.verdict === "approve" ? "approved" : "rejected";
      return `${verdict} by ${by}, who gave no reason`;
    }
    const failed = this.findings.filter((f) => f.outcome !== "pass");
    if (failed.length > 0) {
      return failed.map((f) => `${f.rule}: ${f.message || f.error || f.outcome}`).join("; ");
    }
    return this.status;
  }

  toJSON(): ActionData {
    return this.data;
  }
}
