// The upload page: the API key lives in sessionStorage only; a dropped CSV goes straight to S3 through the
// presigned POST (POST /api/v1/uploads), then the request's status is polled until it ends. Everything the API
// returns is shown with textContent, never as HTML.
"use strict";

const FINAL = new Set(["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"]);
const KEY_ITEM = "ips.apiKey";
const POLL_MS = 1000;
const TABLE_EVERY = 4; // polls between product-table refreshes while the request runs
const $ = (id) => document.getElementById(id);
let config = { apiUrl: "" }; // "" = this page's own origin (the local gateway); the stack's API URL in AWS
let running = 0; // bumps on every upload, so an older request's polling stops

class Problem extends Error {
  constructor(title, text, items = []) {
    super(text);
    this.title = title;
    this.items = items;
  }
}

const PLAIN_WORDS = {
  INVALID_API_KEY: ["The API key was refused", "Check the key and enter it again."],
  THROTTLED: ["Too many requests", "The API is busy for this key; wait a few seconds and try again."],
  QUOTA_EXCEEDED: ["Daily quota used up", "This key has used its requests for today."],
  CSV_INVALID: ["The CSV has problems", "Nothing was processed. Fix these and upload the file again:"],
  WEBHOOK_URL_INVALID: ["The webhook address was refused", "It must be a public http(s) address."],
  REQUEST_NOT_FOUND: ["No such request", "This key has no request with that ID."],
  UPLOAD_EXPIRED: ["The upload expired", "The file did not arrive in time; upload it again."],
};

function describe(code, message, errors) {
  const [title, text] = PLAIN_WORDS[code] || ["The request could not be processed", message || code];
  return new Problem(title, text, (errors || []).map(problemLine));
}

function problemLine(error) {
  const where = [];
  if (error.row !== null && error.row !== undefined) where.push(`Row ${error.row}`);
  if (error.column) where.push(`column "${error.column}"`);
  return `${where.join(", ") || "The file"}: ${error.message} (${error.code})`;
}

