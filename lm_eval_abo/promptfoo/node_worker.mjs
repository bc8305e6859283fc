// The long-lived Node worker that runs promptfoo `javascript` assertions for lm_eval_abo (one per run).
//
// Reads one JSON request per line on stdin and writes one JSON reply per line on stdout, in order, each
// after the token given as the first argument (what the code itself prints goes to stderr):
//   {"id", "code" | "file" (+ "function"), "output", "context", "inverse", "threshold"}
//   -> TOKEN {"id", "pass", "score"} | TOKEN {"id", "error"} (an error fails the whole test, as in promptfoo)
// The grading follows promptfoo 0.120.0's javascript assertion: inline code is a function body when it
// spans lines, else an expression; a file exports the function (named, the module itself, or its
// default); the result must be a boolean (`not-` inverts it), a number (passes above 0, or at the
// assertion's threshold) or a GradingResult (taken as it is). The code is the config's own; the
// model's output and the test's vars reach it only as the values `output` and `context`.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const TOKEN = process.argv[2] ?? "";
const write = process.stdout.write.bind(process.stdout);
for (const name of ["log", "info", "debug", "warn", "trace", "dir", "table"]) console[name] = console.error;

const functions = new Map(); // inline code -> compiled function
const modules = new Map(); // file -> loaded module

function isGradingResult(value) {
  return typeof value === "object" && value !== null && typeof value.pass === "boolean" &&
    typeof value.score === "number" && typeof value.reason === "string";
}

async function checked(result) {
  const value = await Promise.resolve(result);
  if (typeof value === "boolean" || typeof value === "number" || isGradingResult(value)) return value;
  throw new Error(`a javascript assertion must return a boolean, a number or a GradingResult, not ${typeof value}`);
}

async function loadFile(file, name) {
  if (!modules.has(file)) {
    let loaded;
    try {
      const imported = await import(pathToFileURL(file).href);
      loaded = imported?.default?.default || imported?.default || imported;
    } catch (err) {
      if (!file.endsWith(".js")) throw err;
      loaded = createRequire(import.meta.url)(file); // CommonJS that import() could not read
    }
    modules.set(file, loaded);
  }
  const loaded = modules.get(file);
  const exported = name ? loaded?.[name] : loaded;
  if (typeof exported === "function") return exported;
  if (exported && typeof exported.default === "function") return exported.default;
  throw new Error(`${file} must export a function${name ? ` named ${name}` : ""} or a default function`);
}

function verdict(result, request) {
  if (typeof result === "boolean") {
    const pass = result !== Boolean(request.inverse);
    return { pass, score: pass ? 1 : 0 };
  }
  if (typeof result === "number") {
    const pass = request.threshold === null || request.threshold === undefined ? result > 0 : result >= request.threshold;
    return { pass, score: Number.isFinite(result) ? result : String(result) };
  }
  return { pass: result.pass, score: Number.isFinite(result.score) ? result.score : String(result.score) };
}

async function grade(request) {
  if (request.file) {
    // promptfoo loads and calls the file's function before its own error handling: a failure is the test's
    let result;
    try {
      result = await (await loadFile(request.file, request.function))(request.output, request.context);
    } catch (err) {
      return { error: String(err?.message ?? err) };
    }
    try {
      if (!["boolean", "number", "object"].includes(typeof result)) throw new Error("not a boolean, number or object");
      return verdict(await checked(result), request);
    } catch {
      return { pass: false, score: 0 };
    }
  }
  try {
    const code = request.code.trimEnd();
    if (!functions.has(code)) {
      functions.set(code, new Function("output", "context", code.includes("\n") ? code : `return ${code}`));
    }
    return verdict(await checked(functions.get(code)(request.output, request.context)), request);
  } catch {
    return { pass: false, score: 0 };
  }
}

// Requests are answered one at a time, in order (the Python side waits for each reply).
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    write(`${TOKEN} ${JSON.stringify({ id: null, error: `not a request: ${err.message}` })}\n`);
    continue;
  }
  const reply = await grade(request);
  write(`${TOKEN} ${JSON.stringify({ id: request.id, ...reply })}\n`);
}
