/** @jsxImportSource smithers-orchestrator */
// A real Smithers Gateway (npm smithers-orchestrator 0.32.0 under Bun) serving deterministic,
// model-free workflows (its agents are scripted) on loopback, for recording wire fixtures and for end-to-end checks.
import { z } from "zod";
import { createSmithers, Gateway } from "smithers-orchestrator";
import { createScorer } from "@smithers-orchestrator/scorers";

const dbPath = process.env.DB ?? "./suite.db";
const port = Number(process.env.PORT ?? 7334);
const wide = Number(process.env.WIDE ?? 300);
const pace = Number(process.env.PACE ?? 1); // multiply every sleep
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms * pace));

const { smithers, Workflow, Task, Sequence, Parallel, Loop } = createSmithers(
  { out: z.object({ value: z.number(), note: z.string() }) },
  { dbPath },
);
const lengthScorer = createScorer({
  id: "note-length", name: "Note length", description: "longer notes score higher",
  score: async ({ output }: any) => ({ score: Math.min(String(output?.note ?? "").length / 20, 1), reason: "length/20" }),
});

const demo = smithers(() => (
  <Workflow name="demo">
    <Sequence>
      <Task id="fetch" output="out">{async () => { await sleep(400); return { value: 1, note: "fetched" }; }}</Task>
      <Parallel>
        <Task id="left" output="out">{async () => { await sleep(600); return { value: 2, note: "left" }; }}</Task>
        <Task id="right" output="out">{async () => { await sleep(300); return { value: 3, note: "right" }; }}</Task>
      </Parallel>
      <Task id="ship" output="out">{async () => { await sleep(300); return { value: 4, note: "shipped" }; }}</Task>
    </Sequence>
  </Workflow>
));

let flaky = 0;
const rich = smithers((ctx: any) => {
  const last = ctx.latest?.("out", "refine");
  return (
    <Workflow name="rich">
      <Sequence>
        <Task id="plan" output="out" scorers={{ length: { scorer: lengthScorer } }}>
          {async () => { await sleep(300); return { value: 1, note: "plan <script>alert('xss')</script><img src=x onerror=alert(2)>" }; }}
        </Task>
        <Parallel>
          {Array.from({ length: 8 }, (_, i) => (
            <Task key={`w${i}`} id={`worker-${i}`} output="out">
              {async () => { await sleep(150 + ((i * 97) % 400)); return { value: i, note: `worker ${i}` }; }}
            </Task>
          ))}
        </Parallel>
        <Task id="flaky" output="out" retries={2} retryPolicy={{ backoff: "fixed", initialDelayMs: 200 }}>
          {async () => { flaky += 1; await sleep(150); if (flaky % 2 === 1) throw new Error("transient failure " + flaky); return { value: flaky, note: "recovered" }; }}
        </Task>
        <Loop id="refine-loop" until={(last?.value ?? 0) >= 3} maxIterations={5}>
          <Task id="refine" output="out" scorers={{ length: { scorer: lengthScorer } }}>
            {async () => { await sleep(250); return { value: (last?.value ?? 0) + 1, note: "refine pass " + ((last?.value ?? 0) + 1) }; }}
          </Task>
        </Loop>
        <Task id="ship" output="out">{async () => { await sleep(200); return { value: 99, note: "shipped" }; }}</Task>
      </Sequence>
    </Workflow>
  );
});

const wideWf = smithers(() => (
  <Workflow name="wide">
    <Sequence>
      <Parallel>
        {Array.from({ length: wide }, (_, i) => (
          <Sequence key={`s${i}`}>
            <Task id={`a-${i}`} output="out">{async () => { await sleep(50 + ((i * 31) % 500)); return { value: i, note: `a ${i}` }; }}</Task>
            <Task id={`b-${i}`} output="out">{async () => { await sleep(50 + ((i * 17) % 300)); return { value: i, note: `b ${i}` }; }}</Task>
          </Sequence>
        ))}
      </Parallel>
      <Task id="join" output="out">{async () => ({ value: wide, note: "joined" })}</Task>
    </Sequence>
  </Workflow>
));

