// The leaderboard page: selecting a cell (row or chart point), its evidence lists and loss curve, the charts.
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  let plotlyReady = null;

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) { if (k === "text") e.textContent = v; else e.setAttribute(k, v); });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  // plotly.min.js travels gzip-compressed (see harness/report/html.py); unpack and run it once.
  function loadPlotly() {
    if (plotlyReady) return plotlyReady;
    const b64 = document.getElementById("plotly-gz").textContent.trim();
    const bytes = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    plotlyReady = new Response(stream).text().then(function (code) {
      const s = document.createElement("script");
      s.textContent = code;
      document.head.appendChild(s);
      return window.Plotly;
    });
    return plotlyReady;
  }

  function itemRow(entry, texts) {
    const t = texts ? texts[entry.pos] : null;
    const cells = [el("td", {text: String(entry.id)})];
    cells.push(el("td", {class: "prompt", text: t ? t.prompt : "(prompt not available)"}));
    cells.push(el("td", {text: t ? t.reference : ""}));
    cells.push(el("td", {class: "out", text: entry.ref_output === null ? "–" : entry.ref_output}));
    cells.push(el("td", {class: "out", text: entry.cell_output === null ? "–" : entry.cell_output}));
    return el("tr", {}, cells);
  }

  function itemList(title, entries, total, texts, cls) {
    const head = el("tr", {}, ["item", "prompt", "reference", "base output", "this cell's output"].map(function (h) {
      return el("th", {text: h});
    }));
    const body = el("tbody", {}, entries.map(function (e) { return itemRow(e, texts); }));
    const more = total > entries.length ? " (first " + entries.length + " shown)" : "";
    return el("details", {class: "flips " + cls}, [el("summary", {text: title + ": " + total + more}),
      el("div", {class: "scroll"}, [el("table", {class: "items"}, [el("thead", {}, [head]), body])])]);
  }

  function renderEvidence(i) {
    const box = document.getElementById("evidence-" + i);
    if (box.dataset.done) return;
    box.dataset.done = "1";
    const ev = DATA.cells[i].evidence;
    if (!ev.length) {
      box.appendChild(el("p", {text: DATA.cells[i].label === "base" ? "This is the base model: the reference."
        : "No per-item scores to pair with the base model."}));
      return;
    }
    const still = ev.filter(function (m) { return !m.n_lost && !m.n_gained; });
    ev.filter(function (m) { return m.n_lost || m.n_gained; }).forEach(function (m) {
      const texts = m.source ? DATA.texts[m.source] : null;
      const block = el("div", {class: "metric", "data-metric": m.metric}, [
        el("h4", {text: m.label + " (" + m.metric + "), " + m.n + " items: " + m.n_lost + " right → wrong, "
          + m.n_gained + " wrong → right"})]);
      if (m.why) block.appendChild(el("p", {class: "hint", text: "prompts not shown: " + m.why}));
      if (m.n_lost) block.appendChild(itemList("right → wrong (lost)", m.lost, m.n_lost, texts, "lost"));
      if (m.n_gained) block.appendChild(itemList("wrong → right (gained)", m.gained, m.n_gained, texts, "gained"));
      box.appendChild(block);
    });
    if (still.length) {
      box.appendChild(el("p", {class: "hint", text: "no item flipped on: " + still.map(function (m) {
        return m.label + " (" + m.n + " items)";
      }).join(", ")}));
    }
  }

  function renderLoss(i) {
    const div = document.getElementById("loss-" + i);
    const curves = DATA.cells[i].loss.filter(function (c) { return c.y.length; });
    if (!curves.length) { div.textContent = "no training (or no loss recorded)"; return; }
    loadPlotly().then(function (Plotly) {
      Plotly.react(div, curves.map(function (c) {
        return {x: c.x, y: c.y, mode: "lines", name: "seed " + c.seed,
          hovertemplate: "step %{x}: loss %{y:.4g}<extra></extra>"};
      }), {height: 240, margin: {l: 50, r: 10, t: 10, b: 40}, yaxis: {type: "log", title: {text: "training loss"}},
        xaxis: {title: {text: "optimizer step"}}, showlegend: curves.length > 1}, {displaylogo: false, responsive: true});
    });
  }

  function select(i, scroll) {
    document.querySelectorAll("tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    document.querySelectorAll("#headline tbody tr[data-row='" + i + "']").forEach(function (r) { r.classList.add("selected"); });
    document.querySelectorAll("article.cell").forEach(function (a) { a.hidden = a.dataset.row !== String(i); });
    document.getElementById("cell-title").textContent = DATA.cells[i].label;
    renderEvidence(i);
    renderLoss(i);
    if (scroll) document.getElementById("cell-details").scrollIntoView();
  }
  window.selectCell = select;

  document.querySelectorAll("#headline tbody tr").forEach(function (tr) {
    tr.addEventListener("click", function () { select(Number(tr.dataset.row), false); });
  });

  loadPlotly().then(function (Plotly) {
    const draws = Object.entries(DATA.figures).map(function ([name, fig]) {
      const div = document.getElementById("chart-" + name);
      return Plotly.newPlot(div, fig.data, fig.layout, {displaylogo: false, responsive: true}).then(function () {
        div.on("plotly_click", function (ev) {
          const p = ev.points[0];
          if (p && p.customdata) select(p.customdata[0], true);
        });
      });
    });
    return Promise.all(draws);
  }).then(function () { document.body.dataset.ready = "1"; }, function (err) {
    const box = document.getElementById("chart-error");
    box.hidden = false;
    box.textContent = "charts could not be drawn: " + err;
    document.body.dataset.ready = "error";
  });
})();
