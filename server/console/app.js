// camrelay's operator console: the fleet at a glance and one camera's log.
// Everything a camera sent is put on the page with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "camrelay.apiToken";
const REFRESH_MS = 2000;
const FLEET_TIMEOUT_MS = 15000;
const LOG_PAGE_SIZE = 200;
// At most this many buckets: 60 whole ones plus the partial ones at either end.
const MAX_BUCKETS = 62;
const CHART_WIDTH = 900;
const CAMERA_ID = /^[A-Za-z0-9._-]{1,64}$/;
// Round bucket widths in seconds: 1 s up to 30 days, then whole years.
// Neighbours differ by at most 2.5x, so a range gets about 25 to 62 buckets (mostly 31 or more).
const BUCKET_WIDTHS = [
  1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800,
  14400, 21600, 43200, 86400, 172800, 259200, 432000, 604800, 1209600, 1814400, 2592000,
  5184000, 7776000, 15552000,
];
const YEAR = 31536000;

const $ = (id) => document.getElementById(id);
const el = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
};

// ------------------------------------------------------------------ talking to the server

const CAMERA_UNKNOWN = "urn:camrelay:problem:camera-unknown";

class Problem extends Error {
  constructor(status, title, detail, retryAfter, type) {
    super(detail);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.retryAfter = retryAfter;
    this.type = type;
  }
}

async function api(path, signal) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers, signal, cache: "no-store" });
  const text = await response.text();
  if (response.ok) return text;
  let title = response.statusText || `HTTP ${response.status}`;
  let detail = text.slice(0, 500);
  let type = null;
  try {
    const problem = JSON.parse(text);
    if (typeof problem.title === "string") title = problem.title;
    if (typeof problem.detail === "string") detail = problem.detail;
    if (typeof problem.type === "string") type = problem.type;
  } catch {
    // not problem+json (a proxy's page, say): show its first characters
  }
  const retryAfter = response.headers.get("Retry-After");
  const problem = new Problem(response.status, title, detail, retryAfter, type);
  if (response.status === 401) askForToken(problem);
  throw problem;
}

function showProblem(node, problem) {
  node.replaceChildren();
  if (problem instanceof Problem) {
    node.append(el("strong", `${problem.status} ${problem.title}`), el("span", `: ${problem.detail}`));
    if (problem.type === CAMERA_UNKNOWN) {
      // A typo more likely than a camera about to start: point at the list, not at retrying.
      const advice = el("p", "No camera with this id has polled recently: ", "retry");
      const link = el("a", "find its id in the fleet");
      link.href = "#/";
      advice.append(link, ".");
      node.append(advice);
    } else if (problem.retryAfter) {
      node.append(el("p", `Retry after ${problem.retryAfter} s.`, "retry"));
    }
  } else {
    node.append(el("strong", "The server could not be reached"), el("span", `: ${problem.message}`));
  }
  node.hidden = false;
}

// ------------------------------------------------------------------ the token

let tokenWanted = false;

function askForToken(problem) {
  tokenWanted = true;
  const hadToken = sessionStorage.getItem(TOKEN_KEY) !== null;
  const message = $("token-problem");
  if (hadToken) showProblem(message, problem);
  else message.hidden = true;
  for (const id of ["fleet-view", "camera-view"]) $(id).hidden = true;
  $("token-view").hidden = false;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!/^[\x20-\x7e]+$/.test(token)) {
    const message = $("token-problem");
    message.replaceChildren(el("span", "An API token is printable ASCII: check what was pasted."));
    message.hidden = false;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  tokenWanted = false;
  $("token-view").hidden = true;
  route();
});

// ------------------------------------------------------------------ formatting

const pad = (n, width = 2) => String(n).padStart(width, "0");

function dateOf(seconds) {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? null : date;
}

