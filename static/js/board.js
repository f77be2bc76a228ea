// The kanban board: drag and drop (SortableJS), the keyboard "Move to…" menu, the card side panel
// and live updates by polling the "what changed since" endpoint. Moves are optimistic: the card
// goes to its new column at once; the server answers with the card re-rendered (and both column
// heads out of band) or with the reason it stays where it was, and then the card goes back.
(function () {
  "use strict";

  var board = document.getElementById("board");
  if (!board) return;
  var data = JSON.parse((document.getElementById("board-data") || {}).textContent || "{}");
  var phases = {};
  (data.phases || []).forEach(function (p) { phases[p.id] = p; });
  var text = data.text || {};
  var canMove = board.dataset.canMove === "1";
  var panel = document.getElementById("panel");
  var menu = document.getElementById("move-menu");
  var dragging = false;
  var moving = 0;

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; }
    catch (e) { return ""; }
  }

  function toast(message, level) {
    document.dispatchEvent(new CustomEvent("toast", { detail: { message: message, level: level || "error" } }));
  }

  function listFor(phaseId) { return document.getElementById("cards-" + phaseId); }

  // Insert `card` into `list` in board order (newest first, by data-created).
  function placeInOrder(list, card) {
    var key = card.dataset.created || "";
    var items = list.querySelectorAll(":scope > .card");
    for (var i = 0; i < items.length; i++) {
      if (items[i] !== card && (items[i].dataset.created || "") < key) { list.insertBefore(card, items[i]); return true; }
    }
    var more = document.getElementById("more-" + list.dataset.phaseId);
    if (more && more.querySelector("button") && items.length) return false; // beyond the loaded page
    list.appendChild(card);
    return true;
  }

  function swapHtml(target, html) {
    htmx.swap(target, html, { swapStyle: "outerHTML", swapDelay: 0, settleDelay: 0 });
  }

  // ------------------------------------------------------------------ moves

  function moveCard(card, phaseId, origin) {
    var url = card.dataset.moveUrl + (board.dataset.qs || "");
    var body = new FormData();
    body.append("to_phase", phaseId);
    body.append("expected_version", card.dataset.version || "");
    card.classList.add("is-moving");
    card.setAttribute("aria-busy", "true");
    moving++;
    var cardId = card.dataset.cardId;
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "HX-Request": "true" }
    }).then(function (response) {
      return response.text().then(function (html) {
        // A success is a re-rendered card; anything else (e.g. a login page after the session ended) is not.
        var isCard = html.indexOf("<article") !== -1;
        return { ok: response.ok && isCard, status: response.status, html: html, isCard: isCard };
      });
    }).then(function (result) {
      moving--;
      var live = document.getElementById("card-" + cardId) || card;
      if (!result.ok && origin && origin.list) {
        origin.list.insertBefore(live, origin.next && origin.next.parentNode === origin.list ? origin.next : null);
      }
      if (result.isCard && live.isConnected) {
        swapHtml(live, result.html);
      } else if (!live.isConnected) {
        // The card is not on the board (filtered out): nothing to put back.
      } else {
        live.classList.remove("is-moving");
        live.removeAttribute("aria-busy");
        toast(result.status === 403 ? result.html || text.failed : text.failed);
      }
      var fresh = document.getElementById("card-" + cardId);
      if (fresh && !result.ok) {
        var alert = fresh.querySelector(".card-alert");
        if (alert) { fresh.scrollIntoView({ block: "nearest" }); }
      }
      afterMove(cardId, result);
      return result;
    }).catch(function () {
      moving--;
      if (origin && origin.list) origin.list.insertBefore(card, origin.next || null);
      card.classList.remove("is-moving");
      card.removeAttribute("aria-busy");
      toast(text.failed);
    });
  }

  // Keep the side panel in step with a move of the card it shows.
  function afterMove(cardId, result) {
    var shown = panel && !panel.hidden && panel.querySelector(".panel-card");
    if (!shown || shown.dataset.cardId !== String(cardId)) return;
    if (result.ok) {
      refreshPanel();
    } else {
      var box = document.getElementById("panel-move-error");
      var tmp = document.createElement("div");
      tmp.innerHTML = result.html;
      var alert = tmp.querySelector(".card-alert p");
      if (box && alert) { box.textContent = alert.textContent.replace(/\s+/g, " ").trim(); box.hidden = false; }
    }
  }

  function refreshPanel() {
    htmx.ajax("GET", window.location.pathname + window.location.search, { target: "#panel", swap: "innerHTML" });
  }

  // ------------------------------------------------------------------ drag and drop

  function allowedFrom(phaseId) {
    var p = phases[phaseId];
    return p && p.allowed && p.allowed.length ? p.allowed : null;
  }

  function markColumns(fromPhase) {
    var allowed = allowedFrom(fromPhase);
    board.querySelectorAll(".column").forEach(function (col) {
      var id = parseInt(col.dataset.phaseId, 10);
      col.classList.toggle("drop-source", id === fromPhase);
      col.classList.toggle("drop-blocked", id !== fromPhase && !!allowed && allowed.indexOf(id) === -1);
    });
  }

  function clearColumns() {
    board.querySelectorAll(".column").forEach(function (col) { col.classList.remove("drop-source", "drop-blocked"); });
  }

  if (canMove && window.Sortable) {
    board.querySelectorAll(".cards").forEach(function (list) {
      window.Sortable.create(list, {
        group: "board",
        sort: false,
        draggable: ".card",
        filter: ".card-alert, .card-move, input, textarea",
        preventOnFilter: false,
        forceFallback: true,
        fallbackTolerance: 4,
        animation: 120,
        ghostClass: "card-ghost",
        chosenClass: "card-chosen",
        dragClass: "card-drag",
        onStart: function (evt) {
          dragging = true;
          closeMenu();
          evt.item._origin = { list: evt.from, next: evt.item.nextElementSibling };
          markColumns(parseInt(evt.from.dataset.phaseId, 10));
        },
        onEnd: function (evt) {
          dragging = false;
          clearColumns();
          var card = evt.item;
          var origin = card._origin;
          if (evt.to === evt.from) {
            if (origin) origin.list.insertBefore(card, origin.next || null);
            return;
          }
          placeInOrder(evt.to, card);
          moveCard(card, evt.to.dataset.phaseId, origin);
        }
      });
    });
  }

  // ------------------------------------------------------------------ keyboard "Move to…" menu

  var menuFor = null;

  function closeMenu(restoreFocus) {
    if (!menu || menu.hidden) return;
    menu.hidden = true;
    menu.innerHTML = "";
    if (menuFor) {
      var button = menuFor.querySelector("[data-move-menu]");
      if (button) { button.setAttribute("aria-expanded", "false"); if (restoreFocus) button.focus(); }
    }
    menuFor = null;
  }

  function openMenu(card, button) {
    closeMenu();
    menuFor = card;
    var current = parseInt(card.dataset.phaseId, 10);
    var allowed = allowedFrom(current);
    var title = document.createElement("div");
    title.className = "move-menu-title";
    title.textContent = text.moveTo || "Move to";
    menu.appendChild(title);
    (data.phases || []).forEach(function (p) {
      var item = document.createElement("button");
      item.type = "button";
      item.setAttribute("role", "menuitem");
      item.className = "move-menu-item" + (p.final ? " is-final" : "");
      item.textContent = p.name;
      item.dataset.phaseId = p.id;
      if (p.id === current) {
        item.disabled = true;
        item.title = text.current || "";
        item.classList.add("is-current");
      } else if (allowed && allowed.indexOf(p.id) === -1) {
        item.disabled = true;
        item.title = text.notAllowed || "";
      }
      menu.appendChild(item);
    });
    var rect = button.getBoundingClientRect();
    menu.hidden = false;
    var top = rect.bottom + 4 + window.scrollY;
    var left = Math.min(rect.left + window.scrollX, window.innerWidth - menu.offsetWidth - 8);
    if (rect.bottom + menu.offsetHeight + 8 > window.innerHeight) top = rect.top - menu.offsetHeight - 4 + window.scrollY;
    menu.style.top = top + "px";
    menu.style.left = Math.max(8, left) + "px";
    button.setAttribute("aria-expanded", "true");
    var first = menu.querySelector(".move-menu-item:not([disabled])");
    if (first) first.focus();
  }

  function chooseFromMenu(item) {
    var card = menuFor;
    var phaseId = item.dataset.phaseId;
    closeMenu();
    if (!card) return;
    var target = listFor(phaseId);
    var origin = { list: card.parentNode, next: card.nextElementSibling };
    if (target) {
      if (!placeInOrder(target, card)) target.appendChild(card);
    }
    moveCard(card, phaseId, origin).then(function (result) {
      var fresh = document.getElementById("card-" + card.dataset.cardId);
      if (!fresh) return;
      var focusable = result && !result.ok ? fresh.querySelector(".card-alert a, .card-alert button") : fresh.querySelector("[data-move-menu]");
      if (focusable) focusable.focus();
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-move-menu]");
    if (button) {
      event.preventDefault();
      var card = button.closest(".card");
      if (menuFor === card && !menu.hidden) closeMenu(true); else openMenu(card, button);
      return;
    }
    var item = event.target.closest(".move-menu-item");
    if (item && !item.disabled) { chooseFromMenu(item); return; }
    if (menu && !menu.hidden && !event.target.closest("#move-menu")) closeMenu();

    var dismiss = event.target.closest("[data-dismiss-alert]");
    if (dismiss) {
      var owner = dismiss.closest(".card");
      var alertBox = dismiss.closest(".card-alert");
      if (alertBox) alertBox.remove();
      if (owner) owner.classList.remove("has-alert");
      return;
    }

    var close = event.target.closest("[data-close-panel]");
    if (close) {
      event.preventDefault();
      closePanel(close.getAttribute("href"));
      return;
    }

    var panelMove = event.target.closest("[data-panel-move]");
    if (panelMove) {
      var tile = document.getElementById("card-" + panelMove.dataset.cardId);
      if (tile) {
        var origin = { list: tile.parentNode, next: tile.nextElementSibling };
        var list = listFor(panelMove.dataset.panelMove);
        if (list && !placeInOrder(list, tile)) list.appendChild(tile);
        moveCard(tile, panelMove.dataset.panelMove, origin);
      } else {
        var ghost = document.createElement("article");
        ghost.dataset.moveUrl = panelMove.dataset.moveUrl;
        ghost.dataset.version = panelMove.dataset.version;
        ghost.dataset.cardId = panelMove.dataset.cardId;
        moveCard(ghost, panelMove.dataset.panelMove, null);
      }
    }
  });

  document.addEventListener("keydown", function (event) {
    if (menu && !menu.hidden) {
      var items = Array.prototype.slice.call(menu.querySelectorAll(".move-menu-item:not([disabled])"));
      var index = items.indexOf(document.activeElement);
      if (event.key === "Escape") { event.preventDefault(); closeMenu(true); return; }
      if (event.key === "ArrowDown") { event.preventDefault(); (items[index + 1] || items[0]).focus(); return; }
      if (event.key === "ArrowUp") { event.preventDefault(); (items[index - 1] || items[items.length - 1]).focus(); return; }
      if (event.key === "Home") { event.preventDefault(); items[0].focus(); return; }
      if (event.key === "End") { event.preventDefault(); items[items.length - 1].focus(); return; }
      if (event.key === "Tab") { closeMenu(); return; }
    }
    if (event.key === "Escape" && panel && !panel.hidden && !event.target.closest("form")) {
      var close = panel.querySelector("[data-close-panel]");
      closePanel(close ? close.getAttribute("href") : null);
    }
  });

  // ------------------------------------------------------------------ side panel

  var returnFocus = null; // the tile link that opened the panel, focused again when it closes

  function openPanel() {
    panel.hidden = false;
    document.body.classList.add("panel-open");
  }

  function closePanel(href) {
    panel.hidden = true;
    panel.innerHTML = "";
    document.body.classList.remove("panel-open");
    if (href) history.pushState({}, "", href);
    if (returnFocus && returnFocus.isConnected) returnFocus.focus();
    returnFocus = null;
  }

  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.matches && elt.matches(".card-title, .card-alert a")) returnFocus = elt.closest(".card").querySelector(".card-title");
  });

  function focusRequested(root) {
    var target = root.querySelector("[data-focus]");
    if (!target) return;
    target.scrollIntoView({ block: "center" });
    var input = target.querySelector("input:not([type=hidden]), select, textarea");
    if (input) input.focus();
  }

  // The panel's URL goes into the address bar here rather than with hx-push-url: htmx's own history
  // would restore whole-page snapshots on "back" and leave the board's drag and drop unbound.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target === panel) {
      var config = event.detail.requestConfig || {};
      var path = event.detail.pathInfo && event.detail.pathInfo.requestPath;
      // Only a card's panel has an address of its own (the "New card" form is not a page to come back to).
      var isCard = path && /\/cards\/\d+\/?$/.test(path.split("?")[0]);
      if (config.verb === "get" && isCard && path !== window.location.pathname + window.location.search) {
        history.pushState({ panel: true }, "", path);
      }
      openPanel();
      focusRequested(panel);
    } else if (event.detail.target && event.detail.target.matches && event.detail.target.matches(".field-form")) {
      focusRequested(panel);
    }
  });
  document.body.addEventListener("htmx:afterSettle", function (event) {
    var el = event.detail.elt;
    if (el && el.matches && el.matches(".field-form")) {
      var input = el.querySelector("input:not([type=hidden]), select, textarea");
      if (input) input.focus();
    }
  });

  window.addEventListener("popstate", function () {
    if (/\/cards\/\d+\/?$/.test(window.location.pathname)) {
      htmx.ajax("GET", window.location.pathname + window.location.search, { target: "#panel", swap: "innerHTML" });
    } else if (panel && !panel.hidden) {
      closePanel(null);
    }
  });

  if (panel && !panel.hidden) focusRequested(panel);

  // ------------------------------------------------------------------ columns that do not fit
  // When the phases need more width than the window has, fade the cut edge and offer a button that
  // scrolls to the next columns: a hidden last column is never silent.
  var moreButton = document.getElementById("board-more");
  function markOverflow() {
    if (!board) return;
    var left = board.scrollLeft > 2;
    var right = board.scrollLeft + board.clientWidth < board.scrollWidth - 2;
    board.classList.toggle("more-left", left);
    board.classList.toggle("more-right", right);
    if (moreButton) moreButton.hidden = !right;
  }
  if (board) {
    board.addEventListener("scroll", markOverflow, { passive: true });
    window.addEventListener("resize", markOverflow);
    markOverflow();
  }
  if (moreButton) {
    moreButton.addEventListener("click", function () {
      board.scrollBy({ left: Math.max(board.clientWidth * 0.8, 220), behavior: "smooth" });
    });
  }

  // ------------------------------------------------------------------ filters

  var filters = document.querySelector("form[data-autosubmit]");
  if (filters) {
    filters.addEventListener("change", function (event) {
      if (event.target.matches("select, input[type=checkbox], input[type=date]")) filters.requestSubmit();
    });
  }

  // ------------------------------------------------------------------ live updates

  var since = board.dataset.since;
  var polling = false;

  function applyChanges(html) {
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var root = holder.querySelector(".board-changes");
    if (!root) return;
    if (root.dataset.until) since = root.dataset.until;
    root.querySelectorAll(".col-head").forEach(function (head) {
      var old = document.getElementById(head.id);
      if (old) { old.replaceWith(head); }
    });
    root.querySelectorAll("[data-removed]").forEach(function (marker) {
      var gone = document.getElementById("card-" + marker.dataset.removed);
      if (gone && !gone.classList.contains("is-moving") && gone !== menuFor) gone.remove();
    });
    var tiles = root.querySelector("template[data-tiles]");
    if (!tiles) return;
    Array.prototype.slice.call(tiles.content.querySelectorAll(".card")).forEach(function (tile) {
      var old = document.getElementById(tile.id);
      if (old) {
        if (old.dataset.stamp === tile.dataset.stamp) return;
        if (old.classList.contains("is-moving") || old.classList.contains("has-alert") || old === menuFor) return;
        old.remove();
      }
      var list = listFor(tile.dataset.phaseId);
      if (!list) return;
      var node = document.importNode(tile, true);
      if (placeInOrder(list, node)) {
        htmx.process(node);
        node.classList.add("just-changed");
        setTimeout(function () { node.classList.remove("just-changed"); }, 1600);
      }
      var shown = panel && !panel.hidden && panel.querySelector(".panel-card");
      if (shown && shown.dataset.cardId === node.dataset.cardId && shown.dataset.stamp !== node.dataset.stamp &&
          !panel.querySelector(".field-form, details[open]") && !panel.contains(document.activeElement)) {
        refreshPanel();
      }
    });
  }

  function poll() {
    if (polling || dragging || moving || document.visibilityState !== "visible") return;
    polling = true;
    var url = board.dataset.changesUrl;
    url += (url.indexOf("?") === -1 ? "?" : "&") + "since=" + encodeURIComponent(since);
    fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) { if (html && !dragging && !moving) applyChanges(html); })
      .catch(function () {})
      .then(function () { polling = false; });
  }

  var interval = parseInt(board.dataset.pollMs || "4000", 10);
  setInterval(poll, interval);
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "visible") poll(); });
})();
