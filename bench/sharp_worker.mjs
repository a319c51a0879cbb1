// The baseline the engine is measured against: the original system's sharp call, timed inside one long-lived
// node process so that process start-up and module loading are never counted.
//
// Protocol (one JSON object per line):
//   stdin  {"op": "load", "id": 1, "path": "/abs/file.jpg"}        -> {"id": 1, "bytes": 123}
//          {"op": "run", "id": 2, "path": "/abs/file.jpg", "out": "/abs/out.jpg" (optional)}
//                                                                   -> {"id": 2, "ns": 123456, "bytes": 789}
//          {"op": "quit"}
//   stdout one answer per request, in order; errors as {"id": n, "error": "..."}.
//
// `node sharp_worker.mjs --peak FILE` instead compresses FILE once in this fresh process and prints the peak
// resident set size (VmHWM) before and after, for the memory figure.
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import sharp from "sharp";

// One image at a time on one libvips thread, no operation cache: the same conditions as the Python engine.
sharp.concurrency(1);
sharp.cache(false);

const compress = (input) => sharp(input).rotate().jpeg({ quality: 50 }).toBuffer();

const statusKb = (field) => {
  const match = readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return match ? Number(match[1]) : null;
};

async function peak(path) {
  const input = readFileSync(path);
  const before = statusKb("VmHWM");
  const output = await compress(input);
  const after = statusKb("VmHWM");
  process.stdout.write(`${JSON.stringify({ before_kb: before, peak_kb: after, bytes: output.length })}\n`);
}

async function serve() {
  const inputs = new Map();
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const job = JSON.parse(line);
    if (job.op === "quit") break;
    let answer;
    try {
      if (job.op === "load") {
        inputs.set(job.path, readFileSync(job.path));
        answer = { id: job.id, bytes: inputs.get(job.path).length };
      } else if (job.op === "run") {
        const input = inputs.get(job.path) ?? readFileSync(job.path);
        const started = process.hrtime.bigint();
        const output = await compress(input);
        const ns = Number(process.hrtime.bigint() - started);
        if (job.out) writeFileSync(job.out, output);
        answer = { id: job.id, ns, bytes: output.length };
      } else {
        answer = { id: job.id, error: `unknown op ${job.op}` };
      }
    } catch (error) {
      answer = { id: job.id, error: String(error?.message ?? error) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
}

if (process.argv[2] === "--peak") {
  await peak(process.argv[3]);
} else {
  await serve();
}
