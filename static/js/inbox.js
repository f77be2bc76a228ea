// The reviewer inbox: keyboard shortcuts, row selection for bulk approval, attachment previews.
// No inline scripts (CSP): pages opt in with data- attributes; texts come translated from the templates.
(function () {
  "use strict";

  function isTyping(event) {
    var el = event.target;
    if (!el || !el.tagName) return false;
    var tag = el.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || el.isContentEditable;
  }

  function withModifier(event) {
    return event.ctrlKey || event.metaKey || event.altKey;
  }

  function helpDialog() {
    return document.getElementById("kbd-help");
  }

  function openHelp() {
    var dialog = helpDialog();
    if (dialog && !dialog.open && dialog.showModal) dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-help-open]")) openHelp();
  });

  // ------------------------------------------------------------------ the list

  function setupList(root) {
    var rows = Array.prototype.slice.call(root.querySelectorAll(".inbox-row"));
    var bar = root.querySelector("[data-bulk-bar]");
    var counter = root.querySelector("[data-bulk-count]");
    var focused = -1;

    root.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.querySelectorAll("[data-hide-with-js]").forEach(function (el) { el.classList.add("js-hidden"); });
      form.addEventListener("change", function () { form.submit(); });
    });

    function boxes() {
      return Array.prototype.slice.call(root.querySelectorAll("input[name=tasks]"));
    }

    function refreshBulk() {
      var checked = boxes().filter(function (b) { return b.checked; });
      var step = checked.length ? checked[0].getAttribute("data-step") : null;
      boxes().forEach(function (box) {
        var other = step !== null && box.getAttribute("data-step") !== step;
        box.disabled = other;
        var row = box.closest(".inbox-row");
        row.classList.toggle("is-disabled", other);
        row.classList.toggle("is-selected", box.checked);
      });
      // The fields the selected step's approval needs: shown (and sent) only for that step.
      root.querySelectorAll("[data-bulk-fields-for]").forEach(function (set) {
        var mine = step !== null && set.getAttribute("data-bulk-fields-for") === step;
        set.hidden = !mine;
        set.disabled = !mine;
      });
      if (!bar) return;
      bar.hidden = checked.length === 0;
      var template = (checked.length === 1 ? bar.getAttribute("data-one") : bar.getAttribute("data-many")) || "%(n)s";
      counter.textContent = template.replace("%(n)s", String(checked.length));
    }

    function focusRow(index) {
      if (!rows.length) return;
      index = Math.max(0, Math.min(rows.length - 1, index));
      if (focused >= 0 && rows[focused]) rows[focused].classList.remove("is-focused");
      focused = index;
      rows[focused].classList.add("is-focused");
      rows[focused].scrollIntoView({ block: "nearest" });
      var link = rows[focused].querySelector(".inbox-title a");
      if (link) link.focus({ preventScroll: true });
    }

    root.addEventListener("change", function (event) {
      if (event.target.name === "tasks") refreshBulk();
    });
    root.addEventListener("click", function (event) {
      if (event.target.closest("[data-bulk-clear]")) {
        boxes().forEach(function (b) { b.checked = false; });
        refreshBulk();
        return;
      }
      var row = event.target.closest(".inbox-row");
      if (!row || event.target.closest("a, input, button, label, select")) return;
      window.location.href = row.getAttribute("data-url");
    });
    document.addEventListener("keydown", function (event) {
      if (isTyping(event) || withModifier(event) || (helpDialog() && helpDialog().open)) return;
      var key = event.key;
      if (key === "j" || key === "ArrowDown" && focused >= 0) {
        focusRow(focused + 1);
      } else if (key === "k" || key === "ArrowUp" && focused >= 0) {
        focusRow(focused < 0 ? 0 : focused - 1);
      } else if ((key === "Enter" || key === "o") && focused >= 0) {
        window.location.href = rows[focused].getAttribute("data-url");
      } else if (key === "x" && focused >= 0) {
        var box = rows[focused].querySelector("input[name=tasks]");
        if (box && !box.disabled) {
          box.checked = !box.checked;
          refreshBulk();
        }
      } else if (key === "?") {
        openHelp();
      } else {
        return;
      }
      event.preventDefault();
    });
    refreshBulk();
  }

  // ------------------------------------------------------------------ the review screen

  function setupReview(root) {
    var form = document.getElementById("decide-form");
    var comment = document.getElementById("id-comment");
    var hint = root.querySelector("[data-decide-hint]");
    var changes = document.getElementById("changes-panel");
    var armed = null;

    function button(value) {
      return form ? form.querySelector('button[name=decision][value="' + value + '"]') : null;
    }

    function submitWith(btn) {
      if (!btn) return;
      if (form.requestSubmit) form.requestSubmit(btn);
      else btn.click();
    }

    // Reject mode: the draft shows only what a rejection needs (rows marked data-reject-needs), the
    // field that asks why is filled from the comment (data-reason-field), so it is typed once.
    function rowFilled(row) {
      return Array.prototype.some.call(row.querySelectorAll("input, select, textarea"), function (el) {
        if (el.type === "hidden" || el.disabled) return false;
        if (el.type === "checkbox" || el.type === "radio") return el.checked;
        return el.value.trim() !== "";
      });
    }

    function missingForReject() {
      if (!form) return [];
      return Array.prototype.filter.call(form.querySelectorAll(".draft-row[data-reject-needs]"), function (row) {
        return !row.hidden && !row.hasAttribute("data-reason-field") && !rowFilled(row);
      });
    }

    function refreshReasonNotes() {
      if (!form) return;
      var rejecting = form.getAttribute("data-deciding") === "reject";
      form.querySelectorAll("[data-reason-note-for]").forEach(function (note) {
        var row = document.getElementById("draft-" + note.getAttribute("data-reason-note-for"));
        note.hidden = !(rejecting && row && !row.hidden && row.hasAttribute("data-reason-field"));
      });
    }

    function setDeciding(value) {
      if (!form) return;
      if (value) form.setAttribute("data-deciding", value);
      else form.removeAttribute("data-deciding");
      refreshReasonNotes();
    }

    function arm(value, message) {
      var btn = button(value);
      if (!btn) return false;
      if (armed) armed.classList.remove("is-armed");
      armed = btn;
      btn.classList.add("is-armed");
      setDeciding(value === "reject" ? "reject" : "");
      var missing = value === "reject" ? missingForReject() : [];
      if (missing.length) message = form.getAttribute("data-hint-reject-fields") || message;
      if (hint && message) {
        hint.textContent = message;
        hint.hidden = false;
      }
      var first = missing.length ? missing[0].querySelector("input:not([type=hidden]), select, textarea") : null;
      if (first) first.focus();
      else if (comment) comment.focus();
      return true;
    }

    function hasComment() {
      return comment && comment.value.trim() !== "";
    }

    function startReject() {
      if (!button("reject")) return;
      if (hasComment() && !missingForReject().length) submitWith(button("reject"));
      else arm("reject", form.getAttribute("data-hint-reject"));
    }

    function startChanges() {
      if (!changes) return;
      changes.open = true;
      arm("request_changes", form.getAttribute("data-hint-changes"));
    }

    document.addEventListener("keydown", function (event) {
      if (helpDialog() && helpDialog().open) return;
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && form && form.contains(event.target)) {
        if (armed) {
          event.preventDefault();
          submitWith(armed);
        }
        return;
      }
      if (isTyping(event) || withModifier(event)) return;
      var key = event.key;
      if (key === "a" && form) {
        submitWith(button("approve"));
      } else if (key === "r" && form) {
        startReject();
      } else if (key === "c" && form) {
        startChanges();
      } else if (key === "j" && root.getAttribute("data-next-url")) {
        window.location.href = root.getAttribute("data-next-url");
      } else if (key === "k" && root.getAttribute("data-prev-url")) {
        window.location.href = root.getAttribute("data-prev-url");
      } else if (key === "?") {
        openHelp();
      } else {
        return;
      }
      event.preventDefault();
    });

    if (form) {
      // A reject without a comment is refused by the server too; say so before sending.
      form.addEventListener("submit", function (event) {
        var btn = event.submitter;
        var needs = btn && (btn.value === "reject" || btn.value === "request_changes");
        var rejectMissing = btn && btn.value === "reject" && missingForReject().length > 0;
        if ((needs && !hasComment()) || rejectMissing) {
          event.preventDefault();
          arm(btn.value, form.getAttribute(btn.value === "reject" ? "data-hint-reject" : "data-hint-changes"));
        } else if (btn) {
          form.querySelectorAll("button[name=decision]").forEach(function (b) { b.disabled = true; });
          var keep = document.createElement("input");
          keep.type = "hidden";
          keep.name = "decision";
          keep.value = btn.value;
          form.appendChild(keep);
        }
      });
      // Rows swapped in by the fields endpoint (a condition now holds) follow the reject mode too.
      document.body.addEventListener("htmx:afterSettle", refreshReasonNotes);
      var mode = root.getAttribute("data-mode");
      if (mode === "reject") arm("reject", form.getAttribute("data-hint-reject"));
      else if (mode === "changes") startChanges();
    }

    root.querySelectorAll("details[data-preview-url]").forEach(function (details) {
      details.addEventListener("toggle", function () {
        if (!details.open || details.getAttribute("data-loaded")) return;
        details.setAttribute("data-loaded", "1");
        var body = details.querySelector(".preview-body");
        var tries = 0;
        function load() {
          fetch(details.getAttribute("data-preview-url"), { credentials: "same-origin", headers: { "HX-Request": "true" } })
            .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
            .then(function (html) {
              body.innerHTML = html;  // our own escaped template (inbox/_preview.html)
              // A worker is still extracting the text: ask again, for a minute at most.
              if (body.querySelector("[data-preview-pending]") && ++tries < 30) setTimeout(load, 2000);
            })
            .catch(function () { body.textContent = details.getAttribute("data-error") || "—"; });
        }
        load();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = document.querySelector("[data-inbox-list]");
    if (list) setupList(list);
    var review = document.querySelector("[data-review-screen]");
    if (review) setupReview(review);
  });
})();
