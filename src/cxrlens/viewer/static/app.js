// cxrlens viewer: one small script, no framework, no build step, nothing from the internet.
// Every page reads the JSON API under /api; text from the workspace is always set with textContent (never HTML).
"use strict";

const main = () => document.getElementById("main");

// ------------------------------------------------------------------------------------------------ helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replace an element's children, skipping null/undefined/false and flattening arrays.
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

async function api(path, options) {
  const res = await fetch(path, options);
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    body = null;
  }
  if (!res.ok) {
    const msg = body && body.error ? body.error : `${res.status} ${res.statusText}`;
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return body;
}

function fmt(v, digits = 3) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(digits);
  return String(v);
}

function errorBox(err) {
  return h("div", { class: "error", role: "alert", text: err.message || String(err) });
}

function setPage(title, nav, ...content) {
  document.title = `${title} · cxrlens viewer`;
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.dataset.nav === nav);
  }
  fill(main(), h("h1", { text: title }), content);
}

function params() {
  return new URLSearchParams(location.search);
}

function imageUrl(dataset, imageId, size) {
  return `/api/images/${encodeURIComponent(dataset)}/${encodeURIComponent(imageId)}?size=${size || 256}`;
}

// A heat colour map (black → red → yellow → white) with alpha rising with the value.
function drawMap(canvas, grid) {
  const rows = grid.length;
  const cols = rows ? grid[0].length : 0;
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(cols, rows);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      const v = Math.max(0, Math.min(1, grid[y][x] || 0));
      const i = (y * cols + x) * 4;
      img.data[i] = 255 * Math.min(1, 3 * v);
      img.data[i + 1] = 255 * Math.max(0, Math.min(1, 3 * v - 1));
      img.data[i + 2] = 255 * Math.max(0, Math.min(1, 3 * v - 2));
      img.data[i + 3] = v < 0.05 ? 0 : 60 + 150 * v;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function tile(dataset, imageId, caption, map, href) {
  const img = h("img", { src: imageUrl(dataset, imageId, 256), alt: imageId, loading: "lazy", class: "xray" });
  const box = h("div", { class: "imgbox" }, img);
  if (map) {
    const c = h("canvas", { class: "overlay heat visible" });
    drawMap(c, map);
    box.append(c);
  }
  const cap = h("div", { class: "cap" }, h("span", { class: "id", text: imageId }), caption ? h("span", { text: caption }) : null);
  return h("a", { class: "tile", href: href || "#", title: imageId }, box, cap);
}

function table(columns, rows, opts = {}) {
  const thead = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : "", text: c.label }))));
  const tbody = h(
    "tbody",
    {},
    rows.map((r) =>
      h(
        "tr",
        opts.rowAttrs ? opts.rowAttrs(r) : {},
        columns.map((c) => {
          const v = c.get ? c.get(r) : r[c.key];
          return h("td", { class: c.num ? "num" : "" }, v instanceof Node ? v : fmt(v, c.digits));
        })
      )
    )
  );
  return h("table", { class: "grid-table" }, thead, tbody);
}