const doomed = smithers(() => (
  <Workflow name="doomed">
    <Sequence>
      <Task id="setup" output="out">{async () => { await sleep(200); return { value: 1, note: "ok" }; }}</Task>
      <Task id="explode" output="out" noRetry>{async () => { await sleep(200); throw new Error("boom: disk full"); }}</Task>
      <Task id="never" output="out">{async () => ({ value: 0, note: "never runs" })}</Task>
    </Sequence>
  </Workflow>
));

const gated = smithers(() => (
  <Workflow name="gated">
    <Sequence>
      <Task id="build" output="out">{async () => { await sleep(200); return { value: 1, note: "built" }; }}</Task>
      <Task id="deploy" output="out" needsApproval label="Deploy to prod">{async () => { await sleep(200); return { value: 2, note: "deployed" }; }}</Task>
    </Sequence>
  </Workflow>
));

// Added for the dashboard's own tests (not in the shared reference): a long sequential run
// (SLOW tasks, default 30, each sleeping 400 ms x PACE) that is still executing when a test
// kills or restarts the Gateway, or rewinds it mid-run.
const slowCount = Number(process.env.SLOW ?? 30);
const slow = smithers(() => (
  <Workflow name="slow">
    <Sequence>
      {Array.from({ length: slowCount }, (_, i) => (
        <Task key={`slow${i}`} id={`step-${i}`} output="out">{async () => { await sleep(400); return { value: i, note: `step ${i}` }; }}</Task>
      ))}
    </Sequence>
  </Workflow>
));

