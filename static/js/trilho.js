// Trilho's small shared behaviour. No inline scripts anywhere: pages opt in with data- attributes.
(function () {
  "use strict";

  // A toast for messages sent by the server in an HX-Trigger header: {"toast": {"message": "...", "level": "error"}}
  document.addEventListener("toast", function (event) {
    var detail = event.detail || {};
    var box = document.getElementById("toasts");
    if (!box || !detail.message) return;
    var el = document.createElement("div");
    el.className = "toast toast-" + (detail.level || "info");
    el.setAttribute("role", "status");
    el.textContent = detail.message;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, 6000);
  });

  // <select data-autosubmit> submits its form when changed (the language switcher).
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.matches && el.matches("select[data-autosubmit]") && el.form) el.form.submit();
  });

  // Show HTMX error responses that carry a fragment (4xx) instead of dropping them.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500 && event.detail.xhr.getResponseHeader("HX-Retarget") !== null) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    } else if (status === 422 || status === 409) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
