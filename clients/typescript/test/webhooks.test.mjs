// Webhook signatures: the gate's algorithm (approvals/integrations/webhooks.py), checked offline.
import assert from "node:assert/strict";
import { test } from "node:test";

import { signWebhook, verifySignature } from "../dist/index.js";
import { askPython } from "./python-oracle.mjs";

const SECRET = "whsec_test-secret";
const BODY = JSON.stringify({ id: "5b0c", status: "approved", note: "Grüße 😀" });

test("a signature made as Python makes it verifies; the same bytes as string or Uint8Array", async () => {
  const t = 1_800_000_000;
  const [hex] = askPython([{ kind: "sign", secret: SECRET, body: BODY, t }]);
  const header = `t=${t},v1=${hex}`;
  assert.equal(await signWebhook(SECRET, BODY, t), header);
  assert.equal(await verifySignature(SECRET, BODY, header, { now: t + 10 }), true);
  assert.equal(await verifySignature(SECRET, new TextEncoder().encode(BODY), header, { now: t }), true);
});

test("a changed body, another secret, an old or a malformed header do not verify", async () => {
  const t = 1_800_000_000;
  const header = await signWebhook(SECRET, BODY, t);
  assert.equal(await verifySignature(SECRET, BODY + " ", header, { now: t }), false);
  assert.equal(await verifySignature("whsec_other", BODY, header, { now: t }), false);
  assert.equal(await verifySignature(SECRET, BODY, header, { now: t + 301 }), false);
  assert.equal(await verifySignature(SECRET, BODY, header, { now: t + 600, toleranceSeconds: 900 }), true);
  for (const bad of ["", "garbage", `t=${t}`, `v1=abc`, `t=soon,v1=${header.split("v1=")[1]}`, null, undefined]) {
    assert.equal(await verifySignature(SECRET, BODY, bad, { now: t }), false, String(bad));
  }
});
