// The reference: Python itself (the gate's interpreter, GATE_PYTHON, as the pytest test sets it;
// else python3), fed what this client would send.
import { execFileSync } from "node:child_process";

const SCRIPT = String.raw`
import hashlib, hmac, json, sys
for line in sys.stdin:
    job = json.loads(line)
    if job["kind"] == "hash":
        params = json.loads(job["sent"])
        print(hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest())
    elif job["kind"] == "repr":
        print(repr(float(job["sent"])))
    elif job["kind"] == "sign":
        body = job["body"].encode()
        print(hmac.new(job["secret"].encode(), f"{job['t']}.".encode() + body, hashlib.sha256).hexdigest())
`;

/** Python's answers to the jobs, one a job, in order. */
export function askPython(jobs) {
  const python = process.env.GATE_PYTHON || "python3";
  const input = jobs.map((job) => JSON.stringify(job)).join("\n") + "\n";
  const output = execFileSync(python, ["-c", SCRIPT], { input, encoding: "utf8" });
  return output.trimEnd().split("\n");
}
