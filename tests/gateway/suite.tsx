/** @jsxImportSource smithers-orchestrator */
// A real Smithers Gateway (npm smithers-orchestrator 0.32.0 under Bun) serving deterministic,
// agent-free workflows on loopback, for recording wire fixtures and for end-to-end checks.
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

const gateway = new Gateway({
  protocol: 1,
  auth: { mode: "token", tokens: {
    "op-token": { role: "admin", scopes: ["*"], userId: "user:op" },
    "read-token": { role: "viewer", scopes: ["run:read", "observability:read"], userId: "user:viewer" },
  } },
});
for (const [k, wf] of Object.entries({ demo, rich, wide: wideWf, doomed, gated, slow })) gateway.register(k, wf as any);
const server = await gateway.listen({ port, host: "127.0.0.1" });
console.log(JSON.stringify({ listening: (server.address() as any).port }));