// ------------------------------------------------------------------------------------------------ overview
async function overviewPage() {
  const o = await api("/api/overview");
  const datasets = table(
    [
      { label: "dataset", key: "name" },
      { label: "stage", key: "stage" },
      { label: "rows", get: (d) => Object.entries(d.rows || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") },
      { label: "ground truth", get: (d) => (d.phantom ? "phantom masks" : "—") },
      { label: "created", key: "created" },
    ],
    o.datasets
  );
  const interp = table(
    [
      { label: "interpretation run", get: (r) => h("a", { href: `/features?run=${encodeURIComponent(r.name)}`, text: r.name }) },
      { label: "dataset", key: "dataset" },
      { label: "features", key: "features", num: true },
      { label: "described", key: "described", num: true },
      { label: "mean description AUC", key: "mean_description_auc", num: true },
    ],
    o.interpret
  );
  const reports = o.reports.map((r) => {
    const m = r.metrics;
    let metrics = h("p", { class: "muted", text: "no evaluation yet" });
    if (m && m.error) metrics = h("p", { class: "error", text: m.error });
    else if (m) {
      const cols = [{ label: "system", key: "system" }].concat(
        m.columns.map((c, i) => ({ label: c, get: (row) => row.values[i], num: true }))
      );
      metrics = h("div", { class: "scroll metrics" }, h("p", { class: "muted", text: `headline: ${m.headline_metric} · ${fmt(m.n_reports)} reports` }), table(cols, m.rows));
    }
    return h(
      "section",
      { class: "card" },
      h("h3", {}, h("a", { href: `/studies?run=${encodeURIComponent(r.name)}`, text: r.name })),
      h("p", {
        class: "muted",
        text: `model ${r.interpret || "—"} · dataset ${r.dataset || "—"} · split ${r.split || "—"} · ${fmt(r.reports)} reports (${fmt(r.empty_reports)} empty)`,
      }),
      metrics
    );
  });
  setPage(
    "Workspace",
    "overview",
    h("p", { class: "muted", text: o.workspace }),
    h("h2", { text: "Datasets" }),
    o.datasets.length ? datasets : h("p", { class: "muted", text: "no datasets — run `cxrlens demo`" }),
    h("h2", { text: "Interpretation runs" }),
    o.interpret.length ? interp : h("p", { class: "muted", text: "no interpretation runs" }),
    h("h2", { text: "Report runs" }),
    reports.length ? reports : h("p", { class: "muted", text: "no report runs" }),
    h("h2", { text: "Analysis" }),
    o.analysis.length
      ? h("p", {}, h("a", { href: "/analysis", text: `${o.analysis.length} analysis run(s)` }), ": ", o.analysis.join(", "))
      : h("p", { class: "muted", text: "no analysis runs" }),
    h("p", { class: "muted", text: o.search_indexes.length ? `search indexes: ${o.search_indexes.join(", ")}` : "no alignment search index" })
  );
}

// ------------------------------------------------------------------------------------------ feature browser
const FEATURE_COLUMNS = [
  { key: "feature", label: "feature", num: true },
  { key: "frequency", label: "frequency", num: true },
  { key: "n_active", label: "active images", num: true },
  { key: "max", label: "max", num: true },
  { key: "best_label", label: "best label" },
  { key: "auc", label: "label AUC", num: true },
  { key: "score", label: "description score", num: true },
  { key: "confidence", label: "confidence", num: true },
  { key: "description", label: "description" },
];

async function featuresPage() {
  const o = await api("/api/overview");
  if (!o.interpret.length) {
    setPage("Features", "features", h("p", { class: "muted", text: "no interpretation run in this workspace — run `cxrlens interpret`" }));
    return;
  }
  const p = params();
  const state = {
    run: p.get("run") || o.interpret[0].name,
    sort: p.get("sort") || "frequency",
    order: p.get("order") || "desc",
    q: p.get("q") || "",
    label: p.get("label") || "",
    described: p.get("described") || "",
    offset: parseInt(p.get("offset") || "0", 10) || 0,
    limit: parseInt(p.get("limit") || "50", 10) || 50,
  };
  const runSel = h("select", { id: "run" }, o.interpret.map((r) => h("option", { value: r.name, selected: r.name === state.run, text: r.name })));
  const q = h("input", { id: "q", type: "search", placeholder: "description or label contains…", value: state.q });
  const labelSel = h("select", { id: "label" }, h("option", { value: "", text: "any best label" }));
  const described = h(
    "select",
    { id: "described" },
    h("option", { value: "", text: "all features" }),
    h("option", { value: "true", text: "described only", selected: state.described === "true" }),
    h("option", { value: "false", text: "undescribed only", selected: state.described === "false" })
  );
  const info = h("span", { class: "muted", id: "count" });
  const prev = h("button", { type: "button", id: "prev", text: "◀ previous" });
  const next = h("button", { type: "button", id: "next", text: "next ▶" });
  const holder = h("div", { id: "feature-table" });
  const err = h("div");
  setPage("Features", "features", h("div", { class: "controls" }, runSel, q, labelSel, described), h("div", { class: "pager" }, prev, info, next), err, holder);

  async function loadLabels() {
    try {
      const labels = await api(`/api/interpret/${encodeURIComponent(state.run)}/labels`);
      fill(labelSel, h("option", { value: "", text: "any best label" }), ...labels.map((l) => h("option", { value: l, selected: l === state.label, text: l })));
    } catch (e) {
      fill(err, errorBox(e));
    }
  }

  async function load() {
    const qs = new URLSearchParams({ sort: state.sort, order: state.order, offset: state.offset, limit: state.limit });
    if (state.q) qs.set("q", state.q);
    if (state.label) qs.set("label", state.label);
    if (state.described) qs.set("described", state.described);
    history.replaceState(null, "", `/features?run=${encodeURIComponent(state.run)}&${qs}`);
    const page = await fetchPage(`/api/interpret/${encodeURIComponent(state.run)}/features?${qs}`, err);
    if (!page) return;
    const head = h(
      "tr",
      {},
      FEATURE_COLUMNS.map((c) => {
        const arrow = state.sort === c.key ? (state.order === "asc" ? " ▲" : " ▼") : "";
        return h("th", {
          class: `sortable${c.num ? " num" : ""}`,
          "data-sort": c.key,
          "aria-sort": state.sort === c.key ? (state.order === "asc" ? "ascending" : "descending") : "none",
          text: c.label + arrow,
          onclick: () => {
            if (state.sort === c.key) state.order = state.order === "asc" ? "desc" : "asc";
            else {
              state.sort = c.key;
              state.order = c.num ? "desc" : "asc";
            }
            state.offset = 0;
            load();
          },
        });
      })
    );
    const body = h(
      "tbody",
      {},
      page.rows.map((r) => {
        const href = `/feature/${encodeURIComponent(state.run)}/${r.feature}`;
        return h(
          "tr",
          { "data-feature": r.feature },
          FEATURE_COLUMNS.map((c) => {
            if (c.key === "feature") return h("td", { class: "num" }, h("a", { href, text: `f${r.feature}` }));
            if (c.key === "description") return h("td", { class: "desc", text: r.description || "—" });
            return h("td", { class: c.num ? "num" : "", text: fmt(r[c.key]) });
          })
        );
      })
    );
    fill(holder, h("table", { class: "grid-table features" }, h("thead", {}, head), body));
    const end = Math.min(page.offset + page.rows.length, page.total);
    info.textContent = page.total ? `${page.offset + 1}–${end} of ${page.total.toLocaleString("en")} (${page.features.toLocaleString("en")} features)` : "no feature matches";
    prev.disabled = page.offset <= 0;
    next.disabled = end >= page.total;
  }

  wireSearchBox(q, state, load);
  runSel.addEventListener("change", () => {
    state.run = runSel.value;
    state.offset = 0;
    state.label = "";
    loadLabels();
    load();
  });
  labelSel.addEventListener("change", () => {
    state.label = labelSel.value;
    state.offset = 0;
    load();
  });
  described.addEventListener("change", () => {
    state.described = described.value;
    state.offset = 0;
    load();
  });
  wirePager(prev, next, state, load);
  await Promise.all([loadLabels(), load()]);
}

// --------------------------------------------------------------------------------------------- feature page
function bars(items, key, label) {
  return h(
    "div",
    { class: "bars" },
    items
      .filter((it) => it[key] !== null && it[key] !== undefined)
      .sort((a, b) => b[key] - a[key])
      .map((it) => {
        const v = it[key];
        const left = Math.min(v, 0.5) * 100;
        const width = Math.abs(v - 0.5) * 100;
        return h(
          "div",
          { class: "bar-row" },
          h("span", { class: "bar-label", text: it[label] }),
          h("span", { class: "bar-track" }, h("span", { class: `bar ${v >= 0.5 ? "pos" : "neg"}`, style: { left: `${left}%`, width: `${width}%` } }), h("span", { class: "bar-mid" })),
          h("span", { class: "bar-value", text: v.toFixed(3) })
        );
      })
  );
}

function histogram(hist) {
  if (!hist.counts.length) return h("p", { class: "muted", text: "no recorded activations" });
  const top = Math.max(...hist.counts, 1);
  return h(
    "div",
    {},
    h(
      "div",
      { class: "hist" },
      hist.counts.map((c, i) =>
        h("span", { class: "hist-bar", title: `${hist.edges[i].toFixed(2)}–${hist.edges[i + 1].toFixed(2)}: ${c}`, style: { height: `${(100 * c) / top}%` } })
      )
    ),
    h("div", { class: "hist-axis" }, h("span", { text: "0" }), h("span", { text: hist.edges[hist.edges.length - 1].toFixed(2) })),
    h("p", { class: "muted small", text: `activation of the ${hist.source}` })
  );
}

async function featurePage(run, feature) {
  const f = await api(`/api/interpret/${encodeURIComponent(run)}/features/${feature}`);
  const d = f.description || {};
  const s = f.stats || {};
  const described = d.sentences && d.sentences.length;
  const desc = h(
    "section",
    { class: "card" },
    h("h2", { text: "Description" }),
    h("p", { class: described ? "description" : "muted", id: "description", text: described ? d.text : d.skip_reason || "no description" }),
    described && d.sentences.length > 1 ? h("ul", {}, d.sentences.map((t) => h("li", { text: t }))) : null,
    h(
      "p",
      { class: "muted" },
      `confidence ${fmt(d.confidence, 2)} · description score (AUC) ${fmt(d.score_auc)} · describer ${fmt(d.describer)}`,
      d.findings && d.findings.length ? ` · findings: ${d.findings.join(", ")}` : ""
    ),
    h(
      "p",
      { class: "muted" },
      `frequency ${fmt(s.frequency)} · active on ${fmt(s.n_active)} images · max ${fmt(s.max)} · threshold ${fmt(s.threshold)} · best label ${fmt(s.best_label)} (AUC ${fmt(s.auc)}, ${fmt(s.verdict)})`,
      s.side ? ` · fires ${s.side}, ${s.third}` : ""
    )
  );
  const toggle = h("input", { type: "checkbox", id: "show-heat", checked: true });
  toggle.addEventListener("change", () => {
    for (const c of document.querySelectorAll(".overlay.heat")) c.classList.toggle("visible", toggle.checked);
  });
  const top = f.top_images.map((t) => tile(f.dataset, t.image_id, `act ${fmt(t.activation, 2)}`, t.heatmap, null));
  for (const a of top) a.removeAttribute("href");
  const non = f.non_activating.map((t) => tile(f.dataset, t.image_id, "", null, null));
  for (const a of non) a.removeAttribute("href");
  setPage(
    `Feature f${feature}`,
    "features",
    h("p", {}, h("a", { href: `/features?run=${encodeURIComponent(run)}`, text: `← features of ${run}` })),
    desc,
    h("h2", { text: `Top-activating images (${f.top_images.length})` }),
    f.heatmaps ? h("label", { class: "muted" }, toggle, " heatmap overlays") : h("p", { class: "muted", text: "no heatmaps stored for this feature (the interpretation keeps them for its most frequent described features)" }),
    h("div", { class: "tiles", id: "top-images" }, top.length ? top : h("p", { class: "muted", text: "the feature never fired" })),
    h("h2", { text: `Non-activating examples (${f.non_activating.length})` }),
    h("div", { class: "tiles small", id: "non-activating" }, non),
    h(
      "div",
      { class: "cols2" },
      h("section", { class: "card" }, h("h2", { text: "Label association (AUC)" }), bars(f.labels, "auc", "label"), f.factors.some((x) => x.auc !== null) ? h("h3", { text: "Phantom factors (AUC)" }) : null, bars(f.factors, "auc", "factor")),
      h("section", { class: "card" }, h("h2", { text: "Activation histogram" }), histogram(f.histogram))
    )
  );
}

// ------------------------------------------------------------------------------------------------- studies
async function studiesPage() {
  const o = await api("/api/overview");
  if (!o.reports.length) {
    setPage("Studies", "studies", h("p", { class: "muted", text: "no report run in this workspace — run `cxrlens report`" }));
    return;
  }
  const p = params();
  const state = { run: p.get("run") || o.reports[0].name, q: p.get("q") || "", offset: parseInt(p.get("offset") || "0", 10) || 0, limit: 50 };
  const runSel = h("select", { id: "run" }, o.reports.map((r) => h("option", { value: r.name, selected: r.name === state.run, text: r.name })));
  const q = h("input", { type: "search", id: "q", placeholder: "image id or generated text contains…", value: state.q });
  const info = h("span", { class: "muted" });
  const prev = h("button", { type: "button", text: "◀ previous" });
  const next = h("button", { type: "button", text: "next ▶" });
  const holder = h("div", { id: "study-list" });
  const err = h("div");
  setPage("Studies", "studies", h("div", { class: "controls" }, runSel, q), h("div", { class: "pager" }, prev, info, next), err, holder);
  async function load() {
    const qs = new URLSearchParams({ offset: state.offset, limit: state.limit });
    if (state.q) qs.set("q", state.q);
    history.replaceState(null, "", `/studies?run=${encodeURIComponent(state.run)}&${qs}`);
    const page = await fetchPage(`/api/reports/${encodeURIComponent(state.run)}/studies?${qs}`, err);
    if (!page) return;
    fill(holder, 
      table(
        [
          { label: "image", get: (r) => h("a", { href: `/study/${encodeURIComponent(state.run)}/${encodeURIComponent(r.image_id)}`, text: r.image_id }) },
          { label: "study", key: "study_id" },
          { label: "split", key: "split" },
          { label: "sentences", key: "sentences", num: true },
          { label: "generated report", get: (r) => h("span", { class: "desc", text: r.generated_text || "(empty)" }) },
        ],
        page.rows
      )
    );
    const end = Math.min(page.offset + page.rows.length, page.total);
    info.textContent = page.total ? `${page.offset + 1}–${end} of ${page.total.toLocaleString("en")}` : "no study matches";
    prev.disabled = page.offset <= 0;
    next.disabled = end >= page.total;
  }
  wireSearchBox(q, state, load);
  runSel.addEventListener("change", () => {
    state.run = runSel.value;
    state.offset = 0;
    load();
  });
  wirePager(prev, next, state, load);
  await load();
}

// One page of a server-paged table, or null after showing the error in `err` (cleared on success).
async function fetchPage(url, err) {
  try {
    const page = await api(url);
    fill(err);
    return page;
  } catch (e) {
    fill(err, errorBox(e));
    return null;
  }
}

// A text box that filters a paged table: typing waits 250 ms, then reloads from the first page.
function wireSearchBox(q, state, load) {
  let timer = null;
  q.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = q.value;
      state.offset = 0;
      load();
    }, 250);
  });
}

