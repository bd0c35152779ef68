/* xcorr browse: the page over a job's results (written by `xcorr browse`; documented on docs/browse.md).
 *
 * Data arrive as scripts (data/meta.js, then data/rows-NNNNN.js one after another, data/detail-NNNNN.js
 * when a query is opened), because a page opened from the file system may load scripts but not fetch.
 * The table is virtual: only the rows in view exist in the DOM. The view's state (filters, sort, the
 * open query, the tab) lives in the URL hash, so a link reproduces a view:
 *   #wrong=M  #right=M  #fixed=M  #broke=M  #class=C  #pred=M:C  #disagree=A,B  #conf=M:LO:HI
 *   #tagged=1  #sort=KEY or -KEY  #query=ID  #view=summary   (joined with &)
 */
(function () {
  "use strict";
  const META = window.XCORR_META;
  const ROW_H = 44;
  const D = { cols: {}, n: 0, loaded: 0, detail: {}, detailWaiting: {} };
  let order = new Int32Array(0);   // row indices shown, in display order
  let state = {};                  // parsed hash
  let activeMethod = null;         // method shown in the detail view
  let tags = loadTags();

  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const className = (c) => (c === null || c === undefined) ? "" : (META.class_names[c] !== undefined ? META.class_names[c] : "class " + c);
  const fmt = (v, d = 3) => (v === null || v === undefined) ? "" : Number(v).toFixed(d);

  /* ---------- loading ---------- */
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.onload = () => { s.remove(); resolve(); };
      s.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(s);
    });
  }
  const pad = (i) => String(i).padStart(5, "0");

  window.xcorrBrowse = {
    rows(i, cols) {
      for (const [k, v] of Object.entries(cols)) {
        const col = (D.cols[k] = D.cols[k] || []);
        for (let j = 0; j < v.length; j++) col.push(v[j]);
      }
      D.n = D.cols.id.length;
      D.loaded += 1;
    },
    detail(i, rows) {
      rows.forEach((r) => { D.detail[r.id] = r; });
      (D.detailWaiting[i] || []).forEach((f) => f());
      delete D.detailWaiting[i];
    },
  };

  async function loadAll() {
    for (let c = 0; c < META.chunks; c++) {
      try { await loadScript("data/rows-" + pad(c) + ".js"); }
      catch (e) { $("#loading").textContent = e.message; console.error(e.message); return; }
      buildIndex();
      refresh();
      if (c === 0) document.body.dataset.firstScreen = String(performance.now());
    }
    document.body.dataset.loaded = "1";
    $("#loading").textContent = "";
    refresh();
  }

  const rowById = new Map();
  function buildIndex() {
    for (let i = rowById.size; i < D.n; i++) rowById.set(D.cols.id[i], i);
  }

  function loadDetail(qid) {
    const row = rowById.get(qid);
    const chunk = Math.floor(row / META.chunk_rows);
    if (D.detail[qid]) return Promise.resolve(D.detail[qid]);
    return new Promise((resolve) => {
      const waiting = D.detailWaiting[chunk];
      (D.detailWaiting[chunk] = waiting || []).push(() => resolve(D.detail[qid]));
      if (!waiting) loadScript("data/detail-" + pad(chunk) + ".js").catch((e) => console.error(e.message));
    });
  }

  /* ---------- state in the hash ---------- */
  function parseHash() {
    const p = new URLSearchParams(location.hash.replace(/^#/, ""));
    const s = {};
    for (const [k, v] of p.entries()) s[k] = v;
    return s;
  }
  function writeHash(s) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(s)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
    const h = p.toString().replace(/%2C/g, ",").replace(/%3A/g, ":");
    if (h !== location.hash.replace(/^#/, "")) history.replaceState(null, "", h ? "#" + h : location.pathname + location.search);
  }
  function setState(changes) {
    state = Object.assign({}, state, changes);
    writeHash(state);
    refresh();
  }
  window.addEventListener("hashchange", () => { state = parseHash(); refresh(); });

  /* ---------- filter and sort ---------- */
  const isRight = (m, i) => D.cols[m + "_pred"][i] === D.cols.label[i];
  function methodsIn(v) { return (v || "").split(",").filter((m) => META.methods.includes(m)); }

  function predicate() {
    const tests = [];
    const s = state;
    methodsIn(s.wrong).forEach((m) => tests.push((i) => !isRight(m, i)));
    methodsIn(s.right).forEach((m) => tests.push((i) => isRight(m, i)));
    if (META.methods.includes("knn")) {
      methodsIn(s.fixed).forEach((m) => tests.push((i) => isRight(m, i) && !isRight("knn", i)));
      methodsIn(s.broke).forEach((m) => tests.push((i) => !isRight(m, i) && isRight("knn", i)));
    }
    if (s.class !== undefined && s.class !== "") { const c = Number(s.class); tests.push((i) => D.cols.label[i] === c); }
    if (s.pred) {
      const [m, c] = s.pred.split(":");
      if (META.methods.includes(m)) tests.push((i) => D.cols[m + "_pred"][i] === Number(c));
    }
    if (s.disagree) {
      const [a, b] = s.disagree.split(",");
      if (META.methods.includes(a) && META.methods.includes(b)) tests.push((i) => D.cols[a + "_pred"][i] !== D.cols[b + "_pred"][i]);
    }
    if (s.conf) {
      const [m, lo, hi] = s.conf.split(":");
      if (META.methods.includes(m)) {
        const l = lo === "" || lo === undefined ? -Infinity : Number(lo), h = hi === "" || hi === undefined ? Infinity : Number(hi);
        tests.push((i) => { const v = D.cols[m + "_conf"][i]; return v !== null && v >= l && v <= h; });
      }
    }
    if (s.tagged === "1") tests.push((i) => tags.has(D.cols.id[i]));
    if (s.id) { const t = s.id.trim(); tests.push((i) => String(D.cols.id[i]).startsWith(t)); }
    return (i) => tests.every((t) => t(i));
  }

  function sortValue(key) {
    if (key === "tag") return (i) => (tags.has(D.cols.id[i]) ? 1 : 0);
    if (key.endsWith("_ok")) { const m = key.slice(0, -3); return (i) => (isRight(m, i) ? 1 : 0); }
    const col = D.cols[key];
    return col ? (i) => col[i] : (i) => D.cols.id[i];
  }

  function applyView() {
    const keep = predicate();
    const idx = [];
    for (let i = 0; i < D.n; i++) if (keep(i)) idx.push(i);
    const sk = state.sort || "";
    if (sk) {
      const desc = sk.startsWith("-"), key = desc ? sk.slice(1) : sk, val = sortValue(key);
      idx.sort((a, b) => {
        const x = val(a), y = val(b);
        if (x === y) return D.cols.id[a] - D.cols.id[b];
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * (desc ? -1 : 1);
      });
    }
    order = Int32Array.from(idx);
  }

  /* ---------- the table ---------- */
  function columns() {
    const cols = [
      { key: "tag", label: "\u2605", w: 30, html: (i) => `<button class="star${tags.has(D.cols.id[i]) ? " on" : ""}" data-tag="${D.cols.id[i]}" title="tag (t)">\u2605</button>` },
      { key: "id", label: "id", w: 70, num: true, html: (i) => String(D.cols.id[i]) },
      { key: "picture", label: "", w: 50, nosort: true, html: (i) => META.pictures.query ? `<img class="thumb" loading="lazy" alt="" src="img/q/${D.cols.id[i]}.jpg">` : "" },
      { key: "label", label: "true class", w: 160, html: (i) => esc(className(D.cols.label[i])) },
    ];
    for (const m of META.methods) {
      cols.push({ key: m + "_pred", label: m, w: 150, title: m + ": prediction", html: (i) => {
        const ok = isRight(m, i);
        return `<span class="${ok ? "ok" : "bad"}">${ok ? "\u2713" : "\u2717"}</span> ${esc(className(D.cols[m + "_pred"][i]))}`;
      } });
      cols.push({ key: m + "_conf", label: "conf", w: 56, num: true, title: m + ": confidence", html: (i) => fmt(D.cols[m + "_conf"][i], 2) });
      if (m !== "knn" && D.cols[m + "_rank_change"]) {
        cols.push({ key: m + "_rank_change", label: "\u0394rank", w: 60, num: true,
          title: m + ": kNN's rank of the first true-class neighbour minus this method's (positive: moved up)",
          html: (i) => { const v = D.cols[m + "_rank_change"][i]; return v > 0 ? `<span class="ok">+${v}</span>` : v < 0 ? `<span class="bad">${v}</span>` : "0"; } });
      }
      for (const x of META.metrics) {
        if (D.cols[m + "__" + x]) cols.push({ key: m + "__" + x, label: x, w: Math.max(70, 8 * x.length + 16), num: true, title: m + ": " + x, html: (i) => fmt(D.cols[m + "__" + x][i]) });
      }
    }
    return cols;
  }
  let COLS = [];

  function renderHead() {
    COLS = columns();
    const sk = state.sort || "", desc = sk.startsWith("-"), key = desc ? sk.slice(1) : sk;
    $("#grid-head").innerHTML = COLS.map((c) =>
      `<div class="cell${c.num ? " num" : ""}${c.key === key ? " sorted" + (desc ? " desc" : "") : ""}" style="width:${c.w}px" data-sort="${c.nosort ? "" : c.key}" title="${esc(c.title || "sort by " + c.label)}" role="columnheader">${esc(c.label)}</div>`).join("");
  }

  function renderRows() {
    const vp = $("#viewport");
    $("#spacer").style.height = order.length * ROW_H + "px";
    const first = Math.max(0, Math.floor(vp.scrollTop / ROW_H) - 5);
    const last = Math.min(order.length, Math.ceil((vp.scrollTop + vp.clientHeight) / ROW_H) + 5);
    const sel = state.query !== undefined ? Number(state.query) : null;
    const dis = state.disagree ? state.disagree.split(",") : null;
    let html = "";
    for (let r = first; r < last; r++) {
      const i = order[r];
      const cls = ["row"];
      if (D.cols.id[i] === sel) cls.push("selected");
      if (dis && dis.length === 2 && D.cols[dis[0] + "_pred"] && D.cols[dis[0] + "_pred"][i] !== D.cols[dis[1] + "_pred"][i]) cls.push("disagree");
      html += `<div class="${cls.join(" ")}" role="row" data-row="${i}" data-id="${D.cols.id[i]}" style="position:absolute;top:${r * ROW_H}px">` +
        COLS.map((c) => `<div class="cell${c.num ? " num" : ""}" style="width:${c.w}px">${c.html(i)}</div>`).join("") + "</div>";
    }
    $("#rows").innerHTML = html;
  }

  function renderCount() {
    const n = order.length;
    $("#count").textContent = n + (n === 1 ? " query" : " queries");
    $("#count").dataset.n = String(n);
    if (D.loaded < META.chunks) $("#loading").textContent = `loading ${D.loaded} of ${META.chunks} data files (${D.n} of ${META.queries} queries)`;
  }

  /* ---------- filters ---------- */
  function renderFilters() {
    const ms = META.methods, opt = (v, l, cur) => `<option value="${esc(v)}"${String(cur) === String(v) ? " selected" : ""}>${esc(l)}</option>`;
    const classes = Array.from({ length: META.num_classes }, (_, c) => c);
    let h = `<label>class <select id="f-class">${opt("", "all")}${classes.map((c) => opt(c, c + " " + className(c))).join("")}</select></label>`;
    h += `<label>outcome <select id="f-outcome">${opt("", "all")}` +
      ms.map((m) => opt("right=" + m, m + " right") + opt("wrong=" + m, m + " wrong")).join("") +
      (ms.includes("knn") ? ms.filter((m) => m !== "knn").map((m) => opt("fixed=" + m, m + " fixes kNN") + opt("broke=" + m, m + " breaks kNN")).join("") : "") +
      `</select></label>`;
    h += `<label>disagree <select id="f-dis">${opt("", "\u2014")}` +
      ms.flatMap((a, j) => ms.slice(j + 1).map((b) => opt(a + "," + b, a + " \u2260 " + b))).join("") + `</select></label>`;
    h += `<label>confidence of <select id="f-conf-m">${ms.map((m) => opt(m, m)).join("")}</select>` +
      `<input id="f-conf-lo" type="number" min="0" max="1" step="0.05" placeholder="min"> to <input id="f-conf-hi" type="number" min="0" max="1" step="0.05" placeholder="max"></label>`;
    h += `<label><input id="f-tagged" type="checkbox"> tagged only</label>`;
    h += `<label>id <input id="f-id" type="search" size="7"></label>`;
    h += `<button id="b-reset">reset</button><button id="b-csv">export shown (CSV)</button><button id="b-csv-tagged">export tagged (CSV)</button>`;
    $("#filters").innerHTML = h;
    $("#f-class").onchange = (e) => setState({ class: e.target.value });
    $("#f-outcome").onchange = (e) => {
      const [k, v] = e.target.value.split("=");
      setState({ wrong: undefined, right: undefined, fixed: undefined, broke: undefined, ...(k ? { [k]: v } : {}) });
    };
    $("#f-dis").onchange = (e) => setState({ disagree: e.target.value });
    const conf = () => {
      const lo = $("#f-conf-lo").value, hi = $("#f-conf-hi").value;
      setState({ conf: lo === "" && hi === "" ? undefined : `${$("#f-conf-m").value}:${lo}:${hi}` });
    };
    ["#f-conf-m", "#f-conf-lo", "#f-conf-hi"].forEach((s) => { $(s).onchange = conf; });
    $("#f-tagged").onchange = (e) => setState({ tagged: e.target.checked ? "1" : undefined });
    $("#f-id").oninput = (e) => setState({ id: e.target.value });
    $("#b-reset").onclick = () => { state = {}; writeHash(state); syncControls(); refresh(); };
    $("#b-csv").onclick = () => download("xcorr-shown.csv", csv(Array.from(order)));
    $("#b-csv-tagged").onclick = () => download("xcorr-tagged.csv", csv(Array.from({ length: D.n }, (_, i) => i).filter((i) => tags.has(D.cols.id[i]))));
  }

  function syncControls() {
    const s = state;
    $("#f-class").value = s.class || "";
    const oc = ["right", "wrong", "fixed", "broke"].find((k) => s[k]);
    $("#f-outcome").value = oc ? oc + "=" + s[oc] : "";
    $("#f-dis").value = s.disagree || "";
    if (s.conf) { const [m, lo, hi] = s.conf.split(":"); $("#f-conf-m").value = m; $("#f-conf-lo").value = lo || ""; $("#f-conf-hi").value = hi || ""; }
    else { $("#f-conf-lo").value = ""; $("#f-conf-hi").value = ""; }
    $("#f-tagged").checked = s.tagged === "1";
    $("#f-id").value = s.id || "";
    const view = s.view === "summary" ? "summary" : "table";
    document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
    $("#table-view").hidden = view !== "table";
    $("#summary-view").hidden = view !== "summary";
  }

  /* ---------- CSV ---------- */
  function csv(rows) {
    const head = ["query_id", "path", "label", "class_name"];
    META.methods.forEach((m) => head.push(m + "_prediction", m + "_correct", m + "_confidence"));
    head.push("tagged");
    const q = (v) => { const s = v === null || v === undefined ? "" : String(v); return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; };
    const lines = [head.join(",")];
    for (const i of rows) {
      const r = [D.cols.id[i], D.cols.path[i], D.cols.label[i], className(D.cols.label[i])];
      META.methods.forEach((m) => r.push(D.cols[m + "_pred"][i], isRight(m, i) ? 1 : 0, D.cols[m + "_conf"][i]));
      r.push(tags.has(D.cols.id[i]) ? 1 : 0);
      lines.push(r.map(q).join(","));
    }
    return lines.join("\n") + "\n";
  }
  function download(name, text) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  /* ---------- tags ---------- */
  function tagKey() { return "xcorr-browse-tags:" + META.job; }
  function loadTags() {
    try { return new Set(JSON.parse(localStorage.getItem(tagKey()) || "[]")); } catch (e) { return new Set(); }
  }
  function toggleTag(qid) {
    if (tags.has(qid)) tags.delete(qid); else tags.add(qid);
    try { localStorage.setItem(tagKey(), JSON.stringify(Array.from(tags))); } catch (e) { /* private mode: tags last for this page */ }
    if (state.tagged === "1") refresh(); else { renderRows(); if (state.query !== undefined) renderDetail(); }
  }

  /* ---------- detail view ---------- */
  function neighbourCard(m, det, qlabel, j) {
    const e = det[m], g = e.ids[j], lab = e.labels[j], hit = lab === qlabel;
    const cap = `<div>#${j + 1} <b class="${hit ? "ok" : "bad"}">${esc(className(lab))}</b> <span class="muted">id ${g} \u00b7 score ${fmt(e.scores[j])}</span></div>`;
    const gsrc = META.pictures.gallery ? `img/g/${g}.jpg` : "";
    if (!e.pairs || !META.grid) {
      return `<div class="card${hit ? " hit" : ""}" data-neighbour="${g}">${gsrc ? `<img src="${gsrc}" width="120" height="120" alt="gallery ${g}">` : ""}${cap}</div>`;
    }
    const S = 150, GAP = 16, [H, W] = META.grid;
    const pairs = e.pairs[j] || [], ws = e.weights[j] || [];
    const wmax = Math.max(1e-12, ...ws.map((w) => w || 0));
    const qsrc = META.pictures.query ? `img/q/${det.id}.jpg` : "";
    let svg = `<svg width="${2 * S + GAP}" height="${S}" viewBox="0 0 ${2 * S + GAP} ${S}" data-pairs="${pairs.length}">`;
    svg += qsrc ? `<image href="${qsrc}" x="0" y="0" width="${S}" height="${S}" preserveAspectRatio="none"/>` : `<rect width="${S}" height="${S}" fill="#eee"/>`;
    svg += gsrc ? `<image href="${gsrc}" x="${S + GAP}" y="0" width="${S}" height="${S}" preserveAspectRatio="none"/>` : `<rect x="${S + GAP}" width="${S}" height="${S}" fill="#eee"/>`;
    const cw = S / W, ch = S / H;
    const colours = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990"];
    pairs.forEach(([a, b], p) => {
      const ax = (a % W + 0.5) * cw, ay = (Math.floor(a / W) + 0.5) * ch;
      const bx = S + GAP + (b % W + 0.5) * cw, by = (Math.floor(b / W) + 0.5) * ch;
      const col = colours[p % colours.length], wd = 1 + 3 * ((ws[p] || 0) / wmax);
      svg += `<rect class="patch" x="${ax - cw / 2}" y="${ay - ch / 2}" width="${cw}" height="${ch}" fill="none" stroke="${col}" stroke-width="1.5"/>`;
      svg += `<rect class="patch" x="${bx - cw / 2}" y="${by - ch / 2}" width="${cw}" height="${ch}" fill="none" stroke="${col}" stroke-width="1.5"/>`;
      svg += `<line class="match" x1="${ax}" y1="${ay}" x2="${bx}" y2="${by}" stroke="${col}" stroke-width="${wd.toFixed(2)}"><title>pair ${p + 1}: query cell ${a} \u2194 cell ${b}, weight ${fmt(ws[p], 4)}</title></line>`;
    });
    svg += "</svg>";
    return `<div class="card${hit ? " hit" : ""}" data-neighbour="${g}">${svg}${cap}</div>`;
  }

  function renderDetail() {
    const box = $("#detail");
    if (state.query === undefined || state.query === "") { box.hidden = true; box.innerHTML = ""; return; }
    const qid = Number(state.query), i = rowById.get(qid);
    box.hidden = false;
    if (i === undefined) {
      box.innerHTML = D.loaded < META.chunks ? `<p class="muted">loading query ${qid} \u2026</p>` : `<p class="bad">no query with id ${esc(state.query)} in this job</p>`;
      return;
    }
    const m0 = activeMethod && META.methods.includes(activeMethod) ? activeMethod : META.methods[META.methods.length - 1];
    activeMethod = m0;
    const pos = order.indexOf(i);
    const preds = META.methods.map((m) => `<tr><th>${esc(m)}</th><td class="${isRight(m, i) ? "ok" : "bad"}">${esc(className(D.cols[m + "_pred"][i]))}</td>` +
      `<td>${fmt(D.cols[m + "_conf"][i], 2)}</td><td class="muted">${D.cols[m + "_rank"][i] === null ? "true class not among the k" : "first true-class neighbour #" + D.cols[m + "_rank"][i]}</td></tr>`).join("");
    box.innerHTML = `<div class="bar"><button id="d-prev" title="previous (\u2190 or k)">\u2190</button><button id="d-next" title="next (\u2192 or j)">\u2192</button>` +
      `<h2>query ${qid} \u2014 ${esc(className(D.cols.label[i]))}</h2><span class="muted">${pos >= 0 ? pos + 1 + " of " + order.length : "not in the filtered rows"}</span>` +
      `<button class="star${tags.has(qid) ? " on" : ""}" data-tag="${qid}" title="tag (t)">\u2605</button><span style="flex:1"></span><button id="d-close" title="close (Esc)">\u2715</button></div>` +
      `<div class="bar"><div class="query">${META.pictures.query ? `<img src="img/q/${qid}.jpg" alt="query ${qid}">` : ""}<div class="muted">${esc(D.cols.path[i] || "")}</div></div>` +
      `<table class="preds">${preds}</table></div>` +
      `<div class="bar methods">${META.methods.map((m) => `<button data-method="${m}" class="${m === m0 ? "active" : ""}">${esc(m)}</button>`).join("")}</div>` +
      `<div id="d-body" class="muted">loading neighbours \u2026</div>`;
    $("#d-close").onclick = () => setState({ query: undefined });
    $("#d-prev").onclick = () => step(-1);
    $("#d-next").onclick = () => step(1);
    box.querySelectorAll(".methods button").forEach((b) => { b.onclick = () => { activeMethod = b.dataset.method; renderDetail(); }; });
    loadDetail(qid).then((det) => {
      if (Number(state.query) !== qid || !det) return;
      const e = det[m0], lab = D.cols.label[i];
      const cards = e.ids.map((_, j) => neighbourCard(m0, det, lab, j)).join("");
      const figs = (e.figures || []).map((f) => `<figure><img src="${esc(f)}" alt="${esc(f)}"><figcaption class="muted">${esc(f)}</figcaption></figure>`).join("");
      const what = e.pairs ? `its ${e.ids.length} neighbours, each with the ${(e.pairs[0] || []).length} patch pairs that scored it (line width: pair weight)` : `its ${e.ids.length} nearest neighbours`;
      const strips = META.methods.map((m) => `<div class="strip" data-method="${m}"><b>${esc(m)}</b>` + det[m].ids.map((g, j) =>
        `<span class="mini ${det[m].labels[j] === lab ? "ok" : "bad"}" title="#${j + 1} ${esc(className(det[m].labels[j]))} (gallery ${g}, score ${fmt(det[m].scores[j])})">` +
        (META.pictures.gallery ? `<img src="img/g/${g}.jpg" alt="" loading="lazy">` : `${j + 1}`) + `</span>`).join("") + `</div>`).join("");
      $("#d-body").className = "";
      $("#d-body").innerHTML = `<h3>The k neighbours of each method <span class="muted">(border: green the true class, red another)</span></h3>${strips}` +
        `<h3>${esc(m0)} in detail</h3><p class="muted">${esc(m0)}: ${what}; green: the true class.</p><div class="cards">${cards}</div>` +
        (figs ? `<h3>Explanation figures</h3>${figs}` : "");
      document.body.dataset.detail = String(qid);
    });
  }

  function step(d) {
    if (!order.length) return;
    const i = rowById.get(Number(state.query));
    let pos = order.indexOf(i);
    pos = pos < 0 ? 0 : Math.min(order.length - 1, Math.max(0, pos + d));
    const qid = D.cols.id[order[pos]];
    setState({ query: String(qid) });
    const vp = $("#viewport"), top = pos * ROW_H;
    if (top < vp.scrollTop || top > vp.scrollTop + vp.clientHeight - ROW_H) vp.scrollTop = top - vp.clientHeight / 2;
  }

  /* ---------- summary ---------- */
  function ciBar(lo, hi, v) {
    const W = 200, x = (t) => (t * W).toFixed(1);
    return `<svg class="cibar" width="${W}" height="14"><rect width="${W}" height="14" fill="#f0f0f0"/><rect width="${x(v)}" height="14" fill="#9ecae1"/>` +
      `<line x1="${x(lo)}" x2="${x(hi)}" y1="7" y2="7" stroke="#222" stroke-width="2"/><line x1="${x(lo)}" x2="${x(lo)}" y1="2" y2="12" stroke="#222"/>` +
      `<line x1="${x(hi)}" x2="${x(hi)}" y1="2" y2="12" stroke="#222"/></svg>`;
  }

  function renderSummary() {
    const S = META.summary, ms = META.methods;
    let h = `<h2>Accuracy per method <span class="muted">(${S.queries} queries; 95% Wilson interval)</span></h2><table class="plain"><tr><th>method</th><th>top-1</th><th></th><th>95% CI</th><th>correct</th>` +
      META.metrics.map((x) => `<th>mean ${esc(x)}</th>`).join("") + `</tr>`;
    for (const m of ms) {
      const r = S.methods[m];
      h += `<tr><td>${esc(m)}</td><td class="num">${(100 * r.accuracy).toFixed(1)}%</td><td>${ciBar(r.ci95[0], r.ci95[1], r.accuracy)}</td>` +
        `<td class="num">[${(100 * r.ci95[0]).toFixed(1)}%, ${(100 * r.ci95[1]).toFixed(1)}%]</td><td class="num"><a href="#right=${m}">${r.correct}</a> / ${S.queries}</td>` +
        META.metrics.map((x) => `<td class="num">${fmt(r.metrics[x])}</td>`).join("") + `</tr>`;
    }
    h += `</table>`;
    if (ms.includes("knn") && ms.length > 1) {
      h += `<h2>Where re-ranking fixes or breaks kNN</h2><table class="plain"><tr><th>re-ranker</th><th>fixes (right, kNN wrong)</th><th>breaks (wrong, kNN right)</th><th>net</th></tr>`;
      for (const m of META.rerankers) {
        const r = S.methods[m];
        h += `<tr><td>${esc(m)}</td><td class="num"><a href="#fixed=${m}" id="fixed-${m}">${r.fixes}</a></td><td class="num"><a href="#broke=${m}" id="broke-${m}">${r.breaks}</a></td><td class="num">${r.fixes - r.breaks > 0 ? "+" : ""}${r.fixes - r.breaks}</td></tr>`;
      }
      h += `</table>`;
    }
    h += `<h2>Confusion <select id="c-method">${ms.map((m) => `<option>${esc(m)}</option>`).join("")}</select> <span class="muted">rows: true class, columns: prediction; click a cell to list its queries</span></h2>` +
      `<div style="display:flex;gap:24px;align-items:flex-start"><canvas class="confusion" id="c-canvas"></canvas><div id="c-top"></div></div><p id="c-hover" class="muted"></p>`;
    $("#summary-view").innerHTML = h;
    const sel = $("#c-method");
    sel.value = activeMethod && ms.includes(activeMethod) ? activeMethod : ms[ms.length - 1];
    sel.onchange = () => drawConfusion(sel.value);
    drawConfusion(sel.value);
  }

  function drawConfusion(m) {
    const C = Math.max(1, META.num_classes), conf = META.summary.methods[m].confusion;
    const cell = Math.max(3, Math.min(24, Math.floor(480 / C))), cv = $("#c-canvas");
    cv.width = cv.height = C * cell;
    const ctx = cv.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, cv.width, cv.height);
    const counts = new Map(), rowsum = new Array(C).fill(0);
    conf.forEach(([y, p, c]) => { counts.set(y * C + p, c); rowsum[y] += c; });
    conf.forEach(([y, p, c]) => {
      const f = c / Math.max(1, rowsum[y]);
      ctx.fillStyle = y === p ? `rgba(26,127,55,${0.15 + 0.85 * f})` : `rgba(198,40,40,${0.2 + 0.8 * f})`;
      ctx.fillRect(p * cell, y * cell, cell, cell);
    });
    const at = (ev) => { const r = cv.getBoundingClientRect(); return [Math.floor((ev.clientY - r.top) / cell), Math.floor((ev.clientX - r.left) / cell)]; };
    cv.onmousemove = (ev) => { const [y, p] = at(ev); if (y >= 0 && y < C && p >= 0 && p < C) $("#c-hover").textContent = `true ${className(y)} \u2192 ${m} predicts ${className(p)}: ${counts.get(y * C + p) || 0}`; };
    cv.onclick = (ev) => { const [y, p] = at(ev); if (y >= 0 && y < C && p >= 0 && p < C) setState({ class: String(y), pred: m + ":" + p, view: undefined }); };
    const off = conf.filter(([y, p]) => y !== p).slice(0, 12);
    $("#c-top").innerHTML = off.length ? `<b>most frequent confusions of ${esc(m)}</b><ol>` + off.map(([y, p, c]) =>
      `<li><a href="#class=${y}&pred=${m}:${p}">${esc(className(y))} \u2192 ${esc(className(p))}</a>: ${c}</li>`).join("") + "</ol>" : `<b>${esc(m)} makes no errors</b>`;
  }

  /* ---------- wiring ---------- */
  let shownSummary = false;
  function refresh() {
    applyView();
    renderHead();
    renderRows();
    renderCount();
    syncControls();
    if (state.view !== "summary") shownSummary = false;
    else if (!shownSummary) { renderSummary(); shownSummary = true; }
    renderDetail();
  }

  function init() {
    if (!META) { document.body.innerHTML = "<p>data/meta.js is missing: build the site with <code>xcorr browse JOB --site DIR</code>.</p>"; return; }
    $("#title").textContent = META.title;
    document.title = "xcorr browse: " + META.title;
    state = parseHash();
    renderFilters();
    syncControls();
    if (META.problems && META.problems.length) console.warn("xcorr browse: " + META.problems.join("\n"));
    document.querySelectorAll(".tab").forEach((b) => { b.onclick = () => setState({ view: b.dataset.view === "summary" ? "summary" : undefined }); });
    $("#viewport").addEventListener("scroll", () => requestAnimationFrame(renderRows));
    window.addEventListener("resize", () => requestAnimationFrame(renderRows));
    $("#grid-head").addEventListener("click", (ev) => {
      const k = ev.target.closest(".cell") && ev.target.closest(".cell").dataset.sort;
      if (!k) return;
      const cur = state.sort || "";
      setState({ sort: cur === k ? "-" + k : cur === "-" + k ? undefined : k });
    });
    $("#summary-view").addEventListener("click", (ev) => {  // a summary link opens its rows in the table
      const a = ev.target.closest("a[href^='#']");
      if (!a) return;
      ev.preventDefault();
      state = {};
      for (const [k, v] of new URLSearchParams(a.getAttribute("href").slice(1)).entries()) state[k] = v;
      writeHash(state);
      refresh();
    });
    document.body.addEventListener("click", (ev) => {
      const star = ev.target.closest("[data-tag]");
      if (star) { ev.stopPropagation(); toggleTag(Number(star.dataset.tag)); return; }
      const row = ev.target.closest(".row");
      if (row) setState({ query: row.dataset.id });
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.target.matches && ev.target.matches("input, select, textarea")) return;
      if (state.query === undefined || state.query === "") {
        if ((ev.key === "j" || ev.key === "ArrowDown") && order.length && document.activeElement === $("#viewport")) { setState({ query: String(D.cols.id[order[0]]) }); ev.preventDefault(); }
        return;
      }
      if (ev.key === "Escape") setState({ query: undefined });
      else if (ev.key === "ArrowRight" || ev.key === "ArrowDown" || ev.key === "j") { step(1); ev.preventDefault(); }
      else if (ev.key === "ArrowLeft" || ev.key === "ArrowUp" || ev.key === "k") { step(-1); ev.preventDefault(); }
      else if (ev.key === "t") toggleTag(Number(state.query));
    });
    refresh();
    loadAll();
  }
  init();
})();
