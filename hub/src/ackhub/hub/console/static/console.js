// ackhub console: the live feed (server-sent events). No dependencies.
"use strict";
(function () {
  const table = document.getElementById("feed");
  if (!table) return;
  const body = table.querySelector("tbody");
  const status = document.getElementById("feed-status");
  const source = new EventSource(table.dataset.source);
  const cell = (text) => { const td = document.createElement("td"); td.textContent = text; return td; };
  source.onopen = () => { status.textContent = table.dataset.connected; status.classList.add("ok"); };
  source.onerror = () => { status.textContent = "…"; status.classList.remove("ok"); };
  source.addEventListener("signout", () => { source.close(); window.location.href = "/signin?expired=1&next=/feed"; });
  source.onmessage = (message) => {
    const e = JSON.parse(message.data);
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    const row = document.createElement("tr");
    row.className = "fresh";
    row.dataset.kind = e.kind;
    row.dataset.record = e.record_id;
    const link = document.createElement("a");
    link.href = "/records/" + encodeURIComponent(e.record_id);
    link.textContent = e.record_id;
    const recordCell = document.createElement("td");
    recordCell.appendChild(link);
    row.append(cell(e.time), cell(e.kind), cell(e.actor), cell(e.record_type), recordCell, cell(e.detail));
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
  };
})();