// Previous / next buttons of a server-paged table (state.offset, state.limit).
function wirePager(prev, next, state, load) {
  prev.addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - state.limit);
    load();
  });
  next.addEventListener("click", () => {
    state.offset += state.limit;
    load();
  });
}

// A report's sentences; hovering shows a sentence's evidence map on `overlay`, clicking pins it and lists its
// features in `panel`.
function reportView(generated, interp, overlay, panel) {
  let pinned = null;
  const show = (s) => {
    if (s && s.evidence_map) {
      drawMap(overlay, s.evidence_map);
      overlay.classList.add("visible");
    } else overlay.classList.remove("visible");
  };
  const describe = (s, el) => {
    const evidence = s.evidence || [];
    fill(panel, 
      h("h3", { text: "Evidence" }),
      h("p", { class: "quote", text: s.text }),
      s.evidence_map ? null : h("p", { class: "muted", text: "no evidence map for this sentence" }),
      evidence.length
        ? table(
            [
              { label: "feature", get: (e) => (interp ? h("a", { href: `/feature/${encodeURIComponent(interp)}/${e.feature}`, text: `f${e.feature}` }) : `f${e.feature}`) },
              { label: "activation", key: "activation", num: true },
              { label: "contribution", key: "contribution", num: true },
              { label: "description", get: (e) => h("span", { class: "desc", text: e.description || "—" }) },
            ],
            evidence
          )
        : h("p", { class: "muted", text: "no evidence recorded" })
    );
    for (const x of document.querySelectorAll(".sentence.pinned")) x.classList.remove("pinned");
    el.classList.add("pinned");
  };
  const section = (title, key) => {
    const list = generated[key] || [];
    if (!list.length && key === "dropped_contradictions") return null;
    return h(
      "div",
      {},
      h("h3", { text: title }),
      list.length
        ? list.map((s, i) => {
            const el = h(
              "button",
              { type: "button", class: `sentence${s.evidence_map ? " has-map" : ""}${key === "dropped_contradictions" ? " dropped" : ""}`, "data-section": key, "data-index": i },
              h("span", { text: s.text }),
              s.side || s.zone ? h("span", { class: "tag", text: [s.side, s.zone].filter(Boolean).join(" · ") }) : null,
              h("span", { class: "tag", text: `${(s.evidence || []).length} feature(s)` })
            );
            el.addEventListener("mouseenter", () => show(s));
            el.addEventListener("mouseleave", () => show(pinned));
            el.addEventListener("focus", () => show(s));
            el.addEventListener("click", () => {
              pinned = s;
              show(s);
              describe(s, el);
            });
            return el;
          })
        : h("p", { class: "muted", text: "(none)" })
    );
  };
  return h("div", { class: "report" }, section("Findings", "findings"), section("Impression", "impression"), section("Dropped contradictions", "dropped_contradictions"));
}

