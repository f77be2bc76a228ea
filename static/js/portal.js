// The request portal's small behaviours. Everything works without it; it only makes forms friendlier.
(function () {
  "use strict";

  function formatSize(bytes) {
    if (bytes >= 1048576) return (bytes / 1048576).toFixed(1) + " MB";
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  // List the files picked in a file input, since the browser only says "2 files".
  function showChosen(input) {
    var list = document.getElementById(input.getAttribute("data-file-list"));
    if (!list) return;
    list.textContent = "";
    Array.prototype.forEach.call(input.files || [], function (file) {
      var li = document.createElement("li");
      var icon = document.createElement("span");
      icon.className = "pf-file-icon";
      icon.setAttribute("aria-hidden", "true");
      var name = document.createElement("span");
      name.textContent = file.name;
      var size = document.createElement("span");
      size.className = "muted small";
      size.textContent = formatSize(file.size);
      li.appendChild(icon);
      li.appendChild(name);
      li.appendChild(size);
      list.appendChild(li);
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("input[type=file][data-file-list]")) showChosen(target);
  });

  // Highlight a drop zone while a file is dragged over it.
  ["dragenter", "dragover"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var zone = event.target.closest && event.target.closest(".pf-drop");
      if (zone) zone.classList.add("is-over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var zone = event.target.closest && event.target.closest(".pf-drop");
      if (zone) zone.classList.remove("is-over");
    });
  });

  // One submission at a time: the button says it is sending (remove buttons stay usable).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    if (!button || button.name === "_remove") return;
    if (form.getAttribute("data-sending") === "1") {
      event.preventDefault();
      return;
    }
    form.setAttribute("data-sending", "1");
    var label = button.getAttribute("data-submitting-label");
    if (label) {
      button.setAttribute("aria-disabled", "true");
      button.textContent = label;
    }
  });

  // A page restored from the back/forward cache may be sent again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-sending]").forEach(function (form) { form.removeAttribute("data-sending"); });
  });

  // Copy a tracking link.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var input = document.querySelector(button.getAttribute("data-copy"));
    if (!input) return;
    var done = function () {
      var original = button.textContent;
      button.textContent = button.getAttribute("data-copied-label") || original;
      setTimeout(function () { button.textContent = original; }, 1800);
    };
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () {});
    } else {
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected to copy by hand */ }
    }
  });

  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  // A form that came back with errors: move focus to its summary so keyboard and screen reader users hear it.
  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.querySelector("[data-focus-on-load]");
    if (summary) summary.focus();
  });

  // Links in the error summary focus the field itself, not just scroll to it.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest(".pf-summary a[href^='#']");
    if (!link) return;
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (!target) return;
    event.preventDefault();
    var focusable = target.matches("input, select, textarea") ? target : target.querySelector("input, select, textarea");
    (focusable || target).focus();
    target.scrollIntoView({ block: "center" });
  });
})();