function localTime(seconds) {
  const d = dateOf(seconds);
  if (d === null) return String(seconds);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

function utcTime(seconds) {
  const d = dateOf(seconds);
  return d === null ? `timestamp ${seconds}` : d.toISOString();
}

function ago(seconds, now) {
  const s = Math.max(0, Math.round(now - seconds));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function widthText(seconds) {
  if (seconds % YEAR === 0) return `${seconds / YEAR} y`;
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

// ------------------------------------------------------------------ the fleet view

const fleet = { cursors: [null], timer: null, controller: null, prefixTimer: null };

function pageSize() {
  const asked = Number(new URLSearchParams(location.search).get("pageSize"));
  return Number.isInteger(asked) && asked >= 1 && asked <= 1000 ? asked : 50;
}

function fleetQuery() {
  const params = new URLSearchParams({ limit: String(pageSize()) });
  const prefix = $("filter-prefix").value;
  if (prefix) params.set("prefix", prefix);
  const online = $("filter-online").value;
  if (online) params.set("online", online);
  const after = fleet.cursors[fleet.cursors.length - 1];
  if (after !== null) params.set("after", after);
  return `/cameras?${params}`;
}

function stopFleet() {
  clearTimeout(fleet.timer);
  fleet.timer = null;
  if (fleet.controller) fleet.controller.abort();
  fleet.controller = null;
}

async function refreshFleet() {
  stopFleet();
  const controller = new AbortController();
  fleet.controller = controller;
  try {
    // A server that stops answering must not stall the loop: give up after a while.
    const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(FLEET_TIMEOUT_MS)]);
    const page = JSON.parse(await api(fleetQuery(), signal));
    renderFleet(page);
    $("fleet-problem").hidden = true;
    $("update-status").textContent = `Updated ${localTime(Date.now() / 1000).slice(11, 19)}`;
  } catch (error) {
    if (controller.signal.aborted) return;
    if (error instanceof Problem && error.status === 401) return;
    showProblem($("fleet-problem"), error);
  }
  if (fleet.controller !== controller) return;
  fleet.controller = null;
  if (!$("fleet-view").hidden) fleet.timer = setTimeout(refreshFleet, REFRESH_MS);
}

function renderFleet(page) {
  const totals = page.totals;
  $("total-known").textContent = totals.known;
  $("total-online").textContent = totals.online;
  $("total-polling").textContent = totals.polling;
  $("total-waiting").textContent = totals.waiting;
  $("total-in-flight").textContent = totals.inFlight;
  const now = Date.now() / 1000;
  const rows = page.cameras.map((camera) => {
    const row = el("tr");
    row.dataset.cameraId = camera.cameraId;
    const link = el("a", camera.cameraId);
    link.href = `#/camera/${encodeURIComponent(camera.cameraId)}`;
    const idCell = el("th");
    idCell.scope = "row";
    idCell.append(link);
    const state = el("td");
    state.append(
      el("span", camera.online ? "online" : "offline", camera.online ? "badge on" : "badge off")
    );
    const seen = el("td", camera.lastSeen === null ? "never" : ago(camera.lastSeen, now));
    if (camera.lastSeen !== null) seen.title = `${localTime(camera.lastSeen)} (${utcTime(camera.lastSeen)})`;
    row.append(
      idCell,
      state,
      seen,
      el("td", camera.polling ? "yes" : "no"),
      el("td", String(camera.waiting), "num"),
      el("td", String(camera.inFlight), "num")
    );
    return row;
  });
  $("fleet-rows").replaceChildren(...rows);
  const pageNumber = fleet.cursors.length;
  const first = page.cameras.length ? page.cameras[0].cameraId : "";
  const last = page.cameras.length ? page.cameras[page.cameras.length - 1].cameraId : "";
  $("fleet-caption").textContent = page.cameras.length
    ? `Cameras ${first} to ${last} (page ${pageNumber})`
    : "No camera matches";
  $("fleet-page").textContent = `Page ${pageNumber}`;
  $("fleet-prev").disabled = $("fleet-first").disabled = pageNumber === 1;
  $("fleet-next").disabled = page.next === null;
  fleet.next = page.next;
}

function restartFleet() {
  fleet.cursors = [null];
  refreshFleet();
}

$("fleet-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  restartFleet();
});
$("filter-online").addEventListener("change", restartFleet);
$("filter-prefix").addEventListener("input", () => {
  clearTimeout(fleet.prefixTimer);
  fleet.prefixTimer = setTimeout(restartFleet, 250);
});
$("fleet-next").addEventListener("click", () => {
  if (!fleet.next) return;
  fleet.cursors.push(fleet.next);
  refreshFleet();
});
$("fleet-prev").addEventListener("click", () => {
  if (fleet.cursors.length > 1) fleet.cursors.pop();
  refreshFleet();
});
$("fleet-first").addEventListener("click", restartFleet);