async function studyPage(run, imageId) {
  const s = await api(`/api/reports/${encodeURIComponent(run)}/studies/${encodeURIComponent(imageId)}`);
  const overlay = h("canvas", { class: "overlay heat", id: "study-overlay" });
  const maskImg = h("img", { class: "overlay mask", id: "mask-overlay", alt: "" });
  const imgbox = h(
    "div",
    { class: "imgbox big" },
    s.has_image ? h("img", { class: "xray", id: "study-image", src: imageUrl(s.dataset, s.image_id, 512), alt: s.image_id }) : h("p", { class: "muted", text: "image not in the dataset" }),
    overlay,
    maskImg
  );
  const panel = h("div", { class: "card", id: "evidence-panel" }, h("p", { class: "muted", text: "hover a sentence to see its evidence on the image; click to pin it and list its features" }));
  const empty = !["findings", "impression"].some((k) => (s.generated[k] || []).length);
  const labels = Object.entries(s.labels || {}).filter(([, v]) => v !== null);
  const labelValue = (v) => (v === 1 ? "present" : v === 0 ? "absent" : v === -1 ? "uncertain" : fmt(v));
  let truth = null;
  if (s.ground_truth) {
    const buttons = s.ground_truth.masks.map((label) =>
      h("button", {
        type: "button",
        class: "mask-btn",
        text: label,
        onclick: (ev) => {
          const on = !ev.currentTarget.classList.contains("on");
          for (const b of document.querySelectorAll(".mask-btn")) b.classList.remove("on");
          if (on) {
            ev.currentTarget.classList.add("on");
            maskImg.src = `/api/masks/${encodeURIComponent(s.dataset)}/${encodeURIComponent(s.image_id)}?label=${encodeURIComponent(label)}`;
            maskImg.classList.add("visible");
          } else maskImg.classList.remove("visible");
        },
      })
    );
    truth = h(
      "section",
      { class: "card" },
      h("h3", { text: "Phantom ground truth" }),
      buttons.length ? h("div", { class: "mask-buttons" }, buttons) : h("p", { class: "muted", text: "no finding drawn" }),
      s.ground_truth.drawn.length ? h("ul", {}, s.ground_truth.drawn.map((d) => h("li", { text: [d.kind, d.side, d.zone].filter(Boolean).join(" · ") }))) : null
    );
  }
  setPage(
    s.image_id,
    "studies",
    h("p", {}, h("a", { href: `/studies?run=${encodeURIComponent(run)}`, text: `← studies of ${run}` }), h("span", { class: "muted", text: `  ${Object.entries(s.study).map(([k, v]) => `${k} ${v}`).join(" · ")}` })),
    h(
      "div",
      { class: "study" },
      h("div", {}, imgbox, truth),
      h("div", {}, h("h2", { text: "Generated report" }), empty ? h("p", { class: "muted", text: "the model stated nothing for this image (empty report)" }) : null, reportView(s.generated, s.interpret, overlay, panel), panel),
      h(
        "div",
        {},
        h("h2", { text: "Reference report" }),
        h("p", { class: "reference", text: s.reference_text || "(none)" }),
        h("h3", { text: "Labels" }),
        labels.length ? table([{ label: "label", key: 0 }, { label: "value", get: (r) => labelValue(r[1]) }], labels) : h("p", { class: "muted", text: "no labels" })
      )
    )
  );
}

