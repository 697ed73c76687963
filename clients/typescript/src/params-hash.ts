/**
 * The gate's hash of params (contract §6.3): SHA-256 hex of the JSON with sorted keys and no
 * spaces, byte for byte what Python's `json.dumps(params, sort_keys=True, separators=(",", ":"))`
 * writes for the params as the gate parsed them: non-ASCII escaped as `\uXXXX` (astral characters
 * as surrogate pairs), keys sorted by code point, integers as integers and other numbers as
 * Python's `repr(float)` (`1e-05`, `1e+16`, `0.1`).
 *
 * The value is first taken through `JSON.stringify` (what the client sends: `undefined` dropped,
 * `toJSON` applied, NaN and Infinity as null). A number JavaScript holds as an integer is sent as
 * one (`50`, never `50.0`); a reviewer's edit typed as `50.0` comes back as the number 50, so for
 * an edit run as received the gate's own `approved_params_hash` is the exact one.
 */

const NAMED_ESCAPES: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

/** A string as Python's json.dumps (ensure_ascii) writes it. */
function pythonString(value: string): string {
  let out = '"';
  for (let i = 0; i < value.length; i += 1) {
    const char = value[i] as string;
    const unit = value.charCodeAt(i);
    const named = NAMED_ESCAPES[char];
    if (named !== undefined) out += named;
    else if (unit >= 0x20 && unit <= 0x7e) out += char;
    else out += "\\u" + unit.toString(16).padStart(4, "0");
  }
  return out + '"';
}

/** A float as Python's repr writes it: the shortest round-trip digits, positional between 1e-4 and
 * 1e16, else `d.ddde±XX`. */
export function pythonFloatRepr(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  const sign = value < 0 ? "-" : "";
  const [mantissa = "", exponentText = "0"] = Math.abs(value).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exponent = Number(exponentText);
  const decimalPoint = exponent + 1; // digits are 0.d1d2… × 10^decimalPoint
  if (decimalPoint <= -4 || decimalPoint > 16) {
    const rest = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const e = Math.abs(exponent).toString().padStart(2, "0");
    return `${sign}${digits[0]}${rest}e${exponent < 0 ? "-" : "+"}${e}`;
  }
  if (decimalPoint <= 0) return `${sign}0.${"0".repeat(-decimalPoint)}${digits}`;
  if (decimalPoint >= digits.length) return `${sign}${digits}${"0".repeat(decimalPoint - digits.length)}.0`;
  return `${sign}${digits.slice(0, decimalPoint)}.${digits.slice(decimalPoint)}`;
}

/** A number as the gate re-serialises it: JSON.stringify sends an integer below 1e21 as digits
 * (Python reads an int), anything else with a fraction or an exponent (Python reads a float). */
function pythonNumber(value: number): string {
  if (Number.isInteger(value) && Math.abs(value) < 1e21) return String(value);
  return pythonFloatRepr(value);
}

/** Python sorts keys as strings: by code point (JavaScript's default sort is by UTF-16 unit). */
function byCodePoint(a: string, b: string): number {
  const left = Array.from(a);
  const right = Array.from(b);
  for (let i = 0; i < Math.min(left.length, right.length); i += 1) {
    const difference = (left[i] as string).codePointAt(0)! - (right[i] as string).codePointAt(0)!;
    if (difference !== 0) return difference;
  }
  return left.length - right.length;
}

function encode(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      return pythonNumber(value);
    case "string":
      return pythonString(value);
    case "object":
      if (Array.isArray(value)) return `[${value.map(encode).join(",")}]`;
      return `{${Object.keys(value as object)
        .sort(byCodePoint)
        .map((key) => `${pythonString(key)}:${encode((value as Record<string, unknown>)[key])}`)
        .join(",")}}`;
    default:
      throw new TypeError(`not JSON: ${typeof value}`);
  }
}

/** The canonical JSON text the gate hashes (see the module's comment). */
export function canonicalJson(value: unknown): string {
  const sent = JSON.stringify(value);
  if (sent === undefined) throw new TypeError("not JSON: the value has no JSON form");
  return encode(JSON.parse(sent));
}

/** SHA-256 hex of `canonicalJson(params)`: the `params_hash` of an outcome report. */
export async function paramsHash(params: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(canonicalJson(params));
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
