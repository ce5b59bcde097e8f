// Time the Gateway's own applyDelta (@smithers-orchestrator/devtools) on a DevTools workload.
//
// The reference implementation is imported from the Gateway install by absolute path (we do
// not copy its source): it is what `bench_tree.py` compares our Python DevToolsTree against.
//
//   bun apply_delta_bench.mjs <path/to/applyDelta.js> <workload.jsonl> <workload.jsonl.final.json> [repeat]
//
// The workload's first line is a `devtools.event` snapshot frame, every other line a delta
// frame (see make_workload.py). JSON parsing is done before timing; each repetition starts
// from the parsed snapshot and applies every delta in order. Prints one JSON line:
//   {"nodes", "final_nodes", "deltas", "repeat", "us_per_delta" (best repetition),
//    "us_per_delta_all", "ok", "runtime"}
// and exits 1 if the resulting tree differs from the expected final tree.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [applyPath, workloadPath, finalPath, repeatArg] = process.argv.slice(2);
if (!applyPath || !workloadPath || !finalPath) {
  console.error("usage: apply_delta_bench.mjs <applyDelta.js> <workload.jsonl> <final.json> [repeat]");
  process.exit(2);
}
const { applyDelta } = await import(pathToFileURL(applyPath).href);
const repeat = Math.max(1, Number(repeatArg ?? 1));

const frames = readFileSync(workloadPath, "utf8").split("\n").filter((line) => line.length > 0).map((line) => JSON.parse(line));
const first = frames[0].payload.event;
if (first.kind !== "snapshot") throw new Error("the workload must start with a snapshot");
const snapshot = first.snapshot;
const deltas = frames.slice(1).map((frame) => {
  const event = frame.payload.event;
  if (event.kind !== "delta") throw new Error("expected a delta event");
  return event.delta;
});
const expected = JSON.parse(readFileSync(finalPath, "utf8"));

function countNodes(node) {
  let n = 0;
  const stack = [node];
  while (stack.length > 0) {
    const current = stack.pop();
    n += 1;
    for (const child of current.children ?? []) stack.push(child);
  }
  return n;
}

// Structural equality of JSON values, ignoring the order of object keys.
function same(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i += 1) if (!same(a[i], b[i])) return false;
    return true;
  }
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) {
    if (!Object.prototype.hasOwnProperty.call(b, key) || !same(a[key], b[key])) return false;
  }
  return true;
}

const timings = [];
let result = snapshot;
for (let r = 0; r < repeat; r += 1) {
  let current = snapshot; // applyDelta never mutates its input: it clones the tree first
  const started = performance.now();
  for (const delta of deltas) current = applyDelta(current, delta);
  timings.push(((performance.now() - started) * 1000) / deltas.length);
  result = current;
}
const ok = result.seq === expected.seq && same(result.root, expected.root);
console.log(
  JSON.stringify({
    nodes: countNodes(snapshot.root),
    final_nodes: countNodes(result.root),
    deltas: deltas.length,
    repeat,
    us_per_delta: Math.min(...timings),
    us_per_delta_all: timings,
    ok,
    runtime: typeof Bun !== "undefined" ? `bun ${Bun.version}` : `node ${process.version}`,
  }),
);
process.exit(ok ? 0 : 1);