// -------------------------------------------------------------------------------------------------- search
async function searchPage() {
  const idx = await api("/api/search/indexes");
  if (!idx.indexes.length) {
    setPage("Search", "search", h("p", { class: "notice", id: "search-absent", text: `Search is not available: ${idx.reason}.` }));
    return;
  }
  const runSel = h("select", { id: "run" }, idx.indexes.map((r) => h("option", { value: r, text: r })));
  const q = h("input", { type: "search", id: "q", placeholder: "e.g. large right pleural effusion", value: params().get("q") || "" });
  const go = h("button", { type: "submit", text: "search" });
  const out = h("div", { class: "tiles", id: "hits" });
  const form = h("form", { class: "controls" }, runSel, q, go);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(out, h("p", { class: "muted", text: "searching…" }));
    try {
      const r = await api(`/api/search?${new URLSearchParams({ q: q.value, run: runSel.value, k: 24 })}`);
      fill(out, ...r.hits.map((hit) => tile(r.dataset, hit.image_id, `#${hit.rank} · ${fmt(hit.score)}`, null, null)));
    } catch (e) {
      fill(out, errorBox(e));
    }
  });
  setPage("Search", "search", form, out);
}

// ------------------------------------------------------------------------------------------------ analysis
async function analysisPage() {
  const runs = await api("/api/analysis");
  const content = runs.map((r) => {
    const tables = r.tables.map((t) => {
      const holder = h("div", { class: "table-holder" });
      const btn = h("button", {
        type: "button",
        text: `show ${t}`,
        onclick: async () => {
          try {
            const data = await api(`/api/tables/${r.kind}/${encodeURIComponent(r.name)}?${new URLSearchParams({ path: t })}`);
            if (data.json !== undefined) fill(holder, h("pre", { text: JSON.stringify(data.json, null, 2) }));
            else fill(holder, table(data.columns.map((c, i) => ({ label: c, key: i, num: false })), data.rows), h("p", { class: "muted small", text: `${data.rows.length} of ${data.total} rows` }));
          } catch (e) {
            fill(holder, errorBox(e));
          }
        },
      });
      return h("div", {}, btn, holder);
    });
    return h(
      "section",
      { class: "card" },
      h("h2", { text: `${r.kind}/${r.name}` }),
      h("p", { class: "muted", text: r.stage ? `stage ${r.stage}` : "incomplete (no manifest)" }),
      h(
        "div",
        { class: "figures" },
        r.figures.map((f) =>
          h("figure", {}, h("img", { src: `/api/files/${r.kind}/${encodeURIComponent(r.name)}/${f.split("/").map(encodeURIComponent).join("/")}`, alt: f, loading: "lazy" }), h("figcaption", { text: f }))
        )
      ),
      tables
    );
  });
  setPage("Analysis", "analysis", content.length ? content : h("p", { class: "muted", text: "no figures or tables under analysis/, align/ or lt-vit/ yet (run `cxrlens analyze …`, `cxrlens align …` or `cxrlens lt-vit …`)" }));
}

