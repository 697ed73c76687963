/** Checking that a webhook came from the gate (contract §4): `X-Gate-Signature: t=<unix seconds>,v1=<hex>`,
 * the hex being HMAC-SHA256 with the agent's webhook secret over `<t>.<raw body>`. */

export interface VerifyOptions {
  /** How old a signature may be, in seconds (default 300). */
  toleranceSeconds?: number;
  /** The current time in unix seconds (default: the clock). */
  now?: number;
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i += 1) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}

/** The signature header's parts, or null when it is malformed. */
function parseHeader(header: string): { timestamp: number; given: string } | null {
  const parts = new Map<string, string>();
  for (const item of header.split(",")) {
    const at = item.indexOf("=");
    if (at < 0) return null;
    parts.set(item.slice(0, at), item.slice(at + 1));
  }
  const t = parts.get("t")?.trim();
  const given = parts.get("v1");
  if (t === undefined || given === undefined || !/^[+-]?\d+$/.test(t)) return null;
  return { timestamp: Number(t), given };
}

/** The header's value for `body` signed with `secret` at `timestamp` (what the gate sends; for tests). */
export async function signWebhook(secret: string, body: string | Uint8Array, timestamp?: number): Promise<string> {
  const t = timestamp ?? Math.floor(Date.now() / 1000);
  return `t=${t},v1=${await hmacHex(secret, t, body)}`;
}

async function hmacHex(secret: string, timestamp: number, body: string | Uint8Array): Promise<string> {
  const encoder = new TextEncoder();
  const raw = typeof body === "string" ? encoder.encode(body) : body;
  const prefix = encoder.encode(`${timestamp}.`);
  const message = new Uint8Array(prefix.length + raw.length);
  message.set(prefix, 0);
  message.set(raw, prefix.length);
  const key = await globalThis.crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return hex(await globalThis.crypto.subtle.sign("HMAC", key, message));
}

/** True when `header` signs `body` (the raw bytes received: verify before parsing) with `secret`
 * and is no older than `toleranceSeconds`. */
export async function verifySignature(
  secret: string,
  body: string | Uint8Array,
  header: string | null | undefined,
  options: VerifyOptions = {},
): Promise<boolean> {
  const parsed = parseHeader(header ?? "");
  if (parsed === null) return false;
  const now = options.now ?? Date.now() / 1000;
  if (Math.abs(now - parsed.timestamp) > (options.toleranceSeconds ?? 300)) return false;
  return constantTimeEqual(await hmacHex(secret, parsed.timestamp, body), parsed.given);
}
