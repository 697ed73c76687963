// params_hash: byte for byte Python's json.dumps(sort_keys=True, separators=(",", ":")).
import assert from "node:assert/strict";
import { test } from "node:test";

import { canonicalJson, paramsHash, pythonFloatRepr } from "../dist/index.js";
import { askPython } from "./python-oracle.mjs";

const CASES = [
  { order_id: "A-1001", amount: 42.5 },
  { b: 1, a: 2, nested: { z: [3, 2, 1], y: null, x: true, w: false } },
  { text: "Grüße, 中文, emoji 😀, combining é, RTL \u202e, line sep \u2028" },
  { controls: "\u0000\u0001\u001f\u007f\t\n\r\b\f \"quoted\" back\\slash /slash" },
  { lone_surrogate: "\ud800", high_only: "x\udbffy" },
  { "ключ": 1, "😀": 2, "\uffff": 3, "é": 4, "e": 5, "E": 6, "": 7, "10": 8, "9": 9 },
  { floats: [0.1, 0.2 + 0.1, 1.5, -2.25, 1e-4, 1e-5, 1.5e-7, 123456789.125, 1e15 + 0.5, 1e16, 1.7976931348623157e308] },
  { more: [5e-324, 2.2250738585072014e-308, 9007199254740993, 1e21, 1.2345e21, 1e20, -0, 0, 3.0, 100] },
  { weird: [NaN, Infinity, -Infinity, undefined, () => 1], dropped: undefined },
  { when: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)) },
  {},
  [],
  "a string",
  42,
];

test("the hash equals Python's for unicode, floats, key order and what JSON.stringify drops", async () => {
  const expected = askPython(CASES.map((value) => ({ kind: "hash", sent: JSON.stringify(value) })));
  const actual = await Promise.all(CASES.map((value) => paramsHash(value)));
  assert.deepEqual(actual, expected);
});

test("floats are written as Python's repr writes them, across magnitudes", () => {
  const values = [];
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let exponent = -330; exponent <= 308; exponent += 3) {
    values.push(random() * 10 ** exponent, -random() * 10 ** exponent, 10 ** exponent);
  }
  values.push(0.1, 1 / 3, 2 / 3, 1e-4, 9.999999999999999e-5, 1e16, 9999999999999998, 0.5, 123.456);
  const finite = values.filter((value) => Number.isFinite(value) && value !== 0);
  const expected = askPython(finite.map((value) => ({ kind: "repr", sent: String(value) })));
  assert.equal(expected.length, finite.length);
  assert.deepEqual(finite.map(pythonFloatRepr), expected);
});

test("the canonical text has sorted keys, no spaces and ASCII only", () => {
  assert.equal(canonicalJson({ b: [1, 2.5], a: "é" }), '{"a":"\\u00e9","b":[1,2.5]}');
  // 1e16 is an integer to JavaScript, sent as digits: Python reads an int
  assert.equal(canonicalJson({ x: 1e-5, y: 1e16, z: -0.0, w: 1e21 }), '{"w":1e+21,"x":1e-05,"y":10000000000000000,"z":0}');
  assert.throws(() => canonicalJson(undefined), TypeError);
});
