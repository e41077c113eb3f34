// The script of `prm view` pages (see prm/view_html.py, which embeds it with the data).
//
// Plain DOM code, no library: the page is a filter form, a paged list and one trace's steps.
// Filtering 10,000 small facet records is a loop of a few milliseconds; only the current page
// of the list (50 rows) and the open trace are turned into HTML, so the page stays fast without
// virtual scrolling. A framework (Preact, lit, ...) would add a vendored file as long as this
// one without making these three render functions shorter.
// The step view mirrors step_html/trace_html in prm/view_html.py (the notebooks' renderer);
// tests/test_view_browser.py checks that both draw the same steps.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("prm-data").textContent);
  const TRACES = DATA.traces;
  const STEP_FIELDS = new Set(DATA.stepFields);
  const SIGNALS = ["mc", "checker", "prm", "gold", "human"];
  const app = document.getElementById("app");
  const state = { search: "", source: "", refuted: "", disagree: "", firstError: "", scoreMin: "", scoreMax: "",
                  colour: "label", page: 0, open: null, shown: [] };
  let haystacks = null; // lower-cased id + problem + steps, built on the first search

  const esc = (v) => (v === null || v === undefined ? "" : String(v)).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;" }[c]));
  const word = (label) => (label === 1 ? "good" : label === 0 ? "bad" : "unknown");
  const num = (v) => (v === null || v === undefined ? "–" : String(Number(v.toPrecision(3))));
  const labelColour = (l) => (l === 1 ? "#d5f0da" : l === 0 ? "#f7d2d2" : "#eceef2");
  const scoreColour = (s) => (s === null || s === undefined ? "#eceef2"
    : `hsl(${Math.round(Math.max(0, Math.min(1, s)) * 120)}, 70%, 86%)`);
  const firstErrorWords = (i) => (i === null || i === undefined ? "cannot tell" : i === -1 ? "none" : `step ${i + 1}`);
  const isCritique = (name) => name.includes("critique") || name.includes("judge");

  function goldLabels(t) {
    const gold = (t.meta || {}).gold_labels;
    if (!Array.isArray(gold) || gold.length !== t.steps.length) return t.steps.map(() => null);
    return gold.map((g) => (g === 0 || g === 1 ? g : null));
  }

  function signals(step, gold) {
    const r = step.rollouts;
    let mc = null;
    if ((step.label_source === "monte-carlo" || step.label_source === "binary-search") && step.hard_label !== null
        && step.hard_label !== undefined) mc = step.hard_label;
    else if (r && r.total) mc = r.correct > 0 ? 1 : 0;
    const statuses = new Set((step.verdicts || []).map((v) => v.status));
    const checker = statuses.has("refuted") ? 0 : statuses.has("verified") ? 1 : null;
    const prm = step.score === null || step.score === undefined ? null : (step.score >= DATA.prmThreshold ? 1 : 0);
    let human = null;
    const reviews = step.reviews || [];
    if (reviews.length) {
      let best = 0;
      reviews.forEach((rv, i) => { if ((rv.time || "") >= (reviews[best].time || "")) best = i; });
      human = reviews[best].hard_label;
    }
    return { mc, checker, prm, gold, human };
  }

  function pairs(s) {
    const out = [];
    SIGNALS.forEach((a, i) => SIGNALS.slice(i + 1).forEach((b) => {
      if (s[a] !== null && s[a] !== undefined && s[b] !== null && s[b] !== undefined && s[a] !== s[b]) out.push([a, b]);
    }));
    return out;
  }

  function critique(name, value) {
    const text = typeof value === "string" ? value : JSON.stringify(value, null, 1);
    return `<div class="prm-judge"><b>${esc(name)}</b>: ${esc(text)}</div>`;
  }

  function answer(a, reference) {
    if (a === null || a === undefined) return '<span class="prm-answer none">none</span>';
    const right = reference !== null && reference !== undefined && a.trim() === reference.trim();
    return `<span class="prm-answer${right ? " right" : ""}">${esc(a)}</span>`;
  }

  function stepHtml(step, i, gold, fe, goldFe, reference) {
    const s = signals(step, gold);
    const cls = ["prm-step"];
    if (i === fe) cls.push("first-error");
    if (i === goldFe && goldFe !== fe) cls.push("gold-first-error");
    const style = `--c-label:${labelColour(step.hard_label)};--c-score:${scoreColour(step.score)};` +
      `--c-gold:${labelColour(gold)};--c-human:${labelColour(s.human)}`;
    const facts = [`<span class="prm-badge ${word(step.hard_label)}">${word(step.hard_label)}</span>`];
    if (step.label_source) facts.push(`source <b>${esc(step.label_source)}</b>`);
    if (step.soft_label !== null && step.soft_label !== undefined) facts.push(`soft ${num(step.soft_label)}`);
    if (step.score !== null && step.score !== undefined) facts.push(`score <b>${num(step.score)}</b>`);
    if (gold !== null) facts.push(`<span class="prm-badge gold">gold ${word(gold)}</span>`);
    if (i === fe) facts.push('<span class="prm-badge bad">first error</span>');
    if (i === goldFe && goldFe !== fe) facts.push('<span class="prm-badge gold">gold first error</span>');
    for (const [a, b] of pairs(s)) {
      facts.push(`<span class="prm-badge disagree">${DATA.signals[a]} ≠ ${DATA.signals[b]}</span>`);
    }
    const parts = [`<div class="${cls.join(" ")}" data-step="${i}" style="${style}">`,
      `<div class="prm-step-top"><span class="prm-num">${i + 1}</span><span class="prm-text">${esc(step.text)}</span></div>`,
      `<div class="prm-facts">${facts.map((f) => `<span>${f}</span>`).join("")}</div>`];
    for (const v of step.verdicts || []) {
      const bits = [`<span class="prm-badge ${esc(v.status)}">${esc(v.checker)}: ${esc(v.status)}</span>`];
      if (v.claim) bits.push(`claim <code>${esc(v.claim)}</code>`);
      if (v.evidence) bits.push(`evidence <code>${esc(v.evidence)}</code>`);
      if (v.backend) bits.push(`<span style="color:#6b7385">${esc(v.backend)}</span>`);
      parts.push(`<div class="prm-verdict">${bits.join(" ")}</div>`);
    }
    const r = step.rollouts;
    if (r) {
      const answers = (r.answers || []).map((a) => answer(a, reference)).join("");
      parts.push(`<div class="prm-verdict">Monte Carlo <b>${r.correct}/${r.total}</b> reached the answer ${answers}</div>`);
      const texts = r.texts || [];
      if (texts.length) {
        parts.push(`<details><summary>${texts.length} continuation(s)</summary>${texts.map((t) => `<pre>${esc(t)}</pre>`).join("")}</details>`);
      }
    }
    for (const rv of step.reviews || []) {
      const when = rv.time ? `, ${esc(rv.time)}` : "";
      const tool = rv.tool ? ` in ${esc(rv.tool)}` : "";
      const comment = rv.comment ? `: ${esc(rv.comment)}` : "";
      parts.push(`<div class="prm-verdict"><span class="prm-badge human">${esc(rv.label_source)}: ${word(rv.hard_label)}</span> ` +
        `${esc(rv.reviewer)}${tool}${when}${comment}</div>`);
    }
    for (const name of Object.keys(step).filter((k) => !STEP_FIELDS.has(k)).sort()) {
      const value = step[name];
      if (value === null || value === undefined) continue;
      if (isCritique(name)) parts.push(critique(name, value));
      else parts.push(`<div class="prm-verdict">${esc(name)}: <code>${esc(typeof value === "string" ? value : JSON.stringify(value))}</code></div>`);
    }
    parts.push("</div>");
    return parts.join("");
  }

  function traceHtml(item) {
    const t = item.t, f = item.f, meta = t.meta || {};
    const outcome = t.outcome_label === 1 ? "correct" : t.outcome_label === 0 ? "wrong" : "unknown";
    const head = [`<span class="prm-id">${esc(t.id)}</span>`, `${t.steps.length} steps`,
      `first error: <b>${firstErrorWords(f.first_error)}</b>`];
    if (f.gold_first_error !== null) head.push(`gold first error: <b>${firstErrorWords(f.gold_first_error)}</b>`);
    if (f.min_score !== null) head.push(`min score ${num(f.min_score)}`);
    const golds = goldLabels(t);
    const steps = t.steps.map((s, i) => stepHtml(s, i, golds[i], f.first_error, f.gold_first_error, t.reference_answer)).join("");
    const critiques = Object.keys(meta).sort().filter((k) => isCritique(k) && meta[k]).map((k) => critique(k, meta[k])).join("");
    return `<div class="prm-trace" data-trace="${esc(t.id)}"><div class="prm-head">${head.map((h) => `<span>${h}</span>`).join("")}</div>` +
      `<div class="prm-problem">${esc(t.problem)}</div><div class="prm-answers">final answer <b>${esc(t.final_answer || "–")}</b>` +
      ` · reference <b>${esc(t.reference_answer || "–")}</b> · outcome <b>${outcome}</b></div>${critiques}${steps}</div>` +
      `<details><summary>meta</summary><pre>${esc(JSON.stringify(meta, null, 1))}</pre></details>`;
  }

  // -- filters ------------------------------------------------------------------------------------
  function matches(item, i) {
    const f = item.f;
    if (state.source && !f.sources.includes(state.source)) return false;
    if (state.refuted === "yes" && !f.refuted) return false;
    if (state.refuted === "no" && f.refuted) return false;
    if (state.disagree === "any" && !f.disagree.length) return false;
    if (state.disagree && state.disagree !== "any" && !f.disagree.includes(state.disagree)) return false;
    if (state.firstError) {
      const fe = f.first_error;
      if (state.firstError === "none" && fe !== -1) return false;
      if (state.firstError === "unknown" && fe !== null) return false;
      if (state.firstError === "any-error" && !(fe !== null && fe >= 0)) return false;
      if (state.firstError === "differs-gold" && !(f.gold_first_error !== null && fe !== f.gold_first_error)) return false;
      if (/^\d+$/.test(state.firstError) && fe !== Number(state.firstError)) return false;
    }
    if (state.scoreMin !== "" || state.scoreMax !== "") {
      if (f.min_score === null) return false;
      if (state.scoreMin !== "" && f.min_score < Number(state.scoreMin)) return false;
      if (state.scoreMax !== "" && f.min_score > Number(state.scoreMax)) return false;
    }
    if (state.search) {
      if (!haystacks) haystacks = TRACES.map((x) => [x.t.id, x.t.problem, ...x.t.steps.map((s) => s.text)].join("\n").toLowerCase());
      if (!haystacks[i].includes(state.search)) return false;
    }
    return true;
  }

  function applyFilters() {
    state.shown = [];
    TRACES.forEach((item, i) => { if (matches(item, i)) state.shown.push(i); });
    state.page = 0;
    renderList();
  }

  // -- the page -------------------------------------------------------------------------------------
  function options(pairsOfValueText, selected) {
    return pairsOfValueText.map(([v, t]) => `<option value="${esc(v)}"${v === selected ? " selected" : ""}>${esc(t)}</option>`).join("");
  }

  function renderShell() {
    const sources = [...new Set(TRACES.flatMap((x) => x.f.sources))].sort();
    const present = [...new Set(TRACES.flatMap((x) => x.f.disagree))].sort();
    const maxFe = Math.max(-1, ...TRACES.map((x) => (x.f.first_error === null ? -1 : x.f.first_error)));
    const fePositions = [];
    for (let i = 0; i <= Math.min(maxFe, 49); i++) fePositions.push([String(i), `step ${i + 1}`]);
    app.innerHTML = `<header class="prm-bar"><h1>${esc(DATA.title)}</h1><span id="prm-count"></span>` +
      `<label>colour steps by <select id="prm-colour">${options([["label", "label"], ["score", "PRM score"], ["gold", "gold label"], ["human", "reviewers' label"]], state.colour)}</select></label></header>` +
      `<div class="prm-main"><aside class="prm-filters">` +
      `<label for="prm-search">text search</label><input id="prm-search" type="search" placeholder="problem, steps or id">` +
      `<label for="prm-source">label source</label><select id="prm-source">${options([["", "any"], ...sources.map((s) => [s, s])], "")}</select>` +
      `<label for="prm-refuted">refuted step (a checker)</label><select id="prm-refuted">${options([["", "any"], ["yes", "has a refuted step"], ["no", "no refuted step"]], "")}</select>` +
      `<label for="prm-disagree">disagreement on a step</label><select id="prm-disagree">${options([["", "any trace"], ["any", "any two signals disagree"],
        ...present.map((p) => { const [a, b] = p.split("-"); return [p, `${DATA.signals[a]} vs ${DATA.signals[b]}`]; })], "")}</select>` +
      `<label for="prm-first-error">first error (labels)</label><select id="prm-first-error">${options([["", "any"], ["any-error", "has an error"], ["none", "no error"],
        ["unknown", "cannot tell"], ["differs-gold", "differs from gold"], ...fePositions], "")}</select>` +
      `<label>min step score in</label><input id="prm-score-min" type="number" step="0.05" min="0" max="1" placeholder="from"> ` +
      `<input id="prm-score-max" type="number" step="0.05" min="0" max="1" placeholder="to">` +
      `<p class="prm-legend">PRM counts a step good at score ≥ ${DATA.prmThreshold}; Monte Carlo when a rollout reaches the answer.</p>` +
      `<button id="prm-reset" type="button">reset filters</button></aside>` +
      `<section class="prm-list" id="prm-list"></section><section class="prm-detail" id="prm-detail"><div class="prm-empty">choose a trace</div></section></div>`;
    const bind = (id, key, event, transform) => document.getElementById(id).addEventListener(event, (e) => {
      state[key] = transform ? transform(e.target.value) : e.target.value; applyFilters();
    });
    let timer = null;
    document.getElementById("prm-search").addEventListener("input", (e) => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.search = e.target.value.trim().toLowerCase(); applyFilters(); }, 150);
    });
    bind("prm-source", "source", "change");
    bind("prm-refuted", "refuted", "change");
    bind("prm-disagree", "disagree", "change");
    bind("prm-first-error", "firstError", "change");
    bind("prm-score-min", "scoreMin", "input");
    bind("prm-score-max", "scoreMax", "input");
    document.getElementById("prm-colour").addEventListener("change", (e) => {
      state.colour = e.target.value; app.className = `prm-view by-${state.colour}`;
    });
    document.getElementById("prm-reset").addEventListener("click", () => {
      Object.assign(state, { search: "", source: "", refuted: "", disagree: "", firstError: "", scoreMin: "", scoreMax: "" });
      app.querySelectorAll(".prm-filters input").forEach((el) => { el.value = ""; });
      app.querySelectorAll(".prm-filters select").forEach((el) => { el.value = ""; });
      applyFilters();
    });
    document.getElementById("prm-list").addEventListener("click", (e) => {
      const row = e.target.closest(".prm-row");
      if (row) openTrace(Number(row.dataset.index));
      const turn = e.target.closest("[data-turn]");
      if (turn) { state.page += Number(turn.dataset.turn); renderList(); }
    });
  }

  function renderList() {
    const size = DATA.pageSize, pages = Math.max(1, Math.ceil(state.shown.length / size));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    document.getElementById("prm-count").textContent = `${state.shown.length} of ${TRACES.length} traces`;
    const rows = state.shown.slice(state.page * size, (state.page + 1) * size).map((i) => {
      const f = TRACES[i].f, t = TRACES[i].t;
      const badges = [`first error: ${firstErrorWords(f.first_error)}`];
      if (f.min_score !== null) badges.push(`min score ${num(f.min_score)}`);
      const marks = (f.refuted ? '<span class="prm-badge refuted">refuted</span> ' : "") +
        (f.disagree.length ? `<span class="prm-badge disagree">${f.disagree.length} disagreement(s)</span> ` : "") +
        (f.sources.includes("human review") ? '<span class="prm-badge human">reviewed</span>' : "");
      return `<div class="prm-row${i === state.open ? " selected" : ""}" data-index="${i}"><div><span class="prm-id">${esc(t.id)}</span> ` +
        `<span class="prm-legend">${t.steps.length} steps · ${badges.join(" · ")}</span> ${marks}</div>` +
        `<div class="prm-snippet">${esc(t.problem.slice(0, 160))}</div></div>`;
    }).join("");
    const pager = `<div class="prm-pager"><button type="button" data-turn="-1"${state.page === 0 ? " disabled" : ""}>‹ previous</button>` +
      `<span>page ${state.page + 1} of ${pages}</span><button type="button" data-turn="1"${state.page >= pages - 1 ? " disabled" : ""}>next ›</button></div>`;
    document.getElementById("prm-list").innerHTML = pager + (rows || '<div class="prm-empty">no trace matches the filters</div>');
  }

  function openTrace(i) {
    state.open = i;
    document.getElementById("prm-detail").innerHTML = traceHtml(TRACES[i]);
    document.getElementById("prm-detail").scrollTop = 0;
    app.querySelectorAll(".prm-row").forEach((row) => row.classList.toggle("selected", Number(row.dataset.index) === i));
    history.replaceState(null, "", `#trace=${encodeURIComponent(TRACES[i].t.id)}`);
  }

  renderShell();
  applyFilters();
  const wanted = decodeURIComponent((location.hash.match(/^#trace=(.*)$/) || [])[1] || "");
  const start = wanted ? TRACES.findIndex((x) => x.t.id === wanted) : -1;
  if (start >= 0) openTrace(start);
  window.prmLoadMs = performance.now();
  document.body.dataset.ready = "1";
})();