// ------------------------------------------------------------------ the log view

const logs = { cameraId: null, controller: null, ticker: null, raw: "", entries: [], shown: [], page: 0 };

const DEFAULT_RANGE_SECONDS = 3600;
// The range fields are text in the table's own format, 24-hour whatever the browser's
// locale (a datetime-local field would show 12-hour AM/PM in an en-US browser).
const LOCAL_INPUT = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/;

function toLocalInput(seconds) {
  return localTime(seconds).slice(0, 19); // YYYY-MM-DD HH:MM:SS, 24-hour
}

/** Epoch seconds for a field's local time; null when empty; undefined when not a time. */
function fromLocalInput(value) {
  const text = value.trim();
  if (!text) return null;
  const match = LOCAL_INPUT.exec(text);
  if (match === null) return undefined;
  const [year, month, day, hours, minutes, seconds] = match.slice(1).map((part) => Number(part ?? 0));
  const date = new Date(year, month - 1, day, hours, minutes, seconds);
  const exact =
    date.getFullYear() === year && date.getMonth() === month - 1 && date.getDate() === day &&
    date.getHours() === hours && date.getMinutes() === minutes && date.getSeconds() === seconds;
  // A time that does not exist (31 June, 24:00, a clock skipped forward) is no time.
  return exact ? date.getTime() / 1000 : undefined;
}

function fetchRecent(seconds) {
  const end = Math.floor(Date.now() / 1000);
  const start = end - seconds;
  $("range-start").value = toLocalInput(start);
  $("range-end").value = toLocalInput(end);
  fetchLogs(start, end);
}

function openCamera(cameraId) {
  if (logs.cameraId !== cameraId) {
    cancelLogs();
    logs.cameraId = cameraId;
    $("camera-name").textContent = cameraId;
    $("logs-result").hidden = true;
    $("logs-problem").hidden = true;
    // Open on something to look at: the last hour.
    fetchRecent(DEFAULT_RANGE_SECONDS);
  }
  document.title = `${cameraId} - camrelay console`;
}

function cancelLogs() {
  if (logs.controller) logs.controller.abort();
}

async function fetchLogs(start, end) {
  cancelLogs();
  const controller = new AbortController();
  logs.controller = controller;
  const params = new URLSearchParams({ cameraId: logs.cameraId });
  if (start !== null) params.set("startTimestamp", String(start));
  if (end !== null) params.set("endTimestamp", String(end));
  const began = performance.now();
  const tick = () => {
    const seconds = Math.floor((performance.now() - began) / 1000);
    $("logs-elapsed").textContent = `Waiting for camera ${logs.cameraId}: ${seconds} s`;
  };
  tick();
  clearInterval(logs.ticker);
  logs.ticker = setInterval(tick, 250);
  $("logs-waiting").hidden = false;
  $("logs-problem").hidden = true;
  $("logs-result").hidden = true;
  try {
    const raw = await api(`/logs?${params}`, controller.signal);
    renderLogs(raw, start, end);
  } catch (error) {
    if (logs.controller !== controller) return; // a newer fetch took over
    if (controller.signal.aborted) {
      const note = $("logs-problem");
      note.replaceChildren(el("span", "Cancelled: nothing was fetched."));
      note.hidden = false;
    } else if (error instanceof Problem && error.status === 401) {
      logs.cameraId = null; // fetch again once a token is given
    } else {
      showProblem($("logs-problem"), error);
    }
  } finally {
    if (logs.controller === controller) {
      logs.controller = null;
      clearInterval(logs.ticker);
      $("logs-waiting").hidden = true;
    }
  }
}

