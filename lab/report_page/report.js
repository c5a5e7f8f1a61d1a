// rlaif-lab report page: the pair browser (inlined into report.html; no libraries).
// Pair data: {settings: [name], pairs: [{key, title, text, first, second, human, confidence,
// high_confidence, len_first, len_second, human_chose, labels: [{p, p_fwd, p_swapped, agree,
// flip, rationales, seconds, cache_hit} or null per setting]}]}.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("pair-data").textContent);
  const $ = (id) => document.getElementById(id);
  const controls = ["f-setting", "f-agree", "f-confidence", "f-length", "f-flip", "f-margin",
                    "f-text", "f-sort"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const fmt = (x) => (x === null || x === undefined ? "" : Number(x).toFixed(3));
  const humanText = (p) => (p.human > 0.5 ? "Summary 1" : p.human < 0.5 ? "Summary 2" : "tie");

  // the setting select (hidden for a single run)
  const sel = $("f-setting");
  DATA.settings.forEach((name, i) => sel.append(el("option", { value: String(i) }, name)));
  if (DATA.settings.length < 2) sel.parentElement.style.display = "none";

  function spread(p) {
    const ps = p.labels.filter((l) => l).map((l) => l.p);
    return ps.length ? Math.max(...ps) - Math.min(...ps) : 0;
  }

  function keep(p, s, f) {
    const l = p.labels[s];
    if (!l) return false;
    if (f.agree === "disagree" && l.agree !== 0) return false;
    if (f.agree === "agree" && l.agree !== 1) return false;
    if (f.agree === "tie" && l.agree !== 0.5) return false;
    if (f.confidence === "high" && !p.high_confidence) return false;
    if (f.confidence === "low" && p.high_confidence) return false;
    if (f.length !== "all" && p.human_chose !== f.length) return false;
    if (f.flip === "flip" && !l.flip) return false;
    if (f.flip === "consistent" && l.flip) return false;
    if (Math.abs(l.p - 0.5) < f.margin - 1e-12) return false;
    if (f.text) {
      const hay = (p.title + "\n" + p.text + "\n" + p.first + "\n" + p.second).toLowerCase();
      if (!hay.includes(f.text)) return false;
    }
    return true;
  }

  const sorters = {
    order: null,
    p: (s) => (a, b) => a.labels[s].p - b.labels[s].p,
    margin: (s) => (a, b) => Math.abs(b.labels[s].p - 0.5) - Math.abs(a.labels[s].p - 0.5),
    confidence: () => (a, b) => (a.confidence || 0) - (b.confidence || 0),
    lendiff: () => (a, b) => Math.abs(b.len_first - b.len_second) - Math.abs(a.len_first - a.len_second),
    spread: () => (a, b) => spread(b) - spread(a),
  };

  function summaryLine(p, s) {
    const l = p.labels[s];
    const verdict = l.agree === 1 ? ["agree", "agrees"] : l.agree === 0 ? ["disagree", "disagrees"]
      : ["tie", "tie"];
    return el("summary", {},
      el("span", { class: "key", title: p.key }, p.where || p.key),
      el("span", { class: "title" }, p.title || p.text.slice(0, 90)),
      el("span", { class: "chip" }, "human: " + humanText(p) + " (conf " + (p.confidence ?? "-") + ")"),
      el("span", { class: "chip" }, "p " + fmt(l.p)),
      el("span", { class: "chip " + verdict[0] }, verdict[1]),
      l.flip ? el("span", { class: "chip flip" }, "position flip") : null,
      el("span", { class: "chip" }, "human chose " + p.human_chose));
  }

  function body(p) {
    const chosen = p.human > 0.5 ? 1 : p.human < 0.5 ? 2 : 0;
    const resp = (n, text, len) => el("div", { class: "response" + (chosen === n ? " chosen" : "") },
      el("h4", {}, "Summary " + n + " (" + len + " words)" + (chosen === n ? " · human's choice" : "")),
      text);
    const rows = DATA.settings.map((name, i) => {
      const l = p.labels[i];
      if (!l) return el("tr", {}, el("td", {}, name), el("td", { colspan: "6" }, "not labeled"));
      const rat = el("td", {});
      for (const [order, texts] of Object.entries(l.rationales || {})) {
        texts.forEach((t, j) => rat.append(el("div", { class: "rationale" },
          order + (texts.length > 1 ? " #" + (j + 1) : "") + ": " + t)));
      }
      const verdict = l.agree === 1 ? "agrees" : l.agree === 0 ? "disagrees" : "tie";
      return el("tr", {}, el("td", {}, name),
        el("td", { class: "num" }, fmt(l.p_fwd)), el("td", { class: "num" }, fmt(l.p_swapped)),
        el("td", { class: "num" }, fmt(l.p), el("span", { class: "bar", style: "width:" + Math.round(l.p * 60) + "px" })),
        el("td", {}, verdict + (l.flip ? ", position flip" : "")),
        el("td", { class: "num" }, l.seconds === null || l.seconds === undefined ? "" :
          Number(l.seconds).toFixed(2) + (l.cache_hit ? " (cache)" : "")),
        rat);
    });
    return el("div", { class: "body" },
      el("div", { class: "key" }, (p.subreddit ? "r/" + p.subreddit + " · " : "") + "post " + p.post_id),
      el("div", { class: "post" }, p.text),
      el("div", { class: "responses" }, resp(1, p.first, p.len_first), resp(2, p.second, p.len_second)),
      el("table", { class: "labels" },
        el("thead", {}, el("tr", {}, ...["setting", "p_fwd", "p_swapped", "p", "vs human",
          "s/pair", "rationales"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows)));
  }

  function update() {
    const f = {
      agree: $("f-agree").value, confidence: $("f-confidence").value, length: $("f-length").value,
      flip: $("f-flip").value, margin: Math.max(0, Number($("f-margin").value) || 0),
      text: $("f-text").value.trim().toLowerCase(), sort: $("f-sort").value,
    };
    const s = Number(sel.value || 0);
    let shown = DATA.pairs.filter((p) => keep(p, s, f));
    if (sorters[f.sort]) shown = shown.slice().sort(sorters[f.sort](s));
    const list = $("pairs");
    list.replaceChildren(...shown.map((p) => {
      const d = el("details", { class: "pair", "data-key": p.key }, summaryLine(p, s));
      d.addEventListener("toggle", () => {
        if (d.open && d.children.length === 1) d.append(body(p));
      }, { once: false });
      return d;
    }));
    const labeled = DATA.pairs.filter((p) => p.labels[s]).length;
    $("count").textContent = shown.length + " of " + labeled + " pairs shown" +
      (DATA.settings.length > 1 ? " (setting: " + DATA.settings[s] + ")" : "") +
      "; click a pair for the post, both responses and every label";
  }

  for (const id of controls) {
    $(id).addEventListener("input", update);
    $(id).addEventListener("change", update);
  }
  update();
  // report.html#pair=KEY opens that pair (a link to one pair)
  const wanted = decodeURIComponent((location.hash.match(/^#pair=(.+)$/) || [])[1] || "");
  const target = [...document.querySelectorAll("#pairs .pair")].find((d) => d.dataset.key === wanted);
  if (target) { target.open = true; target.scrollIntoView({ block: "nearest" }); }
})();
