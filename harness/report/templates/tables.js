// Sortable, filterable tables: a click on a heading sorts by each cell's data-sort (a number where it is one,
// missing values last); a text box with data-filter="<table id>" hides the rows that do not contain its text.
(function () {
  function key(td) {
    const raw = td.dataset.sort;
    const num = raw === "" ? NaN : Number(raw);
    return Number.isNaN(num) ? raw.toLowerCase() : num;
  }
  function sortBy(table, col, th) {
    const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === "" || y === "") return (x === "") - (y === "");  // missing values last either way
      if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th) {
      th.addEventListener("click", function () { sortBy(table, Number(th.dataset.col), th); });
    });
  });
  document.querySelectorAll("input[data-filter]").forEach(function (box) {
    box.addEventListener("input", function () {
      const words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
      document.querySelectorAll("#" + box.dataset.filter + " tbody tr").forEach(function (tr) {
        const text = tr.textContent.toLowerCase();
        tr.hidden = !words.every(function (w) { return text.includes(w); });
      });
    });
  });
})();