function renderLogs(raw, start, end) {
  const answer = JSON.parse(raw);
  logs.raw = raw;
  logs.entries = answer.logs;
  logs.page = 0;
  $("logs-count").textContent =
    `${answer.count.toLocaleString("en")} ${answer.count === 1 ? "entry" : "entries"} from camera ${answer.cameraId}`;
  drawTimeline(answer.logs, start, end);
  sortLogs();
  $("logs-result").hidden = false;
}

function sortLogs() {
  const order = $("logs-order").value;
  logs.shown = logs.entries.slice();
  if (order === "asc") logs.shown.sort((a, b) => a.timestamp - b.timestamp);
  if (order === "desc") logs.shown.sort((a, b) => b.timestamp - a.timestamp);
  logs.page = 0;
  renderLogPage();
}

function describe(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function renderLogPage() {
  const total = logs.shown.length;
  const first = logs.page * LOG_PAGE_SIZE;
  const slice = logs.shown.slice(first, first + LOG_PAGE_SIZE);
  const rows = slice.map((entry) => {
    const { timestamp, description, ...others } = entry;
    const time = el("td", localTime(timestamp), "time");
    time.title = utcTime(timestamp);
    const rest = Object.keys(others).length ? JSON.stringify(others) : "";
    const row = el("tr");
    row.append(
      time,
      el("td", description === undefined ? "" : describe(description), "description"),
      el("td", rest, "others")
    );
    return row;
  });
  $("logs-rows").replaceChildren(...rows);
  $("logs-page").textContent = total
    ? `Entries ${first + 1} to ${first + slice.length} of ${total.toLocaleString("en")}`
    : "No entries";
  $("logs-prev").disabled = logs.page === 0;
  $("logs-next").disabled = first + LOG_PAGE_SIZE >= total;
}

$("logs-order").addEventListener("change", sortLogs);
$("logs-prev").addEventListener("click", () => {
  logs.page = Math.max(0, logs.page - 1);
  renderLogPage();
});
$("logs-next").addEventListener("click", () => {
  logs.page += 1;
  renderLogPage();
});
$("logs-cancel").addEventListener("click", cancelLogs);
$("logs-download").addEventListener("click", () => {
  // The text exactly as /logs sent it: parsing and re-serialising would round big integers.
  const blob = new Blob([logs.raw], { type: "application/json" });
  const link = el("a");
  link.href = URL.createObjectURL(blob);
  link.download = `camrelay-logs-${logs.cameraId}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 0);
});

document.querySelectorAll("[data-preset]").forEach((button) => {
  button.addEventListener("click", () => {
    const preset = button.dataset.preset;
    if (preset === "all") {
      $("range-start").value = "";
      $("range-end").value = "";
      fetchLogs(null, null);
      return;
    }
    fetchRecent(Number(preset));
  });
});

$("range-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const bounds = [];
  for (const [id, name] of [["range-start", "Start"], ["range-end", "End"]]) {
    const bound = fromLocalInput($(id).value);
    if (bound === undefined) {
      const note = $("logs-problem");
      note.replaceChildren(
        el("span", `${name} must be a local time as YYYY-MM-DD HH:MM:SS (24-hour), or empty.`)
      );
      note.hidden = false;
      $(id).focus();
      return;
    }
    bounds.push(bound);
  }
  fetchLogs(bounds[0], bounds[1]);
});

// ------------------------------------------------------------------ the timeline

/** About 60 buckets of a round width covering [start, end], the first aligned to it. */
function buckets(start, end) {
  let width = BUCKET_WIDTHS.find((w) => Math.floor(end / w) - Math.floor(start / w) + 1 <= MAX_BUCKETS);
  if (width === undefined) {
    // Whole years: 1, 2, 5, 10, 20, 50, ...
    const steps = [2, 2.5, 2];
    width = YEAR;
    for (let i = 0; Math.floor(end / width) - Math.floor(start / width) + 1 > MAX_BUCKETS; i++) {
      width *= steps[i % steps.length];
    }
  }
  const first = Math.floor(start / width) * width;
  const count = Math.floor(end / width) - Math.floor(start / width) + 1;
  return { first, width, count };
}

function svg(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawTimeline(entries, start, end) {
  const chart = $("timeline");
  chart.replaceChildren();
  const stamps = entries.map((entry) => entry.timestamp);
  let low = start;
  let high = end;
  if (stamps.length) {
    if (low === null) low = stamps.reduce((a, b) => Math.min(a, b));
    if (high === null) high = stamps.reduce((a, b) => Math.max(a, b));
  }
  if (low === null || high === null || !Number.isFinite(high - low)) {
    $("timeline-caption").textContent = "No entries to chart.";
    chart.hidden = true;
    return;
  }
  chart.hidden = false;
  const { first, width, count } = buckets(low, high);
  const counts = new Array(count).fill(0);
  for (const t of stamps) {
    const index = Math.floor(t / width) - Math.floor(first / width);
    if (index >= 0 && index < count) counts[index] += 1;
  }
  const most = Math.max(1, ...counts);
  const plotTop = 10;
  const plotHeight = 110;
  const slot = CHART_WIDTH / count;
  counts.forEach((n, i) => {
    const height = n ? (n / most) * plotHeight : 1; // an empty bucket shows as a stub
    const bucketStart = first + i * width;
    const bar = svg("rect", {
      class: n ? "bar" : "bar empty",
      x: (i * slot + slot * 0.1).toFixed(2),
      y: (plotTop + plotHeight - height).toFixed(2),
      width: (slot * 0.8).toFixed(2),
      height: height.toFixed(2),
      "data-start": bucketStart,
      "data-width": width,
      "data-count": n,
    });
    bar.append(svg("title", {}, `${localTime(bucketStart)}: ${n} ${n === 1 ? "entry" : "entries"}`));
    chart.append(bar);
  });
  chart.append(svg("line", { class: "axis", x1: 0, x2: CHART_WIDTH, y1: plotTop + plotHeight, y2: plotTop + plotHeight }));
  chart.append(svg("text", { x: 2, y: 140, class: "label" }, localTime(first).slice(0, 19)));
  chart.append(
    svg("text", { x: CHART_WIDTH - 2, y: 140, class: "label end" }, localTime(first + count * width).slice(0, 19))
  );
  $("timeline-caption").textContent =
    `${count} buckets of ${widthText(width)}; the tallest holds ${most} ${most === 1 ? "entry" : "entries"}.`;
}

// ------------------------------------------------------------------ routing

function route() {
  if (tokenWanted) return;
  const match = /^#\/camera\/(.+)$/.exec(location.hash);
  let cameraId = null;
  if (match) {
    try {
      cameraId = decodeURIComponent(match[1]);
    } catch {
      cameraId = null;
    }
  }
  if (cameraId !== null && CAMERA_ID.test(cameraId)) {
    stopFleet();
    $("fleet-view").hidden = true;
    $("camera-view").hidden = false;
    openCamera(cameraId);
  } else {
    cancelLogs();
    logs.cameraId = null; // a camera's page opens afresh, on the last hour
    $("camera-view").hidden = true;
    $("fleet-view").hidden = false;
    document.title = "camrelay console";
    refreshFleet();
  }
}

window.addEventListener("hashchange", route);
route();
