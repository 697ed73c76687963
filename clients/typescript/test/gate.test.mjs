// The client against the real stack: propose, wait, get, cancel, report, errors, webhooks.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, test } from "node:test";

import {
  AuthenticationError,
  ConflictError,
  Gate,
  InvalidRequestError,
  NotFoundError,
  paramsHash,
  verifySignature,
} from "../dist/index.js";
import { BASE_URL, decide, evaluated, gate, lookedUp, newOrder, skip, WEBHOOK_SECRET } from "./stack.mjs";

describe("Gate against the real stack", { skip }, () => {
  test("an auto-approved proposal: the gate's hash of its params is the client's (unicode, floats)", async () => {
    const client = gate();
    const orderId = newOrder();
    const params = { order_id: orderId, amount: 42.5, note: "Grüße 😀 中文 \u2028", rate: 1e-7, parts: [0.1, 3, -0.0] };
    const action = await client.propose("refund", params, { trajectory: lookedUp(orderId), waitSeconds: 20 });
    assert.equal(action.status, "auto_approved", action.reason);
    assert.equal(action.approved, true);
    assert.equal(action.approvedParamsHash, await paramsHash(params));
    assert.equal(action.approvedParamsHash, await paramsHash(action.params));

    const reported = await client.report(action.id, { executed: true, result: { ok: true }, paramsHash: await paramsHash(params) });
    assert.equal(reported.data.outcome.executed, true);
    assert.equal(reported.data.outcome.params_hash, action.approvedParamsHash);
    assert.equal(reported.data.outcome.params_mismatch, false);
    // reported twice (a retry): counted once, no error
    assert.equal((await client.report(action.id, { executed: true })).id, action.id);
    await assert.rejects(client.report(action.id, { executed: false }), ConflictError);
  });

  test("the same idempotency key and body: the same action; another body: 409", async () => {
    const client = gate();
    const orderId = newOrder();
    const key = `ts-test/${orderId}`;
    const first = await client.propose("refund", { order_id: orderId, amount: 5 }, { idempotencyKey: key });
    const again = await client.propose("refund", { amount: 5, order_id: orderId }, { idempotencyKey: key });
    assert.equal(again.id, first.id);
    assert.equal(first.data.idempotency_key, key);
    await assert.rejects(client.propose("refund", { order_id: orderId, amount: 6 }, { idempotencyKey: key }), (error) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.statusCode, 409);
      return true;
    });
  });

  test("a held action: a bounded wait returns it undecided; cancel withdraws it, twice is fine", async () => {
    const client = gate();
    const action = await client.propose("refund", { order_id: newOrder(), amount: 20 }, { waitSeconds: 20 });
    assert.equal(action.status, "needs_review");
    assert.match(action.reason, /order_was_looked_up/);
    const started = Date.now();
    const waited = await client.wait(action.id, { timeoutSeconds: 1 });
    assert.equal(waited.status, "needs_review");
    assert.ok(Date.now() - started >= 900, "the long poll held the request");
    assert.equal((await client.cancel(action.id)).status, "cancelled");
    assert.equal((await client.cancel(action.id)).status, "cancelled");
    await assert.rejects(client.report(action.id, { executed: true }), ConflictError);
  });

  test("wait returns as soon as a reviewer decides", async () => {
    const client = gate();
    const action = await evaluated(client, (await client.propose("refund", { order_id: newOrder(), amount: 20 })).id);
    assert.equal(action.status, "needs_review");
    const waiting = client.wait(action.id, { timeoutSeconds: 20 });
    await decide(action.id, { verdict: "reject", reason: "not this one" });
    const decided = await waiting;
    assert.equal(decided.status, "rejected");
    assert.equal(decided.reason, "not this one (lead)");
  });

  test("errors are typed: a bad token, a malformed proposal, an unknown action", async () => {
    await assert.rejects(new Gate({ baseUrl: BASE_URL, token: "gat_wrong", retries: 0 }).get("00000000-0000-0000-0000-000000000000"), AuthenticationError);
    const client = gate();
    await assert.rejects(client.propose("no_such_type", { a: 1 }), (error) => {
      assert.ok(error instanceof InvalidRequestError);
      assert.equal(error.statusCode, 400);
      assert.ok(error.body && typeof error.body === "object");
      return true;
    });
    await assert.rejects(client.get("00000000-0000-0000-0000-000000000000"), NotFoundError);
  });

  test("a webhook from the gate verifies with the agent's secret; tampered, it does not", { skip: !WEBHOOK_SECRET }, async () => {
    const deliveries = [];
    let delivered;
    const arrived = new Promise((resolve) => (delivered = resolve));
    const server = createServer((request, response) => {
      const chunks = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => {
        deliveries.push({ body: Buffer.concat(chunks), signature: request.headers["x-gate-signature"], event: request.headers["x-gate-event"] });
        response.end("ok");
        delivered();
      });
    });
    await new Promise((resolve) => server.listen(0, resolve)); // every address: localhost may be ::1 or 127.0.0.1
    try {
      const { port } = server.address();
      const orderId = newOrder();
      const action = await gate().propose("refund", { order_id: orderId, amount: 10, note: "é 😀" }, {
        trajectory: lookedUp(orderId),
        callbackUrl: `http://localhost:${port}/hook`,
      });
      await Promise.race([arrived, new Promise((_, reject) => setTimeout(() => reject(new Error("no delivery in 30 s")), 30_000))]);
      const [delivery] = deliveries;
      assert.equal(delivery.event, "action.evaluated");
      assert.equal(JSON.parse(delivery.body.toString("utf8")).id, action.id);
      assert.equal(await verifySignature(WEBHOOK_SECRET, new Uint8Array(delivery.body), delivery.signature), true);
      const tampered = Buffer.from(delivery.body.toString("utf8").replace(action.id, "someone-else"));
      assert.equal(await verifySignature(WEBHOOK_SECRET, new Uint8Array(tampered), delivery.signature), false);
      assert.equal(await verifySignature("whsec_wrong", new Uint8Array(delivery.body), delivery.signature), false);
    } finally {
      server.close();
    }
  });
});
