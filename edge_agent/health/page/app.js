// The technician's page: fetches /status every few seconds and draws it, without a reload.
// Read-only. Everything the agent or a device supplies is put in as text (textContent),
// never as HTML. Words come from texts.js by message id. Overview at "#", one device's
// communication details at "#device/<id>".
"use strict";

const REFRESH_MS = 3000;
const LANG_KEY = "edge-agent-lang";
let TEXTS = window.EDGE_TEXTS.en;
const view = { doc: null, lastOk: null, error: null, onlyProblems: false };

// The page's language: the switch on the page (remembered by this browser), else Chinese
// when the browser or the agent (/status "lang", from LANG or --lang) asks for it, else
// English. docs/i18n.md.
function chosenLanguage() {
  let saved = null;
  try { saved = window.localStorage.getItem(LANG_KEY); } catch (err) { saved = null; }
  if (saved && window.EDGE_TEXTS[saved]) return saved;
  const browser = (navigator.languages || [navigator.language || ""]).join(",").toLowerCase();
  if (browser.startsWith("zh")) return "zh";
  const agent = view.doc && view.doc.lang;
  return agent && window.EDGE_TEXTS[agent] ? agent : "en";
}

function languageSwitch(current) {
  const names = window.EDGE_LANGUAGE_NAMES;
  const links = Object.keys(window.EDGE_TEXTS).map((lang) => {
    if (lang === current) return el("strong", { "data-lang": lang }, names[lang]);
    const link = el("a", { href: "", "data-lang": lang }, names[lang]);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      try { window.localStorage.setItem(LANG_KEY, lang); } catch (err) { /* kept for this view */ }
      TEXTS = window.EDGE_TEXTS[lang];
      draw(lang);
    });
    return link;
  });
  const parts = [t("language"), ": "];
  links.forEach((link, i) => parts.push(...(i ? [" | ", link] : [link])));
  return el("p", { id: "language" }, ...parts);
}

function t(id, params) {
  const template = TEXTS[id] === undefined ? id : TEXTS[id];
  return template.replace(/\{(\w+)\}/g, (_, key) => String(params && params[key]));
}

// el("td", {class: "x", "data-field": "value"}, "text" | node, ...): a new element.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return t("seconds", { n: s });
  const m = Math.floor(s / 60);
  if (m < 120) return t("minutes", { n: m });
  const h = Math.floor(m / 60);
  if (h < 48) return t("hours", { h: h, m: String(m % 60).padStart(2, "0") });
  return t("days", { d: Math.floor(h / 24), h: h % 24 });
}

