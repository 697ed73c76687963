/**
 * A support agent on the Vercel AI SDK whose `refund` tool is gated by Autonomy Gate.
 *
 * The model is scripted (the SDK's `MockLanguageModelV2`, no network): it looks the order up,
 * asks for a refund, then tells the customer what happened. `get_order` runs freely and is kept
 * as the trajectory the gate's rules read; `refund` runs only once the gate approves it, with a
 * reviewer's edited params when there are some. A refusal goes back to the model as the tool's
 * result (the reason included), so it can explain it; the idempotency key comes from the SDK's
 * tool-call id, so re-running the same conversation never proposes (nor makes) the same refund twice.
 *
 *   GATE_URL=http://127.0.0.1:8000 GATE_TOKEN=gat_… npm run example -- A-1001 42.5
 */

import { generateText, stepCountIs, tool } from "ai";
import { MockLanguageModelV2 } from "ai/test";
import { z } from "zod";

import { Gate, NotApproved, requiresApproval, type Action } from "@autonomy-gate/client";

type Step = { kind: "tool_call"; tool: string; args: Record<string, unknown>; result: string };
type ModelCall = ConstructorParameters<typeof MockLanguageModelV2>[0] & {};
type DoGenerate = Extract<NonNullable<ModelCall["doGenerate"]>, (...args: never[]) => unknown>;

const usage = { inputTokens: 10, outputTokens: 10, totalTokens: 20 };

/** The scripted model: get_order, then refund, then a sentence about the refund's result. */
export function scriptedModel(orderId: string, amount: number): MockLanguageModelV2 {
  const doGenerate: DoGenerate = async ({ prompt }) => {
    const results = prompt.flatMap((message) =>
      message.role === "tool" ? message.content.filter((part) => part.type === "tool-result") : [],
    );
    if (results.length === 0) {
      const input = JSON.stringify({ order_id: orderId });
      return {
        content: [{ type: "tool-call", toolCallId: "call-1", toolName: "get_order", input }],
        finishReason: "tool-calls",
        usage,
        warnings: [],
      };
    }
    if (results.length === 1) {
      const input = JSON.stringify({ order_id: orderId, amount });
      return {
        content: [{ type: "tool-call", toolCallId: "call-2", toolName: "refund", input }],
        finishReason: "tool-calls",
        usage,
        warnings: [],
      };
    }
    const last = results[results.length - 1]!.output;
    const said = last.type === "json" || last.type === "error-json" ? JSON.stringify(last.value) : String(last.value);
    return { content: [{ type: "text", text: `Refund tool said: ${said}` }], finishReason: "stop", usage, warnings: [] };
  };
  return new MockLanguageModelV2({ doGenerate });
}

export interface RunOptions {
  gate: Gate;
  orderId: string;
  amount: number;
  /** Names this conversation: with the SDK's tool-call ids, the idempotency keys of its tool calls. */
  runId: string;
  /** Told of the refund's action as soon as it is proposed (its id, its review URL) and once decided. */
  onAction?: (action: Action) => void;
  timeoutSeconds?: number;
}

export interface RunResult {
  text: string;
  refunded: Array<{ order_id: string; amount: number }>;
}

/** One conversation with the support agent. */
export async function runSupportAgent(options: RunOptions): Promise<RunResult> {
  const trajectory: Step[] = [];
  const refunded: RunResult["refunded"] = [];

  const refund = requiresApproval(
    // Extra arguments (here the SDK's tool call) pass through to the function unchanged.
    async (input: { order_id: string; amount: number }, _call: { toolCallId: string }) => {
      refunded.push(input); // the real refund would be called here
      return { refunded: input.amount, order_id: input.order_id };
    },
    {
      gate: options.gate,
      actionType: "refund",
      trajectory: () => [...trajectory],
      context: { channel: "chat", run_id: options.runId },
      rationale: "The customer reports the order arrived damaged",
      idempotencyKey: (_input, call: { toolCallId: string }) => `ai-sdk/${options.runId}/${call.toolCallId}`,
      timeoutSeconds: options.timeoutSeconds ?? 300,
      ...(options.onAction ? { onAction: options.onAction } : {}),
    },
  );

  const tools = {
    get_order: tool({
      description: "Look an order up",
      inputSchema: z.object({ order_id: z.string() }),
      execute: async ({ order_id }) => {
        const order = { order_id, total: 80, status: "delivered" };
        trajectory.push({ kind: "tool_call", tool: "get_order", args: { order_id }, result: JSON.stringify(order) });
        return order;
      },
    }),
    refund: tool({
      description: "Refund part or all of an order (needs the gate's approval)",
      inputSchema: z.object({ order_id: z.string(), amount: z.number() }),
      execute: async (input, { toolCallId }) => {
        try {
          return await refund(input, { toolCallId });
        } catch (error) {
          // A refusal is the tool's answer: the model reads why, and can tell the customer.
          if (error instanceof NotApproved) return { refused: true, status: error.status, reason: error.reason };
          throw error;
        }
      },
    }),
  };

  const result = await generateText({
    model: scriptedModel(options.orderId, options.amount),
    tools,
    stopWhen: stepCountIs(5),
    prompt: `My order ${options.orderId} arrived broken, please refund ${options.amount}.`,
  });
  return { text: result.text, refunded };
}

async function main(): Promise<void> {
  const [orderId = "A-1001", amount = "42.5"] = process.argv.slice(2);
  const gate = new Gate({ baseUrl: process.env.GATE_URL ?? "http://127.0.0.1:8000", token: process.env.GATE_TOKEN ?? "" });
  const result = await runSupportAgent({
    gate,
    orderId,
    amount: Number(amount),
    runId: `example-${Date.now()}`,
    onAction: (action) => console.log(`action ${action.id}: ${action.status} (${gate.baseUrl}${action.reviewUrl})`),
  });
  console.log(result.text);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
