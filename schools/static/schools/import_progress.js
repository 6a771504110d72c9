// An import's status page: follows the import through the API, then its delivery to the other system.
"use strict";

(function () {
  const RUNNING_POLL_MS = 1000;
  const DELIVERY_POLL_MS = 5000;
  const FINISHED = ["done", "failed"];

  const section = document.getElementById("import-status");
  if (!section) {
    return;
  }
  const shownStatus = section.dataset.status;
  const rowsTotal = Number(section.dataset.rowsTotal);
  const rateWindowMinutes = section.dataset.rateWindowMinutes;
  const label = document.getElementById("import-status-label");
  const bar = document.getElementById("import-progress");
  const rows = document.getElementById("import-rows");
  const deliveryLine = document.getElementById("import-delivery");

  function showProgress(status, rowsDone) {
    const percent = Math.floor((rowsDone * 100) / Math.max(rowsTotal, 1));
    label.textContent = status;
    bar.value = rowsDone;
    bar.textContent = percent + "%";
    rows.textContent = rowsDone + " of " + rowsTotal + " rows (" + percent + "%)";
  }

  function deliveryText(delivery) {
    const received = delivery.delivered + " of " + delivery.entries + " entries received by the other system";
    const cancelled = delivery.cancelled ? " (" + delivery.cancelled + " cancelled by an operator)" : "";
    if (delivery.to_send_before_done === 0) {
      return received + cancelled + "; nothing more to send.";
    }
    if (delivery.eta_seconds === null) {
      return received + "; no estimate yet: the lane has sent nothing in the last " + rateWindowMinutes + " minutes.";
    }
    const by = new Date(delivery.eta).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    const minutes = Math.round(delivery.eta_seconds / 60);
    const about = minutes < 1 ? "in under a minute" : "about " + minutes + " min";
    return received + "; the rest expected by " + by + " (" + about + ") at the lane's recent rate of " +
      delivery.push_rate_per_minute + " a minute.";
  }

  function deliveredAll(importState) {
    const delivery = importState.delivery;
    return delivery === null || delivery.to_send_before_done === 0;
  }

  async function poll() {
    let importState;
    try {
      const response = await fetch(section.dataset.api, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      importState = await response.json();
    } catch (error) {
      window.setTimeout(poll, DELIVERY_POLL_MS);
      return;
    }
    if (FINISHED.includes(importState.status) && importState.status !== shownStatus) {
      window.location.reload(); // the page shows what was written, or why nothing was
      return;
    }
    showProgress(importState.status, importState.rows_done);
    if (importState.status !== "done") {
      window.setTimeout(poll, RUNNING_POLL_MS);
      return;
    }
    if (deliveryLine && importState.delivery) {
      deliveryLine.textContent = deliveryText(importState.delivery);
    }
    if (!deliveredAll(importState)) {
      window.setTimeout(poll, DELIVERY_POLL_MS);
    }
  }

  if (shownStatus !== "failed") {
    poll();
  }
})();