function localTime(date) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())} ` +
    `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`;
}

function ago(iso) {
  if (!iso) return t("never");
  const at = new Date(iso);
  return t("ago", { time: localTime(at), age: duration((Date.now() - at) / 1000) });
}

function shownValue(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "boolean") return value ? "ON" : "OFF";
  if (typeof value === "number") return String(Number(value.toPrecision(6)));
  return String(value);
}

function isProblem(device) {
  return device.state !== "ok" || (device.values || []).some((v) => v.quality !== "GOOD");
}

// -- the parts of the page -----------------------------------------------------------

function stationPart(doc) {
  const uptime = duration((Date.now() - new Date(doc.started_at)) / 1000);
  const agent = doc.healthy ? t("agent_ok") : t("agent_problem", { problems: doc.problems.join("; ") });
  return el("header", { id: "station" },
    el("h1", { id: "station-id" }, t("station", { id: doc.station })),
    el("p", { id: "station-version" }, t("version", { version: doc.version, uptime: uptime })),
    el("p", { id: "agent-health", class: doc.healthy ? "agent-ok" : "agent-problem" }, agent),
    el("p", { id: "updated", class: "muted" }, t("updated", { time: localTime(new Date()) })));
}

function row(label, value, field) {
  return el("tr", {}, el("th", { scope: "row" }, label), el("td", { "data-field": field }, value));
}

function uplinkPart(doc) {
  const broker = doc.broker;
  const outbox = doc.outbox;
  const link = broker.connected
    ? t("connected_since", { time: ago(broker.since) })
    : t("not_connected_since", { time: ago(broker.since) });
  const backlog = outbox.error ? t("backlog_unknown", { error: outbox.error })
    : t("backlog_samples", { count: outbox.samples });
  const unstored = Object.values(doc.store_failures || {}).reduce((a, b) => a + b, 0);
  const rows = [
    row(t("broker"), `${broker.host}:${broker.port} ${link}`, "broker"),
    broker.last_error && !broker.connected ? row(t("last_error"), broker.last_error, "broker-error") : null,
    row(t("last_puback"), ago(broker.last_puback_at), "last-puback"),
    row(t("backlog"), backlog, "backlog"),
    row(t("oldest_waiting"), outbox.oldest_acquired_at ? ago(outbox.oldest_acquired_at) : t("none"), "oldest"),
    row(t("in_flight"), String(broker.in_flight), "in-flight"),
    row(t("dropped"), outbox.dropped_since_start === null ? "?" : String(outbox.dropped_since_start), "dropped"),
    row(t("gaps"), outbox.gap_events === null ? "?" : String(outbox.gap_events), "gaps"),
    unstored ? row(t("unstored"), String(unstored), "unstored") : null,
  ];
  return el("section", { id: "uplink", class: broker.connected ? "uplink-ok" : "uplink-down" },
    el("h2", {}, t("uplink")), el("table", { class: "facts" }, el("tbody", {}, ...rows)));
}

function stateWord(state) {
  return el("span", { class: `state state-${state}`, "data-field": "state" }, t(`state_${state}`));
}

function valuesTable(device, onlyProblems) {
  const values = (device.values || []).filter((v) => !onlyProblems || v.quality !== "GOOD");
  if (!device.values || device.values.length === 0) return el("p", { class: "muted" }, t("no_values"));
  const head = el("tr", {}, ...["channel", "value", "unit", "quality", "reason", "read_at"]
    .map((id) => el("th", { scope: "col" }, t(id))));
  const rows = values.map((v) => el("tr", { class: `q-${v.quality}`, "data-channel": v.channel },
    el("td", { "data-field": "channel" }, v.channel),
    el("td", { "data-field": "value", class: "num" }, shownValue(v.value)),
    el("td", { "data-field": "unit" }, v.unit),
    el("td", { "data-field": "quality" }, el("span", { class: `quality q-${v.quality}` },
      t(`quality_${v.quality}`))),
    el("td", { "data-field": "reason" }, v.reason || ""),
    el("td", { "data-field": "read-at" }, ago(v.acquired_at))));
  return el("table", { class: "values" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

function deviceCard(device, onlyProblems) {
  const facts = el("dl", { class: "device-facts" },
    el("dt", {}, t("link")), el("dd", {}, device.link),
    el("dt", {}, t("last_good")), el("dd", { "data-field": "last-good" },
      device.last_good_at ? ago(device.last_good_at) : t("none_since_start")),
    el("dt", {}, t("last_error")), el("dd", { "data-field": "last-error" }, device.last_error || "-"));
  return el("article", { class: `device device-${device.state}`, "data-device": device.id },
    el("h3", {}, el("a", { href: `#device/${encodeURIComponent(device.id)}` }, device.id), " ",
      stateWord(device.state), " ",
      el("a", { href: `#device/${encodeURIComponent(device.id)}`, class: "details" }, t("details"))),
    facts, valuesTable(device, onlyProblems));
}

function filterBox() {
  const box = el("input", { type: "checkbox", id: "only-problems" });
  box.checked = view.onlyProblems;
  box.addEventListener("change", () => { view.onlyProblems = box.checked; draw(); });
  return el("label", { class: "filter" }, box, " ", t("only_problems"));
}

function devicesPart(doc) {
  const shown = doc.devices.filter((d) => !view.onlyProblems || isProblem(d));
  const empty = doc.devices.length === 0 ? t("no_devices") : (shown.length === 0 ? t("no_problems") : null);
  return el("section", { id: "devices" },
    el("div", { class: "section-head" }, el("h2", {}, t("devices")), filterBox()),
    empty ? el("p", { class: "muted" }, empty) : null,
    ...shown.map((d) => deviceCard(d, view.onlyProblems)));
}

function counts(object) {
  const entries = Object.entries(object || {});
  return entries.length ? entries.map(([k, v]) => `${k} ${v}`).join(", ") : t("none");
}

