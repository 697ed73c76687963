// The Vercel AI SDK example (examples/vercel-ai-refund.ts), its scripted model against the real stack.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { runSupportAgent } from "../build/examples/vercel-ai-refund.js";
import { decide, evaluated, firstAction, gate, newOrder, skip } from "./stack.mjs";

describe("the Vercel AI SDK example", { skip }, () => {
  test("a looked-up refund within the limit runs at once; re-running the conversation neither proposes nor refunds again", async () => {
    const client = gate();
    const orderId = newOrder();
    const seen = firstAction();
    const runId = `run-${orderId}`;
    const result = await runSupportAgent({ gate: client, orderId, amount: 40, runId, onAction: seen.onAction });
    assert.deepEqual(result.refunded, [{ order_id: orderId, amount: 40 }]);
    assert.match(result.text, /"refunded":40/);
    const action = await client.get((await seen.action).id);
    assert.equal(action.status, "auto_approved");
    assert.equal(action.data.idempotency_key, `ai-sdk/${runId}/call-2`);
    assert.equal(action.data.context.run_id, runId);

    // the same conversation again (a crashed run resumed): the same action, and no second refund
    const again = firstAction();
    const rerun = await runSupportAgent({ gate: client, orderId, amount: 40, runId, onAction: again.onAction });
    assert.equal((await again.action).id, action.id);
    assert.deepEqual(rerun.refunded, []);
    assert.match(rerun.text, /"refunded":40/); // the result reported the first time
    assert.equal((await client.get(action.id)).data.outcome.executed, true);
  });

  test("a refund the reviewer rejects goes back to the model as the tool's answer, with the reason", async () => {
    const client = gate();
    const orderId = newOrder();
    const seen = firstAction();
    const running = runSupportAgent({ gate: client, orderId, amount: 150, runId: `run-${orderId}`, onAction: seen.onAction, timeoutSeconds: 30 });
    const action = await evaluated(client, (await seen.action).id);
    assert.equal(action.status, "needs_review");
    await decide(action.id, { verdict: "reject", reason: "over the refund limit" });
    const result = await running;
    assert.deepEqual(result.refunded, []);
    assert.match(result.text, /"refused":true/);
    assert.match(result.text, /over the refund limit \(lead\)/);
  });
});