// Added for the dashboard's own tests (not in the shared reference): a deterministic scripted
// agent. Smithers takes any object with `id` and `generate(args)` as an agent (AgentLike), so
// the real engine runs it like a model-backed one and emits what a real agent causes:
// NodeOutput (task.output) per onStdout/onStderr chunk, AgentEvent (agent.event) per onEvent,
// TokenUsageReported (token.usage) from the returned usage (or from a thrown error's usage).
// No model, no network: every line, action and token count follows from the options.
type ScriptOptions = {
  id: string;
  model: string;              // returned as response.modelId: the model token usage is priced by
  lines?: number;             // stdout lines, besides the fixed ones below
  actions?: number;           // tool calls reported through onEvent
  failFirst?: number;         // attempts 1..failFirst throw (after printing and reporting usage)
  usage?: { inputTokens: number; outputTokens: number; cacheReadTokens?: number; cacheWriteTokens?: number; reasoningTokens?: number };
  stepMs?: number;            // sleep between steps (x PACE)
  growingUsage?: boolean;     // the n-th call reports n times the usage (a re-run differs from the run it replaces)
};
const ESC = "\u001b";
function scriptedAgent(o: ScriptOptions) {
  let calls = 0;
  const stepMs = o.stepMs ?? 60;
  const usage = o.usage ?? { inputTokens: 1200, outputTokens: 340, cacheReadTokens: 800, cacheWriteTokens: 100, reasoningTokens: 40 };
  return {
    id: o.id,
    model: o.model,
    async generate(args: any = {}) {
      calls += 1;
      const call = calls;
      const ctx = args.taskContext ?? {};
      // The engine's attempt number (1, 2, ...) decides failure, so every run of a shared
      // Gateway fails the same way; the call counter is only a fallback outside the engine.
      const attempt: number = typeof ctx.attempt === "number" ? ctx.attempt : call;
      const tag = `i${ctx.iteration ?? 0}-a${attempt}`;
      const out = (t: string) => args.onStdout?.(t);
      const err = (t: string) => args.onStderr?.(t);
      const ev = (e: any) => args.onEvent?.({ engine: "scripted", ...e });
      ev({ type: "started", title: `${o.id} on ${o.model}`, detail: { call, iteration: ctx.iteration ?? 0 } });
      out(`${ESC}[1m${o.id}${ESC}[0m starting (iteration ${ctx.iteration ?? 0}, attempt ${attempt})\n`);
      out(`${ESC}[32mgreen ok${ESC}[0m ${ESC}[31mred warn${ESC}[0m ${ESC}[2K${ESC}]0;title\u0007cursor-moved\n`);
      out(`untrusted: <img src=x onerror=alert(1)> <script>alert('agent')</script>\n`);
      err(`${ESC}[33mstderr: note from ${o.id}${ESC}[0m\n`);
      for (let a = 0; a < (o.actions ?? 2); a++) {
        const id = `${o.id}-${tag}-t${a}`;
        const failed = a === 1;
        ev({ type: "action", phase: "started", action: { id, kind: a % 2 ? "command" : "tool", title: a % 2 ? `run tests #${a}` : `read_file src/${a}.ts`, detail: { n: a } } });
        await sleep(stepMs);
        ev({ type: "action", phase: "updated", action: { id, kind: a % 2 ? "command" : "tool", title: a % 2 ? `run tests #${a}` : `read_file src/${a}.ts` }, message: "halfway" });
        out(`action ${a}: working\n`);
        await sleep(stepMs);
        ev({ type: "action", phase: "completed", action: { id, kind: a % 2 ? "command" : "tool", title: a % 2 ? `run tests #${a}` : `read_file src/${a}.ts` }, ok: !failed, message: failed ? "exit code 1" : "done", level: failed ? "warning" : "info" });
      }
      for (let i = 0; i < (o.lines ?? 6); i++) {
        out(`line ${i} of ${o.id}\n`);
        if (i % 3 === 2) await sleep(stepMs);
      }
      out(`long: ${"x".repeat(3000)}\n`);
      if (attempt <= (o.failFirst ?? 0)) {
        err(`${ESC}[31mfatal: scripted failure on attempt ${attempt}${ESC}[0m\n`);
        ev({ type: "completed", ok: false, error: `scripted failure on attempt ${attempt}`, usage: { inputTokens: 300, outputTokens: 20 } });
        // Smithers 0.32 writes output and agent events after an asynchronous ownership check
        // and does not wait for pending ones when generate() throws: without this pause the
        // two lines above are often lost (the success path waits for them).
        await sleep(stepMs);
        const error: any = new Error(`scripted failure on attempt ${attempt}`);
        error.usage = { inputTokens: 300, outputTokens: 20 };
        error.result = { response: { modelId: o.model } };
        throw error;
      }
      const answer = `${o.id} answer (${tag})`;
      const used = o.growingUsage
        ? Object.fromEntries(Object.entries(usage).map(([k, v]) => [k, (v ?? 0) * call])) as typeof usage
        : usage;
      ev({ type: "completed", ok: true, answer, usage: used });
      out(`done: ${answer}\n`);
      return {
        text: JSON.stringify({ value: attempt, note: answer }),
        output: { value: attempt, note: answer },
        usage: used,
        response: { modelId: o.model },
      };
    },
  };
}

// Added for the transcript view's tests: an agent that talks like a CLI agent in stream-json
// mode. Smithers' AgentTraceCollector only emits agent.session (AgentSessionEvent) for a
// capture mode of "cli-json-stream" or "rpc-events" (observeProviderSessionRow in
// engine/src/AgentTraceCollector.js), and detectCaptureMode (observability) gives an agent of
// no known family "cli-json-stream" when its `outputFormat` is "stream-json". Each stdout line
// is then parsed as JSON and becomes one transcript row, emitted when the attempt ends.
function narratorAgent(id: string, model: string) {
  return {
    id,
    model,
    outputFormat: "stream-json",
    async generate(args: any = {}) {
      const ctx = args.taskContext ?? {};
      const attempt: number = typeof ctx.attempt === "number" ? ctx.attempt : 1;
      const say = (row: any) => args.onStdout?.(JSON.stringify(row) + "\n");
      const answer = `narrated <script>alert('transcript')</script> (attempt ${attempt})`;
      say({ type: "system", subtype: "init", session_id: `narrator-session-${attempt}`, model });
      await sleep(100);
      say({ type: "user", message: { role: "user", content: "Narrate <b>the run</b>" } });
      await sleep(100);
      say({ type: "assistant", message: { role: "assistant", content: [{ type: "text", text: "Reading <img src=x onerror=alert(1)> now" }] } });
      await sleep(100);
      say({ type: "assistant", message: { role: "assistant", content: [{ type: "tool_use", id: "tool-1", name: "read_file", input: { path: "notes.md" } }] } });
      await sleep(100);
      say({ type: "result", subtype: "success", result: answer, session_id: `narrator-session-${attempt}` });
      const usage = { inputTokens: 400, outputTokens: 60 };
      return { text: JSON.stringify({ value: attempt, note: answer }), output: { value: attempt, note: answer }, usage, response: { modelId: model } };
    },
  };
}

