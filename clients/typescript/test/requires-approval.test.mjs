// requiresApproval against the real stack: runs on approval (with a reviewer's edit), never on a
// refusal, withdraws on a timeout, and says why in words a model can use.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  ActionBlocked,
  ActionRejected,
  ApprovalTimeout,
  ConflictError,
  NotApproved,
  ParamsNotApplicable,
  paramsHash,
  requiresApproval,
} from "../dist/index.js";
import { decide, evaluated, firstAction, gate, lookedUp, newOrder, skip } from "./stack.mjs";

describe("requiresApproval against the real stack", { skip }, () => {
  test("auto-approved: the function runs with the proposal and the outcome is reported with its hash", async () => {
    const client = gate();
    const orderId = newOrder();
    const calls = [];
    const seen = firstAction();
    const refund = requiresApproval(async (params) => (calls.push(params), { refunded: params.amount }), {
      gate: client,
      actionType: "refund",
      trajectory: () => lookedUp(orderId),
      confidence: 0.9,
      rationale: (params) => `refund ${params.order_id}`,
      onAction: seen.onAction,
    });
    assert.deepEqual(await refund({ order_id: orderId, amount: 12.75 }), { refunded: 12.75 });
    assert.deepEqual(calls, [{ order_id: orderId, amount: 12.75 }]);
    const stored = await client.get((await seen.action).id);
    assert.equal(stored.status, "auto_approved");
    assert.equal(stored.data.rationale, `refund ${orderId}`);
    assert.equal(stored.data.outcome.executed, true);
    assert.equal(stored.data.outcome.params_hash, await paramsHash({ order_id: orderId, amount: 12.75 }));
    assert.equal(stored.data.outcome.params_mismatch, false);
  });

  test("a reviewer's edit: the function runs with the edited params, the outcome names them", async () => {
    const client = gate();
    const orderId = newOrder();
    const calls = [];
    const seen = firstAction();
    const refund = requiresApproval(async (params, extra) => (calls.push([params, extra]), "done"), {
      gate: client,
      actionType: "refund",
      timeoutSeconds: 30,
      onAction: seen.onAction,
    });
    const running = refund({ order_id: orderId, amount: 80 }, "passed through");
    const action = await evaluated(client, (await seen.action).id);
    assert.equal(action.status, "needs_review");
    const edit = { order_id: orderId, amount: 50.5 };
    await decide(action.id, { verdict: "approve", params: edit, reason: "capped" });
    assert.equal(await running, "done");
    assert.deepEqual(calls, [[edit, "passed through"]]);
    const stored = await client.get(action.id);
    assert.equal(stored.status, "approved");
    assert.deepEqual(stored.params, { order_id: orderId, amount: 80 });
    assert.equal(stored.data.outcome.params_hash, await paramsHash(edit));
    assert.equal(stored.data.outcome.params_mismatch, false);
  });

  test("an edit that a params mapping cannot take back: not run, reported as not executed", async () => {
    const client = gate();
    const orderId = newOrder();
    const calls = [];
    const seen = firstAction();
    const refund = requiresApproval(async (order, cents) => calls.push([order, cents]), {
      gate: client,
      actionType: "refund",
      params: (order, cents) => ({ order_id: order, amount: cents / 100 }),
      timeoutSeconds: 30,
      onAction: seen.onAction,
    });
    const running = refund(orderId, 8000);
    running.catch(() => {}); // rejects as soon as the reviewer decides: handled below
    const action = await evaluated(client, (await seen.action).id);
    await decide(action.id, { verdict: "approve", params: { order_id: orderId, amount: 50 } });
    await assert.rejects(running, ParamsNotApplicable);
    assert.deepEqual(calls, []);
    const stored = await client.get(action.id);
    assert.equal(stored.data.outcome.executed, false);
    assert.match(stored.data.outcome.error, /cannot be mapped back/);
  });

  test("a function that fails is reported as not executed; the same key again does not run it twice", async () => {
    const client = gate();
    const orderId = newOrder();
    let calls = 0;
    const seen = firstAction();
    const refund = requiresApproval(
      async () => {
        calls += 1;
        throw new RangeError("payment provider down");
      },
      { gate: client, actionType: "refund", trajectory: lookedUp(orderId), idempotencyKey: () => `retry/${orderId}`, onAction: seen.onAction },
    );
    await assert.rejects(refund({ order_id: orderId, amount: 9 }), RangeError);
    const stored = await client.get((await seen.action).id);
    assert.equal(stored.data.outcome.executed, false);
    assert.equal(stored.data.outcome.error, "RangeError: payment provider down");
    await assert.rejects(refund({ order_id: orderId, amount: 9 }), (error) => {
      assert.ok(error instanceof ConflictError);
      assert.match(error.message, /already reported as not executed \(RangeError: payment provider down\)/);
      return true;
    });
    assert.equal(calls, 1);
  });

  test("rejected without a reason: ActionRejected says so, never the policy's findings", async () => {
    const client = gate();
    const calls = [];
    const seen = firstAction();
    const refund = requiresApproval(async (params) => calls.push(params), {
      gate: client,
      actionType: "refund",
      timeoutSeconds: 30,
      onAction: seen.onAction,
    });
    const running = refund({ order_id: newOrder(), amount: 30 });
    running.catch(() => {}); // rejects as soon as the reviewer decides: handled below
    const action = await evaluated(client, (await seen.action).id);
    await decide(action.id, { verdict: "reject" });
    await assert.rejects(running, (error) => {
      assert.ok(error instanceof ActionRejected);
      assert.ok(error instanceof NotApproved);
      assert.equal(error.status, "rejected");
      assert.equal(error.reason, "rejected by lead, who gave no reason");
      assert.doesNotMatch(error.message, /order_was_looked_up/);
      return true;
    });
    assert.deepEqual(calls, []);
  });

  test("blocked by the policy: ActionBlocked with the policy's reason", async () => {
    const calls = [];
    const remove = requiresApproval(async (params) => calls.push(params), { gate: gate(), actionType: "delete_account" });
    await assert.rejects(remove({ account: "C-19" }), (error) => {
      assert.ok(error instanceof ActionBlocked);
      assert.match(error.reason, /mode: block/);
      return true;
    });
    assert.deepEqual(calls, []);
  });

  test("undecided in time: ApprovalTimeout names the status it waited in, and the action is withdrawn", async () => {
    const client = gate();
    const seen = firstAction();
    const refund = requiresApproval(async () => assert.fail("must not run"), {
      gate: client,
      actionType: "escalate_ticket",
      timeoutSeconds: 1,
      onAction: seen.onAction,
    });
    await assert.rejects(refund({ ticket: "T-1" }), (error) => {
      assert.ok(error instanceof ApprovalTimeout);
      assert.equal(error.cancelled, true);
      assert.match(error.message, /still (pending|needs_review) after 1s and was withdrawn/);
      assert.doesNotMatch(error.message, /still cancelled/);
      return true;
    });
    assert.equal((await client.get((await seen.action).id)).status, "cancelled");
  });
});
