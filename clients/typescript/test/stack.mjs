// The real stack the pytest test starts (tests/clients/test_typescript_client.py): uvicorn, a Celery
// worker, PostgreSQL and Redis, with TEST_POLICY imported. Without it these tests are skipped.
import { randomUUID } from "node:crypto";

import { Gate } from "../dist/index.js";

export const BASE_URL = process.env.GATE_URL;
export const TOKEN = process.env.GATE_TOKEN;
export const REVIEWER_TOKEN = process.env.GATE_REVIEWER_TOKEN;
export const WEBHOOK_SECRET = process.env.GATE_WEBHOOK_SECRET;
export const skip = BASE_URL && TOKEN && REVIEWER_TOKEN ? false : "needs the stack (GATE_URL, GATE_TOKEN, GATE_REVIEWER_TOKEN)";

export function gate(options = {}) {
  return new Gate({ baseUrl: BASE_URL, token: TOKEN, requestTimeoutSeconds: 10, ...options });
}

/** An order nobody has refunded yet (the gate holds a repeat of an executed refund). */
export function newOrder() {
  return `A-${randomUUID().slice(0, 8)}`;
}

/** The trajectory the refund policy wants: the order looked up first. */
export function lookedUp(orderId) {
  return [{ kind: "tool_call", tool: "get_order", args: { order_id: orderId }, result: '{"total": 80}' }];
}

/** A reviewer's call (Authorization: Token …); the parsed answer, or an error with the text. */
export async function asReviewer(method, path, body) {
  const response = await fetch(`${BASE_URL}${path}`, {
    method,
    headers: { Authorization: `Token ${REVIEWER_TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status}: ${text}`);
  return JSON.parse(text);
}

export function decide(actionId, body) {
  return asReviewer("POST", `/api/v1/actions/${actionId}/decision`, body);
}

/** Resolves with the first action id passed to it (onAction), for the reviewer to act on. */
export function firstAction() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  let seen = false;
  return {
    onAction: (action) => {
      if (!seen) {
        seen = true;
        resolve(action);
      }
    },
    action: promise,
  };
}

/** The action once the worker has evaluated it (no longer pending). */
export async function evaluated(client, actionId) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const action = await client.get(actionId);
    if (action.status !== "pending" || Date.now() > deadline) return action;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