// Agents live at module level: a workflow's render function runs again at every step, and a
// fresh agent per render would forget how many calls it has answered (agent-retry needs that).
const researcher = scriptedAgent({ id: "researcher", model: "claude-sonnet-4-6-20260115", lines: 8, actions: 3 });
const writer = scriptedAgent({ id: "writer", model: "gpt-5.6-terra-2026-03-01", lines: 6, actions: 2, usage: { inputTokens: 2000, outputTokens: 500, cacheReadTokens: 1500, cacheWriteTokens: 0, reasoningTokens: 120 } });
const reviewer = scriptedAgent({ id: "reviewer", model: "claude-haiku-4-5-20251001", lines: 4, actions: 1, usage: { inputTokens: 900, outputTokens: 150, cacheReadTokens: 0, cacheWriteTokens: 300 } });
const localLlm = scriptedAgent({ id: "local-llm", model: "local-llama-3-8b", lines: 5, actions: 2, usage: { inputTokens: 700, outputTokens: 90 } });
const flakyAgent = scriptedAgent({ id: "flaky", model: "claude-opus-4-7-20260201", lines: 3, actions: 2, failFirst: 1 });
const looper = scriptedAgent({ id: "looper", model: "claude-sonnet-4-6", lines: 2, actions: 1 });
const narrator = narratorAgent("narrator", "claude-haiku-4-5-20251001");
const stepper = scriptedAgent({ id: "stepper", model: "claude-haiku-4-5-20251001", lines: 3, actions: 1, stepMs: 100, growingUsage: true });

const agentsWf = smithers(() => (
  <Workflow name="agents">
    <Parallel>
      <Task id="research" output="out" agent={researcher}>Research the topic.</Task>
      <Task id="write" output="out" agent={writer}>Write it up.</Task>
      <Task id="review" output="out" agent={reviewer}>Review it.</Task>
      <Task id="local" output="out" agent={localLlm}>Summarise locally.</Task>
    </Parallel>
  </Workflow>
));

const agentRetryWf = smithers(() => (
  <Workflow name="agent-retry">
    <Task id="flaky-agent" output="out" retries={1} retryPolicy={{ backoff: "fixed", initialDelayMs: 100 }}
      agent={flakyAgent}>Try hard.</Task>
  </Workflow>
));

const agentLoopWf = smithers((ctx: any) => {
  const last = ctx.latest?.("out", "iterate");
  return (
    <Workflow name="agent-loop">
      <Loop id="agent-loop" until={false} maxIterations={3} onMaxReached="return-last">
        <Task id="iterate" output="out" agent={looper}>
          {`Improve pass ${(last?.value ?? 0) + 1}.`}
        </Task>
      </Loop>
    </Workflow>
  );
});

// Added for the transcript view's tests: one agent task whose agent gives a transcript.
const agentTranscriptWf = smithers(() => (
  <Workflow name="agent-transcript">
    <Task id="narrate" output="out" agent={narrator}>Narrate.</Task>
  </Workflow>
));

// Added for the rewind tests of the agents model: agent tasks one after the other (a frame
// between each), whose agent reports more tokens at every call, so the attempts a rewind
// discards and their re-runs report different usage under the same attempt numbers.
const agentStepsWf = smithers(() => (
  <Workflow name="agent-steps">
    <Sequence>
      {Array.from({ length: 4 }, (_, i) => (
        <Task key={`step${i}`} id={`agent-step-${i}`} output="out" agent={stepper}>{`Step ${i}.`}</Task>
      ))}
    </Sequence>
  </Workflow>
));