function devicePage(doc, id) {
  const device = doc.devices.find((d) => d.id === id);
  const back = el("p", {}, el("a", { href: "#", id: "back" }, t("back")));
  if (!device) return el("section", { id: "device-page" }, back, el("p", {}, t("unknown_device", { id: id })));
  const c = device.counters || {};
  const rows = [
    row(t("polls"), String(device.polls), "polls"),
    row(t("samples_stored"), String(device.samples_stored), "samples-stored"),
    ...["requests", "answers", "timeouts", "exceptions", "split_reads"]
      .map((k) => row(t(k), String(c[k] === undefined ? 0 : c[k]), k)),
    row(t("failed_polls"), counts(device.errors), "errors"),
    row(t("entered"), counts(device.entered), "entered"),
    row(t("isolated"), counts(device.isolated_channels), "isolated"),
    row(t("last_error"), device.last_error || "-", "last-error-detail"),
    row(t("last_error_at"), device.last_error_at ? ago(device.last_error_at) : t("never"), "last-error-at"),
  ];
  return el("section", { id: "device-page" }, back, deviceCard(device, false),
    el("h3", {}, t("diagnostics")), el("table", { class: "facts", id: "diagnostics" }, el("tbody", {}, ...rows)));
}

// Active alarms, drawn first on every view: a red (level 2) or amber (level 1) band with
// the level written out, and an unconfirmed alarm says so in words with its reason
// (hatched as well), so nothing depends on colour alone. Nothing is drawn when none.
function alarmsPart(doc) {
  const alarms = doc.alarms || [];
  if (alarms.length === 0) return null;
  const head = el("tr", {}, ...[t("alarm_level_col"), t("alarm_where"), t("alarm_rule"),
    t("alarm_value"), t("alarm_since"), t("alarm_sure")].map((text) => el("th", { scope: "col" }, text)));
  const rows = alarms.map((a) => {
    const value = `${shownValue(a.value)} ${a.unit || ""}`.trim();
    const sure = a.confirmed ? "confirmed" : "unconfirmed";
    return el("tr", { class: `alarm alarm-level-${a.level} alarm-${sure}`,
      "data-alarm": `${a.device}/${a.channel}/${a.rule}` },
      el("td", { "data-field": "level" }, el("span", { class: "alarm-level" },
        t("alarm_level", { level: a.level }))),
      el("td", { "data-field": "where" }, `${a.device} / ${a.channel}`),
      el("td", { "data-field": "rule" }, a.rule),
      el("td", { "data-field": "value", class: "num" },
        a.limit === null || a.limit === undefined ? value
          : t("alarm_limit", { value: value, limit: shownValue(a.limit) })),
      el("td", { "data-field": "since" }, ago(a.since)),
      el("td", { "data-field": "confirmed" }, a.confirmed ? t("alarm_confirmed")
        : el("strong", {}, t("alarm_unconfirmed", { reason: a.reason || "?" }))));
  });
  const top = Math.max(...alarms.map((a) => a.level));
  return el("section", { id: "alarms", class: `alarms alarms-level-${top}` },
    el("h2", { id: "alarms-title" }, t("alarms_active", { count: alarms.length })),
    el("table", { class: "alarm-list" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

// -- drawing and refreshing ----------------------------------------------------------

function route() {
  const match = /^#device\/(.+)$/.exec(window.location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function draw(forced) {
  const lang = forced || chosenLanguage();
  TEXTS = window.EDGE_TEXTS[lang];
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  const main = document.getElementById("main");
  const parts = [languageSwitch(lang)];
  if (view.error) {
    parts.push(el("p", { id: "not-answering", class: "banner" }, t("not_answering", {
      error: view.error, time: view.lastOk ? localTime(view.lastOk) : t("never") })));
  }
  const doc = view.doc;
  if (doc) {
    const id = route();
    const alarms = alarmsPart(doc);
    if (alarms) parts.push(alarms);
    parts.push(stationPart(doc));
    if (id === null) parts.push(uplinkPart(doc), devicesPart(doc));
    else parts.push(devicePage(doc, id));
  }
  main.replaceChildren(...parts);
}

async function refresh() {
  try {
    const answer = await fetch("/status", { cache: "no-store", credentials: "same-origin" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    view.doc = await answer.json();
    view.lastOk = new Date();
    view.error = null;
  } catch (err) {
    view.error = err.message || String(err);
  }
  draw();
  window.setTimeout(refresh, REFRESH_MS);
}

window.addEventListener("hashchange", () => draw());
refresh();
