// The local view: polls /api/version and, when a batch arrived, redraws the page from the JSON.
// Everything shown is client data (span names, attributes, ids): it goes into the page with
// textContent only, never as markup.
"use strict";

const main = document.getElementById("main");
const status = document.getElementById("status");
const openTraces = new Set();
let shown = null;
const NO_SESSION = "none of its spans carries a session id: started outside session() and the "
  + "middleware, or on a provider without SessionSpanProcessor";

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function link(route, id, text) {
  const a = el("a", null, text);
  a.href = "#/" + route + "/" + encodeURIComponent(id);
  return a;
}

function duration(ns) {
  if (ns < 1e6) return (ns / 1e3).toFixed(0) + " µs";
  if (ns < 1e9) return (ns / 1e6).toFixed(1) + " ms";
  return (ns / 1e9).toFixed(2) + " s";
}

function time(ns) {
  return ns ? new Date(ns / 1e6).toLocaleTimeString() : "";
}

function scores(list) {
  const value = (s) => s.dataType === "BOOLEAN" ? (Number(s.value) ? "True" : "False") : s.value;
  return el("span", "scores", ...list.map((s) =>
    el("span", "score", s.name + " = " + value(s), s.comment ? el("em", null, " " + s.comment) : null)));
}

function table(headings, rows) {
  const head = el("tr", null, ...headings.map((h) => el("th", null, h)));
  return el("table", null, el("thead", null, head), el("tbody", null, ...rows));
}

function row(...cells) {
  return el("tr", null, ...cells.map((c) => el("td", null, c)));
}

function overviewPage(data) {
  const share = data.spans ? Math.round((100 * data.spans_without_session) / data.spans) : 0;
  const parts = [
    el("h1", null, "Sessions"),
    el("p", "summary", `${data.sessions.length + data.more_sessions} sessions · ${data.spans} spans · `,
      el("strong", "share", `${share}% of spans without a session`),
      ` (${data.spans_without_session})`),
  ];
  if (!data.sessions.length) parts.push(el("p", "empty", "No session yet: point your app at this address."));
  else parts.push(table(
    ["session", "user", "traces", "first", "last", "duration", "observations", "tokens", "scores"],
    data.sessions.map((s) => row(link("session", s.id, s.id), s.users.join(", "), s.traces,
      time(s.start), time(s.end), duration(s.end - s.start),
      `${s.observations_in_session}/${s.observations}`, s.tokens, scores(s.scores)))));
  if (data.more_sessions) parts.push(el("p", "more", `${data.more_sessions} older sessions not shown`));
  if (data.sessionless.length) {
    parts.push(el("h2", null, "Traces without a session"));
    parts.push(table(["trace", "name", "start", "spans", "why"],
      data.sessionless.map((t) => row(link("trace", t.id, t.id.slice(0, 8)), t.name || "",
        time(t.start), t.spans, NO_SESSION))));
    if (data.more_sessionless) parts.push(el("p", "more", `${data.more_sessionless} older not shown`));
  }
  return parts;
}

function tree(trace) {
  const children = new Map();
  const ids = new Set(trace.spans.map((s) => s.id));
  for (const span of trace.spans) {
    const parent = ids.has(span.parent) ? span.parent : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const total = Math.max(1, trace.end - trace.start);
  const rows = [];
  const walk = (parent, depth) => {
    for (const span of children.get(parent) || []) {
      const bar = el("span", "bar " + span.type);
      bar.style.marginLeft = (100 * (span.start - trace.start)) / total + "%";
      bar.style.width = Math.max(0.5, (100 * (span.end - span.start)) / total) + "%";
      const name = el("span", "name", span.name);
      name.style.paddingLeft = depth * 1.2 + "em";
      rows.push(el("div", "span-row", el("span", "type " + span.type, span.type), name,
        el("span", "timeline", bar), el("span", "took", duration(span.end - span.start)),
        span.in_session ? null : el("span", "warn", "no session id")));
      walk(span.id, depth + 1);
    }
  };
  walk(null, 0);
  if (trace.more_spans) rows.push(el("div", "more", `${trace.more_spans} more spans not shown`));
  return el("div", "tree", ...rows);
}

function turn(trace) {
  const details = el("details", "trace",
    el("summary", null, el("span", "trace-name", trace.name || "(no root span yet)"),
      ` · ${time(trace.start)} · ${duration(trace.end - trace.start)} · ${trace.spans.length} observations `,
      scores(trace.scores)),
    tree(trace));
  details.open = openTraces.has(trace.id);
  details.addEventListener("toggle", () => {
    if (details.open) openTraces.add(trace.id); else openTraces.delete(trace.id);
  });
  return el("section", "turn",
    trace.input !== null ? el("div", "bubble input", el("label", null, "input"), el("pre", null, trace.input)) : null,
    trace.output !== null ? el("div", "bubble output", el("label", null, "output"), el("pre", null, trace.output)) : null,
    trace.in_session ? null : el("p", "warn", NO_SESSION),
    details);
}

function sessionPage(s) {
  return [
    el("h1", null, "Session ", el("code", null, s.id)),
    el("p", "summary", `${s.users.join(", ") || "no user"} · ${s.traces} traces · ${duration(s.end - s.start)} · `
      + `${s.observations_in_session}/${s.observations} observations in the session · ${s.tokens} tokens `,
      scores(s.scores)),
    s.earlier_turns ? el("p", "more", `${s.earlier_turns} earlier turns not shown`) : null,
    ...s.turns.map(turn),
  ];
}

function tracePage(t) {
  openTraces.add(t.id);
  return [el("h1", null, "Trace ", el("code", null, t.id)), turn(t)];
}

async function getJSON(path) {
  const answer = await fetch(path, { cache: "no-store" });
  return answer.ok ? answer.json() : null;
}

async function draw() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [route, id] = hash.includes("/") ? [hash.slice(0, hash.indexOf("/")), hash.slice(hash.indexOf("/") + 1)] : [hash, ""];
  let data, page;
  if (route === "session" || route === "trace") {
    let wanted = id || "";
    try { wanted = decodeURIComponent(wanted); } catch (error) { /* shown as typed */ }
    data = await getJSON(`/api/${route}?id=${encodeURIComponent(wanted)}`);
    page = data ? (route === "session" ? sessionPage(data) : tracePage(data))
      : [el("p", "empty", "Not received (yet).")];
  } else {
    data = await getJSON("/api/overview");
    page = data ? overviewPage(data) : [];
  }
  main.replaceChildren(...page.filter((p) => p !== null));
  shown = data ? data.version : null;
  document.body.dataset.version = String(shown);
  status.textContent = `${shown || 0} batches received · updated ${new Date().toLocaleTimeString()}`;
}

async function poll() {
  try {
    const { version } = await getJSON("/api/version");
    if (version !== shown) await draw();
  } catch (error) {
    status.textContent = "the view is not answering (stopped?)";
  }
  setTimeout(poll, 1000);
}

window.addEventListener("hashchange", () => draw().catch(() => {}));
poll();
