// MLOps Autopilot operator console: read-only, vanilla JS, no build step, no external assets.
// The page is opened as /api/console?code=KEY; the key is kept in sessionStorage and sent as
// x-functions-key on every API call. Every view re-reads its data every 2 s.
"use strict";
(function () {
  const KEY_NAME = "autopilot.console.key";
  const POLL_MS = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const BASE = location.pathname.replace(/\/console\/?$/, "/");
  const KINDS = ["event_received", "decision", "action", "error", "ignored", "rejected", "reconciled"];
  const CLOSED = new Set(["PROMOTED", "REJECTED", "ROLLED_BACK", "FAILED"]);
  const COLORS = ["#8ea4c8", "#2e9e62", "#c98a1a", "#8e5bc2"];
  const VERDICT_COLORS = { pass: "#1b7f3b", wait: "#e8a200", breach: "#b42318", continue: "#e8a200", rollback: "#b42318" };

  // ---- the key -------------------------------------------------------------------------
  function initKey() {
    const code = new URLSearchParams(location.search).get("code");
    if (code) sessionStorage.setItem(KEY_NAME, code);
    return sessionStorage.getItem(KEY_NAME) || "";
  }
  const key = initKey();

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path) {
    const resp = await fetch(BASE + path, {
      headers: { "x-functions-key": key, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    const text = await resp.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!resp.ok) {
      throw new ApiError(resp.status, (body && body.error) || text || resp.statusText);
    }
    return body;
  }

  // ---- DOM helpers (text is always set as text: nothing from the API becomes markup) ----
  function fill(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") el.setAttribute("class", value);
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    return el;
  }
  function h(tag, attrs, ...children) {
    const el = fill(setAttrs(document.createElement(tag), attrs), children);
    // every table scrolls sideways in its own box: a narrow window cuts no column off
    return tag === "table" ? fill(setAttrs(document.createElement("div"), { class: "table-scroll" }), [el]) : el;
  }
  function s(tag, attrs, ...children) {
    return fill(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }
  function cycleLink(id) {
    return h("a", { href: "#/cycles/" + encodeURIComponent(id), class: "mono" }, id);
  }
  function rawLink(path, label) {
    return h("a", { href: "#/raw?path=" + encodeURIComponent(path), class: "small" }, label || "JSON");
  }

  // ---- formatting ----------------------------------------------------------------------
  function pad(n) {
    return String(n).padStart(2, "0");
  }
  function fmtTime(iso, withDate) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    const time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    const today = new Date().toISOString().slice(0, 10) === d.toISOString().slice(0, 10);
    return withDate || !today ? d.toISOString().slice(0, 10) + " " + time : time;
  }
  function timeEl(iso, withDate) {
    return h("span", { class: "nowrap", title: iso || "" }, fmtTime(iso, withDate));
  }
  function ago(iso) {
    if (!iso) return "";
    const secs = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (secs < 90) return Math.round(secs) + " s ago";
    if (secs < 5400) return Math.round(secs / 60) + " min ago";
    if (secs < 172800) return Math.round(secs / 3600) + " h ago";
    return Math.round(secs / 86400) + " d ago";
  }
  function duration(ms) {
    const secs = Math.round(ms / 1000);
    if (secs < 120) return secs + " s";
    if (secs < 7200) return Math.round(secs / 60) + " min";
    return (secs / 3600).toFixed(1) + " h";
  }
  function fmtNum(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return v > 0 ? "∞" : "−∞";
    if (Number.isInteger(v) && Math.abs(v) >= 1) return v.toLocaleString("en-US");
    return String(Number(v.toPrecision(4)));
  }
  // a signed gain in words (the gate stores gains; guardrails and slices store regressions)
  function gainWords(gain) {
    if (typeof gain !== "number") return fmtNum(gain);
    if (gain > 0) return "better by " + fmtNum(gain);
    if (gain < 0) return "worse by " + fmtNum(-gain);
    return "unchanged";
  }
  function observedText(r) {
    if (r.rule === "improvement") return gainWords(r.observed);
    if (r.rule === "guardrail" || r.rule === "slice") return gainWords(-r.observed);
    return fmtNum(r.observed);
  }
  function thresholdText(r) {
    if (r.rule === "improvement") return "better by ≥ " + fmtNum(r.threshold);
    if (r.rule === "guardrail" || r.rule === "slice") return "worse by ≤ " + fmtNum(r.threshold);
    return fmtNum(r.threshold);
  }
  function candidateText(c) {
    return c.candidate_version ? "v" + c.candidate_version : c.candidate || "none yet";
  }
  function pct(v) {
    return v === null || v === undefined ? "—" : (v * 100).toFixed(2) + "%";
  }
  function stateClass(state) {
    if (state === "PROMOTED") return "ok";
    if (state === "REJECTED" || state === "ROLLED_BACK" || state === "FAILED") return "bad";
    if (state === "AWAITING_APPROVAL") return "warn";
    return "info";
  }
  function stateBadge(state) {
    return h("span", { class: "badge " + stateClass(state), "data-state": state }, state);
  }
  function kindBadge(kind) {
    return h("span", { class: "badge kind-" + kind }, kind.replace("_", " "));
  }
  function passBadge(passed) {
    return h("span", { class: "badge " + (passed ? "ok" : "bad") }, passed ? "pass" : "fail");
  }
  function trafficText(traffic) {
    if (!traffic) return "—";
    const parts = Object.entries(traffic).sort((a, b) => b[1] - a[1]);
    return parts.length ? parts.map(([d, p]) => d + " " + p + "%").join(" · ") : "no deployments";
  }

  // ---- <details> that stay open across refreshes ----------------------------------------
  const openDetails = new Set();
  // A record's place: its seq, after its chain's number when the log has several chains
  // (order across chains is by time; each chain has its own seqs).
  function recId(r) {
    return r.chain ? r.chain + "/" + r.seq : String(r.seq);
  }

  function evidence(id, value, label) {
    if (value === null || value === undefined) return null;
    if (typeof value === "object" && !Object.keys(value).length) return null;
    const el = h(
      "details",
      { "data-key": id, open: openDetails.has(id) },
      h("summary", null, label || "evidence"),
      h("pre", { class: "json" }, JSON.stringify(value, null, 2))
    );
    el.addEventListener("toggle", () => (el.open ? openDetails.add(id) : openDetails.delete(id)));
    return el;
  }

  // ---- charts --------------------------------------------------------------------------
  function niceTicks(lo, hi, count) {
    const span = hi - lo || 1;
    const raw = span / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => span / st <= count) || raw;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
      ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    return ticks;
  }

  /** SVG histogram of the paired-bootstrap gain, with its interval, the estimate and zero. */
  function bootstrapChart(boot) {
    const edges = boot.histogram.edges;
    const counts = boot.histogram.counts;
    const W = 860;
    const H = 290;
    const m = { l: 48, r: 16, t: 56, b: 46 };
    let lo = Math.min(edges[0], boot.low, 0);
    let hi = Math.max(edges[edges.length - 1], boot.high, 0);
    const padX = (hi - lo) * 0.04 || 0.01;
    lo -= padX;
    hi += padX;
    const top = Math.max(1, ...counts);
    const x = (v) => m.l + ((v - lo) / (hi - lo)) * (W - m.l - m.r);
    const y = (c) => H - m.b - (c / top) * (H - m.t - m.b);
    const svg = s("svg", {
      class: "chart bootstrap",
      viewBox: "0 0 " + W + " " + H,
      role: "img",
      "aria-label": "bootstrap distribution of the " + boot.metric + " gain",
    });
    svg.append(
      s("rect", {
        x: x(boot.low),
        y: m.t,
        width: Math.max(1, x(boot.high) - x(boot.low)),
        height: H - m.t - m.b,
        fill: "#e8eefb",
      })
    );
    for (const t of niceTicks(0, top, 4)) {
      svg.append(s("line", { class: "grid", x1: m.l, x2: W - m.r, y1: y(t), y2: y(t) }));
      svg.append(s("text", { x: m.l - 6, y: y(t) + 4, "text-anchor": "end" }, fmtNum(t)));
    }
    counts.forEach((c, i) => {
      const mid = (edges[i] + edges[i + 1]) / 2;
      const inside = mid >= boot.low && mid <= boot.high;
      svg.append(
        s(
          "rect",
          {
            x: x(edges[i]) + 0.5,
            y: y(c),
            width: Math.max(0.5, x(edges[i + 1]) - x(edges[i]) - 1),
            height: H - m.b - y(c),
            fill: inside ? "#2458b3" : "#9fb3d9",
          },
          s("title", null, "[" + fmtNum(edges[i]) + ", " + fmtNum(edges[i + 1]) + "): " + c)
        )
      );
    });
    svg.append(s("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
    for (const t of niceTicks(lo, hi, 6)) {
      svg.append(s("line", { class: "axis", x1: x(t), x2: x(t), y1: H - m.b, y2: H - m.b + 4 }));
      svg.append(s("text", { x: x(t), y: H - m.b + 16, "text-anchor": "middle" }, fmtNum(t)));
    }
    const marker = (v, color, dash, label, row) => {
      const right = x(v) < (m.l + W - m.r) / 2; // label on the roomier side of its line
      const ty = 34 + row * 14; // labels sit above the bars, one row each
      svg.append(
        s("line", { x1: x(v), x2: x(v), y1: ty - 10, y2: H - m.b, stroke: color, "stroke-width": 2, "stroke-dasharray": dash })
      );
      svg.append(s("text", { x: x(v) + (right ? 5 : -5), y: ty, "text-anchor": right ? "start" : "end", fill: color }, label));
    };
    marker(0, "#b42318", "5 4", "no change (0)", 0);
    marker(boot.estimate, "#18202c", "", "estimate " + fmtNum(boot.estimate), 1);
    svg.append(
      s(
        "text",
        { x: (W + m.l - m.r) / 2, y: H - 8, "text-anchor": "middle" },
        boot.metric + " gain of the challenger over the champion (positive = better)"
      )
    );
    svg.append(
      s(
        "text",
        { class: "title", x: m.l, y: 14 },
        (boot.level * 100).toFixed(0) + "% interval [" + fmtNum(boot.low) + ", " + fmtNum(boot.high) + "] — " + boot.samples + " resamples, seed " + boot.seed
      )
    );
    return h(
      "div",
      { class: "bootstrap-plot" },
      h("h3", null, "Paired bootstrap of the " + boot.metric + " gain"),
      svg,
      h(
        "div",
        { class: "legend" },
        h("span", null, h("span", { class: "swatch sw-ci" }), "inside the interval (dark bars, shaded band)"),
        h("span", { class: "muted" }, boot.low > 0 ? "the interval excludes zero: the gain is significant" : "the interval includes zero or is below it: not significant")
      )
    );
  }

  /** Stacked step chart of the endpoint's traffic split over time, with health per step. */
  function trafficChart(cycle) {
    const ro = cycle.rollout;
    const steps = ro.steps || [];
    const checks = ro.checks || [];
    const history = cycle.history || [];
    const at = (state) => {
      const t = history.find((e) => e.state === state);
      return t ? new Date(t.at).getTime() : null;
    };
    const rolledBack = at("ROLLED_BACK");
    const promoted = ro.promoted_at ? new Date(ro.promoted_at).getTime() : at("PROMOTED");
    const failed = at("FAILED");
    const start = at("ROLLING_OUT") || (steps.length ? new Date(steps[0].at).getTime() : Date.now());

    // breakpoints: (time, traffic) from the rollout start to its end
    const points = [{ t: start, traffic: ro.previous_traffic || (ro.previous ? { [ro.previous]: 100 } : {}) }];
    for (const st of steps) points.push({ t: new Date(st.at).getTime(), traffic: st.traffic || {}, step: st });
    if (rolledBack && ro.previous) {
      points.push({ t: rolledBack, traffic: { [ro.previous]: 100, [ro.deployment]: 0 }, rollback: true });
    }
    const times = points.map((p) => p.t).concat(checks.map((c) => new Date(c.at).getTime()));
    for (const t of [promoted, rolledBack, failed]) if (t) times.push(t);
    if (!CLOSED.has(cycle.state)) times.push(Date.now());
    let t0 = Math.min(...times);
    let t1 = Math.max(...times);
    const span = Math.max(t1 - t0, 1000);
    t1 += span * 0.08;
    t0 -= span * 0.02;

    const names = [];
    const add = (n) => n && !names.includes(n) && names.push(n);
    add(ro.previous);
    add(ro.deployment);
    for (const p of points) Object.keys(p.traffic).forEach(add);

    const W = 1100;
    const H = 300;
    const m = { l: 46, r: 20, t: 34, b: 62 };
    const x = (t) => m.l + ((t - t0) / (t1 - t0)) * (W - m.l - m.r);
    const y = (p) => H - m.b - (p / 100) * (H - m.t - m.b);
    const svg = s("svg", {
      class: "chart traffic",
      viewBox: "0 0 " + W + " " + H,
      role: "img",
      "aria-label": "traffic split of " + ro.endpoint + " over time",
    });
    for (const p of [0, 25, 50, 75, 100]) {
      svg.append(s("line", { class: "grid", x1: m.l, x2: W - m.r, y1: y(p), y2: y(p) }));
      svg.append(s("text", { x: m.l - 6, y: y(p) + 4, "text-anchor": "end" }, p + "%"));
    }
    // one stacked step area per deployment (previous at the bottom)
    names.forEach((name, i) => {
      let upper = "";
      let lower = "";
      points.forEach((p, k) => {
        const xa = x(p.t);
        const xb = x(k + 1 < points.length ? points[k + 1].t : t1);
        const below = names.slice(0, i).reduce((sum, n) => sum + (p.traffic[n] || 0), 0);
        const own = p.traffic[name] || 0;
        upper += (k ? " L" : "M") + xa + "," + y(below + own) + " L" + xb + "," + y(below + own);
        lower = " L" + xb + "," + y(below) + " L" + xa + "," + y(below) + lower;
      });
      svg.append(
        s(
          "path",
          { d: upper + lower + " Z", fill: COLORS[i % COLORS.length], "fill-opacity": 0.85, "data-deployment": name },
          s("title", null, name)
        )
      );
    });
    // step boundaries and labels
    steps.forEach((st, k) => {
      const xs = x(new Date(st.at).getTime());
      svg.append(s("line", { x1: xs, x2: xs, y1: m.t, y2: H - m.b, stroke: "#18202c", "stroke-opacity": 0.35, "stroke-dasharray": "2 3" }));
      const label = st.mirror ? "shadow " + st.mirror + "%" : "step " + (k + 1) + ": " + st.percent + "%";
      svg.append(s("text", { x: xs + 4, y: H - m.b - 7, fill: "#18202c", stroke: "#fff", "stroke-width": 3, "paint-order": "stroke" }, label));
    });
    // health lane: each check's window as a bar ending in a dot, coloured by its verdict
    svg.append(s("text", { x: m.l - 6, y: 22, "text-anchor": "end" }, "health"));
    svg.append(s("line", { class: "grid", x1: m.l, x2: W - m.r, y1: 18, y2: 18 }));
    checks.forEach((c) => {
      const xc = x(new Date(c.at).getTime());
      const xw = c.window && c.window[0] ? x(new Date(c.window[0]).getTime()) : xc;
      const color = VERDICT_COLORS[c.verdict] || "#5f6b7a";
      const tip = s("title", null, fmtTime(c.at) + " " + c.verdict + ": " + c.why);
      svg.append(s("rect", { x: xw + 3, y: 14, width: Math.max(1, xc - xw - 6), height: 8, rx: 3, fill: color, "fill-opacity": 0.35 }, tip.cloneNode(true)));
      svg.append(s("circle", { cx: xc, cy: 18, r: 6, fill: color, "data-verdict": c.verdict }, tip));
    });
    const halo = { stroke: "#fff", "stroke-width": 3, "paint-order": "stroke" };
    const event = (t, color, label) => {
      if (!t) return;
      svg.append(s("line", { x1: x(t), x2: x(t), y1: m.t, y2: H - m.b, stroke: color, "stroke-width": 2.5, "stroke-dasharray": "6 3" }));
      svg.append(s("text", Object.assign({ x: x(t) - 5, y: m.t + 16, "text-anchor": "end", fill: color, "font-weight": 700 }, halo), label));
    };
    if (rolledBack) event(rolledBack, "#b42318", "rollback " + fmtTime(new Date(rolledBack).toISOString()));
    else if (failed) event(failed, "#b42318", "failed (fail safe)");
    if (promoted && !rolledBack) event(promoted, "#1b7f3b", "promoted " + fmtTime(new Date(promoted).toISOString()));
    // time axis
    svg.append(s("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
    for (let k = 0; k <= 5; k++) {
      const t = t0 + ((t1 - t0) * k) / 5;
      svg.append(s("line", { class: "axis", x1: x(t), x2: x(t), y1: H - m.b, y2: H - m.b + 4 }));
      const anchor = k === 0 ? "start" : k === 5 ? "end" : "middle";
      svg.append(s("text", { x: x(t), y: H - m.b + 16, "text-anchor": anchor }, fmtTime(new Date(t).toISOString())));
    }
    // legend (inside the SVG, so the picture names its deployments)
    let lx = m.l;
    names.forEach((name, i) => {
      const role = name === ro.deployment ? " (new)" : name === ro.previous ? " (previous)" : "";
      svg.append(s("rect", { x: lx, y: H - 22, width: 12, height: 12, rx: 2, fill: COLORS[i % COLORS.length] }));
      const text = s("text", { x: lx + 17, y: H - 12, class: "legend-name", "data-deployment": name }, name + role);
      svg.append(text);
      lx += 30 + (name + role).length * 6.6;
    });
    for (const [verdict, color] of Object.entries(VERDICT_COLORS)) {
      svg.append(s("circle", { cx: lx + 5, cy: H - 16, r: 5, fill: color }));
      svg.append(s("text", { x: lx + 14, y: H - 12 }, verdict));
      lx += 30 + verdict.length * 6.6;
    }
    return svg;
  }

  /** Sequential judge: per step, the error-rate difference's confidence band over requests
   *  against the tolerance (pass once the band is below it, roll back once it is above 0). */
  function bandCharts(ro, tolerance) {
    const looks = (ro.checks || []).filter((c) => c.analysis === "sequential" && c.errors);
    const byStep = new Map();
    for (const c of looks) {
      if (!byStep.has(c.step)) byStep.set(c.step, []);
      byStep.get(c.step).push(c);
    }
    const charts = [];
    for (const [step, items] of byStep) {
      const W = 640, H = 200, m = { l: 56, r: 16, t: 24, b: 36 };
      const xs = items.map((c) => c.new_requests);
      const clip = (v) => Math.max(-0.1, Math.min(0.1, v));
      const ys = items.flatMap((c) => [clip(c.errors.lower), clip(c.errors.upper)]).concat([0, tolerance || 0]);
      const lo = Math.min(...ys), hi = Math.max(...ys);
      const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
      const x = (v) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
      const y = (v) => H - m.b - ((clip(v) - lo) / (hi - lo || 1)) * (H - m.t - m.b);
      const pct0 = items[0].percent;
      const svg = s("svg", {
        class: "chart band",
        viewBox: "0 0 " + W + " " + H,
        role: "img",
        "data-step": String(step),
        "aria-label": "confidence band of the error-rate difference, " + (pct0 === 0 ? "shadow" : "canary at " + pct0 + "%"),
      });
      const upper = items.map((c) => x(c.new_requests) + "," + y(c.errors.upper));
      const lower = items.slice().reverse().map((c) => x(c.new_requests) + "," + y(c.errors.lower));
      svg.append(s("polygon", { points: upper.concat(lower).join(" "), fill: "#3b6fb6", "fill-opacity": 0.25, stroke: "#3b6fb6" }, s("title", null, "error-rate difference, new - live: anytime-valid band")));
      svg.append(s("polyline", { points: items.map((c) => x(c.new_requests) + "," + y(c.errors.estimate)).join(" "), fill: "none", stroke: "#18202c" }));
      svg.append(s("line", { class: "grid", x1: m.l, x2: W - m.r, y1: y(0), y2: y(0) }));
      svg.append(s("text", { x: m.l - 6, y: y(0) + 4, "text-anchor": "end" }, "0"));
      if (tolerance) {
        svg.append(s("line", { x1: m.l, x2: W - m.r, y1: y(tolerance), y2: y(tolerance), stroke: VERDICT_COLORS.breach, "stroke-dasharray": "6 3" }));
        svg.append(s("text", { x: m.l - 6, y: y(tolerance) + 4, "text-anchor": "end", fill: VERDICT_COLORS.breach }, "+" + fmtNum(tolerance * 100) + " pp"));
      }
      svg.append(s("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
      svg.append(s("text", { x: m.l, y: H - 10 }, x0 + " requests"));
      svg.append(s("text", { x: W - m.r, y: H - 10, "text-anchor": "end" }, x1 + " requests to the new deployment"));
      const last = items[items.length - 1];
      svg.append(s("text", { x: m.l, y: 16 }, (pct0 === 0 ? "shadow" : "step at " + pct0 + "%") + ": " + last.verdict));
      charts.push(svg);
    }
    return charts;
  }


  /** Estimated against realised performance over time: the estimate with its interval (band
   *  and whiskers), the realised value once labels arrived, the reference and the threshold. */
  function estimateChart(series) {
    const pts = series.points;
    const at = (p) => new Date(p.window ? p.window[1] : p.time).getTime(); // the window's end
    const metric = series.metric || (pts.length ? pts[pts.length - 1].metric : "metric");
    const W = 1100, H = 320, m = { l: 56, r: 20, t: 30, b: 62 };
    const times = pts.map((p) => at(p));
    let t0 = Math.min(...times), t1 = Math.max(...times);
    const span = Math.max(t1 - t0, 60000);
    t0 -= span * 0.04;
    t1 += span * 0.04;
    const reference = pts.length ? pts[pts.length - 1].reference : null;
    const values = pts.flatMap((p) => [p.estimate, p.low, p.high, p.realised]).concat([reference, series.threshold]).filter((v) => typeof v === "number");
    let lo = Math.min(...values), hi = Math.max(...values);
    const padY = (hi - lo) * 0.1 || 0.01;
    lo -= padY;
    hi += padY;
    const x = (t) => m.l + ((t - t0) / (t1 - t0)) * (W - m.l - m.r);
    const y = (v) => H - m.b - ((v - lo) / (hi - lo)) * (H - m.t - m.b);
    const svg = s("svg", { class: "chart estimates", viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "estimated and realised " + metric + " over time" });
    for (const t of niceTicks(lo, hi, 5)) {
      svg.append(s("line", { class: "grid", x1: m.l, x2: W - m.r, y1: y(t), y2: y(t) }));
      svg.append(s("text", { x: m.l - 6, y: y(t) + 4, "text-anchor": "end" }, fmtNum(t)));
    }
    const banded = pts.filter((p) => typeof p.low === "number" && typeof p.high === "number");
    if (banded.length > 1) {
      const upper = banded.map((p) => x(at(p)) + "," + y(p.high));
      const lower = banded.slice().reverse().map((p) => x(at(p)) + "," + y(p.low));
      svg.append(s("polygon", { points: upper.concat(lower).join(" "), fill: "#3b6fb6", "fill-opacity": 0.15, "data-series": "interval" }));
    }
    const line = (name, color, dash, value) => {
      if (typeof value !== "number") return;
      svg.append(s("line", { x1: m.l, x2: W - m.r, y1: y(value), y2: y(value), stroke: color, "stroke-width": 1.5, "stroke-dasharray": dash, "data-series": name }));
      svg.append(s("text", { x: W - m.r - 4, y: y(value) - 5, "text-anchor": "end", fill: color }, name + " " + fmtNum(value)));
    };
    line("reference", "#5f6b7a", "6 4", reference);
    line("threshold", "#b42318", "3 3", series.threshold);
    const path = (key) => pts.filter((p) => typeof p[key] === "number").map((p) => x(at(p)) + "," + y(p[key])).join(" ");
    const est = s("g", { "data-series": "estimate" });
    est.append(s("polyline", { points: path("estimate"), fill: "none", stroke: "#2458b3", "stroke-width": 2 }));
    const real = s("g", { "data-series": "realised" });
    real.append(s("polyline", { points: path("realised"), fill: "none", stroke: "#c98a1a", "stroke-width": 2, "stroke-dasharray": "5 3" }));
    for (const p of pts) {
      const xp = x(at(p));
      const tip = fmtTime(new Date(at(p)).toISOString()) + ": estimated " + fmtNum(p.estimate) + (typeof p.low === "number" ? " [" + fmtNum(p.low) + ", " + fmtNum(p.high) + "]" : "") + ", realised " + fmtNum(p.realised) + (p.rows ? " (" + p.rows + " labelled rows)" : "");
      if (typeof p.low === "number" && typeof p.high === "number") {
        est.append(s("line", { x1: xp, x2: xp, y1: y(p.low), y2: y(p.high), stroke: "#2458b3", "stroke-width": 1.5 }));
      }
      est.append(s("circle", { cx: xp, cy: y(p.estimate), r: 4.5, fill: "#2458b3", "data-point": "estimate" }, s("title", null, tip)));
      if (typeof p.realised === "number") {
        const yr = y(p.realised);
        real.append(s("rect", { x: xp - 4, y: yr - 4, width: 8, height: 8, fill: p.covered === false ? "#b42318" : "#c98a1a", "data-point": "realised" }, s("title", null, tip)));
      }
    }
    svg.append(est, real);
    svg.append(s("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
    for (let k = 0; k <= 5; k++) {
      const t = t0 + ((t1 - t0) * k) / 5;
      const anchor = k === 0 ? "start" : k === 5 ? "end" : "middle";
      svg.append(s("text", { x: x(t), y: H - m.b + 16, "text-anchor": anchor }, fmtTime(new Date(t).toISOString(), true)));
    }
    svg.append(s("text", { class: "title", x: m.l, y: 16 }, metric + ((metric === "mae" || metric === "rmse") ? " (lower is better)" : " (higher is better)")));
    let lx = m.l;
    const legend = [["#2458b3", "estimated (label-free), with its interval"], ["#c98a1a", "realised (labels that arrived)"], ["#b42318", "realised outside the interval"]];
    for (const [color, text] of legend) {
      svg.append(s("rect", { x: lx, y: H - 22, width: 12, height: 12, rx: 2, fill: color }));
      svg.append(s("text", { x: lx + 17, y: H - 12 }, text));
      lx += 40 + text.length * 6.6;
    }
    return svg;
  }

  function estimateCard(series) {
    const pts = series.points;
    if (!series.metric && !pts.length) {
      return h("div", { class: "card", id: "estimates" }, h("h2", null, "Estimated against realised performance"), h("p", { class: "empty" }, "This model's policy has no signals.estimated_performance: nothing is estimated."));
    }
    if (!pts.length) {
      return h(
        "div",
        { class: "card", id: "estimates" },
        h("h2", null, "Estimated against realised performance"),
        h("p", { class: "empty" }, series.ground_truth ? "No check has met labelled rows yet: each check with ground truth for its window is plotted here." : "The policy gives no ground_truth source, so no estimate can be set against realised performance.")
      );
    }
    const withTruth = pts.filter((p) => typeof p.realised === "number");
    const covered = withTruth.filter((p) => p.covered === true).length;
    const mae = withTruth.length ? withTruth.reduce((sum, p) => sum + Math.abs(p.estimate - p.realised), 0) / withTruth.length : null;
    const rows = pts.slice(-20).reverse().map((p) =>
      h(
        "tr",
        { "data-seq": p.seq },
        h("td", null, timeEl(p.time)),
        h("td", { class: "small" }, p.window ? fmtTime(p.window[0]) + " – " + fmtTime(p.window[1]) : "—"),
        h("td", { class: "num" }, fmtNum(p.rows)),
        h("td", { class: "num", "data-field": "estimate" }, fmtNum(p.estimate) + (typeof p.low === "number" ? " [" + fmtNum(p.low) + ", " + fmtNum(p.high) + "]" : "")),
        h("td", { class: "num", "data-field": "realised" }, fmtNum(p.realised)),
        h("td", { class: "num" }, typeof p.realised === "number" ? fmtNum(p.estimate - p.realised) : "—"),
        h("td", null, p.covered === null ? "—" : p.covered ? h("span", { class: "badge ok" }, "inside") : h("span", { class: "badge bad" }, "outside"))
      )
    );
    return h(
      "div",
      { class: "card", id: "estimates" },
      h("h2", null, "Estimated against realised " + (series.metric || pts[pts.length - 1].metric)),
      h(
        "p",
        { class: "small", id: "estimate-summary" },
        pts.length + (pts.length === 1 ? " check" : " checks") + " with labels; the interval held the realised value in " + covered + " of " + withTruth.length + (mae === null ? "" : "; mean absolute error " + fmtNum(mae)) + ". How far to trust the estimate: the closer the two lines, the more."
      ),
      estimateChart(series),
      h(
        "table",
        { class: "estimates" },
        h("thead", null, h("tr", null, ["checked", "window (plotted at its end)", "labelled rows", "estimate [interval]", "realised", "error", "interval"].map((t) => h("th", null, t)))),
        h("tbody", null, rows)
      )
    );
  }

  // ---- shared pieces -------------------------------------------------------------------
  function gateTable(decision) {
    const rules = decision.rules || [];
    return h(
      "table",
      { class: "gate" },
      h(
        "thead",
        null,
        h("tr", null, h("th", null, "rule"), h("th", null, "metric"), h("th", { class: "nowrap" }, "observed"), h("th", null, "threshold"), h("th", null, "result"), h("th", null, "detail"))
      ),
      h(
        "tbody",
        null,
        rules.length
          ? rules.map((r) =>
              h(
                "tr",
                { "data-rule": r.rule, "data-passed": String(r.passed) },
                h("td", { class: "nowrap" }, r.rule),
                h("td", null, r.metric || "—"),
                h("td", { class: "num", "data-field": "observed" }, observedText(r)),
                h("td", { class: "num", "data-field": "threshold" }, thresholdText(r)),
                h("td", null, passBadge(r.passed)),
                h("td", { class: "detail" }, r.detail)
              )
            )
          : h("tr", null, h("td", { colspan: 6, class: "empty" }, "no rules applied"))
      )
    );
  }

  function gateSection(decision) {
    return [
      h("div", { class: "banner " + (decision.passed ? "ok" : "bad") }, (decision.passed ? "Gate passed — " : "Gate failed — ") + decision.summary),
      gateTable(decision),
      decision.bootstrap && decision.bootstrap.histogram ? bootstrapChart(decision.bootstrap) : null,
    ];
  }

  function approvalHelp(id) {
    const shown = id || "CYCLE";
    const url = location.origin + BASE + "cycles/" + shown;
    return h(
      "div",
      { class: "approval-help" },
      h("p", null, "The console is read-only. Decide with the CLI or the API; the decision, its reason and the key's name are recorded in the audit log."),
      h("div", { class: "cmd", "data-cmd": "approve" }, ".venv/bin/autopilot approve " + shown + ' --reason "why it is safe to ship" --url ' + location.origin),
      h("div", { class: "cmd", "data-cmd": "deny" }, ".venv/bin/autopilot deny " + shown + ' --reason "why not" --url ' + location.origin),
      h(
        "div",
        { class: "cmd" },
        "curl -X POST " + url + '/approve \\\n  -H "x-functions-key: $AUTOPILOT_KEY" -H "Content-Type: application/json" \\\n  -d \'{"reason": "why it is safe to ship"}\'     # or /deny'
      ),
      h("p", { class: "muted small" }, "The CLI takes the key from --key, $AUTOPILOT_KEY or the data dir's function_keys.json. A cycle not decided within the policy's gate.approval_timeout is rejected by the reconciler.")
    );
  }

  // ---- views ---------------------------------------------------------------------------
  // A view: {name, title, mount?(root), load() -> data, render(data) -> Node[]}

  function modelsView() {
    return {
      name: "models",
      title: "Models",
      ticking: true,
      load: () => Promise.all([api("models"), api("cycles")]),
      render([models, cycles]) {
        const rows = models.models.map((mdl) => {
          const active = mdl.active_cycle;
          const latest = mdl.latest_cycle;
          return h(
            "tr",
            { "data-model": mdl.model },
            h("td", { class: "nowrap" }, h("a", { href: "#/models/" + encodeURIComponent(mdl.model), "data-field": "model-link" }, h("strong", null, mdl.model))),
            h("td", null, h("span", { class: "badge " + (mdl.mode === "live" ? "ok" : "warn") }, mdl.mode === "live" ? "live" : "observe (dry run)")),
            h(
              "td",
              { class: "champion" },
              mdl.champion ? h("strong", { class: "champion-version big" }, "v" + mdl.champion) : h("span", { class: "muted" }, "none"),
              mdl.problems.map((p) => h("div", { class: "small badge bad" }, p))
            ),
            h("td", null, mdl.endpoint ? h("div", { class: "mono" }, mdl.endpoint) : "—", h("div", { class: "small muted" }, trafficText(mdl.traffic))),
            h(
              "td",
              { class: "active-cycle" },
              active
                ? [cycleLink(active.id), " ", stateBadge(active.state), h("div", { class: "small muted" }, "since " + ago(active.updated_at))]
                : [h("span", { class: "muted" }, "none"), latest ? h("div", { class: "small" }, "last: ", cycleLink(latest.id), " ", stateBadge(latest.state)) : null]
            ),
            h(
              "td",
              null,
              mdl.last_gate
                ? [passBadge(mdl.last_gate.passed), " ", h("span", { class: "small" }, mdl.last_gate.summary), h("div", { class: "small" }, cycleLink(mdl.last_gate.cycle))]
                : h("span", { class: "muted" }, "no gate yet")
            ),
            h(
              "td",
              { class: "last-decision" },
              mdl.last_decision
                ? [h("div", null, mdl.last_decision.summary), h("div", { class: "small muted" }, ago(mdl.last_decision.time) + (mdl.last_decision.reason ? " — " + mdl.last_decision.reason : ""))]
                : h("span", { class: "muted" }, "none")
            )
          );
        });
        const recent = cycles.cycles.slice(0, 25).map((c) =>
          c.unrenderable ? unrenderableRow({ "data-cycle": c.id }, "cycle " + c.id, c.unrenderable, 9) : h(
            "tr",
            { "data-cycle": c.id },
            h("td", { class: "nowrap" }, cycleLink(c.id)),
            h("td", { class: "nowrap" }, c.model),
            h("td", null, stateBadge(c.state), c.dry_run ? h("span", { class: "badge warn" }, "dry run") : null),
            h("td", null, (c.trigger && (c.trigger.source || c.trigger.kind)) || "—"),
            h("td", { class: "num", title: c.candidate || "" }, c.candidate_version ? "v" + c.candidate_version : "—"),
            h("td", { class: "num" }, c.champion_version ? "v" + c.champion_version : "—"),
            h("td", null, timeEl(c.created_at)),
            h("td", null, timeEl(c.updated_at)),
            h("td", { class: "detail" }, c.reason)
          )
        );
        return [
          h("h1", null, "Models"),
          h(
            "div",
            { class: "card" },
            h(
              "table",
              { class: "models" },
              h("thead", null, h("tr", null, ["model", "mode", "champion", "endpoint · traffic", "active cycle", "last gate", "last decision"].map((t) => h("th", null, t)))),
              h("tbody", null, rows.length ? rows : h("tr", null, h("td", { colspan: 7, class: "empty" }, "The policy names no model.")))
            )
          ),
          h(
            "div",
            { class: "card" },
            h("h2", null, "Recent cycles ", h("span", { class: "muted small" }, cycles.cycles.length > 25 ? "(25 newest of " + cycles.cycles.length + ")" : "")),
            h(
              "table",
              { class: "cycles" },
              h("thead", null, h("tr", null, ["cycle", "model", "state", "trigger", "candidate", "replacing", "created", "updated", "reason"].map((t) => h("th", null, t)))),
              h("tbody", null, recent.length ? recent : h("tr", null, h("td", { colspan: 9, class: "empty" }, "No cycle yet.")))
            )
          ),
        ];
      },
    };
  }

  function cycleView(id) {
    return {
      name: "cycle",
      title: "Cycle " + id,
      load: () => api("cycles/" + encodeURIComponent(id)),
      render(data) {
        const c = data.cycle;
        const audit = data.audit || [];
        if (c.unrenderable) {
          return [
            h("h1", null, "Cycle ", h("span", { class: "mono" }, c.id)),
            h("div", { class: "banner bad", id: "unrenderable" }, "This cycle cannot be shown: it " + c.unrenderable + " (stored before the service refused such input)."),
            auditTrail(c.id, audit),
          ];
        }
        const out = [
          h("h1", null, "Cycle ", h("span", { class: "mono" }, c.id), stateBadge(c.state), c.dry_run ? h("span", { class: "badge warn" }, "dry run") : null, rawLink("cycles/" + c.id, "raw JSON")),
        ];
        if (c.state === "AWAITING_APPROVAL") {
          out.push(h("div", { class: "card" }, h("h2", null, "Waiting for a human decision"), approvalHelp(c.id)));
        }
        out.push(h("div", { class: "grid2" }, summaryCard(c), statesCard(c)));
        out.push(
          h(
            "div",
            { class: "card", id: "gate" },
            h("h2", null, "Evaluation gate"),
            c.decision ? gateSection(c.decision) : h("p", { class: "empty" }, CLOSED.has(c.state) ? "No gate decision was made in this cycle." : "No decision yet: the gate runs when the training job completes.")
          )
        );
        out.push(rolloutCard(c));
        out.push(auditTrail(c.id, audit));
        return out;
      },
    };
  }

  // A record the service could not write as JSON: its seq or id and why, in place of it.
  function unrenderableRow(attrs, what, why, columns) {
    return h("tr", Object.assign({ class: "unrenderable" }, attrs), h("td", { colspan: columns, class: "detail" }, h("span", { class: "badge bad" }, "unrenderable"), " " + what + " " + why));
  }

  function auditTrail(cycleId, audit) {
    return h(
            "div",
            { class: "card" },
            h("h2", null, "Audit trail ", h("span", { class: "muted small" }, audit.length + (audit.length === 1 ? " record — " : " records — "), h("a", { href: "#/audit?cycle=" + encodeURIComponent(cycleId) }, "open in the audit log"))),
            h(
              "ol",
              { class: "timeline" },
              audit.map((r) =>
                r.unrenderable ? h("li", { class: "unrenderable", "data-seq": r.seq }, h("span", { class: "badge bad" }, "unrenderable"), " #" + r.seq + " " + r.unrenderable) : h(
                  "li",
                  { class: "k-" + r.kind, "data-seq": r.seq },
                  h("span", { class: "when", title: r.time }, fmtTime(r.time)),
                  kindBadge(r.kind),
                  " ",
                  h("span", null, r.summary),
                  r.actor !== "system" ? h("span", { class: "muted small" }, " by " + r.actor) : null,
                  h("span", { class: "muted small" }, " #" + recId(r)),
                  r.reason ? h("div", { class: "why" }, r.reason) : null,
                  evidence("ev-" + recId(r), r.evidence)
                )
              )
            )
          );
  }

  function summaryCard(c) {
    const trigger = c.trigger || {};
    const facts = [
      ["model", c.model],
      ["state", [stateBadge(c.state), " ", c.reason]],
      ["trigger", [trigger.source || "—", trigger.signal ? " · " + trigger.signal : "", c.coalesced ? " · " + c.coalesced + " more signals coalesced" : ""]],
      ["caused by", h("span", { class: "mono small" }, c.caused_by || "—")],
      ["training job", c.job_name ? [h("span", { class: "mono", "data-field": "job" }, c.job_name), c.job_submitted_at ? h("span", { class: "muted small" }, " submitted " + fmtTime(c.job_submitted_at, true)) : null] : "—"],
      ["candidate", c.candidate_version ? h("strong", { "data-field": "candidate" }, c.model + " v" + c.candidate_version) : h("span", { "data-field": "candidate" }, candidateText(c))],
      ["champion at start", c.champion_version ? "v" + c.champion_version : "none"],
      ["created", timeEl(c.created_at, true)],
      ["updated", timeEl(c.updated_at, true)],
      ["data", [rawLink("cycles/" + c.id, "cycle JSON"), " · ", rawLink("audit?cycle=" + c.id, "audit JSON")]],
    ];
    return h("div", { class: "card" }, h("h2", null, "Summary"), h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])), evidence("trigger-" + c.id, c.trigger, "trigger payload"));
  }

  function statesCard(c) {
    const entries = [{ state: "TRIGGERED", at: c.created_at, reason: "cycle started" }].concat(c.history || []);
    const end = CLOSED.has(c.state) ? new Date(c.updated_at).getTime() : Date.now();
    return h(
      "div",
      { class: "card" },
      h("h2", null, "States"),
      h(
        "table",
        { class: "states-table" },
        h("thead", null, h("tr", null, h("th", null, "state"), h("th", null, "entered"), h("th", null, "for"), h("th", null, "why"))),
        h(
          "tbody",
          null,
          entries.map((e, i) => {
            const next = i + 1 < entries.length ? new Date(entries[i + 1].at).getTime() : end;
            const last = i + 1 === entries.length && CLOSED.has(e.state);
            return h("tr", null, h("td", null, stateBadge(e.state)), h("td", null, timeEl(e.at)), h("td", { class: "num" }, last ? "—" : duration(next - new Date(e.at).getTime())), h("td", { class: "detail" }, e.reason));
          })
        )
      )
    );
  }

  function rolloutCard(c) {
    const ro = c.rollout;
    if (!ro) {
      return h("div", { class: "card", id: "rollout" }, h("h2", null, "Rollout"), h("p", { class: "empty" }, "No rollout in this cycle."));
    }
    const checks = ro.checks || [];
    const sample = (x) => (x ? x.requests + " req · " + pct(x.error_rate) + " err · p95 " + (x.latency_p95_ms === null ? "—" : Math.round(x.latency_p95_ms) + " ms") : "—");
    return h(
      "div",
      { class: "card", id: "rollout" },
      h("h2", null, "Rollout on ", h("span", { class: "mono" }, ro.endpoint)),
      h(
        "dl",
        { class: "facts" },
        h("dt", null, "new deployment"),
        h("dd", { class: "mono" }, ro.deployment),
        h("dt", null, "previous"),
        h("dd", { class: "mono" }, ro.previous || "none (first deployment)"),
        h("dt", null, "phase"),
        h("dd", null, ro.phase, ro.watch_until ? " — previous kept warm until " + fmtTime(ro.watch_until, true) : ""),
        ro.traffic_failures ? [h("dt", null, "unconfirmed traffic changes"), h("dd", null, String(ro.traffic_failures))] : null
      ),
      h("h3", null, "Traffic split over time"),
      trafficChart(c),
      checks.some((k) => k.analysis === "sequential")
        ? [h("h3", null, "Error-rate difference (new − live): confidence band per step against the tolerance"), bandCharts(ro, ro.sequential_tolerance)]
        : null,
      h("h3", null, "Health checks (one per step, after its bake time)"),
      h(
        "table",
        { class: "checks" },
        h("thead", null, h("tr", null, ["at", "step", "verdict", "new deployment", "live deployment", "why"].map((t) => h("th", null, t)))),
        h(
          "tbody",
          null,
          checks.length
            ? checks.map((k) =>
                h(
                  "tr",
                  { "data-verdict": k.verdict },
                  h("td", null, timeEl(k.at)),
                  h("td", { class: "num" }, k.percent === null || k.percent === undefined ? "—" : k.percent === 0 ? "shadow" : k.percent + "%"),
                  h("td", null, h("span", { class: "badge " + (k.verdict === "pass" ? "ok" : k.verdict === "breach" || k.verdict === "rollback" ? "bad" : "warn") }, k.verdict)),
                  h("td", { class: "nowrap small" }, k.new ? sample(k.new) : k.new_requests !== undefined ? k.new_requests + " req" : "—"),
                  h("td", { class: "nowrap small" }, k.live ? sample(k.live) : k.live_requests !== undefined ? k.live_requests + " req" : "—"),
                  h("td", { class: "detail" }, k.why)
                )
              )
            : h("tr", null, h("td", { colspan: 6, class: "empty" }, "No health verdict yet."))
        )
      )
    );
  }

  function parseSince(text) {
    const t = (text || "").trim();
    if (!t) return "";
    const rel = /^(\d+(?:\.\d+)?)\s*([smhd])$/i.exec(t);
    if (rel) {
      const mult = { s: 1, m: 60, h: 3600, d: 86400 }[rel[2].toLowerCase()];
      return new Date(Date.now() - Number(rel[1]) * mult * 1000).toISOString();
    }
    return t;
  }

  function auditView(params) {
    const filters = {
      model: params.get("model") || "",
      cycle: params.get("cycle") || "",
      kind: params.get("kind") || "",
      since: params.get("since") || "",
      limit: params.get("limit") || "200",
    };
    let models = null;
    let verified = null;
    let ticks = 0;
    return {
      name: "audit",
      title: "Audit log",
      mount(root) {
        const apply = (ev) => {
          if (ev) ev.preventDefault();
          const form = root.querySelector("form.filters");
          const q = new URLSearchParams();
          for (const name of ["model", "cycle", "kind", "since", "limit"]) {
            const v = form.elements[name].value.trim();
            if (v && !(name === "limit" && v === "200")) q.set(name, v);
          }
          const hash = "#/audit" + (q.toString() ? "?" + q : "");
          if (location.hash !== hash) location.hash = hash;
        };
        const input = (name, label, attrs) => h("label", null, label, h("input", Object.assign({ name, value: filters[name], onchange: apply }, attrs)));
        const modelSelect = h("select", { name: "model", onchange: apply }, h("option", { value: "" }, "all models"));
        if (filters.model) modelSelect.append(h("option", { value: filters.model, selected: true }, filters.model));
        const kindSelect = h(
          "select",
          { name: "kind", onchange: apply },
          h("option", { value: "" }, "all kinds"),
          KINDS.map((k) => h("option", { value: k, selected: filters.kind === k }, k))
        );
        const limitSelect = h(
          "select",
          { name: "limit", onchange: apply },
          ["50", "200", "1000", "5000"].map((n) => h("option", { value: n, selected: filters.limit === n }, "newest " + n))
        );
        root.append(
          h("h1", null, "Audit log"),
          h("div", { id: "verify-slot" }),
          h(
            "div",
            { class: "card" },
            h(
              "form",
              { class: "filters", onsubmit: apply },
              h("label", null, "model", modelSelect),
              input("cycle", "cycle", { placeholder: "cycle id", spellcheck: "false", autocomplete: "off" }),
              h("label", null, "kind", kindSelect),
              input("since", "since", { placeholder: "15m, 2h, 1d or ISO time", size: 24, autocomplete: "off" }),
              h("label", null, "show", limitSelect),
              h("button", { type: "submit" }, "apply"),
              h("a", { href: "#/audit", class: "small" }, "clear filters")
            )
          )
        );
      },
      async load() {
        const q = new URLSearchParams();
        for (const name of ["model", "cycle", "kind"]) if (filters[name]) q.set(name, filters[name]);
        if (filters.since) q.set("since", parseSince(filters.since));
        q.set("limit", filters.limit);
        if (!models) models = api("models").then((m) => m.models.map((x) => x.model), () => null);
        if (ticks++ % 5 === 0) verified = await api("audit/verify");
        let records;
        let problem = null;
        try {
          records = (await api("audit?" + q)).records;
        } catch (e) {
          if (!(e instanceof ApiError) || e.status !== 400) throw e;
          records = [];
          problem = e.message;
        }
        return { records, problem, verified, models: await models };
      },
      render(data, root) {
        const select = root.querySelector("select[name=model]");
        if (data.models && select.options.length <= 2) {
          for (const name of data.models) {
            if (name !== filters.model) select.append(h("option", { value: name }, name));
          }
        }
        const v = data.verified;
        const slot = root.querySelector("#verify-slot");
        slot.replaceChildren(
          v.ok
            ? h("div", { class: "banner ok", id: "verify", "data-ok": "true" }, "Hash chain verified: all " + v.records + " records intact.")
            : h("div", { class: "banner bad", id: "verify", "data-ok": "false" }, "Hash chain BROKEN at record #" + v.first_bad_seq + (v.chain && v.chain !== "0" ? " of chain " + v.chain : "") + ": " + v.problem + " (" + v.records + " records checked). Check it yourself and investigate before trusting this log:", h("div", { class: "cmd", "data-cmd": "verify" }, ".venv/bin/autopilot audit verify --url " + location.origin))
        );
        const rows = data.records.slice().reverse();
        return [
          data.problem ? h("div", { class: "banner bad" }, data.problem) : null,
          h(
            "div",
            { class: "card" },
            h("div", { class: "muted small", id: "audit-count" }, rows.length + " records, newest first" + (rows.length >= Number(filters.limit) ? " (limit reached: older records are not shown)" : "")),
            h(
              "table",
              { class: "audit" },
              h("thead", null, h("tr", null, ["#", "time", "kind", "model", "version", "cycle", "actor", "what and why"].map((t) => h("th", null, t)))),
              h(
                "tbody",
                null,
                rows.length
                  ? rows.map((r) =>
                      r.unrenderable ? unrenderableRow({ "data-seq": r.seq }, "record #" + r.seq, r.unrenderable, 8) : h(
                        "tr",
                        { "data-seq": r.seq, "data-cycle": r.cycle || "", "data-kind": r.kind },
                        h("td", { class: "num" }, recId(r)),
                        h("td", null, timeEl(r.time)),
                        h("td", null, kindBadge(r.kind)),
                        h("td", null, r.model ? h("a", { href: "#/audit?model=" + encodeURIComponent(r.model) }, r.model) : "—"),
                        h("td", null, r.version ? "v" + r.version : "—"),
                        h("td", { class: "cycle" }, r.cycle ? cycleLink(r.cycle) : "—"),
                        h("td", null, r.actor),
                        h("td", null, h("div", null, r.summary), r.reason ? h("div", { class: "detail small" }, r.reason) : null, evidence("ev-" + recId(r), r.evidence))
                      )
                    )
                  : h("tr", null, h("td", { colspan: 8, class: "empty" }, "No record matches."))
              )
            )
          ),
        ];
      },
    };
  }

  function approvalsView() {
    return {
      name: "approvals",
      title: "Pending approvals",
      ticking: true,
      load: () => Promise.all([api("cycles?active=true"), api("models")]),
      render([cycles, models]) {
        const timeouts = Object.fromEntries(models.models.map((m) => [m.model, m.approval_timeout]));
        const waiting = cycles.cycles.filter((c) => c.state === "AWAITING_APPROVAL");
        const cards = waiting.map((c) => {
          const entered = (c.history || []).filter((e) => e.state === "AWAITING_APPROVAL").pop();
          const since = entered ? entered.at : c.updated_at;
          const expires = timeouts[c.model] ? new Date(new Date(since).getTime() + timeouts[c.model] * 1000).toISOString() : null;
          return h(
            "div",
            { class: "card approval", "data-cycle": c.id },
            h("h2", null, c.model, " — ", cycleLink(c.id)),
            h("p", { class: "candidate" }, "candidate: ", h("strong", { "data-field": "candidate" }, candidateText(c)), h("span", { class: "muted" }, ", replacing " + (c.champion_version ? "v" + c.champion_version : "no champion"))),
            h("p", { class: "small muted" }, "waiting since " + fmtTime(since, true) + " (" + ago(since) + ")" + (expires ? "; rejected automatically at " + fmtTime(expires, true) + " if nobody decides" : "")),
            c.decision ? gateSection(c.decision) : h("p", { class: "empty" }, "no gate evidence recorded"),
            h("h3", null, "Decide"),
            approvalHelp(c.id)
          );
        });
        return [
          h("h1", null, "Pending approvals ", h("span", { class: "badge " + (waiting.length ? "warn" : "ok") }, String(waiting.length))),
          waiting.length
            ? cards
            : h("div", { class: "card" }, h("p", { class: "empty", id: "no-approvals" }, "No cycle is waiting for approval."), h("h3", null, "How approvals work"), h("p", null, "When a model's policy sets gate.approval_required, a challenger that passes the gate waits here, with its gate evidence, until someone approves or denies it."), approvalHelp(null)),
        ];
      },
    };
  }

  function rawView(params) {
    const path = params.get("path") || "";
    const allowed = /^[A-Za-z0-9][A-Za-z0-9_\-/.?=&%:+]*$/.test(path) && !path.includes("..");
    return {
      name: "raw",
      title: "JSON " + path,
      load: () => (allowed ? api(path) : Promise.reject(new ApiError(400, "not an API path"))),
      render(data) {
        return [
          h("h1", null, "GET ", h("span", { class: "mono" }, BASE + path)),
          h("p", null, h("button", { type: "button", onclick: () => history.back() }, "← back")),
          h("pre", { class: "json" }, JSON.stringify(data, null, 2)),
        ];
      },
    };
  }

  function modelView(name) {
    const path = "models/" + encodeURIComponent(name);
    return {
      name: "model",
      title: "Model " + name,
      load: () => Promise.all([api("models"), api(path + "/estimates")]),
      render([models, series]) {
        const mdl = models.models.find((m) => m.model === name);
        const facts = mdl
          ? [
              ["mode", mdl.mode === "live" ? "live" : "observe (dry run)"],
              ["champion", mdl.champion ? "v" + mdl.champion : "none"],
              ["endpoint", mdl.endpoint || "—"],
              ["traffic", trafficText(mdl.traffic)],
              ["active cycle", mdl.active_cycle ? cycleLink(mdl.active_cycle.id) : "none"],
            ]
          : [];
        return [
          h("h1", null, "Model ", h("span", { class: "mono" }, name), rawLink(path + "/estimates", "estimates JSON")),
          h("div", { class: "card" }, h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", null, k), h("dd", null, v)]))),
          estimateCard(series),
        ];
      },
    };
  }

  function route() {
    const raw = location.hash.replace(/^#/, "") || "/models";
    const [path, query] = raw.split("?", 2);
    const params = new URLSearchParams(query || "");
    const cycle = /^\/cycles\/([^/]+)$/.exec(path);
    if (cycle) return cycleView(decodeURIComponent(cycle[1]));
    const model = /^\/models\/([^/]+)$/.exec(path);
    if (model) return modelView(decodeURIComponent(model[1]));
    if (path === "/audit") return auditView(params);
    if (path === "/approvals") return approvalsView();
    if (path === "/raw") return rawView(params);
    return modelsView();
  }

  // ---- the loop: mount a view, then refresh it every 2 s --------------------------------
  const main = document.getElementById("view");
  const live = document.getElementById("live");
  let current = null;
  let timer = null;

  function setLive(state, text) {
    live.className = "live " + state;
    live.textContent = text;
  }

  function navigate() {
    clearTimeout(timer);
    const view = route();
    current = { view, sig: null, slot: h("div", { class: "content" }) };
    document.title = view.title + " — MLOps Autopilot";
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.classList.toggle("current", a.dataset.nav === view.name || ((view.name === "cycle" || view.name === "model") && a.dataset.nav === "models"));
    }
    main.replaceChildren();
    main.removeAttribute("data-ready");
    if (view.mount) view.mount(main);
    main.append(current.slot);
    poll();
  }

  async function refreshBadge() {
    try {
      const data = await api("cycles?active=true");
      const n = data.cycles.filter((c) => c.state === "AWAITING_APPROVAL").length;
      const badge = document.getElementById("pending-count");
      badge.textContent = String(n);
      badge.hidden = n === 0;
    } catch (_) {
      // the view's own request reports the problem
    }
  }

  async function tick() {
    const mine = current;
    if (!key) {
      mine.slot.replaceChildren(h("div", { class: "banner bad" }, "No function key. Open the console as /api/console?code=YOUR_KEY."));
      setLive("down", "no key");
      return;
    }
    try {
      const [data] = await Promise.all([mine.view.load(), refreshBadge()]);
      if (mine !== current) return;
      // views that show "x min ago" re-render at least every 15 s
      const sig = JSON.stringify(data) + (mine.view.ticking ? Math.floor(Date.now() / 15000) : "");
      if (sig !== mine.sig) {
        mine.sig = sig;
        mine.slot.replaceChildren(...mine.view.render(data, main).flat(Infinity).filter(Boolean));
      }
      main.dataset.ready = mine.view.name;
      setLive("", "live · updated " + fmtTime(new Date().toISOString()) + " UTC");
    } catch (e) {
      if (mine !== current) return;
      const status = e instanceof ApiError ? e.status : 0;
      if (status === 401) {
        sessionStorage.removeItem(KEY_NAME);
        mine.slot.replaceChildren(h("div", { class: "banner bad", id: "key-refused" }, "Wrong key: the function key was not accepted (401). ", h("a", { href: BASE + "console" }, "Enter another key")));
        setLive("down", "key rejected");
      } else if (status === 404) {
        mine.slot.replaceChildren(h("div", { class: "banner warn" }, "Not found: " + e.message));
        main.dataset.ready = mine.view.name;
        setLive("", "live");
      } else {
        if (mine.sig === null) mine.slot.replaceChildren(h("div", { class: "banner bad" }, "Cannot read the API: " + e.message));
        setLive("down", "API unreachable (" + (status || "network") + ") — retrying");
      }
    }
  }

  async function poll() {
    const mine = current;
    if (document.hidden) {
      setLive("stale", "paused while the tab is hidden");
    } else {
      await tick();
    }
    if (mine === current) timer = setTimeout(poll, POLL_MS);
  }

  window.addEventListener("hashchange", navigate);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && current) {
      clearTimeout(timer);
      poll();
    }
  });
  navigate();
})();