async function api(path, options = {}) {
  const key = $("api-key").value.trim();
  if (!key) throw new Problem("Enter your API key first", "The key is the x-api-key your operator gave you.");
  let response;
  try {
    response = await fetch(`${config.apiUrl.replace(/\/$/, "")}/api/v1${path}`, {
      ...options,
      headers: { "x-api-key": key, ...(options.headers || {}) },
    });
  } catch {
    throw new Problem("The API cannot be reached", "Check your connection and try again.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON: described by its status below */
  }
  if (!response.ok) {
    throw body && body.code
      ? describe(body.code, body.message, body.errors)
      : new Problem("The API answered an error", `HTTP ${response.status}`);
  }
  return body;
}

function showProblem(problem) {
  $("problem").hidden = false;
  $("problem-title").textContent = problem.title || "Something went wrong";
  $("problem-text").textContent = problem.message;
  $("problem-list").replaceChildren(...(problem.items || []).map((item) => element("li", item)));
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function bytes(count) {
  const units = ["B", "KB", "MB", "GB"];
  let value = Math.abs(count);
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${count < 0 ? "-" : ""}${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function httpUrl(url) {
  try {
    return ["http:", "https:"].includes(new URL(url).protocol) ? url : null;
  } catch {
    return null;
  }
}

async function upload(file) {
  const mine = ++running;
  $("problem").hidden = true;
  $("results").hidden = true;
  $("progress").hidden = false;
  $("download").disabled = true;
  $("state").textContent = `Uploading ${file.name}`;
  $("request-id").textContent = "";
  showCounts({ total: 0, succeeded: 0, failed: 0 });
  $("saved").textContent = "0 B";
  const slot = await api("/uploads", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ filename: file.name }),
  });
  if (file.size > slot.maxBytes) {
    throw new Problem("The file is too big", `The limit is ${bytes(slot.maxBytes)}; this file is ${bytes(file.size)}.`);
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(slot.upload.fields)) form.append(name, value);
  form.append("file", file); // last: S3 reads the policy fields first
  let sent;
  try {
    sent = await fetch(slot.upload.url, { method: "POST", body: form });
  } catch {
    throw new Problem("The file could not be sent", "The storage could not be reached; try again.");
  }
  if (!sent.ok) {
    const text = await sent.text();
    const found = /<Message>([^<]*)<\/Message>/.exec(text);
    throw new Problem("The storage refused the file", found ? found[1] : `HTTP ${sent.status}`);
  }
  $("request-id").textContent = `request ${slot.requestId}`;
  await follow(slot.requestId, mine);
}

async function follow(requestId, mine) {
  for (let poll = 0; mine === running; poll += 1) {
    const page = await api(`/status/${encodeURIComponent(requestId)}?limit=1`);
    showCounts(page);
    const final = FINAL.has(page.status);
    if (final || poll % TABLE_EVERY === 0) await showProducts(requestId);
    if (final) return finish(requestId, page);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function showCounts(status) {
  const done = status.succeeded + status.failed;
  $("bar").max = status.total || 1;
  $("bar").value = done;
  $("done").textContent = `${done} / ${status.total}`;
  $("succeeded").textContent = String(status.succeeded);
  $("failed").textContent = String(status.failed);
  if (status.status) {
    $("state").textContent = status.detail === "WAITING_FOR_UPLOAD" ? "Waiting for the file" : labelOf(status.status);
  }
}

function labelOf(status) {
  return {
    PENDING: "Queued",
    PROCESSING: "Processing",
    COMPLETED: "Completed",
    COMPLETED_WITH_ERRORS: "Completed with errors",
    FAILED: "Failed",
  }[status] || status;
}

async function showProducts(requestId) {
  // Every page, following nextCursor (a page may end early when it is big in bytes).
  const products = [];
  let cursor = null;
  do {
    const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
    const page = await api(`/status/${encodeURIComponent(requestId)}${query}`);
    products.push(...page.products);
    cursor = page.nextCursor;
  } while (cursor);
  let saved = 0;
  const rows = products.map((product) => {
    const row = document.createElement("tr");
    row.append(element("td", product.serialNumber), element("td", product.productName));
    const images = element("div", undefined, "images");
    const failures = new Map(product.errors.map((error) => [error.index, error]));
    product.inputImageUrls.forEach((input, index) => {
      const output = (product.outputImageUrls || [])[index];
      const before = (product.inputImageBytes || [])[index];
      const after = (product.outputImageBytes || [])[index];
      if (typeof before === "number" && typeof after === "number") saved += before - after;
      images.append(imageCell(input, output, before, after, failures.get(index)));
    });
    const cell = element("td");
    cell.append(images);
    row.append(cell);
    return row;
  });
  $("products").tBodies[0].replaceChildren(...rows);
  $("results").hidden = products.length === 0;
  $("saved").textContent = bytes(saved);
}

function imageCell(input, output, before, after, failure) {
  if (failure) {
    // No thumbnail of a refused URL: the browser must not fetch what the service would not.
    const cell = element("div", undefined, "image failed");
    cell.append(element("span", failure.code, "code"), element("span", failure.message), element("span", input, "muted"));
    return cell;
  }
  if (!output) return element("div", "processing…", "image pending");
  const cell = element("div", undefined, "image done");
  for (const [url, role] of [[input, "before"], [output, "after"]]) {
    const img = document.createElement("img");
    img.className = role;
    img.alt = `${role}: ${url}`;
    img.loading = "lazy";
    img.src = httpUrl(url) || "";
    cell.append(img);
  }
  if (typeof before === "number" && typeof after === "number") {
    const share = before ? Math.round((100 * (before - after)) / before) : 0;
    cell.append(element("span", `${bytes(before)} → ${bytes(after)} (${share}% saved)`, "size"));
  }
  return cell;
}

function finish(requestId, status) {
  document.body.dataset.finished = status.status; // for scripts (and the browser test) watching the page
  if (status.status === "FAILED") {
    const error = status.error || {};
    showProblem(describe(error.code, error.message, error.errors));
    return;
  }
  $("download").disabled = !status.outputCsvUrl;
  $("download").onclick = () => download(requestId).catch(showProblem);
}

async function download(requestId) {
  // A fresh status read: the output CSV's URL may be short-lived.
  const status = await api(`/status/${encodeURIComponent(requestId)}?limit=1`);
  const url = httpUrl(status.outputCsvUrl);
  if (!url) throw new Problem("No output CSV yet", "The request has not finished.");
  // The file is on the storage origin, where a link's download name is ignored: fetch it, save it from here.
  const answer = await fetch(url);
  if (!answer.ok) throw new Problem("The output CSV could not be fetched", `Storage answered ${answer.status}.`);
  const saved = URL.createObjectURL(await answer.blob());
  const link = element("a");
  link.href = saved;
  link.download = `output-${requestId}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(saved), 60000);
}

function start(file) {
  if (file) upload(file).catch((problem) => {
    $("state").textContent = "Stopped";
    showProblem(problem instanceof Problem ? problem : new Problem("Something went wrong", String(problem)));
  });
}

async function main() {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_ITEM) || "";
  key.addEventListener("input", () => sessionStorage.setItem(KEY_ITEM, key.value.trim()));
  $("file").addEventListener("change", (event) => start(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    start(event.dataTransfer.files[0]);
  });
  try {
    const answer = await fetch("config.json", { cache: "no-store" });
    if (answer.ok) config = { ...config, ...(await answer.json()) };
  } catch {
    /* no config: the API is on this origin */
  }
  document.body.dataset.ready = "true";
}

main();
