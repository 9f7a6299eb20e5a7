// Keeps the inbox current without a reload: fetch the rows every few seconds
// and swap them in when they changed. No library, no network beyond this origin.
(function () {
  "use strict";
  const table = document.querySelector("table[data-refresh]");
  if (!table) return;
  const url = table.getAttribute("data-refresh");
  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (!response.ok || response.redirected) return;
      const html = await response.text();
      const current = table.querySelector("tbody[data-rows]");
      if (current && current.outerHTML.trim() !== html.trim()) {
        current.insertAdjacentHTML("afterend", html);
        current.remove();
        const total = table.querySelector("tbody[data-rows]").getAttribute("data-total");
        const badge = document.querySelector("[data-total]:not(tbody)");
        if (badge) badge.textContent = total;
      }
    } catch (err) { /* the next tick tries again */ }
  }
  setInterval(refresh, 2000);
})();
