// The designer's phases and fields editor: reorder phases and fields by drag and drop (SortableJS)
// or with the arrow keys on a focused handle, grow and shrink the options list and the condition's
// rules, and show or hide the side pane. Every save is an HTMX request; nothing here reloads the page.
(function () {
  "use strict";

  function root() { return document.querySelector("[data-designer]"); }

  // The answer swaps the board out of band, found by its id when it arrives: a board swapped by
  // another answer meanwhile is replaced all the same (a target taken now could be gone by then).
  function post(url, values) {
    return window.htmx.ajax("POST", url, { source: root(), target: root(), swap: "none", values: values });
  }

  function ids(container, selector, attr) {
    return Array.prototype.map.call(container.querySelectorAll(selector), function (el) { return el.getAttribute(attr); });
  }

  function savePhases(focus) {
    var list = document.getElementById("design-phases");
    if (!list) return;
    post(root().dataset.phasesOrderUrl, { order: ids(list, ":scope > .design-col", "data-phase").join(","), focus: focus || "" });
  }

  function saveFields(list, focus) {
    post(root().dataset.fieldsOrderUrl, {
      phase: list.getAttribute("data-phase"),
      order: ids(list, ":scope > .design-field", "data-field").join(","),
      focus: focus || "",
    });
  }

  function sortables(scope) {
    if (!window.Sortable) return;
    var phases = scope.querySelector ? scope.querySelector("#design-phases") : null;
    if (phases && !phases._sortable) {
      phases._sortable = window.Sortable.create(phases, {
        animation: 150, handle: ".phase-handle", draggable: ".design-col", ghostClass: "is-ghost",
        onEnd: function (event) { if (event.oldIndex !== event.newIndex) savePhases(); },
      });
    }
    Array.prototype.forEach.call(scope.querySelectorAll ? scope.querySelectorAll(".field-list") : [], function (list) {
      if (list._sortable) return;
      list._sortable = window.Sortable.create(list, {
        animation: 150, handle: ".field-handle", draggable: ".design-field", ghostClass: "is-ghost",
        onEnd: function (event) { if (event.oldIndex !== event.newIndex) saveFields(list); },
      });
    });
  }

  // Arrow keys on a focused handle move its phase (left/right) or its field (up/down).
  document.addEventListener("keydown", function (event) {
    var handle = event.target.closest && event.target.closest(".handle");
    if (!handle || !root()) return;
    var phase = handle.classList.contains("phase-handle");
    var back = phase ? "ArrowLeft" : "ArrowUp";
    var ahead = phase ? "ArrowRight" : "ArrowDown";
    if (event.key !== back && event.key !== ahead) return;
    event.preventDefault();
    var item = handle.closest(phase ? ".design-col" : ".design-field");
    var sibling = event.key === back ? item.previousElementSibling : item.nextElementSibling;
    while (sibling && !sibling.matches(phase ? ".design-col" : ".design-field")) {
      sibling = event.key === back ? sibling.previousElementSibling : sibling.nextElementSibling;
    }
    if (!sibling) return;
    if (event.key === back) sibling.before(item); else sibling.after(item);
    handle.focus();
    if (phase) savePhases(handle.id); else saveFields(item.parentElement, handle.id);
  });

  // After the board is swapped: set up drag and drop again and give focus back where it was.
  function afterBoard(board) {
    sortables(board);
    var focus = board.getAttribute("data-focus");
    var el = focus && document.getElementById(focus);
    if (el) el.focus();
    markSelected();
  }

  // Scroll the board sideways, and a column's list of fields, just enough to show `el`
  // (scrollIntoView would scroll the page as well).
  function reveal(el) {
    var board = document.getElementById("design-board");
    if (!board) return;
    var col = el.closest(".column") || el;
    var b = board.getBoundingClientRect(), c = col.getBoundingClientRect();
    if (c.left < b.left) board.scrollLeft -= b.left - c.left + 16;
    else if (c.right > b.right) board.scrollLeft += c.right - b.right + 16;
    var list = el.closest(".cards");
    if (list && list !== el) {
      var l = list.getBoundingClientRect(), e = el.getBoundingClientRect();
      if (e.top < l.top) list.scrollTop -= l.top - e.top + 8;
      else if (e.bottom > l.bottom) list.scrollTop += e.bottom - l.bottom + 8;
    }
  }

  function markSelected(scroll) {
    var pane = document.getElementById("design-pane");
    var editing = pane && pane.querySelector("[data-editing]");
    var key = editing ? editing.getAttribute("data-editing") : "";
    Array.prototype.forEach.call(document.querySelectorAll(".design-field.is-selected, .design-col.is-selected"), function (el) {
      el.classList.remove("is-selected");
    });
    if (!key) return;
    var parts = key.split("-");
    var id = parts[0] === "field" ? "design-field-" + parts[1] : parts[0] === "start" ? "design-start" : "design-phase-" + parts[1];
    var el = document.getElementById(id);
    if (el) {
      el.classList.add("is-selected");
      if (scroll) reveal(el);
    }
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    var board = document.getElementById("design-board");
    if (board && (event.target === board || event.target.id === "design-board" || !board._ready)) {
      board._ready = true;
      afterBoard(board);
    }
    if (event.target.id === "design-pane") {
      optionSortables(event.target);
      if (event.detail.requestConfig) event.target.scrollTop = 0;  // a new editor starts at its top
      markSelected(true);
      var config = event.detail.requestConfig || {};
      var first = event.target.querySelector(".pane-form input[type=text]:not([readonly])");
      if (config.verb === "post" && /\/add\/$/.test(config.path || "") && first) { first.focus(); first.select(); }
      else if (config.verb === "get") { var title = event.target.querySelector(".pane-title"); if (title) { title.setAttribute("tabindex", "-1"); title.focus({ preventScroll: true }); } }
    }
  });
  // Out-of-band swaps of the board settle too, but on their own element.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail && event.detail.target && event.detail.target.id === "design-board") afterBoard(event.detail.target);
  });

  // Options: one input per option, added and removed here; the form posts them all as "options".
  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-option-add]");
    if (add) {
      var box = add.closest("[data-options]");
      var list = box.querySelector("[data-option-list]");
      var row = box.querySelector("template[data-option-template]").content.firstElementChild.cloneNode(true);
      list.appendChild(row);
      row.querySelector("input").focus();
      return;
    }
    var remove = event.target.closest("[data-option-remove]");
    if (remove) {
      var li = remove.closest("li");
      var next = li.nextElementSibling || li.previousElementSibling;
      var addButton = li.closest("[data-options]").querySelector("[data-option-add]");
      li.remove();
      (next ? next.querySelector("input") : addButton).focus();
      return;
    }
    var ruleAdd = event.target.closest("[data-cond-add]");
    if (ruleAdd) {
      var cond = ruleAdd.closest("[data-condition]");
      var rows = cond.querySelector("[data-cond-rows]");
      var next = 0;
      Array.prototype.forEach.call(rows.querySelectorAll("input[name=cond_row]"), function (i) { next = Math.max(next, parseInt(i.value, 10) + 1); });
      window.htmx.ajax("GET", cond.dataset.rowUrl + "?index=" + next, { source: ruleAdd, target: rows, swap: "beforeend" }).then(function () {
        conditionState(cond);
        var added = document.getElementById("cond-" + next + "-field");
        if (added) added.focus();
      });
      return;
    }
    var ruleRemove = event.target.closest("[data-cond-remove]");
    if (ruleRemove) {
      var condBox = ruleRemove.closest("[data-condition]");
      ruleRemove.closest("[data-cond-row]").remove();
      conditionState(condBox);
      condBox.querySelector("[data-cond-add]").focus();
      return;
    }
    var toggle = event.target.closest("[data-pane-toggle]");
    if (toggle) {
      var designer = root();
      var hidden = designer.classList.toggle("pane-hidden");
      toggle.setAttribute("aria-expanded", hidden ? "false" : "true");
      toggle.textContent = hidden ? designer.dataset.showLabel : designer.dataset.hideLabel;
      try { window.localStorage.setItem("trilho.designer.pane", hidden ? "hidden" : "shown"); } catch (e) { /* private mode */ }
    }
  });

  // Options keep the order they are listed in: drag a row by its grip, or Alt+Up/Down in its input.
  function optionSortables(scope) {
    if (!window.Sortable) return;
    Array.prototype.forEach.call(scope.querySelectorAll("[data-option-list]"), function (list) {
      if (list._sortable) return;
      list._sortable = window.Sortable.create(list, {
        animation: 120, handle: ".option-grip", ghostClass: "is-ghost",
        onEnd: function () { var form = list.closest(".pane-form"); if (form) form.setAttribute("data-dirty", "1"); },
      });
    });
  }
  document.addEventListener("keydown", function (event) {
    if (!event.altKey || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
    var row = event.target.closest && event.target.closest(".option-row");
    if (!row) return;
    event.preventDefault();
    var other = event.key === "ArrowUp" ? row.previousElementSibling : row.nextElementSibling;
    if (!other) return;
    if (event.key === "ArrowUp") other.before(row); else other.after(row);
    event.target.focus();
    row.closest(".pane-form").setAttribute("data-dirty", "1");
  });

  function conditionState(cond) {
    var any = cond.querySelector("[data-cond-row]") !== null;
    var empty = cond.querySelector("[data-cond-empty]");
    var head = cond.querySelector("[data-cond-head]");
    var add = cond.querySelector("[data-cond-add]");
    if (empty) empty.hidden = any;
    if (head) head.hidden = !any;
    if (add) add.textContent = any ? add.dataset.moreLabel : add.dataset.firstLabel;
  }

  // An editor with changes not saved yet asks before something else takes the pane.
  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest(".pane-form");
    if (form) form.setAttribute("data-dirty", "1");
  });
  document.addEventListener("click", function (event) {
    var form = event.target.closest && event.target.closest(".pane-form");
    if (form && event.target.closest("[data-option-remove], [data-cond-remove], [data-option-add], [data-cond-add]")) form.setAttribute("data-dirty", "1");
  }, true);
  document.addEventListener("htmx:beforeRequest", function (event) {
    var pane = document.getElementById("design-pane");
    var dirty = pane && pane.querySelector(".pane-form[data-dirty]");
    var target = event.detail.target || (event.detail.requestConfig || {}).target;
    if (!dirty || !target || target.id !== "design-pane") return;
    if (dirty.contains(event.detail.elt)) return;  // its own save
    var designer = root();
    if (!window.confirm(designer.dataset.unsavedMessage)) event.preventDefault();
  });

  // Ctrl/Cmd+Enter saves the editor that has the focus.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var form = event.target.closest && event.target.closest(".pane-form");
    if (form) { event.preventDefault(); window.htmx.trigger(form, "submit"); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var designer = root();
    if (!designer) return;
    try {
      if (window.localStorage.getItem("trilho.designer.pane") === "hidden") {
        var toggle = document.querySelector("[data-pane-toggle]");
        if (toggle) toggle.click();
      }
    } catch (e) { /* private mode */ }
    var board = document.getElementById("design-board");
    if (board) { board._ready = true; afterBoard(board); markSelected(true); }
    var pane = document.getElementById("design-pane");
    if (pane) optionSortables(pane);
  });
})();
