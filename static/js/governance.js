// Governance pages: month picker submits on change; the erase button waits for its confirmation.
(function () {
  "use strict";

  document.querySelectorAll(".gov-page form[data-autosubmit]").forEach(function (form) {
    form.addEventListener("change", function () { form.requestSubmit ? form.requestSubmit() : form.submit(); });
  });

  document.querySelectorAll("form[data-confirm-erase]").forEach(function (form) {
    var input = form.querySelector("input[data-expect]");
    var box = form.querySelector("input[name=understood]");
    var button = form.querySelector("button[value=erase]");
    if (!input || !box || !button) return;
    function update() {
      var typed = input.value.trim().toLowerCase();
      var expected = (input.getAttribute("data-expect") || "").trim().toLowerCase();
      button.disabled = !(typed && typed === expected && box.checked);
    }
    input.addEventListener("input", update);
    box.addEventListener("change", update);
    update();
  });
})();