// Added for the operator workflows' tests (not in the shared reference), each family on a
// database of its own so the workflows above keep theirs unchanged. `signal` parks at a Signal
// node (state waiting-event) until `submitSignal` names `release`. `typed` declares an input
// schema (string, integer, number, boolean, enum, array) and echoes its input; `typed-gated`
// takes the same input and waits for an approval. The Gateway does not publish input schemas,
// so with SCHEMAS_OUT set the suite writes them there as JSON Schema (zod's toJSONSchema),
// which is what an operator hands the dashboard.
const dbBase = dbPath.replace(/\.db$/, "");
const outSchema = z.object({ value: z.number(), note: z.string() });
const releaseSchema = z.object({ note: z.string() });
const signalOps = createSmithers({ out: outSchema, release: releaseSchema }, { dbPath: `${dbBase}-signal.db` });
const signalWf = signalOps.smithers(() => (
  <signalOps.Workflow name="signal">
    <signalOps.Sequence>
      <signalOps.Task id="prepare" output="out">{async () => { await sleep(200); return { value: 1, note: "prepared" }; }}</signalOps.Task>
      <signalOps.Signal id="release" schema={releaseSchema} label="Release the batch" />
      <signalOps.Task id="finish" output="out">{async () => { await sleep(200); return { value: 2, note: "released" }; }}</signalOps.Task>
    </signalOps.Sequence>
  </signalOps.Workflow>
));
const typedInput = z.object({
  target: z.string().describe("Where to deploy"),
  replicas: z.number().int().min(1).max(20),
  ratio: z.number(),
  dryRun: z.boolean().default(true),
  tier: z.enum(["dev", "staging", "prod"]),
  tags: z.array(z.string()),
});
const typedOps = createSmithers({ input: typedInput, out: outSchema }, { dbPath: `${dbBase}-typed.db` });
const typedWf = typedOps.smithers((ctx: any) => (
  <typedOps.Workflow name="typed">
    <typedOps.Task id="echo" output="out">
      {async () => { await sleep(200); return { value: Number(ctx.input?.replicas ?? 0), note: `${ctx.input?.target} on ${ctx.input?.tier}` }; }}
    </typedOps.Task>
  </typedOps.Workflow>
));
const typedGatedWf = typedOps.smithers((ctx: any) => (
  <typedOps.Workflow name="typed-gated">
    <typedOps.Sequence>
      <typedOps.Task id="plan" output="out">{async () => { await sleep(200); return { value: Number(ctx.input?.replicas ?? 0), note: String(ctx.input?.target) }; }}</typedOps.Task>
      <typedOps.Task id="apply" output="out" needsApproval label="Apply the plan">{async () => { await sleep(200); return { value: 1, note: "applied" }; }}</typedOps.Task>
    </typedOps.Sequence>
  </typedOps.Workflow>
));
if (process.env.SCHEMAS_OUT) {
  const typedJson = z.toJSONSchema(typedInput, { io: "input" });
  await Bun.write(process.env.SCHEMAS_OUT, JSON.stringify({ typed: typedJson, "typed-gated": typedJson }, null, 2));
}

const gateway = new Gateway({
  protocol: 1,
  auth: { mode: "token", tokens: {
    "op-token": { role: "admin", scopes: ["*"], userId: "user:op" },
    "read-token": { role: "viewer", scopes: ["run:read", "observability:read"], userId: "user:viewer" },
  } },
});
for (const [k, wf] of Object.entries({ demo, rich, wide: wideWf, doomed, gated, slow, agents: agentsWf, "agent-retry": agentRetryWf, "agent-loop": agentLoopWf, "agent-transcript": agentTranscriptWf, "agent-steps": agentStepsWf, signal: signalWf, typed: typedWf, "typed-gated": typedGatedWf })) gateway.register(k, wf as any);
const server = await gateway.listen({ port, host: "127.0.0.1" });
console.log(JSON.stringify({ listening: (server.address() as any).port }));