// -------------------------------------------------------------------------------------------------- upload
async function uploadPage() {
  const [o, cfg] = await Promise.all([api("/api/overview"), api("/api/config")]);
  if (!cfg.uploads) {
    setPage("Upload", "upload", h("p", { class: "notice", text: "uploads are disabled for this viewer (--no-uploads)" }));
    return;
  }
  if (!o.interpret.length) {
    setPage("Upload", "upload", h("p", { class: "notice", text: "no interpretation run to write reports with" }));
    return;
  }
  const model = h("select", { id: "model" }, o.interpret.map((r) => h("option", { value: r.name, text: r.name })));
  const file = h("input", { type: "file", id: "file", accept: cfg.upload_types.join(",") });
  const go = h("button", { type: "submit", text: "write report" });
  const out = h("div", { id: "upload-result" });
  const form = h("form", { class: "controls" }, model, file, go);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = file.files[0];
    if (!f) {
      fill(out, errorBox(new Error("choose an image first")));
      return;
    }
    fill(out, h("p", { class: "muted", text: "encoding (the first report loads the model)…" }));
    try {
      const r = await api(`/api/upload?model=${encodeURIComponent(model.value)}`, { method: "POST", body: f, headers: { "Content-Type": f.type || "application/octet-stream" } });
      const overlay = h("canvas", { class: "overlay heat" });
      const panel = h("div", { class: "card" });
      fill(out, h("div", { class: "study" }, h("div", { class: "imgbox big" }, h("img", { class: "xray", src: URL.createObjectURL(f), alt: f.name }), overlay), h("div", {}, reportView(r.generated, r.model, overlay, panel), panel)));
    } catch (e) {
      fill(out, errorBox(e));
    }
  });
  setPage("Upload an image", "upload", h("p", { class: "muted", text: `PNG, JPEG or DICOM up to ${(cfg.upload_limit_bytes / 1048576).toFixed(1)} MiB; the image is encoded and reported, nothing is stored.` }), form, out);
}

// -------------------------------------------------------------------------------------------------- router
async function route() {
  const path = decodeURIComponent(location.pathname);
  try {
    let m;
    if (path === "/") await overviewPage();
    else if (path === "/features") await featuresPage();
    else if ((m = location.pathname.match(/^\/feature\/([^/]+)\/(\d+)$/))) await featurePage(decodeURIComponent(m[1]), m[2]);
    else if (path === "/studies") await studiesPage();
    else if ((m = location.pathname.match(/^\/study\/([^/]+)\/([^/]+)$/))) await studyPage(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
    else if (path === "/search") await searchPage();
    else if (path === "/analysis") await analysisPage();
    else if (path === "/upload") await uploadPage();
    else setPage("Not found", "", h("p", { text: `no page ${path}` }));
  } catch (e) {
    setPage("Error", "", errorBox(e));
  }
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", route);
